"""End-to-end ONNX models (`export --end2end`) as a detection backend for tiled and whole-image inference.

An end-to-end graph runs score filter, top-k and NMS itself and returns fixed-size rows (`export.end2end`):
num_dets, boxes, scores, classes, masks at prototype resolution, and the raw `coeffs` and `protos`. This
backend hands the `Runner` (`asfyolo_rt.infer.geometry`) those rows as `Detections` plus the prototypes,
so the host assembles masks at full image resolution and stitches tiles exactly as it does for the plain
model (same box-bounded mask assembly, same tile ownership, same global merge): tile batches go through
the end-to-end model, stitching stays outside.

The graph's NMS settings are baked in (`e2e_*` metadata): confidence threshold, IoU threshold, max_det per
image (per tile). A stricter `--conf` is applied on top; a looser one, another `--iou` or a larger
`--max-det` cannot be, and `Runner` says so once (`mismatch`). TensorRT engines built from an end-to-end
ONNX (`asfyolo-rt build`) take the same path (`export.engine.runner.TensorRTBackend` with `End2EndRows`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.infer.backends import OrtBackend
from asfyolo_rt.infer.nms import Detections

ROW_OUTPUTS = ("num_dets", "boxes", "scores", "classes", "coeffs", "protos") # what the host reads of an e2e model


def rows_to_detections(out: dict[str, np.ndarray], conf: float, graph_conf: float) -> tuple[list[Detections], torch.Tensor]:
    """An end-to-end model's named outputs as Detections per image (scores > max(conf, graph_conf)) + protos."""
    num, boxes, scores, classes, coeffs = (out[k] for k in ROW_OUTPUTS[:5])
    dets = []
    for b in range(num.shape[0]):
        n = int(np.asarray(num[b]).reshape(-1)[0])
        keep = torch.from_numpy(scores[b, :n] > conf) if conf > graph_conf else slice(None)
        dets.append(Detections(
            boxes=torch.from_numpy(np.array(boxes[b, :n])).float()[keep],
            scores=torch.from_numpy(np.array(scores[b, :n])).float()[keep],
            classes=torch.from_numpy(np.asarray(classes[b, :n]).astype(np.int64))[keep],
            coeffs=torch.from_numpy(np.array(coeffs[b, :n])).float()[keep]))
    return dets, torch.from_numpy(np.asarray(out["protos"])).float()


class End2EndRows:
    """What an end-to-end backend (ONNX Runtime or TensorRT) adds to the backend protocol: its baked NMS
    settings (conf, iou, max_det) and `detect`, which the Runner calls instead of `__call__` + NMS."""

    end2end = True
    conf: float = 0.25
    iou: float = 0.6
    max_det: int = 300
    path: Path

    def set_thresholds(self, meta: dict[str, str]) -> None:
        """The baked settings from `e2e_*` metadata (ONNX) or a sidecar's thresholds (the same keys, unprefixed)."""
        def get(key: str, default: str) -> str:
            return str(meta.get(f"e2e_{key}", meta.get(key, default)))

        self.conf = float(get("conf_threshold", "0.25"))
        self.iou = float(get("iou_threshold", "0.6"))
        self.max_det = int(get("max_det", "300"))

    def mismatch(self, conf: float, iou: float, max_det: int) -> str | None:
        """What of the requested post-processing the baked-in NMS cannot honour (None: all of it)."""
        bad = []
        if conf < self.conf - 1e-9:
            bad.append(f"confidence {conf} (the graph keeps scores > {self.conf})")
        if abs(iou - self.iou) > 1e-9:
            bad.append(f"IoU {iou} (the graph's NMS uses {self.iou})")
        if max_det > self.max_det:
            bad.append(f"max-det {max_det} (the graph returns at most {self.max_det} per tile)")
        if not bad:
            return None
        return (f"{self.path.name} has its NMS built in: " + ", ".join(bad) + " cannot apply; re-export with "
                f"`asfyolo-rt export --end2end --conf {conf} --iou {iou} --max-det {max_det}` to change them")


class OrtEnd2EndBackend(End2EndRows, OrtBackend):
    """ONNX Runtime running an end-to-end ONNX (see the module docstring). `detect` replaces `__call__`."""

    def _describe_session(self, precision: str | None) -> None:
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        if len(inputs) != 1 or not set(ROW_OUTPUTS) <= set(outputs):
            missing = [n for n in ROW_OUTPUTS if n not in outputs]
            raise ConfigError(
                f"{self.path}: an end-to-end model without the outputs {missing} (made by an earlier export): "
                "its masks exist only at 1/4 resolution, so it cannot be tiled or give full-resolution masks",
                hint="re-export it with `asfyolo-rt export --end2end`, or pass the plain model.onnx",
            )
        self._session_info(precision)
        self.set_thresholds(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise ConfigError(f"{self.path.name} is an end-to-end model (NMS inside): it gives detections, not raw "
                          "predictions", hint="use it with predict or val --protocol tiled, or pass the plain model.onnx")

    def detect(self, images: torch.Tensor, conf: float) -> tuple[list[Detections], torch.Tensor]:
        """Detections per image (score-sorted, scores > max(conf, the graph's)) and protos (B, nm, Hp, Wp)."""
        x = np.ascontiguousarray(images.detach().cpu().float().numpy())
        out = dict(zip(ROW_OUTPUTS, self.session.run(list(ROW_OUTPUTS), {self.input_name: x})))
        return rows_to_detections(out, conf, self.conf)
