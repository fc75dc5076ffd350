"""A test image of any size, made chunk by chunk: a 16-bit OME-Zarr mosaic of DSB2018 nuclei with ground truth.

`write_mosaic` tiles the plane with `tile` x `tile` crops of a split's fluorescence images (the grid shifted by
`offset` pixels, so that its seams fall neither on blocks nor on label chunks: nuclei lie across every kind of
seam), each crop chosen and flipped by a hash of its grid cell, and writes, one `chunk` x `chunk` chunk at a
time (never the whole plane in memory):

* the image: uint16 as a 12-bit camera writes it (dark offset 100 + 15 x the 8-bit value + Gaussian read noise
  of sigma 3 seeded per 256 px square, like `asfyolo_rt.data.frames`), with a 2x mean pyramid;
* ``labels/ground_truth``: uint32 instance ids (cell k of the grid gives ids ``k * 512 + 1 ..``), the
  instances of each crop cut where the crop ends.

Output: OME-NGFF 0.4 (zarr format 2), readable by `asfyolo_rt.large` and by OME-Zarr viewers.
`write_ome_zarr` is the chunked writer underneath (any renderer of windows: tests use it for small images).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt.data.dataset import DatasetSplit
from asfyolo_rt.errors import DataError

Render = Callable[[int, int, int, int], np.ndarray]  # (y0, y1, x0, x1) -> the window's pixels
IDS_PER_TILE = 512  # DSB2018 images hold at most 382 nuclei
NOISE_TILE = 256  # the read noise is drawn per square of this side (seeded by its position)


def _levels(shape: tuple[int, int], chunk: int) -> list[tuple[int, int]]:
    out = [shape]
    while max(out[-1]) > chunk:
        out.append((math.ceil(out[-1][0] / 2), math.ceil(out[-1][1] / 2)))
    return out


def _multiscales(name: str, n: int, pixel_size_um: float | None) -> list[dict[str, Any]]:
    px = pixel_size_um or 1.0
    axes: list[dict[str, Any]] = [{"name": a, "type": "space"} for a in "yx"]
    if pixel_size_um:
        for a in axes:
            a["unit"] = "micrometer"
    return [{"version": "0.4", "name": name, "axes": axes, "datasets": [
        {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [px * 2 ** k] * 2}]}
        for k in range(n)]}]


def _windows(shape: tuple[int, int], chunk: int) -> list[tuple[int, int, int, int]]:
    h, w = shape
    return [(y, min(h, y + chunk), x, min(w, x + chunk)) for y in range(0, h, chunk) for x in range(0, w, chunk)]


def write_ome_zarr(path: Path, shape: tuple[int, int], dtype: Any, render: Render, *, chunk: int = 1024,
                   labels: dict[str, Render] | None = None, pixel_size_um: float | None = None,
                   workers: int | None = None, progress: Callable[[int, int], None] | None = None) -> Path:
    """An OME-Zarr image (with a 2x mean pyramid) and label images (`labels`: name -> renderer, uint32, one
    level), each written chunk by chunk from `render(y0, y1, x0, x1)`. Refuses an existing path."""
    import zarr

    if path.exists():
        raise DataError(f"{path} already exists", hint="choose another --out or remove it")
    shapes = _levels(shape, chunk)
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.attrs["multiscales"] = _multiscales(path.name, len(shapes), pixel_size_um)
    arrays = [root.create_array(str(k), shape=s, chunks=(min(chunk, s[0]), min(chunk, s[1])), dtype=dtype,
                                fill_value=0) for k, s in enumerate(shapes)]
    jobs: list[tuple[Any, Render, tuple[int, int, int, int]]] = [(arrays[0], render, w) for w in _windows(shape, chunk)]
    if labels:
        lg = root.require_group("labels")
        lg.attrs["labels"] = list(labels)
        for name, fn in labels.items():
            g = lg.require_group(name)
            g.attrs.update({"multiscales": _multiscales(name, 1, pixel_size_um),
                            "image-label": {"version": "0.4", "source": {"image": "../../"}}})
            arr = g.create_array("0", shape=shape, chunks=(min(chunk, shape[0]), min(chunk, shape[1])),
                                 dtype="uint32", fill_value=0)
            jobs += [(arr, fn, w) for w in _windows(shape, chunk)]
    total = len(jobs) + sum(len(_windows(s, chunk)) for s in shapes[1:])
    done = [0]

    def run(job: tuple[Any, Render, tuple[int, int, int, int]]) -> None:
        arr, fn, (y0, y1, x0, x1) = job
        arr[y0:y1, x0:x1] = fn(y0, y1, x0, x1)
        done[0] += 1
        if progress:
            progress(done[0], total)

    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        list(pool.map(run, jobs))
        for k in range(1, len(shapes)):
            src = arrays[k - 1]

            def shrink(y0: int, y1: int, x0: int, x1: int, src: Any = src) -> np.ndarray:
                a = np.asarray(src[2 * y0: 2 * y1, 2 * x0: 2 * x1], np.float64)
                a = np.pad(a, ((0, 2 * (y1 - y0) - a.shape[0]), (0, 2 * (x1 - x0) - a.shape[1])), mode="edge")
                return np.round(a.reshape(y1 - y0, 2, x1 - x0, 2).mean((1, 3))).astype(dtype)

            list(pool.map(run, [(arrays[k], shrink, w) for w in _windows(shapes[k], chunk)]))
    return path


@dataclass
class Mosaic:
    """A written mosaic: path, shape (H, W), crops of the grid, nuclei (ground-truth instances with a visible
    pixel, whole or cut by their crop)."""

    path: Path
    shape: tuple[int, int]
    tiles: int
    nuclei: int


class _Pool:
    """The split's fluorescence images cropped to tile x tile: grey uint8 and instance ids (1.. per crop)."""

    def __init__(self, split: DatasetSplit, tile: int, fluorescence_only: bool) -> None:
        from asfyolo_rt.data.frames import is_fluorescence
        from asfyolo_rt.data.io import read_image
        from asfyolo_rt.data.masks import polygons_to_index_map

        self.grey: list[np.ndarray] = []
        self.ids: list[np.ndarray] = []
        for s in split.samples:
            img = read_image(s.image_path)
            if img.shape[0] < tile or img.shape[1] < tile or (fluorescence_only and not is_fluorescence(img)):
                continue
            h, w = img.shape[:2]
            polys = [np.asarray(p, np.float32) * np.array([w, h], np.float32) for p in s.polygons]
            index = polygons_to_index_map(polys, (h, w))[0][:tile, :tile] if polys else np.zeros((tile, tile), np.int32)
            _, dense = np.unique(index, return_inverse=True)
            self.grey.append(np.round(img[:tile, :tile].mean(2)).astype(np.uint8))
            self.ids.append(dense.reshape(tile, tile).astype(np.uint32))  # 0 stays 0: background is the smallest
        if not self.grey:
            raise DataError(f"split {split.split!r} of {split.root} has no {'fluorescence ' if fluorescence_only else ''}"
                            f"image of at least {tile} x {tile} pixels")

    def __len__(self) -> int:
        return len(self.grey)


def _pick(seed: int, gy: int, gx: int, n: int) -> tuple[int, int]:
    """(pool index, flip code 0..3) of grid cell (gy, gx): a hash, so any chunk is made without the others."""
    d = hashlib.blake2b(f"{seed}:{gy}:{gx}".encode(), digest_size=8).digest()
    v = int.from_bytes(d, "little")
    return v % n, (v // n) % 4


def _flip(a: np.ndarray, code: int) -> np.ndarray:
    return a[::-1 if code & 1 else 1, ::-1 if code & 2 else 1]


def write_mosaic(split: DatasetSplit, out: Path, shape: tuple[int, int], *, tile: int = 256, offset: int = 97,
                 chunk: int = 1024, seed: int = 0, fluorescence_only: bool = True, pixel_size_um: float | None = None,
                 progress: Callable[[int, int], None] | None = None) -> Mosaic:
    """Write the mosaic (module docstring) of `shape` (H, W) to `out` (an .ome.zarr folder)."""
    if min(shape) < 64:
        raise DataError(f"mosaic size {shape[1]}x{shape[0]}: expected >= 64 pixels a side")
    pool = _Pool(split, tile, fluorescence_only)
    cols = (shape[1] + offset) // tile + 1

    def cells(y0: int, y1: int, x0: int, x1: int) -> list[tuple[int, int, int, int, int, int]]:
        """(gy, gx, cell y0, cell x0, pool index, flip) of the grid cells meeting the window."""
        out_ = []
        for gy in range((y0 + offset) // tile, (y1 - 1 + offset) // tile + 1):
            for gx in range((x0 + offset) // tile, (x1 - 1 + offset) // tile + 1):
                k, f = _pick(seed, gy, gx, len(pool))
                out_.append((gy, gx, gy * tile - offset, gx * tile - offset, k, f))
        return out_

    def paste(y0: int, y1: int, x0: int, x1: int, source: Callable[[int, int, int, int], np.ndarray],
              dtype: Any) -> np.ndarray:
        canvas = np.zeros((y1 - y0, x1 - x0), dtype)
        for gy, gx, cy, cx, k, f in cells(y0, y1, x0, x1):
            a = source(gy, gx, k, f)
            sy0, sx0 = max(y0, cy), max(x0, cx)
            sy1, sx1 = min(y1, cy + tile), min(x1, cx + tile)
            canvas[sy0 - y0: sy1 - y0, sx0 - x0: sx1 - x0] = a[sy0 - cy: sy1 - cy, sx0 - cx: sx1 - cx]
        return canvas

    def noise(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Read noise seeded per NOISE_TILE square of the plane: the same pixels whatever the chunks."""
        out = np.empty((y1 - y0, x1 - x0), np.float32)
        for ty in range(y0 // NOISE_TILE, (y1 - 1) // NOISE_TILE + 1):
            for tx in range(x0 // NOISE_TILE, (x1 - 1) // NOISE_TILE + 1):
                n = np.random.default_rng([seed, ty, tx]).normal(0, 3, (NOISE_TILE, NOISE_TILE)).astype(np.float32)
                ny0, nx0 = ty * NOISE_TILE, tx * NOISE_TILE
                sy0, sy1, sx0, sx1 = max(y0, ny0), min(y1, ny0 + NOISE_TILE), max(x0, nx0), min(x1, nx0 + NOISE_TILE)
                out[sy0 - y0: sy1 - y0, sx0 - x0: sx1 - x0] = n[sy0 - ny0: sy1 - ny0, sx0 - nx0: sx1 - nx0]
        return out

    def image(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        grey = paste(y0, y1, x0, x1, lambda gy, gx, k, f: _flip(pool.grey[k], f), np.uint8)
        noisy = 100 + 15 * grey.astype(np.float32) + noise(y0, y1, x0, x1)
        return np.clip(np.round(noisy), 0, 4095).astype(np.uint16)

    def truth(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        def ids(gy: int, gx: int, k: int, f: int) -> np.ndarray:
            a = _flip(pool.ids[k], f)
            base = np.uint32((gy * cols + gx) * IDS_PER_TILE)
            return np.where(a > 0, a + base, 0).astype(np.uint32)

        out_ = paste(y0, y1, x0, x1, ids, np.uint32)
        seen.append(np.unique(out_[out_ > 0]))
        return out_

    seen: list[np.ndarray] = []
    write_ome_zarr(out, shape, "uint16", image, chunk=chunk, labels={"ground_truth": truth},
                   pixel_size_um=pixel_size_um, progress=progress)
    nuclei = int(np.unique(np.concatenate(seen)).size) if seen else 0
    return Mosaic(out, shape, len(cells(0, shape[0], 0, shape[1])), nuclei)
