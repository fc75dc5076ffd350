"""Cell outlines as polygons along pixel edges (what Fiji's wand and QuPath's label import trace).

A pixel (row r, column c) covers [c, c+1) x [r, r+1): the outline runs on integer corner coordinates, so
the polygon's area equals the mask's pixel count exactly (for a mask without holes). Diagonal neighbours
are separate parts (4-connectivity); a mask of several parts gives its largest part (ties: the first),
holes are left out (a cell outline is one ring, as ImageJ polygon ROIs and QuPath detections take).
"""

from __future__ import annotations

import numpy as np


def _edges(mask: np.ndarray) -> np.ndarray:
    """(n, 4) int64 directed boundary edges x0, y0, x1, y1, clockwise on screen (interior on the right)."""
    m = np.pad(mask.astype(bool), 1)
    inner = m[1:-1, 1:-1]
    out = []
    for outside, start, end in (
        (~m[:-2, 1:-1], (0, 0), (1, 0)),  # top: left -> right
        (~m[1:-1, 2:], (1, 0), (1, 1)),  # right: top -> bottom
        (~m[2:, 1:-1], (1, 1), (0, 1)),  # bottom: right -> left
        (~m[1:-1, :-2], (0, 1), (0, 0)),  # left: bottom -> top
    ):
        r, c = np.nonzero(inner & outside)
        out.append(np.stack([c + start[0], r + start[1], c + end[0], r + end[1]], axis=1))
    return np.concatenate(out).astype(np.int64)


def _rings(edges: np.ndarray) -> list[np.ndarray]:
    """Chain directed edges into closed rings; at a vertex with two ways out, turn right (4-connectivity)."""
    by_start: dict[tuple[int, int], list[int]] = {}
    for i, (x0, y0, _, _) in enumerate(edges.tolist()):
        by_start.setdefault((x0, y0), []).append(i)
    used = np.zeros(len(edges), bool)
    rings = []
    for first in range(len(edges)):
        if used[first]:
            continue
        ring, i = [], first
        while not used[i]:
            used[i] = True
            x0, y0, x1, y1 = edges[i].tolist()
            ring.append((x0, y0))
            options = [j for j in by_start[(x1, y1)] if not used[j]]
            if not options:
                break
            if len(options) > 1:
                dx, dy = x1 - x0, y1 - y0
                options.sort(key=lambda j: -(dx * (edges[j, 3] - y1) - dy * (edges[j, 2] - x1)))
            i = options[0]
        rings.append(np.asarray(ring, np.float64))
    return rings


def ring_area(ring: np.ndarray) -> float:
    """Signed shoelace area (positive for outer rings in this module's orientation)."""
    x, y = ring[:, 0], ring[:, 1]
    return float((x * np.roll(y, -1) - np.roll(x, -1) * y).sum() / 2)


def _drop_collinear(ring: np.ndarray) -> np.ndarray:
    prev, nxt = np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0)
    cross = (ring[:, 0] - prev[:, 0]) * (nxt[:, 1] - ring[:, 1]) - (ring[:, 1] - prev[:, 1]) * (nxt[:, 0] - ring[:, 0])
    return ring[cross != 0]


def mask_outline(mask: np.ndarray, x0: int = 0, y0: int = 0) -> np.ndarray | None:
    """(k, 2) float64 x, y vertices (image pixels, offset by the window origin) of the largest outer ring
    of a binary mask, corners only (no collinear vertices), not repeated at the end; None for an empty mask."""
    if not mask.any():
        return None
    rings = [r for r in _rings(_edges(mask)) if len(r) >= 4]
    outer = [r for r in rings if ring_area(r) > 0]
    if not outer:
        return None
    best = max(outer, key=ring_area)
    return _drop_collinear(best) + np.array([x0, y0], np.float64)
