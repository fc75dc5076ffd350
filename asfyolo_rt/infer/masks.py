"""Mask assembly from prototypes and coefficients (ASF-YOLO.md §6.2), plain PyTorch.

Three variants, all ``mask = crop(sigmoid(coeffs @ protos)) > 0.5``:

* :func:`process_masks_proto` — the official **validation** mask: stays at prototype resolution
  (1/4 of the network input, letterboxed space). Mask mAP is computed on these.
* :func:`process_masks_upsampled` — the prediction-script variant: crop at prototype resolution,
  bilinear upsample to the network input, > 0.5.
* :func:`process_masks_original` — "retina" masks for full-resolution evaluation (COCO/DSB
  cross-checks): remove the letterbox padding at prototype resolution, bilinear upsample to the
  original image, crop with the boxes in original pixels, > 0.5.

Cropping rule (all variants): pixel (r, c) survives if x1 <= c < x2 and y1 <= r < y2, with the
box in that grid's pixel units (no rounding); pixel c covers [c, c + 1).

:func:`crop_masks` and :func:`mask_probabilities` are defined with the mask-assembly specification
(asfyolo_rt.kernels.mask_assembly.reference, whose TensorRT plugin contract builds on them) and
re-exported here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from asfyolo_rt.kernels.mask_assembly.reference import crop_masks, mask_probabilities


def process_masks_proto(
    protos: Tensor, coeffs: Tensor, boxes: Tensor, net_shape: tuple[int, int]
) -> Tensor:
    """Official validation masks at prototype resolution.

    protos: (nm, Hp, Wp) float prototypes of one image; coeffs: (n, nm) float; boxes: (n, 4) xyxy in
    network-input pixels; net_shape: (H, W) network input (H/Hp = W/Wp = 4 for ASF-YOLO).
    Returns (n, Hp, Wp) bool: sigmoid(coeffs @ protos) cropped to box / stride, > 0.5.
    """
    probs = mask_probabilities(protos, coeffs)
    hp, wp = probs.shape[1:]
    scale = boxes.new_tensor([wp / net_shape[1], hp / net_shape[0], wp / net_shape[1], hp / net_shape[0]])
    return crop_masks(probs, boxes.float() * scale) > 0.5


def process_masks_upsampled(
    protos: Tensor, coeffs: Tensor, boxes: Tensor, net_shape: tuple[int, int]
) -> Tensor:
    """Prediction-script masks at network-input resolution.

    Same inputs as :func:`process_masks_proto`. Crop at prototype resolution, bilinear upsample
    (align_corners=False) to net_shape, > 0.5. Returns (n, H, W) bool.
    """
    probs = mask_probabilities(protos, coeffs)
    hp, wp = probs.shape[1:]
    scale = boxes.new_tensor([wp / net_shape[1], hp / net_shape[0], wp / net_shape[1], hp / net_shape[0]])
    probs = crop_masks(probs, boxes.float() * scale)
    if probs.shape[0] == 0:
        return torch.zeros((0, *net_shape), dtype=torch.bool, device=probs.device)
    up = F.interpolate(probs[None], size=net_shape, mode="bilinear", align_corners=False)[0]
    return up > 0.5


def process_masks_original(
    protos: Tensor,
    coeffs: Tensor,
    boxes_orig: Tensor,
    net_shape: tuple[int, int],
    orig_hw: tuple[int, int],
    gain: float,
    pad: tuple[float, float],
) -> Tensor:
    """Full-resolution masks in original-image pixels ("retina" masks).

    protos: (nm, Hp, Wp); coeffs: (n, nm); boxes_orig: (n, 4) xyxy in original-image pixels;
    net_shape: (H, W) network input; orig_hw: (h0, w0) original image; gain, pad: the letterbox
    (network = original · gain + pad, pad = (left, top) in network pixels).
    Probabilities are cut to the unpadded region at prototype resolution (rounded to whole
    prototype pixels), bilinearly resized to (h0, w0), cropped with the original boxes, > 0.5.
    Returns (n, h0, w0) bool.
    """
    probs = mask_probabilities(protos, coeffs)
    hp, wp = probs.shape[1:]
    sy, sx = net_shape[0] / hp, net_shape[1] / wp
    top = round(pad[1] / sy)
    left = round(pad[0] / sx)
    bottom = round((pad[1] + orig_hw[0] * gain) / sy)
    right = round((pad[0] + orig_hw[1] * gain) / sx)
    if probs.shape[0] == 0:
        return torch.zeros((0, *orig_hw), dtype=torch.bool, device=probs.device)
    probs = probs[:, top:bottom, left:right]
    up = F.interpolate(probs[None], size=orig_hw, mode="bilinear", align_corners=False)[0]
    return crop_masks(up, boxes_orig.float()) > 0.5


def resize_gt_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Official ground-truth mask resizing for validation: bilinear (align_corners=False), > 0.5.

    masks: (m, H, W) bool or {0, 1} float; size: (Hp, Wp). Returns (m, Hp, Wp) bool.
    """
    if masks.shape[0] == 0:
        return torch.zeros((0, *size), dtype=torch.bool, device=masks.device)
    if tuple(masks.shape[1:]) == tuple(size):
        return masks.bool()
    up = F.interpolate(masks.float()[None], size=size, mode="bilinear", align_corners=False)[0]
    return up > 0.5
