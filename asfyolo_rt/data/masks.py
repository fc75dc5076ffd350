"""Ground-truth masks from polygons, and polygons from masks.

Rasterisation follows the official training targets (ASF-YOLO.md §4): each polygon is filled with
cv2.fillPoly at full image size (vertices rounded to the nearest pixel; the official code truncates,
which moves vertices written as k - 1e-6 by a whole pixel), then downsampled by `downsample` with
cv2.resize (bilinear, OpenCV's default). The "overlap" form paints all instances into one index map in
order of decreasing area, so smaller instances overwrite larger ones where they overlap.

For speed each polygon is rasterised only inside its bounding box, aligned to the downsample grid; with
an integer factor OpenCV's resize reads only the pixels of each output pixel's own block, so the result
equals rasterising the whole image (tested). Sizes not divisible by `downsample` use the whole image.

Coordinates are pixels: x right, y down; a vertex (x, y) lies on pixel column round(x), row round(y).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from asfyolo_rt.errors import DataError


def _check(shape: Sequence[int], downsample: int) -> tuple[int, int, int, int]:
    if len(shape) != 2 or int(shape[0]) <= 0 or int(shape[1]) <= 0:
        raise DataError(f"mask shape {tuple(shape)}; expected (H, W) with positive sizes")
    if int(downsample) != downsample or downsample < 1:
        raise DataError(f"downsample={downsample!r}; expected an integer >= 1")
    h, w, d = int(shape[0]), int(shape[1]), int(downsample)
    if h // d == 0 or w // d == 0:
        raise DataError(f"mask shape {(h, w)} is smaller than downsample={d}")
    return h, w, h // d, w // d


def _rasterise(
    polygons: Sequence[np.ndarray], shape: Sequence[int], downsample: int
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (row0, col0, crop) per polygon: crop (h, w) uint8 0/1 at downsampled resolution."""
    h, w, hd, wd = _check(shape, downsample)
    d = int(downsample)
    aligned = h % d == 0 and w % d == 0
    for i, poly in enumerate(polygons):
        pts = np.asarray(poly, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise DataError(f"polygon {i} has shape {pts.shape}; expected (K, 2) pixel coordinates")
        if len(pts) == 0 or not np.isfinite(pts).all():
            yield 0, 0, np.zeros((0, 0), np.uint8)
            continue
        ipts = np.round(pts).astype(np.int32)
        if not aligned:
            full = np.zeros((h, w), np.uint8)
            cv2.fillPoly(full, [ipts], 1)
            yield 0, 0, full if d == 1 else cv2.resize(full, (wd, hd))
            continue
        bx0, by0 = (np.clip(ipts.min(0), 0, [w - 1, h - 1]) // d).tolist()
        bx1, by1 = (np.clip(ipts.max(0), 0, [w - 1, h - 1]) // d + 1).tolist()
        crop = np.zeros(((by1 - by0) * d, (bx1 - bx0) * d), np.uint8)
        cv2.fillPoly(crop, [ipts - np.array([bx0 * d, by0 * d], np.int32)], 1)
        if d > 1:
            crop = cv2.resize(crop, (bx1 - bx0, by1 - by0))
        yield by0, bx0, crop


def polygons_to_masks(
    polygons: Sequence[np.ndarray], shape: Sequence[int], downsample: int = 1
) -> np.ndarray:
    """One binary mask per polygon.

    polygons: N arrays (K_i, 2), vertices x, y in pixels of an image of `shape` (H, W).
    Returns (N, H // downsample, W // downsample) uint8 in {0, 1}.
    """
    _, _, hd, wd = _check(shape, downsample)
    out = np.zeros((len(polygons), hd, wd), np.uint8)
    for i, (r0, c0, crop) in enumerate(_rasterise(polygons, shape, downsample)):
        if crop.size:
            out[i, r0:r0 + crop.shape[0], c0:c0 + crop.shape[1]] = crop
    return out


def polygons_to_index_map(
    polygons: Sequence[np.ndarray], shape: Sequence[int], downsample: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """All instances of an image in one index map (the official "overlap" training target).

    polygons: N arrays (K_i, 2) in pixels of an image of `shape` (H, W).
    Returns index_map (H // downsample, W // downsample) int32: 0 = background, k = the k-th painted
    instance; instances are painted in order of decreasing mask area (at the downsampled size; ties keep
    input order), so smaller ones overwrite larger ones. And order (N,) int64: order[k - 1] = the input
    index of painted id k. An instance too small to cover a pixel keeps its id but has no pixels.
    """
    _, _, hd, wd = _check(shape, downsample)
    crops = list(_rasterise(polygons, shape, downsample))
    areas = np.array([int(c.sum(dtype=np.int64)) for _, _, c in crops], dtype=np.int64)
    order = np.argsort(-areas, kind="stable").astype(np.int64)
    index_map = np.zeros((hd, wd), np.int32)
    for painted_id, idx in enumerate(order, 1):
        r0, c0, crop = crops[idx]
        if crop.size:
            region = index_map[r0:r0 + crop.shape[0], c0:c0 + crop.shape[1]]
            region[crop > 0] = painted_id
    return index_map, order


def polygon_areas(polygons: Sequence[np.ndarray], shape: Sequence[int]) -> np.ndarray:
    """(N,) int64 pixel count of each polygon rasterised (as in `polygons_to_masks`) on an image (H, W)."""
    return np.array([int(c.sum(dtype=np.int64)) for _, _, c in _rasterise(polygons, shape, 1)], dtype=np.int64)


def mask_to_polygon(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The largest external contour of a binary mask as a polygon.

    mask: (H, W), nonzero = inside. offset: (x, y) added to the vertices (for crops).
    Returns (K, 2) float32 vertices x, y in pixels (pixel indices of boundary pixels, straight runs
    compressed), or an empty (0, 2) array when the mask yields fewer than 3 vertices.
    """
    m = np.ascontiguousarray(np.asarray(mask) != 0, dtype=np.uint8)
    if m.ndim != 2:
        raise DataError(f"mask of shape {m.shape}; expected (H, W)")
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    best = max(contours, key=lambda c: (cv2.contourArea(c), len(c)), default=None)
    if best is None or len(best) < 3:
        return np.zeros((0, 2), np.float32)
    return (best.reshape(-1, 2) + np.asarray(offset)).astype(np.float32)


def masks_to_polygons(masks: np.ndarray) -> list[np.ndarray]:
    """Polygon of each instance mask: the largest external contour (see `mask_to_polygon`).

    masks: (N, H, W) or a single (H, W), nonzero = inside.
    Returns N arrays (K, 2) float32 pixel vertices; (0, 2) for an instance yielding < 3 vertices.
    """
    m = np.asarray(masks)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise DataError(f"masks of shape {m.shape}; expected (N, H, W) or (H, W)")
    out = []
    for inst in m:
        rows, cols = np.flatnonzero(inst.any(1)), np.flatnonzero(inst.any(0))
        if len(rows) == 0:
            out.append(np.zeros((0, 2), np.float32))
            continue
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        out.append(mask_to_polygon(inst[r0:r1, c0:c1], offset=(int(c0), int(r0))))
    return out
