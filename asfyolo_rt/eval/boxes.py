"""Box and mask geometry: format conversion, pairwise IoU, letterbox undoing.

Conventions used everywhere in asfyolo-rt:

* boxes are ``xyxy`` (x1, y1, x2, y2) in pixels, with x2 > x1 meaning a width of ``x2 - x1``
  (continuous coordinates, **no "+1 pixel"** convention);
* IoU = intersection / union with areas ``(x2 - x1) * (y2 - y1)``; a pair whose union is zero has
  IoU 0 (a tiny epsilon keeps the division finite);
* mask IoU is the pixel-count IoU of two binary masks of the same size.

Functions accept ``torch.Tensor`` and return ``torch.Tensor`` on the input's device.
"""

from __future__ import annotations

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
