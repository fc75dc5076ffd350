"""End-to-end ONNX models (`export --end2end`) as a detection backend for tiled and whole-image inference.

An end-to-end graph runs score filter, top-k and NMS itself and returns fixed-size rows (`export.end2end`):
num_dets, boxes, scores, classes, masks at prototype resolution, and the raw `coeffs` and `protos`. This
backend hands the `Runner` (`asfyolo_rt.infer.geometry`) those rows as `Detections` plus the prototypes,
so the host assembles masks at full image resolution and stitches tiles exactly as it does for the plain
model (same box-bounded mask assembly, same tile ownership, same global merge): tile batches go through
the end-to-end model, stitching stays outside.

The graph's NMS settings are baked in (`e2e_*` metadata): confidence threshold, IoU threshold, max_det per
image (per tile). A stricter `--conf` is applied on top; a looser one, another `--iou` or a larger
`--max-det` cannot be, and `Runner` says so once (`mismatch`).
"""

from __future__ import annotations

import numpy as np
import torch

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.infer.backends import OrtBackend
from asfyolo_rt.infer.nms import Detections


class OrtEnd2EndBackend(OrtBackend):
    """ONNX Runtime running an end-to-end ONNX (see the module docstring). `detect` replaces `__call__`."""

    end2end = True

    def _describe_session(self, precision: str | None) -> None:
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        need = ["num_dets", "boxes", "scores", "classes", "coeffs", "protos"]
        if len(inputs) != 1 or not set(need) <= set(outputs):
            missing = [n for n in need if n not in outputs]
            raise ConfigError(
                f"{self.path}: an end-to-end model without the outputs {missing} (made by an earlier export): "
                "its masks exist only at 1/4 resolution, so it cannot be tiled or give full-resolution masks",
                hint="re-export it with `asfyolo-rt export --end2end`, or pass the plain model.onnx",
            )
        self._session_info(precision)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.conf = float(meta.get("e2e_conf_threshold", "0.25"))
        self.iou = float(meta.get("e2e_iou_threshold", "0.6"))
        self.max_det = int(meta.get("e2e_max_det", "300"))

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise ConfigError(f"{self.path.name} is an end-to-end model (NMS inside): it gives detections, not raw "
                          "predictions", hint="use it with predict or val --protocol tiled, or pass the plain model.onnx")

    def detect(self, images: torch.Tensor, conf: float) -> tuple[list[Detections], torch.Tensor]:
        """Detections per image (score-sorted, scores > max(conf, the graph's)) and protos (B, nm, Hp, Wp)."""
        x = np.ascontiguousarray(images.detach().cpu().float().numpy())
        num, boxes, scores, classes, coeffs, protos = self.session.run(
            ["num_dets", "boxes", "scores", "classes", "coeffs", "protos"], {self.input_name: x})
        dets = []
        for b in range(x.shape[0]):
            n = int(num[b])
            keep = torch.from_numpy(scores[b, :n] > conf) if conf > self.conf else slice(None)
            dets.append(Detections(
                boxes=torch.from_numpy(boxes[b, :n].copy()).float()[keep],
                scores=torch.from_numpy(scores[b, :n].copy()).float()[keep],
                classes=torch.from_numpy(classes[b, :n].astype(np.int64))[keep],
                coeffs=torch.from_numpy(coeffs[b, :n].copy()).float()[keep]))
        return dets, torch.from_numpy(protos).float()

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
