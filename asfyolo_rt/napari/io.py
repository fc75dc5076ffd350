"""napari reader and writer for the tool's own outputs: instance label images beside a cells.csv.

`asfyolo-rt predict --out RUN` writes RUN/labels/<image>.tif and RUN/cells.csv (one row per cell, its
`image` column naming the label file's stem). The reader opens such a label image as a Labels layer whose
features table is the file's rows of cells.csv (found beside the label file, or one folder up when the
label file lies in a `labels/` folder). The writer exports a Labels layer the same way: <path>.tif
(uint16, uint32 past 65,535 ids) and a cells.csv beside it, measured on the label image, with each
cell's score and class taken from the layer's features where it has them. Nothing is overwritten.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt.atomic import atomic_write_bytes
from asfyolo_rt.errors import DataError
from asfyolo_rt.infer.writers import CELL_FIELDS
from asfyolo_rt.napari.measure import measure_labels

LABEL_SUFFIXES = (".tif", ".tiff")
LayerData = tuple[Any, dict[str, Any], str]


def cells_csv_for(label_path: Path) -> Path | None:
    """The cells.csv that describes `label_path`, or None."""
    for folder in (label_path.parent, label_path.parent.parent if label_path.parent.name == "labels" else None):
        if folder is not None and (folder / "cells.csv").is_file():
            return folder / "cells.csv"
    return None


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 reader hook: claims label TIFFs with a cells.csv of this tool beside them, nothing else."""
    if isinstance(path, list):
        return None
    p = Path(path)
    if p.suffix.lower() not in LABEL_SUFFIXES or not p.is_file():
        return None
    table = cells_csv_for(p)
    if table is None:
        return None
    with open(table, newline="") as f:
        if "equivalent_diameter_px" not in f.readline():  # another tool's cells.csv
            return None
    return read_labels


def read_labels(path: str | list[str]) -> list[LayerData]:
    """One Labels layer: the label image and its cells.csv rows as features ('index' = label id)."""
    import tifffile

    p = Path(path if isinstance(path, str) else path[0])
    try:
        labels = tifffile.imread(p)
    except Exception as exc:  # tifffile raises many types
        raise DataError(f"{p}: unreadable label TIFF ({exc})") from exc
    if labels.dtype.kind not in "iu":
        raise DataError(f"{p}: label images hold integer ids, this one is {labels.dtype}")
    table = cells_csv_for(p)
    features = read_cells_csv(table, p.stem) if table is not None else {}
    meta: dict[str, Any] = {"name": p.stem, "metadata": {"source": str(p), "cells_csv": str(table)}}
    if features:
        meta["features"] = features
    return [(labels, meta, "labels")]


def read_cells_csv(path: Path, image: str) -> dict[str, np.ndarray]:
    """The rows of `path` for one image, as numeric columns; 'id' becomes napari's 'index'."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("image") == image]
    if not rows:
        return {}
    out: dict[str, np.ndarray] = {}
    for key in rows[0]:
        if key == "image":
            continue
        values = [r[key] for r in rows]
        try:
            col = np.array([float(v) if v != "" else math.nan for v in values])
        except ValueError:
            out[key] = np.array(values, dtype=object)
            continue
        out["index" if key == "id" else key] = col.astype(np.int64) if np.all(col == np.round(col)) else col
    return out


# the columns of `asfyolo-rt predict`'s cells.csv (t and z stay empty: a napari layer has planes, not axes)
EXPORT_FIELDS = CELL_FIELDS


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: <path>.tif + cells.csv beside it. Returns the written paths."""
    target = Path(path)
    if target.suffix.lower() not in LABEL_SUFFIXES:
        target = target.with_name(target.name + ".tif")
    table = target.parent / "cells.csv"
    for p in (target, table):
        if p.exists():
            raise DataError(f"{p} already exists; nothing was written", hint="choose another file name or folder")
    labels = np.asarray(data)
    if labels.ndim < 2 or labels.dtype.kind not in "iub":
        raise DataError(f"a Labels layer of shape {labels.shape} and dtype {labels.dtype} is not a label image")
    if labels.size and labels.min() < 0:
        raise DataError("the Labels layer holds negative ids; label images hold 0 (background) and positive ids")
    rows = export_rows(labels, target.stem, meta.get("features"))
    import tifffile

    buf = io.BytesIO()
    top = int(labels.max()) if labels.size else 0
    tifffile.imwrite(buf, labels.astype(np.uint16 if top <= 65535 else np.uint32), photometric="minisblack")
    text = io.StringIO()
    w = csv.DictWriter(text, EXPORT_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(target, buf.getvalue())
    atomic_write_bytes(table, text.getvalue().encode())
    return [str(target), str(table)]


def export_rows(labels: np.ndarray, image: str, features: Any) -> list[dict[str, Any]]:
    """cells.csv rows of every cell of every plane; score and class from `features` (by 'index') if present."""
    extra: dict[int, tuple[Any, Any]] = {}
    if features is not None and len(features) and "index" in features:
        idx = np.asarray(features["index"]).astype(np.int64)
        score = np.asarray(features["score"]) if "score" in features else np.full(idx.shape, "")
        cls = np.asarray(features["class"]) if "class" in features else np.zeros(idx.shape, np.int64)
        extra = {int(i): (s, c) for i, s, c in zip(idx, score, cls)}
    flat = labels.reshape(-1, *labels.shape[-2:])
    rows = []
    for k, plane in enumerate(flat):
        t = measure_labels(plane)
        for j, cid in enumerate(t.ids.tolist()):
            s, c = extra.get(int(cid), ("", 0))
            rows.append({
                "image": image, "id": cid, "plane": k, "class": int(c),
                "score": round(float(s), 5) if s != "" and not _isnan(s) else "",
                **{n: round(float(v), 2) for n, v in zip(("x1", "y1", "x2", "y2"), t.box[j])},
                "area_px": int(t.area_px[j]), "centroid_x": round(float(t.centroid_x[j]), 2),
                "centroid_y": round(float(t.centroid_y[j]), 2),
                "equivalent_diameter_px": round(float(t.equivalent_diameter_px[j]), 3),
            })
    return rows


def _isnan(v: Any) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False
