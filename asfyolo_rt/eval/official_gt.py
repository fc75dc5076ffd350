"""Image placement and ground truth as the official ASF-YOLO validator builds them (protocol "official").

Re-derived from the behaviour of the official YOLOv5-seg data loader (not its code); the quirks that make
its numbers differ from an exact-geometry evaluation are reproduced on purpose:

* **Resize by truncation.** The long side becomes img_size and the short side int(short * r)
  (truncated, where :mod:`asfyolo_rt.data.letterbox` rounds up), INTER_AREA when shrinking.
* **Whole-pixel padding, float label shift.** The image is padded by round(d - 0.1) pixels on the
  left/top and round(d + 0.1) on the right/bottom, d the float half-padding; ground-truth polygons and
  boxes are shifted by d itself. With an odd total padding the ground truth sits 0.5 network pixels
  right/below the pixels it outlines. Boxes go back to original pixels by subtracting d and dividing
  by the *height* ratio for both axes (then clipped to the image).
* **Ground-truth masks.** Each polygon is filled (cv2.fillPoly on int32-truncated vertices) at network
  resolution, then shrunk with cv2.resize (INTER_LINEAR) by the mask ratio. "overlap" paints them into
  one index map: zero-area masks first, then by decreasing area (the order of a descending argsort of
  uint64 areas), each later (smaller) one over the earlier, with the map's uint8 arithmetic wrapping
  when an image has 128-255 instances; instances are re-ordered the same way. Without overlap each
  instance keeps its own mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from asfyolo_rt.data.dataset import Sample
from asfyolo_rt.data.letterbox import rect_shape_batch

_BOX_CLIP_EPS = 1e-3  # the official labels are clipped to (W - eps, H - eps) network pixels


@dataclass(frozen=True)
class OfficialPlacement:
    """Where the official loader put one image into the network input.

    orig_shape (H0, W0); resized (h, w) after the truncating resize; ratio: any further letterbox
    scale (1 unless the image does not fit net_shape); pad (dw, dh): float half-paddings used for
    labels and box rescaling; border (left, top): whole pixels actually added; net_shape (H, W).
    """

    orig_shape: tuple[int, int]
    resized: tuple[int, int]
    ratio: float
    pad: tuple[float, float]
    border: tuple[int, int]
    net_shape: tuple[int, int]

    @property
    def odd_padding(self) -> bool:
        """True when the float label shift and the whole-pixel image shift differ (by 0.5 px)."""
        return (float(self.border[0]), float(self.border[1])) != self.pad

    def boxes_to_original(self, boxes: torch.Tensor) -> torch.Tensor:
        """(n, 4) xyxy network boxes -> original pixels the official way: minus the float pad, divided
        by the height ratio h/H0, clipped to the image. Returns a new float32 tensor."""
        h0, w0 = self.orig_shape
        gain = self.resized[0] / h0
        out = boxes.float().clone()
        out[:, 0::2] -= self.pad[0]
        out[:, 1::2] -= self.pad[1]
        out /= gain
        out[:, 0::2] = out[:, 0::2].clamp(0, w0)
        out[:, 1::2] = out[:, 1::2].clamp(0, h0)
        return out


def official_letterbox(image: np.ndarray, net_shape: tuple[int, int], img_size: int) -> tuple[np.ndarray, OfficialPlacement]:
    """Resize (long side img_size, short side truncated) and pad into net_shape, grey 114.

    image: (H0, W0, 3) uint8. Returns the (H, W, 3) network image and its placement.
    """
    h0, w0 = image.shape[:2]
    r = img_size / max(h0, w0)
    if r != 1:
        image = cv2.resize(image, (int(w0 * r), int(h0 * r)),
                           interpolation=cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA)
    h, w = image.shape[:2]
    big_h, big_w = net_shape
    ratio = min(big_h / h, big_w / w, 1.0)  # never enlarges a second time
    nw, nh = int(round(w * ratio)), int(round(h * ratio))
    if (nw, nh) != (w, h):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    dw, dh = (big_w - nw) / 2, (big_h - nh) / 2
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    out = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return out, OfficialPlacement((h0, w0), (h, w), ratio, (dw, dh), (left, top), (big_h, big_w))


def official_batches(shapes: Sequence[tuple[int, int]], batch: int, img_size: int, stride: int = 32,
                     pad: float = 0.5) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """Rectangular batches: image indices ordered by the argsort of h/w (in the given order, which
    should be the sorted file paths), cut into runs of `batch`, each with its network (H, W)."""
    ar = np.array([h / w for h, w in shapes], dtype=np.float64)
    order = np.argsort(ar)
    out = []
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        out.append((idx, rect_shape_batch([shapes[i] for i in idx], img_size, stride, pad)))
    return out


@dataclass
class OfficialTargets:
    """One image's ground truth in the official layout (order = the validator's label order).

    polygons: network pixels, float32; boxes_net: (m, 4) xyxy network pixels (clipped);
    boxes_orig: (m, 4) original pixels; classes: (m,) int64; masks: (m, Hp, Wp) bool on the prototype grid.
    """

    polygons: list[np.ndarray]
    boxes_net: np.ndarray
    boxes_orig: torch.Tensor
    classes: np.ndarray
    masks: torch.Tensor


def _dedup_order(sample: Sample) -> np.ndarray:
    """Indices of the labels the official loader keeps: rows (class, box) made unique; if any row
    repeats, the survivors come in the sorted order of np.unique."""
    if not sample.polygons:
        return np.zeros(0, np.int64)
    b = sample.boxes_xyxy_norm()
    xywh = np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], 1)
    rows = np.concatenate([np.asarray(sample.classes, np.float32).reshape(-1, 1), xywh], 1).astype(np.float32)
    _, keep = np.unique(rows, axis=0, return_index=True)
    return np.arange(len(rows)) if len(keep) == len(rows) else keep


def polygon_mask(poly_net: np.ndarray, net_shape: tuple[int, int], ratio: int) -> np.ndarray:
    """One polygon filled at network resolution (int32-truncated vertices), shrunk by `ratio`
    with INTER_LINEAR. Returns (H // ratio, W // ratio) uint8 in {0, 1}."""
    canvas = np.zeros(net_shape, np.uint8)
    cv2.fillPoly(canvas, [poly_net.reshape(-1, 2).astype(np.int32)], color=1)
    return cv2.resize(canvas, (net_shape[1] // ratio, net_shape[0] // ratio))


def overlap_index_map(polys_net: list[np.ndarray], net_shape: tuple[int, int], ratio: int) -> tuple[np.ndarray, np.ndarray]:
    """The official overlap mask: (H // ratio, W // ratio) index map (instance k+1 = k-th in `order`)
    and `order`, the label order it implies (see the module docstring)."""
    singles = [polygon_mask(p, net_shape, ratio) for p in polys_net]
    h, w = net_shape[0] // ratio, net_shape[1] // ratio
    if not singles:
        return np.zeros((h, w), np.uint8), np.zeros(0, np.int64)
    areas = np.asarray([m.sum(dtype=np.uint64) for m in singles], dtype=np.uint64)
    order = np.argsort(-areas)  # uint64 negation: zero areas first, then the largest
    canvas = np.zeros((h, w), np.int32 if len(singles) > 255 else np.uint8)
    for k, i in enumerate(order):
        canvas = np.clip(canvas + singles[i].astype(canvas.dtype) * (k + 1), 0, k + 1)  # uint8 wraps like the original
    return canvas, order


def official_targets(sample: Sample, placement: OfficialPlacement, proto_shape: tuple[int, int], *,
                     overlap: bool, mask_ratio: int) -> OfficialTargets:
    """Ground truth of one image as the official validator compares it with predictions.

    overlap=True, mask_ratio=4: the train-time overlap map at 1/4; overlap=False, mask_ratio=1: one
    full-resolution mask per instance, shrunk to the prototype grid bilinearly (align_corners=False)
    and thresholded at 0.5 as the validator does.
    """
    keep = _dedup_order(sample)
    h, w = placement.resized
    sx, sy = np.float32(placement.ratio * w), np.float32(placement.ratio * h)
    dw, dh = np.float32(placement.pad[0]), np.float32(placement.pad[1])
    polys = [sample.polygons[i].astype(np.float32) * np.array([sx, sy], np.float32) + np.array([dw, dh], np.float32)
             for i in keep]
    classes = np.asarray(sample.classes, np.int64).reshape(-1)[keep]
    big_h, big_w = placement.net_shape
    boxes = sample.boxes_xyxy_norm()[keep] * np.array([sx, sy, sx, sy], np.float32) + np.array([dw, dh, dw, dh], np.float32)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, big_w - _BOX_CLIP_EPS)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, big_h - _BOX_CLIP_EPS)
    m = len(polys)
    if m == 0:
        masks = torch.zeros((0, *proto_shape), dtype=torch.bool)
    elif overlap:
        index_map, order = overlap_index_map(polys, placement.net_shape, mask_ratio)
        polys, classes, boxes = [polys[i] for i in order], classes[order], boxes[order]
        masks = torch.from_numpy(index_map.astype(np.int64))[None] == torch.arange(1, m + 1).view(m, 1, 1)
    else:
        masks = torch.from_numpy(np.stack([polygon_mask(p, placement.net_shape, mask_ratio) for p in polys]))
    if masks.shape[1:] != proto_shape and m:
        masks = F.interpolate(masks.float()[None], proto_shape, mode="bilinear", align_corners=False)[0] > 0.5
    boxes_orig = placement.boxes_to_original(torch.from_numpy(boxes.reshape(-1, 4)))
    return OfficialTargets(polys, boxes.reshape(-1, 4), boxes_orig, classes, masks.bool())
