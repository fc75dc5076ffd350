"""OME-Zarr images as prediction inputs (ome-zarr-py): level 0 of the first multiscale image.

NGFF axes (t, c, z, y, x) become the tifffile-style upper-case axes of an `asfyolo_rt.data.layout.StackLayout`,
as `asfyolo_rt.data.stacks` gives TIFF files; the physical pixel sizes come from the level's scale transform
where the axes' unit is a length. `--ome-zarr` then writes the labels into this image's own `labels` group
(asfyolo_rt.infer.exports.write_labels_into).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt.data.layout import PhysicalSize, StackLayout, layout_of
from asfyolo_rt.errors import ConfigError, DataError

_UNIT_UM = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "meter": 1e6, "centimeter": 1e4}


def is_ome_zarr(path: Path) -> bool:
    return path.is_dir() and path.suffix.lower() == ".zarr"


def read_ome_zarr(path: Path) -> tuple[np.ndarray, str, PhysicalSize]:
    """(level-0 pixels, upper-case axes e.g. "CZYX", physical size). Raises DataError naming the folder."""
    data, axes, size = _open_level0(path)
    return np.asarray(data), axes, size


def _open_level0(path: Path) -> tuple[Any, str, PhysicalSize]:
    """(level 0 as a lazy array: shape and dtype known, no pixel read yet, axes, physical size)."""
    try:
        from ome_zarr.io import parse_url
        from ome_zarr.reader import Multiscales, Reader
    except ImportError as exc:
        raise ConfigError(f"{path}: reading OME-Zarr needs ome-zarr", hint="pip install 'asfyolo-rt[bioimageio]'") from exc
    loc = parse_url(str(path))
    if loc is None:
        raise DataError(f"{path}: not an OME-Zarr image (no zarr group found)")
    try:
        node = next(n for n in Reader(loc)() if any(isinstance(s, Multiscales) for s in n.specs))
    except StopIteration:
        raise DataError(f"{path}: no multiscale image in this OME-Zarr (a plate or a labels-only group?)",
                        hint="pass the image group itself, e.g. plate.zarr/A/1/0") from None
    axes_meta = node.metadata.get("axes") or []
    names = [a["name"] if isinstance(a, dict) else str(a) for a in axes_meta]
    data = node.data[0]
    if len(names) != data.ndim or not all(n in "tczyx" for n in names):
        raise DataError(f"{path}: OME-Zarr axes {names} for data of shape {data.shape}; expected t, c, z, y, x")
    scale = {}
    transforms = (node.metadata.get("coordinateTransformations") or [[]])[0]
    for t in transforms:
        if t.get("type") == "scale":
            scale = dict(zip(names, t["scale"]))
    units = {a["name"]: a.get("unit") for a in axes_meta if isinstance(a, dict)}

    def um(axis: str) -> float | None:
        factor = _UNIT_UM.get(str(units.get(axis) or ""))
        return float(scale[axis]) * factor if factor and axis in scale else None

    return data, "".join(names).upper(), PhysicalSize(um("x"), um("y"), um("z"))


def zarr_layout(path: Path, channel: int | None = None) -> StackLayout:
    """The layout of an OME-Zarr image from its metadata: no pixel is read (`read_pixels` reads them once)."""
    data, axes, size = _open_level0(path)
    return layout_of(path, "ome-zarr", axes, tuple(int(n) for n in data.shape), size, channel)
