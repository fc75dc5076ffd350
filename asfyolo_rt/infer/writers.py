"""Prediction outputs that microscopy tools read.

- instance label images: uint16 TIFF/PNG (uint32 TIFF past 65,535 cells), 0 = background, k = cell k;
  napari, Fiji, QuPath and CellProfiler open them as label layers / label images;
- overlays: the image with translucent cell colours and outlines (PNG);
- COCO instance JSON with compressed RLE masks (one per detected cell, overlaps allowed);
- a per-cell CSV (image, plane, t, z, id, class, score, box, area, centroid, equivalent diameter) and a
  per-image (per-plane) count summary CSV;
- optionally QuPath GeoJSON, ImageJ ROI zips and OME-Zarr (asfyolo_rt.infer.exports), one per input.

Stacks (multi-plane TIFF, asfyolo_rt.data.stacks) arrive plane by plane; their label planes are collected
and written as one label TIFF per input in the input's layout (T/Z axes, ImageJ/OME metadata, physical
pixel size) once the last plane arrived; cell ids run on across the planes of a stack (unique per file).

Output names: every input has one name (asfyolo_rt.infer.sources.unique_names), used for its label
image (`labels/<name>.tif`), overlay (`overlays/<name>.png`), the `image` column of cells.csv and
summary.csv, the `name` of its COCO image (`file_name` stays the input's path) and its
`<name>.geojson`, `<name>.rois.zip` and `<name>.ome.zarr`; video frames and stack planes add their suffix
(`<name>_000120`, `<name>_z004`) in overlays/ and in summary.csv. The rule, over all inputs of the run:
- the file name without its suffixes (`cells.ome.tif` -> `cells`) when no other input has it
  (compared case-insensitively: the outputs may land on a case-insensitive disk);
- inputs sharing it in different folders: their path below the deepest folder they share, joined with
  `__` (`x/img.png`, `y/img.png` -> `x__img`, `y__img`);
- inputs sharing it in one folder: the extension added, dots as `_` (`a.png`, `a.tif` -> `a_png`, `a_tif`;
  both where both apply: `x/a.png`, `x/a.tif`, `y/a.png` -> `x__a_png`, `x__a_tif`, `y__a`);
- a name still taken gets `_2`, `_3`, ... in input order.
Names depend only on the run's inputs and their order: the same command names every output the same. A
TIFF holding several images of different sizes gives each as an input of its own, `<name>_s<k>`.

Areas, centroids and diameters are measured on the label image (what a user measuring in Fiji sees),
so a cell partly covered by a higher-scoring neighbour reports its visible part.
"""

from __future__ import annotations

import csv
import json
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asfyolo_rt.atomic import atomic_write_bytes
from asfyolo_rt.data.io import read_image_raw, write_image
from asfyolo_rt.data.rle import window_rles
from asfyolo_rt.data.stacks import (
    PhysicalSize,
    StackAssembler,
    input_stem,
    label_file_name,
    read_pixels,
    write_label_tiff,
)
from asfyolo_rt.errors import ConfigError
from asfyolo_rt.infer.exports import (
    CellOutline,
    cell_outlines,
    write_geojson,
    write_imagej_rois,
    write_labels_into,
    write_ome_zarr,
)

if TYPE_CHECKING:
    from asfyolo_rt.infer.predict import ImageResult

CELL_FIELDS = ["image", "plane", "t", "z", "id", "class", "score", "x1", "y1", "x2", "y2", "area_px", "centroid_x",
               "centroid_y", "equivalent_diameter_px"]
SUMMARY_FIELDS = ["image", "width", "height", "cells", "mean_area_px", "median_area_px", "covered_fraction"]


def _input_name(result: ImageResult) -> str:
    """The output name of the input (or TIFF series) a result's frame is part of."""
    return result.frame.input_name or input_stem(result.frame.source)


def label_image(result: ImageResult) -> np.ndarray:
    """The label map as the smallest unsigned dtype that holds every id (uint16 up to 65,535 cells)."""
    n = len(result)
    return result.label_map.astype(np.uint16 if n <= 65535 else np.uint32)


def write_label_image(result: ImageResult, path: Path) -> Path:
    """.tif/.tiff (any count; with the input's pixel size where it records one) or .png (uint16, <= 65,535)."""
    px = result.frame.pixel_size_um
    if px and path.suffix.lower() in (".tif", ".tiff"):
        return write_label_tiff(path, label_image(result), "YX", "tiff", PhysicalSize(px, px))
    write_image(path, label_image(result))
    return path


def _palette(n: int) -> np.ndarray:
    rng = np.random.default_rng(12345)
    colours = rng.integers(40, 256, size=(n + 1, 3), dtype=np.uint8)
    colours[0] = 0
    return colours


def _blend_table(alpha: float) -> np.ndarray:
    """(256 * 256,) uint8: [pixel << 8 | tint] -> pixel * (1 - alpha) + tint * alpha, in float64, truncated."""
    v = np.arange(256, dtype=np.uint8)
    return (v[:, None] * (1 - alpha) + v[None, :] * alpha).astype(np.uint8).reshape(-1)


_RGB = np.dtype((np.void, 3))  # one RGB pixel as one item: whole pixels gather and scatter in one step


def overlay(result: ImageResult, alpha: float = 0.4) -> np.ndarray:
    """(H, W, 3) uint8 RGB: cells tinted with distinct colours, outlines in the cell colour, white boxes off."""
    img = result.frame.image.copy()
    if len(result) == 0:
        return img
    colours, table = _palette(len(result)), _blend_table(alpha)
    for y in range(0, img.shape[0], _BAND_ROWS):
        _paint(img[y : y + _BAND_ROWS], result.label_map, y, colours, table)
    return img


_BAND_ROWS = 256  # overlay rows painted at a time: 256 and 128 cost the same (27 ms CPU for a 2048 x 2048 frame),
# 512 31 ms, the frame in one go 43 ms (the band's temporaries stay in cache)


def _paint(rows: np.ndarray, lm: np.ndarray, y0: int, colours: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Tint and outline, in place, `rows`: (r, W, 3) uint8 C-contiguous, the image's rows y0..y0 + r - 1.

    Tint: every cell pixel through a table of every (pixel, tint) pair. Outlines: a pixel whose id differs from
    its left or upper neighbour (one of the two is in a cell), coloured by the largest of the three ids; the
    neighbours of row 0 / column 0 wrap around (row H - 1 / column W - 1)."""
    r, w = rows.shape[:2]
    band = lm[y0 : y0 + r]
    ids = band.reshape(-1)
    pixels = rows.reshape(-1, 3)
    rgb = pixels.view(_RGB).reshape(-1)
    at = np.flatnonzero(ids)
    pair = np.take(pixels, at, axis=0).astype(np.uint16) << 8
    pair |= np.take(colours, ids[at], axis=0)
    rgb[at] = np.take(table, pair).view(_RGB).reshape(-1)
    up = lm[y0 - 1 : y0 + r - 1] if y0 else np.concatenate((lm[-1:], lm[: r - 1]))
    edge = np.zeros(band.shape, bool)
    edge[:, 1:] = band[:, 1:] != band[:, :-1]
    top = 0 if y0 else 1  # row 0 has no upper edge, only the wrapped colour
    edge[top:] |= band[top:] != up[top:]
    e = np.flatnonzero(edge)
    y, x = np.divmod(e, w)
    border = np.maximum(ids[e], np.maximum(up.reshape(-1)[e], ids[y * w + (x - 1) % w]))
    rgb[e] = np.take(colours, border, axis=0).view(_RGB).reshape(-1)
    return rows


CELL_DTYPE = np.dtype([
    ("id", np.int32), ("class", np.int32), ("score", np.float32),
    ("x1", np.float32), ("y1", np.float32), ("x2", np.float32), ("y2", np.float32),
    ("area_px", np.int64), ("centroid_x", np.float64), ("centroid_y", np.float64),
    ("equivalent_diameter_px", np.float64),
])


def cell_table(labels: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
               windows: np.ndarray | None) -> np.ndarray:
    """The `CELL_DTYPE` table of cells 1..n of a label image, measured on the label image (a cell partly covered
    by a higher-scoring one reports its visible part; NaN centroid where none is visible).

    Each cell is measured inside its own mask window (a label only occurs there; None: the whole map), so the
    cost is the sum of the cells' box areas, not cells x frame: an 8192 x 8192 frame costs no frame-sized
    temporaries. Centroid = the mean of the window-local coordinates + the window's origin + half a pixel.
    """
    n = len(scores)
    t = np.zeros(n, CELL_DTYPE)
    t["id"] = np.arange(1, n + 1)
    t["class"], t["score"] = classes, scores
    for k, name in enumerate(("x1", "y1", "x2", "y2")):
        t[name] = boxes[:, k] if n else []
    if windows is None:
        win = np.zeros((n, 4), np.int64)
        area, sum_x, sum_y = _frame_sums(labels, n)
    else:
        win = np.asarray(windows).astype(np.int64).reshape(n, 4)
        area, sum_x, sum_y = _window_sums(labels, win)
    t["area_px"] = area
    with np.errstate(invalid="ignore", divide="ignore"):  # no visible pixel: 0 / 0 = NaN
        t["centroid_x"] = sum_x / area + win[:, 0] + 0.5
        t["centroid_y"] = sum_y / area + win[:, 1] + 0.5
    t["equivalent_diameter_px"] = 2 * np.sqrt(t["area_px"] / math.pi)
    return t


def _window_sums(labels: np.ndarray, win: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixels, sum of x, sum of y) of label i + 1 inside window i = (x0, y0, w, h), window-local, int64 each.

    Windows of one width are stacked into one (rows, width) array, about _STACK_PIXELS pixels at a time: a few
    passes over the windows' pixels, whatever their number, and temporaries of bounded size."""
    n = win.shape[0]
    area, sum_x, sum_y = (np.zeros(n, np.int64) for _ in range(3))
    x0, y0 = win[:, 0], win[:, 1]
    ww = np.clip(x0 + win[:, 2], 0, labels.shape[1]) - x0  # as slicing clips a window past the frame
    hh = np.clip(y0 + win[:, 3], 0, labels.shape[0]) - y0
    for wv in np.unique(ww[ww > 0]).tolist():
        same = np.flatnonzero((ww == wv) & (hh > 0))
        chunk = np.cumsum(hh[same]) * wv // _STACK_PIXELS
        for group in np.split(same, np.flatnonzero(np.diff(chunk)) + 1):
            if group.size == 0:
                continue
            rows = np.concatenate([labels[y0[i] : y0[i] + hh[i], x0[i] : x0[i] + wv] for i in group.tolist()])
            top = np.concatenate(([0], np.cumsum(hh[group])))[:-1]  # each window's first row in `rows`
            hit = rows == np.repeat(group + 1, hh[group])[:, None]
            per_row = hit.sum(1, dtype=np.int64)
            area[group] = np.add.reduceat(per_row, top)
            sum_x[group] = np.add.reduceat(hit @ np.arange(wv, dtype=np.int64), top)
            local_y = np.arange(rows.shape[0]) - np.repeat(top, hh[group])
            sum_y[group] = np.add.reduceat(per_row * local_y, top)
    return area, sum_x, sum_y


_STACK_PIXELS = 1 << 20


def _frame_sums(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixels, sum of x, sum of y) of labels 1..n over the whole map, int64 each, in bands of rows."""
    area, sum_x, sum_y = (np.zeros(n, np.int64) for _ in range(3))
    h, w = labels.shape
    band = max(1, (1 << 20) // max(w, 1))
    xs = np.arange(w, dtype=np.int64)
    for y in range(0, h, band):
        part = labels[y : y + band]
        ids = part.reshape(-1)
        keep = (ids > 0) & (ids <= n)
        idx = ids[keep].astype(np.int64) - 1
        area += np.bincount(idx, minlength=n)
        sum_x += np.bincount(idx, weights=np.broadcast_to(xs, part.shape).reshape(-1)[keep], minlength=n).astype(
            np.int64)
        ys = np.repeat(np.arange(y, y + part.shape[0], dtype=np.int64), w)
        sum_y += np.bincount(idx, weights=ys[keep], minlength=n).astype(np.int64)
    return area, sum_x, sum_y


def result_table(result: ImageResult) -> np.ndarray:
    """`cell_table` of a prediction result."""
    windows = getattr(result.masks, "windows", None)
    win = np.asarray(windows).astype(np.int64) if windows is not None else None
    return cell_table(result.label_map, result.boxes, result.scores, result.classes, win)


def cell_rows(result: ImageResult, table: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One dict per detected cell (fields CELL_FIELDS): `result_table` (or `table`, its result) as cells.csv rows."""
    t = result_table(result) if table is None else table
    keys = [(k, CELL_FIELDS.index(k)) for k in CELL_FIELDS if k not in ("plane", "t", "z")]
    return [{k: row[i] for k, i in keys} for row in _cell_lists(result, t)]


def _cell_lists(result: ImageResult, t: np.ndarray) -> list[list[Any]]:
    """cells.csv rows as lists in CELL_FIELDS order ("" for plane, t, z; "" centroids where nothing is visible)."""
    # Python numbers first (tolist): the same values as float()/int() of each numpy scalar, made in one step.
    n, name = len(result), result.frame.name
    return [[name, "", "", "", i, int(c), round(float(s), 5), round(float(x1), 2), round(float(y1), 2),
             round(float(x2), 2), round(float(y2), 2), a, round(cx, 2) if a else "", round(cy, 2) if a else "",
             round(d, 3)]
            for i, c, s, (x1, y1, x2, y2), a, cx, cy, d in zip(
                range(1, n + 1), result.classes.tolist(), result.scores.tolist(), result.boxes.tolist(),
                t["area_px"].tolist(), t["centroid_x"].tolist(), t["centroid_y"].tolist(),
                t["equivalent_diameter_px"].tolist())]


def _summary(result: ImageResult, areas: np.ndarray) -> dict[str, Any]:
    """summary.csv row of a result whose cells' visible areas are `areas` (n,) float64."""
    h, w = result.label_map.shape
    return {
        "image": result.frame.name, "width": w, "height": h, "cells": len(areas),
        "mean_area_px": round(float(areas.mean()), 2) if len(areas) else 0,
        "median_area_px": round(float(np.median(areas)), 2) if len(areas) else 0,
        # count / size: exactly the float64 mean of the bool map (an exact integer sum, one division)
        "covered_fraction": round(np.count_nonzero(result.label_map) / result.label_map.size, 5),
    }


def window_rle(mask: np.ndarray, x0: int, y0: int, height: int, width: int) -> dict[str, Any]:
    """COCO compressed RLE of a full (height, width) mask that is zero outside the window at (x0, y0).

    mask: (h, w) box-local {0, 1}. Cost O(h * w), not O(height * width). Many masks: `rle.window_rles`.
    """
    m = np.asarray(mask)
    h, w = m.shape
    counts = window_rles(m.reshape(-1), np.array([0, h * w]), np.array([[x0, y0, w, h]]), height, width)[0]
    return {"size": [height, width], "counts": counts}


class _Background(threading.Thread):
    """fn(*args) on a thread of its own; `result()` waits for it and raises what it raised."""

    def __init__(self, fn: Callable[..., object], *args: Any) -> None:
        super().__init__(name="asfyolo-writer", daemon=True)
        self._call = (fn, args)
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        fn, args = self._call
        try:
            fn(*args)
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self) -> None:
        self.join()
        if self._error is not None:
            raise self._error


class PredictionWriter:
    """Writes every output of a `predict` run into one folder; `close()` writes the run-level files."""

    def __init__(self, out_dir: Path, *, names: dict[int, str], overlays: bool = True, labels: str = "tif",
                 coco: bool = True, geojson: bool = False, imagej_rois: bool = False, ome_zarr: bool = False) -> None:
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.names = names
        self.overlays, self.labels, self.coco = overlays, labels, coco
        self.geojson, self.imagej_rois, self.ome_zarr = geojson, imagej_rois, ome_zarr
        self._stacks: dict[str, StackAssembler] = {}  # by input name (a file, or one series of a TIFF)
        self._outlines: dict[str, list[CellOutline]] = {}
        self.cells_path = self.out / "cells.csv"
        self.summary_path = self.out / "summary.csv"
        self._cells = open(self.cells_path, "w", newline="")
        self._summary = open(self.summary_path, "w", newline="")
        self._rows = csv.writer(self._cells)  # rows as lists in CELL_FIELDS order: DictWriter's text, less work
        self._sw = csv.DictWriter(self._summary, SUMMARY_FIELDS)
        self._rows.writerow(CELL_FIELDS)
        self._sw.writeheader()
        self._images: list[dict[str, Any]] = []
        self._anns_json: list[str] = []  # each write()'s annotations as JSON text
        self._n_anns = 0

    def write(self, result: ImageResult) -> dict[str, Any]:
        """Write one result's outputs; returns its summary.csv row. Its label image (mostly a file write) and its
        overlay PNG (mostly deflate, which releases the GIL) are written on threads of their own while this thread
        makes the tables; every file is written when this returns, the first error is raised (the tables'
        before the overlay's), and an atomically written file is whole or absent."""
        labels = png = None
        try:
            if self.overlays:  # first: its PNG encoding is the longest part of write()
                png = self._start_overlay(result)
            if result.frame.plane is None and self.labels:
                labels = _Background(write_label_image, result,
                                     self.out / "labels" / f"{result.frame.name}.{self.labels}")
            summary = self._write_tables(result, labels)
        except BaseException:
            for job in (labels, png):
                if job is not None:
                    job.join()
            raise
        if png is not None:
            png.result()
        return summary

    def _start_overlay(self, result: ImageResult) -> _Background:
        """The overlay made here, its PNG encoded and written on a thread (deflate releases the GIL); returns that
        thread. Painted here, not on that thread: there its NumPy calls (~25 per band) each wait for the GIL that
        the tables' Python code holds, and write() took 8-14 ms longer (2048 x 2048 frame, 1687 cells, 2 cores)."""
        return _Background(write_image, self.out / "overlays" / f"{result.frame.name}.png", overlay(result))

    def _write_tables(self, result: ImageResult, labels: _Background | None) -> dict[str, Any]:
        """Every output of `write` but the overlay; `labels`: the thread writing a single image's label image."""
        plane, src = result.frame.plane, result.frame.source
        base = _input_name(result)
        try:
            table = result_table(result)
            rows = _cell_lists(result, table)
            summary = _summary(result, table["area_px"].astype(np.float64))
            coco = self._coco_annotations(result) if self.coco else None
        finally:
            if labels is not None:
                labels.join()
        if labels is not None:
            labels.result()  # nothing of this result is recorded when its label image could not be written
        offset = 0
        if plane is not None:
            if self.labels == "png" and plane.count > 1:
                raise ConfigError(f"{src}: --labels png cannot hold a stack of {plane.count} planes",
                                  hint="use --labels tif (one label TIFF per stack)")
            asm = self._stacks.get(base)
            if asm is None:
                asm = self._stacks[base] = StackAssembler(plane.layout, *result.label_map.shape)
            offset = asm.add(plane, result.label_map, len(result))
            t, z = plane.coords.get("T", ""), plane.coords.get("Z", "")
            for r in rows:
                r[0], r[1], r[2], r[3], r[4] = base, plane.index, t, z, r[4] + offset
        if self.geojson or self.imagej_rois:
            windows = getattr(result.masks, "windows", None)
            self._outlines.setdefault(base, []).extend(cell_outlines(
                result.label_map, np.asarray(windows) if windows is not None else None, result.classes,
                result.scores, self.names, id_offset=offset, plane=plane))
        if plane is None or self._stacks[base].complete:
            self._finish_input(result)
        self._rows.writerows(rows)
        self._sw.writerow(summary)
        self._cells.flush()
        self._summary.flush()
        if coco is not None:
            self._images.append(coco[0])
            if coco[1]:
                self._anns_json.append(coco[1])
                self._n_anns += len(result)
        return summary

    def _finish_input(self, result: ImageResult) -> None:
        """The last plane of an input arrived: write its stack label TIFF and per-input exports."""
        frame = result.frame
        src, stem = frame.source, (_input_name(result) if frame.plane is not None else frame.name)
        asm = self._stacks.pop(stem, None)
        if asm is not None:
            lay = asm.layout
            labels, label_axes = asm.labels(), lay.plane_axes + "YX"
            if self.labels == "png":  # one plane (a series of a multi-image TIFF): checked in write()
                write_image(self.out / "labels" / f"{stem}.png", labels.reshape(labels.shape[-2:]))
            elif self.labels:
                write_label_tiff(self.out / "labels" / label_file_name(lay, stem), labels, label_axes, lay.kind,
                                 lay.size)
        elif self.ome_zarr:  # the single image's labels, only where OME-Zarr wants them
            labels, label_axes = label_image(result), "YX"
        outlines = self._outlines.pop(_input_name(result), [])
        if self.geojson:
            write_geojson(self.out / f"{stem}.geojson", outlines)
        if self.imagej_rois and outlines:
            write_imagej_rois(self.out / f"{stem}.rois.zip", outlines)
        if self.ome_zarr and asm is not None and asm.layout.kind == "ome-zarr":  # into the input's labels group
            write_labels_into(src, labels, label_axes, asm.layout.axes)
        elif self.ome_zarr:
            if asm is not None:
                image, axes = read_pixels(asm.layout).reshape(asm.layout.shape), asm.layout.axes
                size = asm.layout.size
            else:
                image = frame.image if frame.frame_index is not None else read_image_raw(src)
                axes = "YX" if image.ndim == 2 else "YXS"
                size = PhysicalSize(frame.pixel_size_um, frame.pixel_size_um)
            write_ome_zarr(self.out / f"{stem}.ome.zarr", image, axes, labels, label_axes, size)

    def _coco_annotations(self, result: ImageResult) -> tuple[dict[str, Any], str]:
        """The result's COCO image and its annotations as JSON text (json.dumps of the list, brackets off; "" for
        none), numbered after the ones recorded so far."""
        h, w = result.label_map.shape
        image_id = len(self._images) + 1
        image = {"id": image_id, "file_name": str(result.frame.source), "name": result.frame.name,
                 "height": h, "width": w,
                 **({"frame": result.frame.frame_index} if result.frame.frame_index is not None else {})}
        n = len(result)
        if n == 0:
            return image, ""
        packed = result.masks  # PackedMasks, or a NumPy twin with the same attributes
        data = np.asarray(packed.data).reshape(-1)
        offsets = np.asarray(packed.offsets).astype(np.int64)
        windows = np.asarray(packed.windows).astype(np.int64)
        counts = window_rles(data, offsets, windows, h, w)
        filled = np.concatenate(([0], np.cumsum(data, dtype=np.int64)))
        areas = (filled[offsets[1 : n + 1]] - filled[offsets[:n]]).tolist()
        boxes = result.boxes.astype(np.float64).tolist()
        classes, scores = result.classes.tolist(), result.scores.tolist()
        first = self._n_anns + 1
        anns = [{
            "id": first + i, "image_id": image_id, "category_id": int(classes[i]) + 1,
            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            "area": int(areas[i]), "score": round(float(scores[i]), 5), "iscrowd": 0,
            "segmentation": {"size": [h, w], "counts": counts[i]},
        } for i, (x1, y1, x2, y2) in enumerate(boxes)]
        return image, json.dumps(anns)[1:-1]

    def close(self) -> None:
        self._cells.close()
        self._summary.close()
        if self.coco:
            # json.dumps of {"images", "annotations", "categories", "info"}, the annotations dumped as they came
            parts = {
                "images": json.dumps(self._images),
                "annotations": "[" + ", ".join(self._anns_json) + "]",
                "categories": json.dumps([{"id": k + 1, "name": v} for k, v in sorted(self.names.items())]),
                "info": json.dumps({"description": "asfyolo-rt predictions (RLE masks at original resolution)"}),
            }
            doc = "{" + ", ".join(f'"{k}": {v}' for k, v in parts.items()) + "}"
            atomic_write_bytes(self.out / "predictions.coco.json", doc.encode())
