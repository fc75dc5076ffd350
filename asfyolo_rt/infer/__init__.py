"""Inference primitives below the runtime layer: backends (PyTorch, ONNX Runtime, OpenVINO, TensorRT), NMS
(:mod:`.nms`), mask assembly (:mod:`.masks`), label maps, image sources and result writers.

Nothing is imported eagerly: `asfyolo_rt.infer.tensorrt`, `.sidecar` and `.e2e_rows` run on devices that
have TensorRT and no torch. The names below are loaded on first use. The hard-NMS function is not
re-exported so that ``asfyolo_rt.infer.nms`` stays the module; use ``from asfyolo_rt.infer.nms import nms``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Detections": "nms", "non_max_suppression": "nms", "soft_nms": "nms",
    "crop_masks": "masks", "process_masks_original": "masks", "process_masks_proto": "masks",
    "process_masks_upsampled": "masks", "resize_gt_masks": "masks",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
