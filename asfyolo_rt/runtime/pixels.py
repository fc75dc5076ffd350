"""The pixel stages, in NumPy and OpenCV only (shared by the PyTorch stages, `asfyolo_rt.runtime.stages`, and
the PyTorch-free ones, `asfyolo_rt.runtime.lean`): the image at model scale, one tile's pixels, the empty-tile
test, and a batch of tiles as the network takes it."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from asfyolo_rt.runtime.info import PAD_VALUE
from asfyolo_rt.runtime.tiles import Plan, Tile


def scale_image(image: np.ndarray, plan: Plan) -> np.ndarray:
    """Stage 2a: the image at model scale (bilinear up, area down), as the model saw cells in training."""
    hs, ws = plan.scaled_shape
    if image.shape[:2] == (hs, ws):
        return image
    up = hs * ws > image.shape[0] * image.shape[1]
    return cv2.resize(image, (ws, hs), interpolation=cv2.INTER_LINEAR if up else cv2.INTER_AREA)


def read_tile(scaled: np.ndarray, tile: Tile) -> np.ndarray:
    """Stage 2b: one tile's pixels (H, W, 3) uint8, padded with 114 beyond the image."""
    crop = scaled[tile.y0 : tile.y0 + tile.h, tile.x0 : tile.x0 + tile.w]
    if crop.shape[:2] == (tile.h, tile.w):
        return crop
    out = np.full((tile.h, tile.w, 3), PAD_VALUE, np.uint8)
    out[: crop.shape[0], : crop.shape[1]] = crop
    return out


EMPTY_CONTRAST = 16  # grey levels (of 255) from the tile's median below which a pixel is background
EMPTY_MIN_AREA = 48  # network px of foreground below which a tile holds no cell (the smallest are ~80)
EMPTY_STEP = 4  # pixels looked at: one of 4 x 4
EMPTY_SIGMAS = 5  # noise sigmas from the median that make a pixel foreground
EMPTY_MAX_SIGMA = 8.0  # grey levels of pixel noise above which a tile is texture (tissue), never empty


def is_empty_tile(scaled: np.ndarray, tile: Tile) -> bool:
    """Stage 2c: True when the tile's pixels hold nothing a cell could be: its pixel noise is low (sigma <=
    `EMPTY_MAX_SIGMA` grey levels: glass or dark background, not textured tissue) and fewer than
    `EMPTY_MIN_AREA` network px differ from the tile's median by more than max(`EMPTY_CONTRAST`,
    `EMPTY_SIGMAS` sigma). Sigma comes from the differences of neighbouring looked-at pixels (median absolute
    difference), so cells covering most of a tile do not pass for noise. One pixel of each 4 x 4 is looked
    at, in the brightest channel (a fluorescent stain brightens one) and in the darkest (a brightfield stain
    darkens one); both must be empty. Local to the tile (never the frame's statistics), so a tile is skipped
    or run the same in a frame, a block or a window; the padding beyond the image is not looked at."""
    # plain slicing, then the grid: `scaled` may be a window onto a larger image that slices only (asfyolo_rt.large)
    crop = np.asarray(scaled[tile.y0 : tile.y0 + tile.h, tile.x0 : tile.x0 + tile.w])[::EMPTY_STEP, ::EMPTY_STEP]
    if crop.size == 0:
        return True
    if crop.ndim == 2:
        return _empty_plane(np.ascontiguousarray(crop))
    # channel by channel: NumPy's max/min over a last axis of 3 take ~10x longer (1.5 ms of an 864 tile)
    hi, lo = crop[:, :, 0].copy(), crop[:, :, 0].copy()
    for k in range(1, crop.shape[2]):
        np.maximum(hi, crop[:, :, k], out=hi)
        np.minimum(lo, crop[:, :, k], out=lo)
    return _empty_plane(hi) and (np.array_equal(hi, lo) or _empty_plane(lo))


def _empty_plane(grey: np.ndarray) -> bool:
    """`is_empty_tile`'s test on one (h, w) uint8 plane."""
    hist = np.bincount(grey.ravel(), minlength=256)
    cdf = np.cumsum(hist)
    med = int(np.searchsorted(cdf, (cdf[-1] + 1) // 2))
    sigma = 0.0
    if grey.shape[1] > 1:
        diff = np.abs(np.diff(grey.astype(np.int16), axis=1)).ravel()
        dh = np.cumsum(np.bincount(diff, minlength=256))
        sigma = int(np.searchsorted(dh, (dh[-1] + 1) // 2)) / (0.6745 * math.sqrt(2))
    if sigma > EMPTY_MAX_SIGMA:
        return False
    thresh = max(EMPTY_CONTRAST, EMPTY_SIGMAS * sigma)
    dev = np.abs(np.arange(256) - med)
    return float(hist[dev > thresh].sum()) * EMPTY_STEP**2 < EMPTY_MIN_AREA


def tiles_to_input(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stage 3 in NumPy: (H, W, 3) uint8 images of one size -> (B, 3, H, W) float32 / 255 in one pass (the same
    values as `asfyolo_rt.runtime.stages.preprocess`)."""
    h, w = images[0].shape[:2]
    out = np.empty((len(images), 3, h, w), dtype=np.float32)
    for i, image in enumerate(images):
        np.divide(image.transpose(2, 0, 1), np.float32(255.0), out=out[i], dtype=np.float32)
    return out
