"""Outputs written piece by piece: the OME-Zarr label image with its pyramid, the cell table (CSV, Parquet).

The label image is ``<out>/<name>.ome.zarr/labels/cells`` (OME-NGFF 0.4 image-label, zarr format 2, uint32,
chunks of `chunk` x `chunk`): level 0 is written region by region (`asfyolo_rt.large.paint`), each lower level
(every second pixel of the one above, as label pyramids are made: ids are never averaged) region by region
from the level above. The image group records the source, its level and the run's settings; it holds no copy
of the pixels (open the source image beside it).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt.infer.writers import CELL_FIELDS

LABELS = "labels/cells"
TABLE_ROWS = 100_000  # rows per CSV write and Parquet row group


def pyramid_shapes(shape: tuple[int, int], chunk: int) -> list[tuple[int, int]]:
    """(H, W) of every level: halved until the larger side fits one chunk."""
    out = [shape]
    while max(out[-1]) > chunk:
        h, w = out[-1]
        out.append((math.ceil(h / 2), math.ceil(w / 2)))
    return out


def create_labels(root: Path, shape: tuple[int, int], chunk: int, pixel_size_um: float | None,
                  attrs: dict[str, Any]) -> list[str]:
    """The OME-Zarr group and its empty label arrays (every level); returns the arrays' paths. Kept as they are
    when they exist with this shape (a resumed run)."""
    import zarr

    shapes = pyramid_shapes(shape, chunk)
    paths = [str(root / LABELS / str(k)) for k in range(len(shapes))]
    if all(Path(p, ".zarray").is_file() for p in paths):
        return paths
    group = zarr.open_group(str(root), mode="a", zarr_format=2)
    group.attrs.update({"asfyolo_rt": attrs})
    group.require_group("labels").attrs.update({"labels": ["cells"]})
    cells = group.require_group(LABELS)
    px = pixel_size_um or 1.0
    axes: list[dict[str, Any]] = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    if pixel_size_um:
        for a in axes:
            a["unit"] = "micrometer"
    cells.attrs.update({
        "multiscales": [{"version": "0.4", "name": "cells", "axes": axes, "datasets": [
            {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [px * 2 ** k, px * 2 ** k]}]}
            for k in range(len(shapes))]}],
        "image-label": {"version": "0.4", "source": {"image": "../../"}},
    })
    for k, s in enumerate(shapes):
        cells.create_array(str(k), shape=s, chunks=(min(chunk, s[0]), min(chunk, s[1])), dtype="uint32",
                           fill_value=0, overwrite=True)
    return paths


def downsample_region(src: str, dst: str, region: tuple[int, int, int, int]) -> None:
    """Level k+1's region (x0, y0, x1, y1) from level k: every second pixel (ids are never averaged)."""
    import zarr

    x0, y0, x1, y1 = region
    a = zarr.open_array(src, mode="r")
    b = zarr.open_array(dst, mode="r+")
    b[y0:y1, x0:x1] = np.asarray(a[2 * y0: 2 * y1: 2, 2 * x0: 2 * x1: 2])


def table_columns(name: str, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, count: np.ndarray,
                  mean_x: np.ndarray, mean_y: np.ndarray) -> dict[str, np.ndarray]:
    """The cells.csv columns (`CELL_FIELDS`) as arrays; mean_x/y: centroids (NaN where nothing is visible)."""
    n = scores.shape[0]
    return {"image": np.full(n, name, object), "plane": np.full(n, "", object), "t": np.full(n, "", object),
            "z": np.full(n, "", object), "id": np.arange(1, n + 1, dtype=np.int64), "class": classes.astype(np.int64),
            "score": scores.astype(np.float32), "x1": boxes[:, 0], "y1": boxes[:, 1], "x2": boxes[:, 2],
            "y2": boxes[:, 3], "area_px": count.astype(np.int64), "centroid_x": mean_x, "centroid_y": mean_y,
            "equivalent_diameter_px": 2 * np.sqrt(count / math.pi)}


def _csv_rows(cols: dict[str, np.ndarray], lo: int, hi: int) -> Iterator[list[Any]]:
    """Rows lo..hi-1 formatted as `asfyolo_rt.infer.writers.cell_rows` formats predict's cells.csv."""
    for i in range(lo, hi):
        a = int(cols["area_px"][i])
        yield [cols["image"][i], "", "", "", int(cols["id"][i]), int(cols["class"][i]),
               round(float(cols["score"][i]), 5), *(round(float(cols[k][i]), 2) for k in ("x1", "y1", "x2", "y2")),
               a, round(float(cols["centroid_x"][i]), 2) if a else "", round(float(cols["centroid_y"][i]), 2) if a else "",
               round(float(cols["equivalent_diameter_px"][i]), 3)]


def write_tables(cols: dict[str, np.ndarray], csv_path: Path, parquet_path: Path | None) -> None:
    """cells.csv (and cells.parquet) written TABLE_ROWS rows at a time, each to a temporary name renamed at the
    end (a killed run leaves no half table behind the final name)."""
    n = cols["id"].shape[0]
    tmp = csv_path.with_name(csv_path.name + ".part")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CELL_FIELDS)
        for lo in range(0, n, TABLE_ROWS):
            w.writerows(_csv_rows(cols, lo, min(n, lo + TABLE_ROWS)))
    tmp.replace(csv_path)
    if parquet_path is None:
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    keep = [k for k in CELL_FIELDS if k not in ("plane", "t", "z")]
    ptmp = parquet_path.with_name(parquet_path.name + ".part")
    schema = pa.schema([(k, pa.string() if k == "image" else pa.from_numpy_dtype(cols[k].dtype)) for k in keep])
    with pq.ParquetWriter(str(ptmp), schema) as pw:
        for lo in range(0, max(n, 1), TABLE_ROWS):
            hi = min(n, lo + TABLE_ROWS)
            pw.write_table(pa.table({k: pa.array(cols[k][lo:hi].tolist() if k == "image" else cols[k][lo:hi])
                                     for k in keep}, schema=schema))
    ptmp.replace(parquet_path)


def outline_block(work: Path, k: int, ids: np.ndarray, labels: str, names: dict[int, str]) -> dict[str, Any]:
    """The GeoJSON features (QuPath detections) of the cells block k found (`ids`: their final ids, 0 for
    dropped ones), traced on the written label image, recorded as one JSON list."""
    import json

    import zarr

    from asfyolo_rt.atomic import atomic_write_bytes
    from asfyolo_rt.infer.exports import CellOutline, geojson_document
    from asfyolo_rt.infer.polygons import mask_outline
    from asfyolo_rt.large.records import block_file, outline_file, read_npz

    rec = read_npz(block_file(work, k), ("windows", "scores", "classes"))
    sel = np.nonzero(ids)[0]
    outlines: list[CellOutline] = []
    if sel.size:
        win = rec["windows"][sel].astype(np.int64)
        x0, y0 = int(win[:, 0].min()), int(win[:, 1].min())
        x1, y1 = int((win[:, 0] + win[:, 2]).max()), int((win[:, 1] + win[:, 3]).max())
        lab = np.asarray(zarr.open_array(labels, mode="r")[y0:y1, x0:x1])
        for i, (wx, wy, ww, wh) in zip(sel, win):
            mask = lab[wy - y0: wy - y0 + wh, wx - x0: wx - x0 + ww] == ids[i]
            poly = mask_outline(mask, int(wx), int(wy))
            if poly is not None:
                c = int(rec["classes"][i])
                outlines.append(CellOutline(int(ids[i]), c, names.get(c, str(c)), float(rec["scores"][i]),
                                            int(mask.sum()), poly))
    outlines.sort(key=lambda o: o.id)
    atomic_write_bytes(outline_file(work, k), json.dumps(geojson_document(outlines)["features"]).encode())
    return {"block": k, "cells": len(outlines)}


def write_geojson_parts(parts: list[Path], path: Path) -> None:
    """One FeatureCollection from the blocks' feature lists, streamed (never all features in memory at once)."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w") as f:
        f.write('{"type": "FeatureCollection", "features": [')
        first = True
        for p in parts:
            body = p.read_text().strip()[1:-1].strip()
            if body:
                f.write(("" if first else ", ") + body)
                first = False
        f.write("]}")
    tmp.replace(path)
