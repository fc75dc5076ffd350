"""Outputs for the tools microscopists count and measure cells in: QuPath, Fiji, napari (OME-Zarr).

- GeoJSON FeatureCollection (`<name>.geojson`): one Polygon feature per cell with QuPath's properties
  (`objectType: "detection"`, `classification.name` = the class, `measurements` with the score, id and
  area); QuPath's *File > Import objects from file* makes them detections. A stack plane is recorded
  as QuPath's `geometry.plane` ({c: -1, z, t}).
- ImageJ ROI zip (`<name>.rois.zip`, roifile): one polygon ROI per cell named `cell-<id>` (stack planes:
  `cell-<id>-t<t>-z<z>`), with the hyperstack position (z/t) or the stack slice of a plain stack; Fiji's
  ROI Manager opens it.
- OME-Zarr (`<name>.ome.zarr`, ome-zarr-py, NGFF 0.4 on Zarr v2): the input's pixels as
  the image and the label image as `labels/cells`, physical sizes as the scale transform; napari opens
  it with napari-ome-zarr. An OME-Zarr input gets the labels into its own `labels` group instead.

Outlines run along pixel edges (asfyolo_rt.infer.polygons): polygon area = visible mask area.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt.atomic import atomic_write_bytes
from asfyolo_rt.data.stacks import PhysicalSize, StackPlane
from asfyolo_rt.errors import ConfigError, DataError
from asfyolo_rt.infer.polygons import mask_outline


@dataclass(frozen=True)
class CellOutline:
    """One cell's outline: id (its value in the label image), class, score, pixel count, polygon (k, 2)
    x/y image pixels, and the stack plane it lies in (None for a 2-D image)."""

    id: int
    class_id: int
    class_name: str
    score: float
    area_px: int
    polygon: np.ndarray
    plane: StackPlane | None = None


def cell_outlines(label_map: np.ndarray, windows: np.ndarray | None, classes: np.ndarray, scores: np.ndarray,
                  names: dict[int, str], *, id_offset: int = 0, plane: StackPlane | None = None) -> list[CellOutline]:
    """Outlines of the cells 1..n of a (H, W) label map (n = len(scores)); windows (n, 4) x0, y0, w, h bound
    each cell (None: search the whole map). Cells with no visible pixel are left out."""
    out = []
    for i in range(len(scores)):
        if windows is not None:
            x0, y0, w, h = (int(v) for v in windows[i])
        else:
            x0, y0, h, w = 0, 0, *label_map.shape
        mask = label_map[y0:y0 + h, x0:x0 + w] == i + 1
        poly = mask_outline(mask, x0, y0)
        if poly is None:
            continue
        c = int(classes[i])
        out.append(CellOutline(i + 1 + id_offset, c, names.get(c, str(c)), float(scores[i]), int(mask.sum()), poly,
                               plane))
    return out


def _colour(class_id: int) -> list[int]:
    rng = np.random.default_rng(1000 + class_id)
    return [int(v) for v in rng.integers(40, 256, 3)]


def geojson_document(outlines: list[CellOutline]) -> dict[str, Any]:
    """A GeoJSON FeatureCollection QuPath imports as detections (module docstring)."""
    features = []
    for o in outlines:
        ring = [[float(x), float(y)] for x, y in o.polygon] + [[float(o.polygon[0, 0]), float(o.polygon[0, 1])]]
        geometry: dict[str, Any] = {"type": "Polygon", "coordinates": [ring]}
        if o.plane is not None:
            geometry["plane"] = {"c": -1, "z": o.plane.coords.get("Z", o.plane.index if "T" not in o.plane.coords
                                                                   else 0), "t": o.plane.coords.get("T", 0)}
        features.append({
            "type": "Feature", "id": f"cell-{o.id}", "geometry": geometry,
            "properties": {
                "objectType": "detection", "name": f"cell {o.id}",
                "classification": {"name": o.class_name, "color": _colour(o.class_id)},
                "isLocked": False,
                "measurements": {"id": o.id, "score": round(o.score, 5), "area_px": o.area_px,
                                 **({"plane": o.plane.index} if o.plane is not None else {})},
            },
        })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: Path, outlines: list[CellOutline]) -> Path:
    atomic_write_bytes(path, json.dumps(geojson_document(outlines)).encode())
    return path


def _roi_name(o: CellOutline) -> str:
    if o.plane is None:
        return f"cell-{o.id}"
    return f"cell-{o.id}" + "".join(f"-{a.lower()}{v}" for a, v in o.plane.coords.items())


def write_imagej_rois(path: Path, outlines: list[CellOutline]) -> Path:
    """An ImageJ ROI zip (roifile), one polygon per cell (module docstring); integer corner coordinates."""
    try:
        from roifile import ROI_TYPE, ImagejRoi, roiwrite
    except ImportError as exc:
        raise ConfigError("--imagej-rois needs roifile", hint="pip install 'asfyolo-rt[bioimageio]'") from exc
    if not outlines:
        raise DataError(f"{path.name}: no cells to write as ImageJ ROIs")
    rois = []
    for o in outlines:
        kw: dict[str, int] = {}
        if o.plane is not None:
            c = o.plane.coords
            if set(c) <= {"T", "Z"}:
                kw = {"z": c.get("Z", 0), "t": c.get("T", 0), "c": 0}  # hyperstack position (roifile: 0-based)
            else:
                kw = {"position": o.plane.index}  # slice of a plain stack
        roi = ImagejRoi.frompoints(o.polygon.astype(np.int32), name=_roi_name(o), **kw)
        roi.roitype = ROI_TYPE.POLYGON
        rois.append(roi)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        staged = Path(tmp) / path.name
        roiwrite(staged, rois)
        atomic_write_bytes(path, staged.read_bytes())
    return path


NGFF_ORDER = "tczyx"


def to_ngff(data: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """Reorder tifffile-style axes (e.g. "ZCYX", "IYX", "YXS") to NGFF's t, c, z, y, x order (lower case).
    S (colour samples) becomes c; a stack axis other than T/Z/C (plain multi-page "I", "Q") becomes z,
    as Fiji opens such a file as z-slices."""
    axes = axes.upper().replace("S", "C")
    for other in "IQ":
        axes = axes.replace(other, "Z")
    if any(a not in "TCZYX" for a in axes) or len(set(axes)) != len(axes):
        raise DataError(f"axes {axes!r} cannot be written as OME-Zarr (t, c, z, y, x)")
    order = [axes.index(a) for a in NGFF_ORDER.upper() if a in axes]
    return np.transpose(data, order), "".join(a.lower() for a in NGFF_ORDER.upper() if a in axes)


def write_ome_zarr(path: Path, image: np.ndarray, image_axes: str, labels: np.ndarray, label_axes: str,
                   size: PhysicalSize, *, label_name: str = "cells") -> Path:
    """Write image + labels/<label_name> as one OME-Zarr (single resolution level), atomically (a temporary
    folder renamed into place). The labels get the image's axes, with a channel axis of size 1 if the image
    has one."""
    try:
        import zarr
        from ome_zarr.format import FormatV04
        from ome_zarr.writer import write_image, write_labels
    except ImportError as exc:
        raise ConfigError("--ome-zarr needs ome-zarr", hint="pip install 'asfyolo-rt[bioimageio]'") from exc
    if path.exists():
        raise ConfigError(f"{path} already exists", hint="choose another --out; nothing was overwritten")
    img, img_axes = to_ngff(image, image_axes)
    lab, lab_axes = to_ngff(labels, label_axes)
    if "c" in img_axes and "c" not in lab_axes:  # same axes otherwise: c goes where it stands in the image
        lab, lab_axes = np.expand_dims(lab, img_axes.index("c")), img_axes
    if lab_axes != img_axes:
        raise DataError(f"labels axes {lab_axes!r} differ from the image's {img_axes!r}")
    scale = {a: v for a, v in (("z", size.z), ("y", size.y or size.x), ("x", size.x)) if v and a in img_axes}
    kw: dict[str, Any] = {"scale_factors": [], "axes": img_axes, "fmt": FormatV04()}
    if scale:
        kw.update(scale=scale, axes_units={a: "micrometer" for a in scale})
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=2)  # NGFF 0.4: what napari-ome-zarr and Fiji read
        write_image(img, root, **kw)
        write_labels(lab, root, name=label_name, scaler=None, label_metadata={"source": {"image": "../../"}}, **kw)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def write_labels_into(path: Path, labels: np.ndarray, label_axes: str, image_axes: str, *,
                      label_name: str = "cells") -> Path:
    """Add labels/<label_name> to an existing OME-Zarr image (its own NGFF version, its scale transform).
    Refused if that label image exists. Not atomic: ome-zarr-py writes into the group in place."""
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.writer import write_labels

    loc = parse_url(str(path), mode="a")
    if loc is None:
        raise DataError(f"{path}: not an OME-Zarr image")
    root = zarr.open_group(str(path), mode="r+")
    existing = root.get("labels")
    if isinstance(existing, zarr.Group) and label_name in existing:
        raise ConfigError(f"{path}/labels/{label_name} already exists",
                          hint="move it away first; nothing was overwritten")
    attrs: dict[str, Any] = dict(root.attrs)
    multiscales: dict[str, Any] = (attrs.get("ome") or attrs).get("multiscales", [{}])[0]
    axes = "".join(a["name"] if isinstance(a, dict) else str(a) for a in multiscales.get("axes", []))
    level0 = multiscales.get("datasets", [{}])[0].get("coordinateTransformations")
    lab, lab_axes = to_ngff(labels, label_axes)
    img_axes = to_ngff(np.zeros((1,) * len(image_axes)), image_axes)[1]
    if "c" in img_axes and "c" not in lab_axes:
        lab, lab_axes = np.expand_dims(lab, img_axes.index("c")), img_axes
    for i, a in enumerate(axes):  # put back the image's size-1 axes
        if a not in lab_axes:
            lab, lab_axes = np.expand_dims(lab, i), lab_axes[:i] + a + lab_axes[i:]
    if lab_axes != axes:
        raise DataError(f"{path}: labels axes {lab_axes!r} do not match the image's {axes!r}")
    scale = next((t["scale"] for t in level0 or [] if t.get("type") == "scale"), None)
    units = {a["name"]: a["unit"] for a in multiscales.get("axes", []) if isinstance(a, dict) and a.get("unit")}
    kw: dict[str, Any] = {}
    if scale:
        kw = {"scale": {a: float(v) for a, v in zip(axes, scale) if a in "zyx"}}
        if units:
            kw["axes_units"] = {a: u for a, u in units.items() if a in kw["scale"]}
    write_labels(lab, root, name=label_name, scaler=None, scale_factors=[], fmt=loc.fmt, axes=axes,
                 label_metadata={"source": {"image": "../../"}}, **kw)
    return path
