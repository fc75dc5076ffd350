"""COCO-style cross-check on full-resolution masks, computed by faster-coco-eval.

This is a second opinion next to the official metrics of :mod:`.metrics`. It differs from the
official (YOLOv5 v7.0) protocol in these ways, so the numbers are close, not equal:

* **Matching**: COCO goes through detections by descending score; each takes the unmatched GT
  with the highest IoU ≥ t (greedy by score). The official protocol ranks pairs by IoU and then
  resolves conflicts per prediction and per GT (see :func:`.metrics.match_predictions`). With
  well-separated objects both give the same true positives.
* **AP integral**: COCO also samples 101 recall points, but takes the envelope precision at each
  (step interpolation, precision 0 beyond the highest recall) and averages them. The official
  protocol linearly interpolates towards a closing point (recall 1, precision 0) and integrates
  by trapezoids: a perfect detector gets 1.0 here and 0.995 there, and a detector that stops at
  recall r < 1 gets an extra triangle there.
* **Resolution**: segm IoU is computed here on masks at the original image size; the official
  mask mAP uses masks at 1/4 of the network input in letterboxed space (ASF-YOLO.md §10.12).
* **maxDets**: COCO keeps only the top ``maxDets`` detections per image and category (default
  100, which would truncate DSB2018 images with up to 382 nuclei); we use ``max_dets`` (default
  1000) and report it. The official validator caps at ``max_det = 300`` in NMS.
* **Area ranges**: COCO also reports AP for small (< 32² px), medium and large objects, using the
  GT's area (mask area when masks are given, else box area). Most nuclei are "small".
* **iscrowd**: COCO can ignore crowd regions; our data has none, every GT has iscrowd = 0.
* Box IoU is the same (continuous xywh, no +1) and evaluated in original-image pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from asfyolo_rt.errors import DataError

logger = logging.getLogger(__name__)

MaskInput = Any  # (k, H, W) bool ndarray/tensor, a list of COCO RLE dicts, or None


@dataclass
class ImageGT:
    """Ground truth of one image in original pixels.

    image_id: any hashable (file stem or int); height, width: original size; boxes: (m, 4) xyxy
    float; classes: (m,) int; masks: (m, height, width) bool, a list of m COCO RLE dicts, or None
    (then only bbox can be evaluated).
    """

    image_id: Any
    height: int
    width: int
    boxes: Any
    classes: Any
    masks: MaskInput = None


@dataclass
class ImageDet:
    """Detections of one image in original pixels.

    boxes: (n, 4) xyxy float; scores: (n,) float; classes: (n,) int; masks: (n, height, width)
    bool, a list of n COCO RLE dicts, or None.
    """

    image_id: Any
    boxes: Any
    scores: Any
    classes: Any
    masks: MaskInput = None


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def masks_to_rle(masks: MaskInput, height: int, width: int) -> list[dict]:
    """Encode a mask stack as COCO RLE dicts; lists of RLE dicts pass through (size-checked).

    masks: (k, height, width) bool/{0,1} array or tensor, or list of k RLE dicts.
    """
    from faster_coco_eval.core import mask as mask_utils

    if isinstance(masks, (list, tuple)):
        for r in masks:
            if not isinstance(r, dict) or list(r.get("size", [])) != [height, width]:
                raise DataError(f"expected COCO RLE dicts of size [{height}, {width}], got {str(r)[:80]}")
        return list(masks)
    arr = _np(masks)
    if arr.ndim != 3 or arr.shape[1:] != (height, width):
        raise DataError(f"mask stack has shape {arr.shape}; expected (k, {height}, {width})",
                        hint="masks must be at the original image size for the COCO cross-check")
    if arr.shape[0] == 0:
        return []
    return list(mask_utils.encode(np.asfortranarray(arr.transpose(1, 2, 0).astype(np.uint8))))


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> list[dict]:
    """Rasterise one polygon per instance (flat [x1, y1, x2, y2, …] in pixels) to COCO RLE dicts."""
    from faster_coco_eval.core import mask as mask_utils

    return [mask_utils.merge(mask_utils.frPyObjects([list(map(float, p))], height, width)) for p in polygons]


def coco_evaluate(
    gts: Sequence[ImageGT],
    dts: Sequence[ImageDet],
    *,
    max_dets: int = 1000,
    iou_types: Sequence[str] = ("bbox", "segm"),
) -> dict[str, Any]:
    """COCO bbox and segm metrics of a whole split.

    gts: one ImageGT per image (images without objects included: they count for false positives);
    dts: ImageDet for any subset of those images (image ids must exist in gts).
    Returns {"bbox": {...}, "segm": {...}, "params": {...}} where each task holds AP (0.50:0.95),
    AP50, AP75, AP_small, AP_medium, AP_large and AR (at max_dets), plus per_class {class: AP}
    and per_class_ap50; a value is None where COCO marks it undefined (no GT in that range).
    """
    from faster_coco_eval import COCO, COCOeval_faster
    from faster_coco_eval import __version__ as fce_version

    if max_dets < 1:
        raise DataError(f"max_dets={max_dets}; expected a positive detection cap")
    for t in iou_types:
        if t not in ("bbox", "segm"):
            raise DataError(f"unknown iou type {t!r}; expected 'bbox' or 'segm'")
    ids = {g.image_id: i + 1 for i, g in enumerate(gts)}
    if len(ids) != len(gts):
        raise DataError("coco_evaluate got duplicate image ids in gts; expected one ImageGT per image")
    sizes = {g.image_id: (int(g.height), int(g.width)) for g in gts}
    classes = sorted({int(c) for g in gts for c in _np(g.classes).reshape(-1)}
                     | {int(c) for d in dts for c in _np(d.classes).reshape(-1)})
    images = [{"id": ids[g.image_id], "height": sizes[g.image_id][0], "width": sizes[g.image_id][1]}
              for g in gts]
    categories = [{"id": c + 1, "name": str(c)} for c in classes]
    for d in dts:
        if d.image_id not in ids:
            raise DataError(f"detections for image {d.image_id!r}, which has no ground truth entry",
                            hint="pass an ImageGT (possibly empty) for every evaluated image")

    result: dict[str, Any] = {
        "params": {
            "max_dets": max_dets,
            "iou_thresholds": "0.50:0.05:0.95",
            "area_ranges": {"small": [0, 32**2], "medium": [32**2, 96**2], "large": [96**2, 1e10]},
            "n_images": len(gts),
            "n_gt": int(sum(_np(g.boxes).reshape(-1, 4).shape[0] for g in gts)),
            "n_dt": int(sum(_np(d.boxes).reshape(-1, 4).shape[0] for d in dts)),
            "tool": f"faster-coco-eval {fce_version}",
        }
    }
    for iou_type in iou_types:
        gt_anns = _gt_annotations(gts, ids, sizes, iou_type)
        dt_anns = _dt_annotations(dts, ids, sizes, iou_type)
        coco_gt = COCO({"images": images, "annotations": gt_anns, "categories": categories},
                       print_function=logger.debug)
        coco_dt = coco_gt.loadRes(dt_anns)
        ev = COCOeval_faster(coco_gt, coco_dt, iouType=iou_type, print_function=logger.debug,
                             rle_iou_max_workers=1)
        ev.params.maxDets = sorted({1, 10, max_dets})
        ev.evaluate()
        ev.accumulate()
        result[iou_type] = _summarise(ev, classes)
    return result


def _gt_annotations(gts: Sequence[ImageGT], ids: dict, sizes: dict, iou_type: str) -> list[dict]:
    anns: list[dict] = []
    for g in gts:
        h, w = sizes[g.image_id]
        boxes = _np(g.boxes).astype(np.float64).reshape(-1, 4)
        cls = _np(g.classes).astype(np.int64).reshape(-1)
        if cls.shape[0] != boxes.shape[0]:
            raise DataError(f"image {g.image_id!r}: {boxes.shape[0]} GT boxes but {cls.shape[0]} classes")
        rles = None
        if g.masks is not None:
            rles = masks_to_rle(g.masks, h, w)
        elif iou_type == "segm" and boxes.shape[0]:
            raise DataError(f"image {g.image_id!r} has no GT masks; segm evaluation needs them")
        if rles is not None and len(rles) != boxes.shape[0]:
            raise DataError(f"image {g.image_id!r}: {boxes.shape[0]} GT boxes but {len(rles)} masks")
        for k in range(boxes.shape[0]):
            x1, y1, x2, y2 = boxes[k]
            ann = {"id": len(anns) + 1, "image_id": ids[g.image_id], "category_id": int(cls[k]) + 1,
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0,
                   "area": float((x2 - x1) * (y2 - y1))}
            if rles is not None:
                from faster_coco_eval.core import mask as mask_utils

                ann["segmentation"] = rles[k]
                ann["area"] = float(mask_utils.area(rles[k]))
            anns.append(ann)
    return anns


def _dt_annotations(dts: Sequence[ImageDet], ids: dict, sizes: dict, iou_type: str) -> list[dict]:
    anns: list[dict] = []
    for d in dts:
        h, w = sizes[d.image_id]
        boxes = _np(d.boxes).astype(np.float64).reshape(-1, 4)
        scores = _np(d.scores).astype(np.float64).reshape(-1)
        cls = _np(d.classes).astype(np.int64).reshape(-1)
        if not boxes.shape[0] == scores.shape[0] == cls.shape[0]:
            raise DataError(f"image {d.image_id!r}: {boxes.shape[0]} boxes, {scores.shape[0]} scores, "
                            f"{cls.shape[0]} classes; expected equal counts")
        if iou_type == "segm":
            if d.masks is None:
                raise DataError(f"image {d.image_id!r} has no predicted masks; segm evaluation needs them")
            rles = masks_to_rle(d.masks, h, w)
            if len(rles) != boxes.shape[0]:
                raise DataError(f"image {d.image_id!r}: {boxes.shape[0]} boxes but {len(rles)} masks")
            anns += [{"image_id": ids[d.image_id], "category_id": int(cls[k]) + 1, "score": float(scores[k]),
                      "segmentation": rles[k]} for k in range(boxes.shape[0])]
        else:
            anns += [{"image_id": ids[d.image_id], "category_id": int(cls[k]) + 1, "score": float(scores[k]),
                      "bbox": [float(boxes[k, 0]), float(boxes[k, 1]), float(boxes[k, 2] - boxes[k, 0]),
                               float(boxes[k, 3] - boxes[k, 1])]} for k in range(boxes.shape[0])]
    return anns


def _mean_defined(x: np.ndarray) -> float | None:
    x = x[x > -1]
    return float(x.mean()) if x.size else None


def _summarise(ev: Any, classes: list[int]) -> dict[str, Any]:
    precision = np.asarray(ev.eval["precision"])  # (T, R, K, A, M), -1 = undefined
    recall = np.asarray(ev.eval["recall"])  # (T, K, A, M)
    thr = np.asarray(ev.params.iouThrs)
    t50, t75 = int(np.argmin(np.abs(thr - 0.5))), int(np.argmin(np.abs(thr - 0.75)))
    labels = list(ev.params.areaRngLbl)
    out: dict[str, Any] = {
        "AP": _mean_defined(precision[:, :, :, 0, -1]),
        "AP50": _mean_defined(precision[t50, :, :, 0, -1]),
        "AP75": _mean_defined(precision[t75, :, :, 0, -1]),
    }
    for name in ("small", "medium", "large"):
        out[f"AP_{name}"] = _mean_defined(precision[:, :, :, labels.index(name), -1])
    out["AR"] = _mean_defined(recall[:, :, 0, -1])
    cat_ids = list(ev.params.catIds)
    out["per_class"] = {c: _mean_defined(precision[:, :, cat_ids.index(c + 1), 0, -1]) for c in classes
                        if c + 1 in cat_ids}
    out["per_class_ap50"] = {c: _mean_defined(precision[t50, :, cat_ids.index(c + 1), 0, -1])
                             for c in classes if c + 1 in cat_ids}
    return out
