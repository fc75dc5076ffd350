"""Training augmentation on images and instance polygons together (ASF-YOLO.md §7).

Order (the official one): 4-image mosaic on a 2S x 2S canvas (or one letterboxed S x S image) ->
polygons resampled to 1,000 points and clipped to the canvas -> random affine (scale, translate,
rotation, shear) to S x S -> boxes recomputed from the transformed polygons -> instances filtered
(box w, h > 2 px, area ratio > 0.01 of the scaled pre-affine box, aspect < 100) -> HSV jitter ->
flips. GT masks are rasterised afterwards from the final polygons (train/dataset.py), so images,
polygons, boxes and masks cannot drift apart.

Conventions: images (H, W, 3) uint8 RGB; polygons in pixels, x right, y down, integer coordinates at
pixel centres (the labels' convention: vertices are boundary-pixel indices / image size, and the one
`asfyolo_rt.data.masks` rasterises with); so a left-right flip maps x to (W - 1) - x. `Instances.polygons`
is (N, P, 2) float32 once resampled (a list of (K_i, 2) before). Every random draw comes from the
`numpy.random.Generator` passed in, so a sample is a pure function of (seed, epoch, index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from asfyolo_rt.train.config import AugmentConfig

PAD_VALUE = 114  # grey fill of mosaic canvases, letterbox borders and affine borders


@dataclass
class Instances:
    """Instances of one (augmented) image.

    classes: (N,) int64. polygons: (N, P, 2) float32 pixels (or a list of (K_i, 2) before resampling).
    boxes: (N, 4) float32 xyxy pixels (None until recomputed from the polygons).
    """

    classes: np.ndarray
    polygons: np.ndarray | list[np.ndarray]
    boxes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.classes)


def resample_polygons(polygons: list[np.ndarray], n: int = 1000) -> np.ndarray:
    """Resample closed polygons to n points each, evenly in vertex index (vectorised over polygons).

    polygons: N arrays (K_i, 2), K_i >= 1. Returns (N, n, 2) float32; point 0 is vertex 0 and the
    path runs through every edge, including the closing one, back towards vertex 0.
    """
    if not polygons:
        return np.zeros((0, n, 2), np.float32)
    counts = np.array([len(p) for p in polygons], np.int64)
    closed = np.concatenate([np.concatenate([p, p[:1]]) for p in polygons]).astype(np.float32)
    starts = np.concatenate([[0], np.cumsum(counts + 1)[:-1]])
    u = np.linspace(0.0, 1.0, n, dtype=np.float64)[None, :] * counts[:, None]  # (N, n) in [0, K_i]
    i0 = np.minimum(np.floor(u).astype(np.int64), counts[:, None] - 1)
    frac = (u - i0)[..., None].astype(np.float32)
    a = closed[starts[:, None] + i0]
    b = closed[starts[:, None] + i0 + 1]
    return a + frac * (b - a)


def resize_long_side(img: np.ndarray, size: int) -> np.ndarray:
    """Resize so the long side is `size` (bilinear when enlarging, area when shrinking, as §6.3)."""
    h, w = img.shape[:2]
    r = size / max(h, w)
    if r == 1:
        return img
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    return cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA)


def mosaic4(
    tiles: list[tuple[np.ndarray, Instances]], size: int, rng: np.random.Generator
) -> tuple[np.ndarray, Instances]:
    """Four images (each with long side `size`) around a random centre on a 2S x 2S grey canvas.

    Tile 0 goes top-left of the centre (its bottom-right corner at the centre), 1 top-right,
    2 bottom-left, 3 bottom-right; parts falling outside the canvas are cut. Polygons are shifted
    with their tile and returned as a list (not yet resampled or clipped).
    """
    s = size
    xc, yc = (int(v) for v in rng.uniform(0.5 * s, 1.5 * s, size=2))
    canvas = np.full((2 * s, 2 * s, 3), PAD_VALUE, np.uint8)
    classes: list[np.ndarray] = []
    polys: list[np.ndarray] = []
    for k, (img, inst) in enumerate(tiles):
        h, w = img.shape[:2]
        if k == 0:
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b = w - (x2a - x1a), h - (y2a - y1a)
        elif k == 1:
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, 2 * s), yc
            x1b, y1b = 0, h - (y2a - y1a)
        elif k == 2:
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(2 * s, yc + h)
            x1b, y1b = w - (x2a - x1a), 0
        else:
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, 2 * s), min(2 * s, yc + h)
            x1b, y1b = 0, 0
        canvas[y1a:y2a, x1a:x2a] = img[y1b:y1b + (y2a - y1a), x1b:x1b + (x2a - x1a)]
        shift = np.array([x1a - x1b, y1a - y1b], np.float32)
        classes.append(inst.classes)
        polys.extend(p + shift for p in inst.polygons)
    return canvas, Instances(np.concatenate(classes) if classes else np.zeros(0, np.int64), polys)


def letterbox_square(img: np.ndarray, inst: Instances, size: int) -> tuple[np.ndarray, Instances]:
    """Centre an image (long side already `size`) on a size x size grey canvas; shift its polygons."""
    h, w = img.shape[:2]
    top, left = (size - h) // 2, (size - w) // 2
    canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
    canvas[top:top + h, left:left + w] = img
    shift = np.array([left, top], np.float32)
    return canvas, Instances(inst.classes, [p + shift for p in inst.polygons])


def affine_matrix(
    in_shape: tuple[int, int], out_size: int, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """3x3 matrix: centre the input on the origin, rotate + scale, shear, translate into the output.

    Returns (M, s) with s the drawn scale factor.
    """
    h, w = in_shape
    centre = np.eye(3)
    centre[0, 2], centre[1, 2] = -w / 2, -h / 2
    angle = rng.uniform(-cfg.degrees, cfg.degrees)
    s = rng.uniform(1 - cfg.scale, 1 + cfg.scale)
    rot = np.eye(3)
    rot[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=angle, scale=s)
    shear = np.eye(3)
    shear[0, 1] = math.tan(math.radians(rng.uniform(-cfg.shear, cfg.shear)))
    shear[1, 0] = math.tan(math.radians(rng.uniform(-cfg.shear, cfg.shear)))
    trans = np.eye(3)
    trans[0, 2] = rng.uniform(0.5 - cfg.translate, 0.5 + cfg.translate) * out_size
    trans[1, 2] = rng.uniform(0.5 - cfg.translate, 0.5 + cfg.translate) * out_size
    return trans @ shear @ rot @ centre, float(s)


def polygon_boxes(polygons: np.ndarray, width: float, height: float) -> np.ndarray:
    """(N, 4) xyxy bounds of each polygon's points that lie inside [0, width] x [0, height].

    polygons: (N, P, 2). A polygon with no point inside gets a zero box.
    """
    if len(polygons) == 0:
        return np.zeros((0, 4), np.float32)
    x, y = polygons[..., 0], polygons[..., 1]
    inside = (x >= 0) & (y >= 0) & (x <= width) & (y <= height)
    any_in = inside.any(1)
    big = np.float32(np.inf)
    x1 = np.where(inside, x, big).min(1)
    y1 = np.where(inside, y, big).min(1)
    x2 = np.where(inside, x, -big).max(1)
    y2 = np.where(inside, y, -big).max(1)
    boxes = np.stack([x1, y1, x2, y2], 1).astype(np.float32)
    boxes[~any_in] = 0
    return boxes


def keep_candidates(before: np.ndarray, after: np.ndarray, scale: float, cfg: AugmentConfig) -> np.ndarray:
    """(N,) bool: boxes that survive the affine. before/after: (N, 4) xyxy; before is pre-affine."""
    w1, h1 = (before[:, 2] - before[:, 0]) * scale, (before[:, 3] - before[:, 1]) * scale
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    eps = 1e-16
    aspect = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > cfg.min_size) & (h2 > cfg.min_size) & (w2 * h2 / (w1 * h1 + eps) > cfg.min_area_ratio) & (
        aspect < cfg.max_aspect)


def random_affine(
    img: np.ndarray, inst: Instances, out_size: int, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, Instances]:
    """Warp `img` (any H x W) to out_size x out_size and move resampled polygons (N, P, 2) with it.

    Boxes are recomputed from the transformed polygons (points inside the output only), polygons are
    then clipped to the output, and instances failing `keep_candidates` are dropped.
    """
    polys = np.asarray(inst.polygons, np.float32)
    m, s = affine_matrix(img.shape[:2], out_size, cfg, rng)
    out = cv2.warpAffine(img, m[:2], dsize=(out_size, out_size), flags=cv2.INTER_LINEAR,
                         borderValue=(PAD_VALUE,) * 3)
    if len(polys) == 0:
        return out, Instances(inst.classes, polys, np.zeros((0, 4), np.float32))
    before = polygon_boxes(polys, img.shape[1], img.shape[0])
    moved = (polys @ m[:2, :2].T.astype(np.float32) + m[:2, 2].astype(np.float32)).astype(np.float32)
    after = polygon_boxes(moved, out_size, out_size)
    np.clip(moved, 0, out_size, out=moved)
    keep = keep_candidates(before, after, s, cfg)
    return out, Instances(inst.classes[keep], moved[keep], after[keep])


def augment_hsv(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Random hue/saturation/value gains applied through lookup tables. img: (H, W, 3) uint8 RGB."""
    if not (cfg.hsv_h or cfg.hsv_s or cfg.hsv_v):
        return img
    gains = rng.uniform(-1, 1, 3) * np.array([cfg.hsv_h, cfg.hsv_s, cfg.hsv_v]) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def flip(img: np.ndarray, inst: Instances, horizontal: bool) -> tuple[np.ndarray, Instances]:
    """Mirror image, polygons (N, P, 2) and boxes (N, 4) left-right (horizontal) or up-down.

    Pixel column i goes to W - 1 - i, so coordinates (pixel centres at integers) map x -> W - 1 - x.
    """
    h, w = img.shape[:2]
    polys = np.array(inst.polygons, np.float32, copy=True)
    boxes = None if inst.boxes is None else inst.boxes.copy()
    if horizontal:
        img = np.ascontiguousarray(img[:, ::-1])
        polys[..., 0] = (w - 1) - polys[..., 0]
        if boxes is not None:
            boxes[:, [0, 2]] = (w - 1) - boxes[:, [2, 0]]
    else:
        img = np.ascontiguousarray(img[::-1])
        polys[..., 1] = (h - 1) - polys[..., 1]
        if boxes is not None:
            boxes[:, [1, 3]] = (h - 1) - boxes[:, [3, 1]]
    return img, Instances(inst.classes, polys, boxes)


def augment_sample(
    tiles: list[tuple[np.ndarray, Instances]], size: int, cfg: AugmentConfig, rng: np.random.Generator,
    *, use_mosaic: bool,
) -> tuple[np.ndarray, Instances]:
    """The whole pipeline. tiles: 4 (mosaic) or 1 (image, instances) with long side `size`.

    Returns the (size, size, 3) uint8 image and its instances with (N, P, 2) polygons and boxes.
    """
    if use_mosaic:
        img, inst = mosaic4(tiles, size, rng)
    else:
        img, inst = letterbox_square(tiles[0][0], tiles[0][1], size)
    polys = resample_polygons(list(inst.polygons), cfg.resample_points)
    np.clip(polys, 0, img.shape[0], out=polys)
    img, inst = random_affine(img, Instances(inst.classes, polys), size, cfg, rng)
    img = augment_hsv(img, cfg, rng)
    if rng.random() < cfg.flipud:
        img, inst = flip(img, inst, horizontal=False)
    if rng.random() < cfg.fliplr:
        img, inst = flip(img, inst, horizontal=True)
    return img, inst
