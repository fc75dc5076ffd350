"""Post-processing of raw model outputs: NMS (:mod:`.nms`) and mask assembly (:mod:`.masks`).

The hard-NMS function is not re-exported so that ``asfyolo_rt.infer.nms`` stays the module; use
``from asfyolo_rt.infer.nms import nms``.
"""

from __future__ import annotations

from asfyolo_rt.infer.masks import (
    crop_masks,
    process_masks_original,
    process_masks_proto,
    process_masks_upsampled,
    resize_gt_masks,
)
from asfyolo_rt.infer.nms import Detections, non_max_suppression, soft_nms

__all__ = [
    "Detections",
    "crop_masks",
    "non_max_suppression",
    "process_masks_original",
    "process_masks_proto",
    "process_masks_upsampled",
    "resize_gt_masks",
    "soft_nms",
]
