"""The one pre-processing of the project: letterbox resize + pad, and its inverse transform.

Used by validation, prediction, calibration and benchmarks alike. Semantics follow the official
validation (ASF-YOLO.md §6.3):

1. resize with one scale factor for both axes, so that the long side equals the target size exactly
   (`size`, or by default the largest size that fits `new_shape`); the short side becomes
   ceil(short * scale), at most the target; cv2.INTER_LINEAR when enlarging, cv2.INTER_AREA when
   shrinking;
2. pad centred with grey 114 to `new_shape` (an odd padding puts the extra pixel right/bottom).

Official rectangular validation = `letterbox(img, rect_shape(h, w, 640), size=640)`: a square image is
resized to 640x640 and padded to 672x672 (a 16-pixel border on every side).

Coordinates: pixel-edge convention, x to the right, y down; network = scale * original + pad.

NumPy-only: torch is imported only by `preprocess` (which returns a tensor); a torch.Tensor given to the
transform methods is recognised without importing torch here (see `_is_tensor`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import cv2
import numpy as np

from asfyolo_rt.errors import DataError

if TYPE_CHECKING:
    import torch
    from typing_extensions import TypeIs

ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


def _is_tensor(values: Any) -> TypeIs[torch.Tensor]:
    """True for a torch.Tensor. Without importing torch: a tensor exists only once torch is imported."""
    loaded = sys.modules.get("torch")
    return loaded is not None and isinstance(values, loaded.Tensor)


@dataclass(frozen=True)
class LetterboxTransform:
    """How an original image was placed into the network input.

    scale: network pixels per original pixel (same for x and y).
    pad: (pad_x, pad_y) added on the left / top, in network pixels.
    orig_shape: (H0, W0) of the original image; net_shape: (H, W) of the network input.
    """

    scale: float
    pad: tuple[float, float]
    orig_shape: tuple[int, int]
    net_shape: tuple[int, int]

    def boxes_to_original(self, boxes: ArrayT) -> ArrayT:
        """(..., 4) xyxy boxes in network pixels -> original pixels, clipped to [0, W0] x [0, H0].

        Returns a new array/tensor of the input's type, dtype and device.
        """
        out = _affine(boxes, 4, 1.0 / self.scale, -self.pad[0] / self.scale, -self.pad[1] / self.scale)
        h0, w0 = self.orig_shape
        if _is_tensor(out):
            out[..., 0::2] = out[..., 0::2].clamp(0, w0)
            out[..., 1::2] = out[..., 1::2].clamp(0, h0)
        else:
            out[..., 0::2] = np.clip(out[..., 0::2], 0, w0)
            out[..., 1::2] = np.clip(out[..., 1::2], 0, h0)
        return out

    def boxes_to_network(self, boxes: ArrayT) -> ArrayT:
        """(..., 4) xyxy boxes in original pixels -> network pixels (not clipped). New array/tensor."""
        return _affine(boxes, 4, self.scale, self.pad[0], self.pad[1])

    def points_to_original(self, points: ArrayT) -> ArrayT:
        """(..., 2) xy points in network pixels -> original pixels (not clipped). New array/tensor."""
        return _affine(points, 2, 1.0 / self.scale, -self.pad[0] / self.scale, -self.pad[1] / self.scale)

    def points_to_network(self, points: ArrayT) -> ArrayT:
        """(..., 2) xy points in original pixels -> network pixels. New array/tensor."""
        return _affine(points, 2, self.scale, self.pad[0], self.pad[1])

    def content_box(self) -> tuple[float, float, float, float]:
        """x1, y1, x2, y2 in network pixels of the region showing the image (the rest is padding)."""
        h0, w0 = self.orig_shape
        h, w = self.net_shape
        return (self.pad[0], self.pad[1], min(self.pad[0] + w0 * self.scale, w),
                min(self.pad[1] + h0 * self.scale, h))


def _affine(values: ArrayT, width: int, gain: float, off_x: float, off_y: float) -> ArrayT:
    if values.shape[-1] != width:
        raise DataError(f"coordinates of shape {tuple(values.shape)}; expected (..., {width})")
    offset = [off_x, off_y] * (width // 2)
    if _is_tensor(values):
        import torch

        v = values if values.is_floating_point() else values.float()
        return v * gain + torch.tensor(offset, dtype=v.dtype, device=v.device)
    v = values if np.issubdtype(values.dtype, np.floating) else values.astype(np.float32)
    return (v * gain + np.asarray(offset, dtype=v.dtype)).astype(v.dtype, copy=False)


def _as_hw(shape: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(shape, (int, np.integer)):
        h = w = int(shape)
    else:
        if len(shape) != 2:
            raise DataError(f"shape {shape!r}; expected an int or (H, W)")
        h, w = int(shape[0]), int(shape[1])
    if h <= 0 or w <= 0:
        raise DataError(f"shape {(h, w)}; expected positive sizes")
    return h, w


def _scaled(n: int, r: float) -> int:
    # ceil like the official loader, minus float noise (696 * 640/696 = 640.0000000000001 must stay 640)
    return max(1, math.ceil(n * r - 1e-6))


def letterbox(
    image: np.ndarray,
    new_shape: int | tuple[int, int],
    *,
    color: int = 114,
    scaleup: bool = True,
    size: int | None = None,
    interpolation: str = "area",
) -> tuple[np.ndarray, LetterboxTransform]:
    """Resize keeping the aspect ratio, then pad centred to `new_shape`.

    image: (H0, W0, C) or (H0, W0), any dtype OpenCV resizes (normally uint8 RGB).
    new_shape: output (H, W), or an int for a square.
    size: the long side after resizing; default: the largest that fits new_shape. Must fit new_shape.
    scaleup: False never enlarges (only shrinks).
    interpolation: "area" (the official validation loader: INTER_AREA when shrinking, INTER_LINEAR when
    enlarging) or "linear" (the official prediction letterbox: INTER_LINEAR always, ~25x faster when
    shrinking a 1272 x 603 image to 320).
    Returns the padded image (H, W[, C]) of the input dtype and the transform back to the original.
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or 0 in image.shape[:2]:
        raise DataError(f"image of shape {getattr(image, 'shape', None)}; expected an (H, W[, C]) numpy array")
    resized, t = _resize(image, new_shape, scaleup=scaleup, size=size, interpolation=interpolation)
    h, w = t.net_shape
    nh, nw = resized.shape[:2]
    left, top = int(t.pad[0]), int(t.pad[1])
    channels = image.shape[2] if image.ndim == 3 else 0
    fill = [color] * max(channels, 1)
    out = cv2.copyMakeBorder(resized, top, h - nh - top, left, w - nw - left, cv2.BORDER_CONSTANT, value=fill)
    if out.ndim == 2 and channels:  # OpenCV drops a single channel axis
        out = out[:, :, None]
    return out, t


def _resize(image: np.ndarray, new_shape: int | tuple[int, int], *, scaleup: bool = True,
            size: int | None = None, interpolation: str = "area") -> tuple[np.ndarray, LetterboxTransform]:
    """The resize step of `letterbox` (on the input dtype, normally uint8) and the transform of the padded result."""
    if interpolation not in ("area", "linear"):
        raise DataError(f"interpolation {interpolation!r}: expected 'area' or 'linear'")
    h, w = _as_hw(new_shape)
    h0, w0 = image.shape[:2]
    r = min(h / h0, w / w0) if size is None else size / max(h0, w0)
    if not scaleup:
        r = min(r, 1.0)
    nh, nw = _scaled(h0, r), _scaled(w0, r)
    if size is None:  # fits by construction; only float noise can push a side over
        nh, nw = min(nh, h), min(nw, w)
    elif nh > h or nw > w:
        raise DataError(f"an image of (H, W) {(h0, w0)} resized to long side {size} is {(nh, nw)}, "
                        f"which does not fit the target shape {(h, w)}",
                        hint="use a larger new_shape (see rect_shape) or a smaller size")
    if (nh, nw) != (h0, w0):
        interp = cv2.INTER_LINEAR if r > 1 or interpolation == "linear" else cv2.INTER_AREA
        image = cv2.resize(image, (nw, nh), interpolation=interp)
    top, left = (h - nh) // 2, (w - nw) // 2
    return image, LetterboxTransform(scale=float(r), pad=(float(left), float(top)), orig_shape=(h0, w0),
                                     net_shape=(h, w))


def rect_shape(h: int, w: int, img_size: int = 640, stride: int = 32, pad: float = 0.5) -> tuple[int, int]:
    """Network (H, W) of the official rectangular validation for one image of size (h, w).

    ceil(aspect_shape * img_size / stride + pad) * stride, with aspect_shape = (h/w, 1) for wide images,
    (1, w/h) for tall ones and (1, 1) for squares: a square image at 640 gives (672, 672).
    """
    return rect_shape_batch([(h, w)], img_size=img_size, stride=stride, pad=pad)


def rect_shape_batch(
    shapes: Sequence[tuple[int, int]], img_size: int = 640, stride: int = 32, pad: float = 0.5
) -> tuple[int, int]:
    """The official batch shape for images (h, w) batched together (sorted by aspect ratio upstream)."""
    if not shapes:
        raise DataError("rect_shape_batch got no image shapes")
    ar = np.array([h / w for h, w in shapes], dtype=np.float64)
    lo, hi = float(ar.min()), float(ar.max())
    aspect = [hi, 1.0] if hi < 1 else ([1.0, 1.0 / lo] if lo > 1 else [1.0, 1.0])
    out = np.ceil(np.array(aspect) * img_size / stride + pad).astype(int) * stride
    return int(out[0]), int(out[1])


def preprocess(
    images: Sequence[np.ndarray],
    shape: int | tuple[int, int],
    *,
    size: int | None = None,
    interpolation: str = "area",
) -> tuple[torch.Tensor, list[LetterboxTransform]]:
    """Letterbox a batch of RGB images into one network input tensor.

    images: B arrays (H_i, W_i, 3) uint8 RGB (see `read_image`).
    shape: network (H, W) or an int; size: long side after resizing (default: fit `shape`).
    Returns (B, 3, H, W) float32 in [0, 1], RGB, contiguous, on the CPU; and B transforms.
    The tensor shares memory with the array of `preprocess_array`, which does the work without torch.
    """
    import torch

    array, transforms = preprocess_array(images, shape, size=size, interpolation=interpolation)
    return torch.from_numpy(array), transforms


def preprocess_array(
    images: Sequence[np.ndarray],
    shape: int | tuple[int, int],
    *,
    size: int | None = None,
    interpolation: str = "area",
) -> tuple[np.ndarray, list[LetterboxTransform]]:
    """`preprocess` without torch: (B, 3, H, W) float32 in [0, 1], RGB, C-contiguous numpy array; B transforms."""
    h, w = _as_hw(shape)
    out = np.empty((len(images), 3, h, w), dtype=np.float32)  # one pass from uint8 HWC to normalised CHW
    transforms = []
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DataError(
                f"preprocess image {i}: got {type(image).__name__} {getattr(image, 'shape', '')} "
                f"{getattr(image, 'dtype', '')}; expected (H, W, 3) uint8 RGB",
                hint="read images with asfyolo_rt.data.read_image or convert with to_uint8_rgb",
            )
        resized, t = _resize(image, (h, w), size=size, interpolation=interpolation)  # on uint8, before any float conversion
        nh, nw = resized.shape[:2]
        left, top = int(t.pad[0]), int(t.pad[1])
        if (nh, nw) != (h, w):
            out[i].fill(PAD_FLOAT)
        # x / 255 in float32, exactly as torch's .float().div_(255.0) rounds it
        np.divide(resized.transpose(2, 0, 1), _255, out=out[i, :, top : top + nh, left : left + nw], dtype=np.float32)
        transforms.append(t)
    return out, transforms


_255 = np.float32(255.0)
PAD_FLOAT = float(np.float32(114.0) / _255)  # the grey 114 border, normalised like the pixels
