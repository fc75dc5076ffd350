"""End-to-end ONNX models (`export --end2end`) as a detection backend for tiled and whole-image inference.

An end-to-end graph runs score filter, top-k and NMS itself and returns fixed-size rows (`export.end2end`):
num_dets, boxes, scores, classes, masks at prototype resolution, and the raw `coeffs` and `protos`. This
backend hands the `Runner` (`asfyolo_rt.runtime.stages`) those rows as `Detections` plus the prototypes,
so the host assembles masks at full image resolution and stitches tiles exactly as it does for the plain
model (same box-bounded mask assembly, same tile ownership, same global merge): tile batches go through
the end-to-end model, stitching stays outside.

The graph's NMS settings are baked in (`e2e_*` metadata): confidence threshold, IoU threshold, max_det per
image (per tile). A stricter `--conf` is applied on top; a looser one, another `--iou` or a larger
`--max-det` cannot be, and `Runner` says so once (`mismatch`). TensorRT engines built from an end-to-end
ONNX (`asfyolo-rt build`) take the same path (`asfyolo_rt.infer.tensorrt.TensorRTBackend` with `End2EndRows`).
"""

from __future__ import annotations

import numpy as np
import torch

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.infer.backends import OrtBackend
from asfyolo_rt.infer.e2e_rows import ROW_OUTPUTS, End2EndRows, rows_to_detections
from asfyolo_rt.infer.nms import Detections


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

    def rows(self, images: torch.Tensor, conf: float) -> tuple[list[Detections], torch.Tensor]:
        """Detections per image (score-sorted, scores > max(conf, the graph's)) and protos (B, nm, Hp, Wp)."""
        x = np.ascontiguousarray(images.detach().cpu().float().numpy())
        out = dict(zip(ROW_OUTPUTS, self.session.run(list(ROW_OUTPUTS), {self.input_name: x})))
        return rows_to_detections(out, conf, self.conf)
