"""The image at model scale, computed window by window with the same value for a pixel whatever the window.

`asfyolo_rt.runtime.stages.scale_image` resizes a whole image with OpenCV; a window resized on its own gets
other values near its edges (and OpenCV's fixed-point weights depend on the window's offset). Here every
scaled pixel is a weighted sum of source pixels whose indices and weights are functions of its *global*
coordinate only: bilinear with OpenCV's half-pixel convention and edge clamping when enlarging, the area
average when shrinking. A block, its halo and any other block's view of the same pixel agree exactly, so the
result of a run does not depend on how the image is cut into blocks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def axis_weights(n_src: int, n_dst: int, d0: int, d1: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (d1 - d0, K) int64 and weights (d1 - d0, K) float32 of scaled pixels d0..d1-1 of an axis
    of n_src source pixels resized to n_dst."""
    d = np.arange(d0, d1, dtype=np.float64)
    r = n_src / n_dst
    if n_dst >= n_src:  # bilinear, OpenCV's convention: src = (d + 0.5) * r - 0.5, clamped at the ends
        f = (d + 0.5) * r - 0.5
        s = np.floor(f)
        t = f - s
        low = s < 0
        t[low], s[low] = 0.0, 0.0
        high = s >= n_src - 1
        t[high], s[high] = 0.0, n_src - 1
        idx = np.stack([s, np.minimum(s + 1, n_src - 1)], 1).astype(np.int64)
        return idx, np.stack([1 - t, t], 1).astype(np.float32)
    k = math.ceil(r) + 1  # area: the source interval [d r, (d + 1) r) averaged
    start, end = d * r, (d + 1) * r
    first = np.floor(start)
    idx = first[:, None] + np.arange(k)[None, :]
    w = np.clip(np.minimum(idx + 1, end[:, None]) - np.maximum(idx, start[:, None]), 0, None) / r
    idx = np.clip(idx, 0, n_src - 1).astype(np.int64)
    return idx, w.astype(np.float32)


def source_range(n_src: int, n_dst: int, d0: int, d1: int) -> tuple[int, int]:
    """The source pixels [s0, s1) that scaled pixels d0..d1-1 read."""
    if d1 <= d0:
        return 0, 0
    idx, _ = axis_weights(n_src, n_dst, d0, d1)
    return int(idx.min()), int(idx.max()) + 1


def resample(src: np.ndarray, origin: tuple[int, int], src_shape: tuple[int, int], dst_shape: tuple[int, int],
             box: tuple[int, int, int, int]) -> np.ndarray:
    """Scaled pixels [y0, y1) x [x0, x1) (box) of an image of src_shape (H, W) resized to dst_shape.

    src: (h, w) or (h, w, C) uint8, the source pixels from `origin` (y, x) on (covering `source_range` of the
    box). Returns (y1 - y0, x1 - x0[, C]) uint8, rounded to nearest."""
    y0, y1, x0, x1 = box
    (H, W), (hs, ws) = src_shape, dst_shape
    if (H, W) == (hs, ws):
        return np.ascontiguousarray(src[y0 - origin[0]: y1 - origin[0], x0 - origin[1]: x1 - origin[1]])
    iy, wy = axis_weights(H, hs, y0, y1)
    ix, wx = axis_weights(W, ws, x0, x1)
    iy -= origin[0]
    ix -= origin[1]
    a = src.astype(np.float32)
    extra = (1,) * (a.ndim - 2)
    rows = sum(a[iy[:, k]] * wy[:, k].reshape(-1, 1, *extra) for k in range(iy.shape[1]))
    out = sum(rows[:, ix[:, k]] * wx[:, k].reshape(1, -1, *extra) for k in range(ix.shape[1]))
    return np.clip(np.asarray(out) + 0.5, 0, 255).astype(np.uint8)


class ScaledWindow:
    """A part of the scaled image standing in for all of it: `Runner.parts` reads tiles from it by global
    (scaled) coordinates, as from the whole scaled array; reads are clipped to the image like numpy slicing.

    data: (h, w) grey or (h, w, 3) uint8 scaled pixels from `origin` (y, x); shape: the whole scaled image's
    (hs, ws, 3). Grey pixels are returned as 3 equal channels (what `to_uint8_rgb` makes of grey)."""

    def __init__(self, data: np.ndarray, origin: tuple[int, int], scaled_shape: tuple[int, int]) -> None:
        self.data, self.origin = data, origin
        self.shape = (scaled_shape[0], scaled_shape[1], 3)
        self.ndim = 3
        self.dtype = np.dtype(np.uint8)

    def __getitem__(self, key: Any) -> np.ndarray:
        ys, xs = key[0], key[1]
        y0, y1 = max(ys.start or 0, 0), min(ys.stop if ys.stop is not None else self.shape[0], self.shape[0])
        x0, x1 = max(xs.start or 0, 0), min(xs.stop if xs.stop is not None else self.shape[1], self.shape[1])
        oy, ox = self.origin
        h, w = self.data.shape[:2]
        if y0 < oy or x0 < ox or (y1 > oy + h and y1 > y0) or (x1 > ox + w and x1 > x0):
            raise IndexError(f"scaled window [{y0}:{y1}, {x0}:{x1}] outside the block's pixels "
                             f"[{oy}:{oy + h}, {ox}:{ox + w}]")
        crop = self.data[y0 - oy: max(y1, y0) - oy, x0 - ox: max(x1, x0) - ox]
        if crop.ndim == 2:
            crop = np.repeat(crop[:, :, None], 3, axis=2)
        return crop
