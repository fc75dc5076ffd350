"""What the host reads of an end-to-end model (NMS inside): the row outputs, the baked thresholds, and the
rows as detections. Shared by the ONNX Runtime backend (`asfyolo_rt.infer.end2end`) and the TensorRT one
(`asfyolo_rt.infer.tensorrt`); importing it needs no torch (engines run on devices without it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

ROW_OUTPUTS = ("num_dets", "boxes", "scores", "classes", "coeffs", "protos")  # what the host reads of an e2e model


def rows_to_detections(out: dict[str, np.ndarray], conf: float, graph_conf: float) -> tuple[list[Any], Any]:
    """An end-to-end model's named outputs as Detections per image (scores > max(conf, graph_conf)) + protos
    (torch tensors: imported here, so that a plain engine runs without torch)."""
    import torch

    from asfyolo_rt.infer.nms import Detections

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
    """What an end-to-end backend (ONNX Runtime or TensorRT) adds to the backend protocol
    (`asfyolo_rt.infer.protocol`): its baked NMS settings (conf, iou, max_det) and `detect`, which reads the
    graph's rows (its own `rows(x, conf)`) instead of running `__call__` + the host NMS."""

    end2end = True
    max_batch: int | None = None

    def rows(self, images: Any, conf: float) -> tuple[list[Any], Any]:  # pragma: no cover - every subclass has one
        raise NotImplementedError

    def detect(self, images: Any, *, conf: float, iou: float, max_det: int,
               soft: bool = False) -> tuple[list[Any], Any, float]:
        """Detections per image of `images` (static-batch padding added and dropped), protos, forward seconds
        (the graph's NMS included). iou/max_det/soft are the graph's own (`mismatch` says what differs)."""
        import time

        from asfyolo_rt.infer.protocol import pad_to_static_batch

        n = images.shape[0]
        x = pad_to_static_batch(self, images)
        t0 = time.perf_counter()
        dets, protos = self.rows(x, conf)
        return dets[:n], protos, time.perf_counter() - t0
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
