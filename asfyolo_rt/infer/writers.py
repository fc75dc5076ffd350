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
from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt.atomic import atomic_write_bytes
from asfyolo_rt.data.io import read_image_raw, write_image
from asfyolo_rt.data.rle import counts_to_string
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


def overlay(result: ImageResult, alpha: float = 0.4) -> np.ndarray:
    """(H, W, 3) uint8 RGB: cells tinted with distinct colours, outlines in the cell colour, white boxes off."""
    img = result.frame.image.copy()
    lm = result.label_map
    if len(result) == 0:
        return img
    colours = _palette(len(result))
    inside = lm > 0
    tint = colours[lm]
    img[inside] = (img[inside] * (1 - alpha) + tint[inside] * alpha).astype(np.uint8)
    edge = np.zeros_like(inside)
    edge[:, 1:] |= lm[:, 1:] != lm[:, :-1]
    edge[1:, :] |= lm[1:, :] != lm[:-1, :]
    edge &= inside | np.roll(inside, 1, 0) | np.roll(inside, 1, 1)
    border_ids = np.maximum(lm, np.maximum(np.roll(lm, 1, 0), np.roll(lm, 1, 1)))
    img[edge] = colours[border_ids[edge]]
    return img


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
    temporaries.
    """
    n = len(scores)
    t = np.zeros(n, CELL_DTYPE)
    t["id"] = np.arange(1, n + 1)
    t["class"], t["score"] = classes, scores
    for k, name in enumerate(("x1", "y1", "x2", "y2")):
        t[name] = boxes[:, k] if n else []
    for i in range(n):
        x0, y0, w, h = (int(v) for v in windows[i]) if windows is not None else (0, 0, labels.shape[1],
                                                                                  labels.shape[0])
        ys, xs = np.nonzero(labels[y0:y0 + h, x0:x0 + w] == i + 1)
        a = ys.size
        t["area_px"][i] = a
        t["centroid_x"][i] = xs.mean() + x0 + 0.5 if a else math.nan
        t["centroid_y"][i] = ys.mean() + y0 + 0.5 if a else math.nan
    t["equivalent_diameter_px"] = 2 * np.sqrt(t["area_px"] / math.pi)
    return t


def result_table(result: ImageResult) -> np.ndarray:
    """`cell_table` of a prediction result."""
    windows = getattr(result.masks, "windows", None)
    win = windows.cpu().numpy().astype(np.int64) if windows is not None else None
    return cell_table(result.label_map, result.boxes, result.scores, result.classes, win)


def cell_rows(result: ImageResult, table: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One dict per detected cell (fields CELL_FIELDS): `result_table` (or `table`, its result) as cells.csv rows."""
    t = result_table(result) if table is None else table
    return [{
        "image": result.frame.name, "id": i + 1, "class": int(result.classes[i]),
        "score": round(float(result.scores[i]), 5),
        **{k: round(float(v), 2) for k, v in zip(("x1", "y1", "x2", "y2"), result.boxes[i])},
        "area_px": int(t["area_px"][i]),
        "centroid_x": round(float(t["centroid_x"][i]), 2) if t["area_px"][i] else "",
        "centroid_y": round(float(t["centroid_y"][i]), 2) if t["area_px"][i] else "",
        "equivalent_diameter_px": round(float(t["equivalent_diameter_px"][i]), 3),
    } for i in range(len(result))]


def summary_row(result: ImageResult, rows: list[dict[str, Any]]) -> dict[str, Any]:
    h, w = result.label_map.shape
    areas = np.array([r["area_px"] for r in rows], dtype=np.float64)
    return {
        "image": result.frame.name, "width": w, "height": h, "cells": len(rows),
        "mean_area_px": round(float(areas.mean()), 2) if len(areas) else 0,
        "median_area_px": round(float(np.median(areas)), 2) if len(areas) else 0,
        "covered_fraction": round(float((result.label_map > 0).mean()), 5),
    }


def window_rle(mask: np.ndarray, x0: int, y0: int, height: int, width: int) -> dict[str, Any]:
    """COCO compressed RLE of a full (height, width) mask that is zero outside the window at (x0, y0).

    mask: (h, w) box-local {0, 1}. Cost O(height * w), not O(height * width).
    """
    h, w = mask.shape
    cols = np.zeros((w, height), np.uint8)  # column-major: one row per image column
    if h and w:
        cols[:, y0 : y0 + h] = mask.T
    seq = cols.ravel()
    change = np.flatnonzero(np.diff(seq)) + 1
    bounds = np.concatenate(([0], change, [seq.size]))
    runs = np.diff(bounds).tolist()
    if seq.size and seq[0] == 1:
        runs.insert(0, 0)
    if not runs:
        runs = [0]
    runs[0] += x0 * height
    tail = (width - x0 - w) * height
    if len(runs) % 2 == 1:  # ends with a run of zeros
        runs[-1] += tail
    elif tail:
        runs.append(tail)
    return {"size": [height, width], "counts": counts_to_string(runs)}


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
        self._cw = csv.DictWriter(self._cells, CELL_FIELDS)
        self._sw = csv.DictWriter(self._summary, SUMMARY_FIELDS)
        self._cw.writeheader()
        self._sw.writeheader()
        self._images: list[dict[str, Any]] = []
        self._anns: list[dict[str, Any]] = []

    def write(self, result: ImageResult) -> dict[str, Any]:
        name, plane, src = result.frame.name, result.frame.plane, result.frame.source
        base = _input_name(result)
        if self.overlays:
            write_image(self.out / "overlays" / f"{name}.png", overlay(result))
        rows = cell_rows(result)
        offset = 0
        if plane is not None:
            if self.labels == "png" and plane.count > 1:
                raise ConfigError(f"{src}: --labels png cannot hold a stack of {plane.count} planes",
                                  hint="use --labels tif (one label TIFF per stack)")
            asm = self._stacks.get(base)
            if asm is None:
                asm = self._stacks[base] = StackAssembler(plane.layout, *result.label_map.shape)
            offset = asm.add(plane, result.label_map, len(result))
            for r in rows:
                r.update(image=base, id=r["id"] + offset, plane=plane.index, t=plane.coords.get("T", ""),
                         z=plane.coords.get("Z", ""))
        elif self.labels:
            write_label_image(result, self.out / "labels" / f"{name}.{self.labels}")
        if self.geojson or self.imagej_rois:
            windows = getattr(result.masks, "windows", None)
            self._outlines.setdefault(base, []).extend(cell_outlines(
                result.label_map, windows.cpu().numpy() if windows is not None else None, result.classes,
                result.scores, self.names, id_offset=offset, plane=plane))
        if plane is None or self._stacks[base].complete:
            self._finish_input(result)
        self._cw.writerows(rows)
        summary = summary_row(result, rows)
        self._sw.writerow(summary)
        self._cells.flush()
        self._summary.flush()
        if self.coco:
            self._add_coco(result)
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
        else:
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

    def _add_coco(self, result: ImageResult) -> None:
        h, w = result.label_map.shape
        image_id = len(self._images) + 1
        self._images.append({"id": image_id, "file_name": str(result.frame.source), "name": result.frame.name,
                             "height": h, "width": w,
                             **({"frame": result.frame.frame_index} if result.frame.frame_index is not None else {})})
        packed = result.masks
        for i in range(len(result)):
            x0, y0, ww, hh = (int(v) for v in packed.windows[i].tolist())
            local = packed.mask(i).cpu().numpy()
            x1, y1, x2, y2 = (float(v) for v in result.boxes[i])
            self._anns.append({
                "id": len(self._anns) + 1, "image_id": image_id, "category_id": int(result.classes[i]) + 1,
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "area": int(local.sum()), "score": round(float(result.scores[i]), 5), "iscrowd": 0,
                "segmentation": window_rle(local, x0, y0, h, w),
            })

    def close(self) -> None:
        self._cells.close()
        self._summary.close()
        if self.coco:
            doc = {
                "images": self._images,
                "annotations": self._anns,
                "categories": [{"id": k + 1, "name": v} for k, v in sorted(self.names.items())],
                "info": {"description": "asfyolo-rt predictions (RLE masks at original resolution)"},
            }
            atomic_write_bytes(self.out / "predictions.coco.json", json.dumps(doc).encode())
