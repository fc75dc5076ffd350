"""Evaluation: the official YOLOv5-style metrics, a COCO cross-check, the DSB2018 score, plots.

Submodules: :mod:`.metrics` (official protocol; box geometry and IoU are `asfyolo_rt.boxes`, a base module),
:mod:`.coco` (faster-coco-eval cross-check), :mod:`.dsb` (Kaggle DSB2018 score),
:mod:`.plots` (curves and mosaics; imports matplotlib/OpenCV lazily through the submodule).
"""

from __future__ import annotations

from asfyolo_rt.boxes import box_iou, mask_iou, unletterbox_boxes, xywh_to_xyxy, xyxy_to_xywh
from asfyolo_rt.eval.coco import ImageDet, ImageGT, coco_evaluate
from asfyolo_rt.eval.dsb import DSBResult, dsb_image_scores, dsb_score
from asfyolo_rt.eval.metrics import (
    IOU_THRESHOLDS,
    APResult,
    SegMetrics,
    SegMetricsAccumulator,
    ap_per_class,
    fitness,
    match_predictions,
)

__all__ = [
    "IOU_THRESHOLDS",
    "APResult",
    "DSBResult",
    "ImageDet",
    "ImageGT",
    "SegMetrics",
    "SegMetricsAccumulator",
    "ap_per_class",
    "box_iou",
    "coco_evaluate",
    "dsb_image_scores",
    "dsb_score",
    "fitness",
    "mask_iou",
    "match_predictions",
    "unletterbox_boxes",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]
