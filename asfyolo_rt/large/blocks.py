"""The block stage: the runtime's stages for the tiles of one block, read with the halo they need.

Blocks partition the image (a grid of `block` x `block` pixels of the chosen level). A block runs the tiles of
the whole image's tile grid whose core *starts* in it (`Runner.plan(window=...)`), so the blocks partition the
tiles and each cell comes from the one tile, hence the one block, whose core holds its box centre. The block
reads the pixels its tiles cover plus half a tile around them, where a rescue tile centred on a cut cell may
reach (`asfyolo_rt.runtime.tiles.rescue_tile`): the halo is what the tiles read, never a guess.

Its detections (boxes, scores, classes, box-local masks in image pixels) go to one record file, written
atomically: the file existing *is* the block's completion (`asfyolo_rt.large.records`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from asfyolo_rt.large.context import Job, context, opened
from asfyolo_rt.large.normalise import window_histogram
from asfyolo_rt.large.readers import ImageSpec
from asfyolo_rt.large.records import block_file, write_npz
from asfyolo_rt.large.resample import ScaledWindow, resample, source_range

STRIP = 1024  # scaled rows resampled at a time (bounds the float32 temporaries to a strip)


@dataclass(frozen=True)
class BlockGrid:
    """Blocks of `block` px over an image of `shape` (H, W), numbered row by row."""

    shape: tuple[int, int]
    block: int

    @property
    def rows(self) -> int:
        return max(1, math.ceil(self.shape[0] / self.block))

    @property
    def cols(self) -> int:
        return max(1, math.ceil(self.shape[1] / self.block))

    def __len__(self) -> int:
        return self.rows * self.cols

    def window(self, k: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of block k in image pixels."""
        i, j = divmod(k, self.cols)
        b, (h, w) = self.block, self.shape
        return j * b, i * b, min(w, (j + 1) * b), min(h, (i + 1) * b)

    def touching(self, box: tuple[int, int, int, int]) -> list[int]:
        """Blocks whose window meets box (x0, y0, x1, y1)."""
        x0, y0, x1, y1 = box
        b = self.block
        js = range(max(0, x0 // b), min(self.cols, (max(x1, x0 + 1) - 1) // b + 1))
        i_s = range(max(0, y0 // b), min(self.rows, (max(y1, y0 + 1) - 1) // b + 1))
        return [i * self.cols + j for i in i_s for j in js]


def histogram_block(image: ImageSpec, grid: BlockGrid, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The intensity histogram of block k (no halo: the blocks partition the pixels)."""
    img = opened(image)
    x0, y0, x1, y1 = grid.window(k)
    return window_histogram(img.read(y0, y1, x0, x1))


def run_block(job: Job, k: int) -> dict[str, Any]:
    """Detect the cells of block k and write its record. Returns a summary: block, cells, tiles, pixels, s."""
    import torch

    from asfyolo_rt.data.io import scale_to_uint8

    t0 = time.perf_counter()
    ctx = context(job)
    runner, img = ctx.runner, ctx.image
    grid = BlockGrid(img.shape, job.block)
    x0, y0, x1, y1 = grid.window(k)
    plan = runner.plan(img.shape, window=(x0, y0, x1, y1))
    hs, ws = plan.scaled_shape
    parts: list[Any] = []
    if plan.tiles:
        reach = max(max(t.h, t.w) for t in plan.tiles) // 2 + 2  # a rescue tile centred on a cut cell
        sy0 = max(0, min(t.y0 for t in plan.tiles) - reach)
        sy1 = min(hs, max(t.y0 + t.h for t in plan.tiles) + reach)
        sx0 = max(0, min(t.x0 for t in plan.tiles) - reach)
        sx1 = min(ws, max(t.x0 + t.w for t in plan.tiles) + reach)
        oy0, oy1 = source_range(img.shape[0], hs, sy0, sy1)
        ox0, ox1 = source_range(img.shape[1], ws, sx0, sx1)
        raw = img.read(oy0, oy1, ox0, ox1)
        norm = raw if raw.dtype == np.uint8 else scale_to_uint8(raw, job.norm.lo, job.norm.hi)
        del raw
        scaled = np.empty((sy1 - sy0, sx1 - sx0) + norm.shape[2:], np.uint8)
        for s in range(sy0, sy1, STRIP):
            e = min(sy1, s + STRIP)
            scaled[s - sy0: e - sy0] = resample(norm, (oy0, ox0), img.shape, (hs, ws), (s, e, sx0, sx1))
        del norm
        window = ScaledWindow(scaled, (sy0, sx0), (hs, ws))
        with torch.inference_mode():
            parts = runner.parts(cast(np.ndarray, window), plan, {})
    rec = _record(parts)
    rec["tiles"] = np.asarray(len(plan.tiles), np.int64)
    rec["grid"] = np.asarray(plan.grid, np.int64)
    write_npz(block_file(job.work_dir, k), rec)
    return {"block": k, "cells": int(rec["scores"].shape[0]), "tiles": len(plan.tiles),
            "pixels": (x1 - x0) * (y1 - y0), "seconds": time.perf_counter() - t0}


def _record(parts: list[Any]) -> dict[str, np.ndarray]:
    """The parts of a block as plain arrays (masks bit-packed)."""
    if not parts:
        z = np.zeros
        return {"boxes": z((0, 4), np.float32), "scores": z(0, np.float32), "classes": z(0, np.int64),
                "windows": z((0, 4), np.int32), "offsets": z(1, np.int64), "bits": z(0, np.uint8),
                "areas": z(0, np.int64)}
    boxes = np.concatenate([p.boxes.numpy() for p in parts]).astype(np.float32)
    scores = np.concatenate([p.scores.numpy() for p in parts]).astype(np.float32)
    classes = np.concatenate([p.classes.numpy() for p in parts]).astype(np.int64)
    windows = np.concatenate([p.masks.windows.numpy() for p in parts]).astype(np.int32)
    data = np.concatenate([p.masks.data.numpy() for p in parts]).astype(np.uint8)
    sizes = windows[:, 2].astype(np.int64) * windows[:, 3]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    cum = np.concatenate([[0], np.cumsum(data, dtype=np.int64)])
    return {"boxes": boxes, "scores": scores, "classes": classes, "windows": windows, "offsets": offsets,
            "bits": np.packbits(data), "areas": (cum[offsets[1:]] - cum[offsets[:-1]]).astype(np.int64)}
