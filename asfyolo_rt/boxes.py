"""Box and mask geometry (a base module, below inference and evaluation): format conversion, pairwise IoU,
letterbox undoing.

Conventions used everywhere in asfyolo-rt:

* boxes are ``xyxy`` (x1, y1, x2, y2) in pixels, with x2 > x1 meaning a width of ``x2 - x1``
  (continuous coordinates, **no "+1 pixel"** convention);
* IoU = intersection / union with areas ``(x2 - x1) * (y2 - y1)``; a pair whose union is zero has
  IoU 0 (a tiny epsilon keeps the division finite);
* mask IoU is the pixel-count IoU of two binary masks of the same size.

Functions accept ``torch.Tensor`` and return ``torch.Tensor`` on the input's device.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from asfyolo_rt.errors import DataError

IOU_EPS = 1e-7  # added to unions: keeps 0/0 finite (gives IoU 0), negligible for real boxes


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """Centre format to corner format.

    boxes: (..., 4) float, (cx, cy, w, h). Returns (..., 4) float, (x1, y1, x2, y2).
    """
    cxcy, wh = boxes[..., :2], boxes[..., 2:4]
    return torch.cat((cxcy - wh / 2, cxcy + wh / 2), dim=-1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """Corner format to centre format.

    boxes: (..., 4) float, (x1, y1, x2, y2). Returns (..., 4) float, (cx, cy, w, h).
    """
    xy1, xy2 = boxes[..., :2], boxes[..., 2:4]
    return torch.cat(((xy1 + xy2) / 2, xy2 - xy1), dim=-1)


def xyxy_to_ltwh(boxes: Tensor) -> Tensor:
    """Corner format to COCO format (left, top, width, height).

    boxes: (..., 4) float, (x1, y1, x2, y2). Returns (..., 4) float, (x1, y1, w, h).
    """
    return torch.cat((boxes[..., :2], boxes[..., 2:4] - boxes[..., :2]), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """boxes: (n, 4) xyxy. Returns (n,) areas; inverted boxes count as 0."""
    wh = (boxes[:, 2:4] - boxes[:, :2]).clamp(min=0)
    return wh[:, 0] * wh[:, 1]


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU of two box sets.

    boxes1: (m, 4) xyxy float; boxes2: (n, 4) xyxy float, same device.
    Returns (m, n) float IoU in [0, 1]. Memory is m·n floats: chunk the inputs for very large sets.
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    area1, area2 = box_area(boxes1), box_area(boxes2)
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:4], boxes2[None, :, 2:4])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter + IOU_EPS)


def mask_iou(masks1: Tensor, masks2: Tensor) -> Tensor:
    """Pairwise IoU of two binary mask stacks of the same spatial size.

    masks1: (m, H, W) or (m, H·W) bool (or {0, 1} numeric); masks2: (n, H, W) or (n, H·W), same
    device. Returns (m, n) float32 IoU in [0, 1]. Counts are accumulated in float32, exact up to
    2^24 pixels per mask.
    """
    if masks1.shape[1:] != masks2.shape[1:]:
        raise DataError(
            f"mask_iou got masks of different sizes {tuple(masks1.shape[1:])} and {tuple(masks2.shape[1:])}; "
            "expected the same (H, W)",
            hint="resize the ground-truth masks to the prediction size first "
            "(asfyolo_rt.infer.masks.resize_gt_masks)",
        )
    a = masks1.reshape(masks1.shape[0], -1).float()
    b = masks2.reshape(masks2.shape[0], -1).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return inter / (union + IOU_EPS)


def clip_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """Clamp xyxy boxes (n, 4) to the image [0, width] × [0, height]; returns a new tensor."""
    out = boxes.clone()
    out[:, 0::2] = out[:, 0::2].clamp(0, width)
    out[:, 1::2] = out[:, 1::2].clamp(0, height)
    return out


def unletterbox_boxes(
    boxes: Tensor, gain: float, pad: tuple[float, float], orig_hw: tuple[int, int]
) -> Tensor:
    """Map boxes from letterboxed network pixels back to original-image pixels.

    boxes: (n, 4) xyxy float in network-input pixels. gain: resize factor original → network
    (network = original · gain + pad). pad: (left, top) padding in network pixels.
    orig_hw: (height, width) of the original image. Returns (n, 4) xyxy in original pixels,
    clipped to the image.
    """
    if gain <= 0:
        raise DataError(f"unletterbox_boxes got gain={gain}; expected a positive resize factor")
    out = boxes.clone()
    out[:, 0::2] = (out[:, 0::2] - pad[0]) / gain
    out[:, 1::2] = (out[:, 1::2] - pad[1]) / gain
    return clip_boxes(out, orig_hw[0], orig_hw[1])


def _check_boxes(boxes: Tensor, name: str) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(f"{name} has shape {tuple(boxes.shape)}; expected (n, 4) xyxy boxes")


def window_mask_iou(
    windows_a: np.ndarray, masks_a: list[np.ndarray], windows_b: np.ndarray, masks_b: list[np.ndarray]
) -> np.ndarray:
    """(len(a), len(b)) IoU of binary masks held box-local, as full-resolution masks would give it.

    windows_*: (k, 4) int [x0, y0, w, h] in one image's pixels; masks_*: k arrays (h, w), nonzero =
    inside. Only pairs whose windows overlap are computed (cells are small: the matrix is sparse).
    """
    wa, wb = np.asarray(windows_a, np.int64).reshape(-1, 4), np.asarray(windows_b, np.int64).reshape(-1, 4)
    out = np.zeros((len(wa), len(wb)), np.float64)
    if not len(wa) or not len(wb):
        return out
    area_a = np.array([int(np.count_nonzero(m)) for m in masks_a], np.float64)
    area_b = np.array([int(np.count_nonzero(m)) for m in masks_b], np.float64)
    ax1, ay1 = wa[:, 0], wa[:, 1]
    ax2, ay2 = ax1 + wa[:, 2], ay1 + wa[:, 3]
    bx1, by1 = wb[:, 0], wb[:, 1]
    bx2, by2 = bx1 + wb[:, 2], by1 + wb[:, 3]
    ix1, iy1 = np.maximum(ax1[:, None], bx1[None]), np.maximum(ay1[:, None], by1[None])
    ix2, iy2 = np.minimum(ax2[:, None], bx2[None]), np.minimum(ay2[:, None], by2[None])
    for i, j in zip(*np.nonzero((ix2 > ix1) & (iy2 > iy1))):
        x1, y1, x2, y2 = ix1[i, j], iy1[i, j], ix2[i, j], iy2[i, j]
        a = masks_a[i][y1 - ay1[i] : y2 - ay1[i], x1 - ax1[i] : x2 - ax1[i]]
        b = masks_b[j][y1 - by1[j] : y2 - by1[j], x1 - bx1[j] : x2 - bx1[j]]
        inter = float(np.count_nonzero(a.astype(bool) & b.astype(bool)))
        union = area_a[i] + area_b[j] - inter
        out[i, j] = inter / union if union > 0 else 0.0
    return out
