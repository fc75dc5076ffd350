"""The paint stage by region: the label image chunk by chunk, min-visible as a reduction of per-cell counts.

`asfyolo_rt.runtime.stages.paint` paints every detection (each pixel takes the highest-scoring mask), drops a
detection of which less than `min_visible` stays visible, and repaints. Here a region (a block's window,
aligned to the label chunks) is painted from the records of the blocks whose masks reach it, twice:

1. `count_region`: painted with every NMS survivor (value = 1 + its rank in score order); the visible pixels
   per survivor, summed over regions by the caller, decide who is dropped;
2. `paint_region`: painted with the final ids (1 + rank among the cells kept, so ids are unique across the
   image and sequential from the start: no relabelling pass), written into the label array, and measured:
   visible pixels and coordinate sums per id (the cell table's area and centroid, summed over regions).

A region's painting reads only the masks that meet it; nothing frame-sized is held.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt.large.blocks import BlockGrid
from asfyolo_rt.large.records import block_file, count_file, paint_file, read_npz, write_npz

STAT_ROWS = 1024  # label rows measured at a time


def _paint(work: Path, grid: BlockGrid, k: int, sources: dict[int, np.ndarray]) -> np.ndarray:
    """Region k's (h, w) uint32 label buffer: every source detection with a value > 0 painted, smaller values
    on top (value = priority: 1 is the highest-scoring cell)."""
    x0, y0, x1, y1 = grid.window(k)
    buf = np.zeros((y1 - y0, x1 - x0), np.uint32)
    items: list[tuple[int, np.ndarray, np.ndarray]] = []  # (value, window, mask)
    for b, values in sources.items():
        sel = np.nonzero(values)[0]
        if sel.size == 0:
            continue
        rec = read_npz(block_file(work, b), ("windows", "offsets", "bits"))
        win = rec["windows"].astype(np.int64)
        wx0, wy0 = win[sel, 0], win[sel, 1]
        meets = (wx0 < x1) & (wx0 + win[sel, 2] > x0) & (wy0 < y1) & (wy0 + win[sel, 3] > y0)
        sel = sel[meets]
        if sel.size == 0:
            continue
        offsets = rec["offsets"]
        data = np.unpackbits(rec["bits"], count=int(offsets[-1]))
        for i in sel:
            mw, mh = int(win[i, 2]), int(win[i, 3])
            items.append((int(values[i]), win[i], data[offsets[i]: offsets[i + 1]].reshape(mh, mw)))
    items.sort(key=lambda t: -t[0])  # lowest priority first: higher-priority masks are painted over them
    for value, w, m in items:
        mx0, my0 = int(w[0]), int(w[1])
        cx0, cy0 = max(mx0, x0), max(my0, y0)
        cx1, cy1 = min(mx0 + m.shape[1], x1), min(my0 + m.shape[0], y1)
        part = m[cy0 - my0: cy1 - my0, cx0 - mx0: cx1 - mx0].astype(bool)
        buf[cy0 - y0: cy1 - y0, cx0 - x0: cx1 - x0][part] = value
    return buf


def count_region(work: Path, grid: BlockGrid, k: int, sources: dict[int, np.ndarray]) -> dict[str, Any]:
    """Step 1 for region k: visible pixels per survivor (values, counts), recorded."""
    buf = _paint(work, grid, k, sources)
    values, counts = np.unique(buf[buf > 0], return_counts=True)
    write_npz(count_file(work, k), {"values": values.astype(np.int64), "counts": counts.astype(np.int64)})
    return {"region": k}


def paint_region(work: Path, grid: BlockGrid, k: int, sources: dict[int, np.ndarray], labels: Any) -> dict[str, Any]:
    """Step 2 for region k: the final ids painted and written into `labels` (a zarr array, or its path), then
    measured; the statistics record is written last (it marks the region done)."""
    import zarr

    x0, y0, x1, y1 = grid.window(k)
    buf = _paint(work, grid, k, sources)
    arr = zarr.open_array(labels, mode="r+") if isinstance(labels, str | Path) else labels
    arr[y0:y1, x0:x1] = buf
    ids_l, cnt_l, sx_l, sy_l = [], [], [], []
    for r in range(0, buf.shape[0], STAT_ROWS):
        ys, xs = np.nonzero(buf[r: r + STAT_ROWS])
        if ys.size == 0:
            continue
        ids, inv = np.unique(buf[r: r + STAT_ROWS][ys, xs], return_inverse=True)
        ids_l.append(ids.astype(np.int64))
        cnt_l.append(np.bincount(inv).astype(np.int64))
        sx_l.append(np.bincount(inv, weights=xs + x0).astype(np.int64))
        sy_l.append(np.bincount(inv, weights=ys + (y0 + r)).astype(np.int64))
    stats = {"ids": np.zeros(0, np.int64), "count": np.zeros(0, np.int64), "sum_x": np.zeros(0, np.int64),
             "sum_y": np.zeros(0, np.int64)}
    if ids_l:
        stats = add_stats(np.concatenate(ids_l), np.concatenate(cnt_l), np.concatenate(sx_l), np.concatenate(sy_l))
    write_npz(paint_file(work, k), stats)
    return {"region": k, "cells": int(stats["ids"].size)}


def add_stats(ids: np.ndarray, count: np.ndarray, sum_x: np.ndarray, sum_y: np.ndarray) -> dict[str, np.ndarray]:
    """Per-id sums of rows of (id, count, sum_x, sum_y) that may repeat ids."""
    u, inv = np.unique(ids, return_inverse=True)

    def total(v: np.ndarray) -> np.ndarray:
        out = np.zeros(u.size, np.int64)
        np.add.at(out, inv, v)
        return out

    return {"ids": u, "count": total(count), "sum_x": total(sum_x), "sum_y": total(sum_y)}
