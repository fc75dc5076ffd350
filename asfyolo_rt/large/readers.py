"""Images read by window: OME-Zarr (NGFF v0.4 and v0.5, any resolution level), TIFF (pyramidal, BigTIFF,
OME and ImageJ, through tifffile's zarr store), whole-slide files (tiffslide) and zarr arrays from Python.

`ImageSpec` names an image in plain picklable values (a Dask task carries it to a worker); `ImageSpec.open()`
gives a `LargeImage`, whose `read(y0, y1, x0, x1)` returns that window of the chosen level and plane as
(h, w) (grey) or (h, w, 3) (RGB) in the file's dtype: nothing larger than a window is ever read.

The resolution level: `--level` where given, else the level whose pixel size is nearest (in ratio) to the
model's training pixel size (`ModelInfo.pixel_size_um`), both read from metadata; without both sizes,
level 0. A pixel size is never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt.errors import ConfigError, DataError

SLIDE_SUFFIXES = (".svs", ".ndpi", ".scn", ".bif", ".vms", ".vmu", ".qptiff")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
_UNIT_UM = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "meter": 1e6, "centimeter": 1e4}


@dataclass(frozen=True)
class ImageSpec:
    """An image to be read by window, in picklable values. source: a path (OME-Zarr folder, TIFF, slide) or an
    array-like (a zarr array); level: pyramid level (None: chosen from `model_pixel_um`); channel: the plane
    of a multichannel image; axes: the axes of an array source ("YX", "YXC", "CYX"); pixel_size_um: overrides
    the metadata's (level 0)."""

    source: Any
    level: int | None = None
    channel: int | None = None
    axes: str | None = None
    pixel_size_um: float | None = None
    model_pixel_um: float | None = None

    @property
    def name(self) -> str:
        if isinstance(self.source, str | Path):
            p = Path(self.source)
            return p.name.split(".")[0] or p.name
        return "array"

    def open(self) -> LargeImage:
        src = self.source
        if not isinstance(src, str | Path):
            return _array_image(self, src, self.axes or "YX", [None])
        p = Path(src)
        if not p.exists():
            raise DataError(f"{p}: no such file or folder")
        if p.is_dir():
            return _ome_zarr_image(self, p)
        if p.suffix.lower() in SLIDE_SUFFIXES:
            return _slide_image(self, p)
        if p.suffix.lower() in TIFF_SUFFIXES:
            return _tiff_image(self, p)
        raise DataError(f"{p}: not an image that can be read by window",
                        hint="give an OME-Zarr folder, a TIFF or a whole-slide file (.svs, .ndpi, ...)")


@dataclass
class LargeImage:
    """One plane of one level, read by window. shape: (H, W); rgb: windows are (h, w, 3); pixel_size_um: of
    this level (None where the metadata records none); levels: (H, W) of every level; kind: ome-zarr | tiff |
    slide | array."""

    name: str
    shape: tuple[int, int]
    dtype: np.dtype
    rgb: bool
    level: int
    levels: tuple[tuple[int, int], ...]
    pixel_size_um: float | None
    kind: str
    _read: Callable[[int, int, int, int], np.ndarray]
    _level_reader: Callable[[int], LargeImage] | None = None

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels [y0, y1) x [x0, x1) (clipped to the image): (h, w) or (h, w, 3), the file's dtype."""
        h, w = self.shape
        y0, y1, x0, x1 = max(0, y0), min(h, y1), max(0, x0), min(w, x1)
        return np.ascontiguousarray(self._read(y0, y1, x0, x1))

    def at_level(self, level: int) -> LargeImage:
        """The same image at another level (a low-resolution view for statistics)."""
        if level == self.level or self._level_reader is None:
            return self
        return self._level_reader(level)


def choose_level(sizes: list[float | None], model_um: float | None, level: int | None, what: str) -> int:
    """--level where given (checked), else the level nearest the model's pixel size, else 0."""
    if level is not None:
        if not 0 <= level < len(sizes):
            raise ConfigError(f"--level {level}: {what} has levels 0..{len(sizes) - 1}")
        return level
    if model_um is None or any(s is None for s in sizes):
        return 0
    ratios = [abs(math.log(float(s) / model_um)) for s in sizes if s is not None]
    return int(min(range(len(ratios)), key=lambda k: (round(ratios[k], 9), k)))


def _plane_index(spec: ImageSpec, axes: str, shape: tuple[int, ...], dtype: np.dtype, where: str
                 ) -> tuple[tuple[Any, ...], bool, str]:
    """(index of the plane for axes other than Y, X, whether windows are RGB, the kept channel axis or "")."""
    index: list[Any] = []
    rgb, chan_axis = False, ""
    for a, n in zip(axes, shape):
        if a in "YX":
            index.append(slice(None))
        elif a in "CS" and n > 1:
            if spec.channel is not None:
                if not 0 <= spec.channel < n:
                    raise ConfigError(f"--channel {spec.channel}: {where} has channels 0..{n - 1}")
                index.append(spec.channel)
            elif n in (3, 4) and dtype == np.uint8:
                index.append(slice(0, 3))
                rgb, chan_axis = True, a
            else:
                raise ConfigError(f"{where} has {n} channels (axis {a}): choose one with --channel",
                                  hint="--channel 0 is the first (0-based): pass the nuclear stain's")
        elif n > 1:
            raise ConfigError(f"{where} has {n} planes along {a}: the block route segments one 2-D plane",
                              hint="predict it without --level/--block (plane by plane), or pass one plane")
        else:
            index.append(0)
    return tuple(index), rgb, chan_axis


def _windowed(arr: Any, axes: str, index: tuple[Any, ...], chan_axis: str) -> Callable[[int, int, int, int], np.ndarray]:
    yi, xi = axes.index("Y"), axes.index("X")
    kept = [a for a, ix in zip(axes, index) if not isinstance(ix, int)]

    def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        ix = list(index)
        ix[yi], ix[xi] = slice(y0, y1), slice(x0, x1)
        out = np.asarray(arr[tuple(ix)])
        if chan_axis:
            out = np.moveaxis(out, kept.index(chan_axis), -1)
        return out

    return read


def _array_image(spec: ImageSpec, arr: Any, axes: str, sizes: list[float | None], *, kind: str = "array",
                 levels: tuple[tuple[int, int], ...] | None = None, level: int = 0,
                 reopen: Callable[[int], LargeImage] | None = None) -> LargeImage:
    axes = axes.upper()
    shape = tuple(int(n) for n in arr.shape)
    if len(axes) != len(shape) or "Y" not in axes or "X" not in axes:
        raise ConfigError(f"axes {axes!r} for an array of shape {shape}: expected one letter per axis with Y and X")
    where = str(spec.source) if isinstance(spec.source, str | Path) else "the array"
    index, rgb, chan_axis = _plane_index(spec, axes, shape, np.dtype(arr.dtype), where)
    hw = (shape[axes.index("Y")], shape[axes.index("X")])
    px = sizes[level] if level < len(sizes) else None
    return LargeImage(spec.name, hw, np.dtype(arr.dtype), rgb, level, levels or (hw,), px, kind,
                      _windowed(arr, axes, index, chan_axis), reopen)


# ----------------------------------------------------------------------------------------- OME-Zarr
def _ome_zarr_image(spec: ImageSpec, path: Path, level: int | None = None) -> LargeImage:
    import zarr

    try:
        found = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a folder that is neither a group nor an array
        raise DataError(f"{path}: not a zarr group ({type(exc).__name__})",
                        hint="pass an OME-Zarr image folder, e.g. image.ome.zarr") from exc
    if isinstance(found, zarr.Array):  # a bare zarr array: its axes from `axes` (default YX), no pixel size
        return _array_image(spec, found, spec.axes or "YX", [spec.pixel_size_um], kind="zarr")
    group: Any = found
    attrs: dict[str, Any] = dict(group.attrs.asdict())
    multiscales: Any = (attrs.get("ome") or attrs).get("multiscales")
    if not multiscales:
        raise DataError(f"{path}: no OME-Zarr multiscales metadata (a plate or a labels-only group?)",
                        hint="pass the image group itself, e.g. plate.zarr/A/1/0")
    ms: dict[str, Any] = multiscales[0]
    axes_meta = ms.get("axes") or [{"name": a} for a in "tczyx"[-len(group[ms["datasets"][0]["path"]].shape):]]
    names = "".join((a["name"] if isinstance(a, dict) else str(a)) for a in axes_meta).upper()
    units = [a.get("unit") if isinstance(a, dict) else None for a in axes_meta]
    outer = _scale_of(ms.get("coordinateTransformations") or [], len(names))
    sizes: list[float | None] = []
    for d in ms["datasets"]:
        s = _scale_of(d.get("coordinateTransformations") or [], len(names))
        xi = names.index("X")
        factor = _UNIT_UM.get(str(units[xi] or ""))
        sizes.append(float(s[xi] * outer[xi] * factor) if factor and s[xi] > 0 else None)
    if spec.pixel_size_um is not None:
        base = sizes[0] or 1.0
        sizes = [spec.pixel_size_um * (s / base if s else 1.0) for s in sizes]
    arrays = [group[d["path"]] for d in ms["datasets"]]
    levels = tuple((int(a.shape[names.index("Y")]), int(a.shape[names.index("X")])) for a in arrays)
    if level is None:
        level = choose_level(sizes, spec.model_pixel_um, spec.level, str(path))
    return _array_image(spec, arrays[level], names, sizes, kind="ome-zarr", levels=levels, level=level,
                        reopen=lambda k: _ome_zarr_image(spec, path, k))


def _scale_of(transforms: list[dict[str, Any]], n: int) -> list[float]:
    for t in transforms:
        if t.get("type") == "scale":
            return [float(v) for v in t["scale"]]
    return [1.0] * n


# ---------------------------------------------------------------------------------------------- TIFF
def _tiff_image(spec: ImageSpec, path: Path, level: int | None = None) -> LargeImage:
    import tifffile
    import zarr

    from asfyolo_rt.data.io import read_pixel_size

    try:
        tif = tifffile.TiffFile(path)
        series = tif.series[0]
        levels_s = list(series.levels)
    except Exception as exc:  # tifffile raises many types for a corrupt file
        raise DataError(f"{path}: unreadable TIFF ({type(exc).__name__}: {exc})", hint="re-copy or re-export it"
                        ) from exc
    axes = series.axes.upper()
    yi, xi = axes.index("Y"), axes.index("X")
    levels = tuple((int(s.shape[yi]), int(s.shape[xi])) for s in levels_s)
    px0 = spec.pixel_size_um or read_pixel_size(path)
    sizes: list[float | None] = [px0 * levels[0][1] / lv[1] if px0 else None for lv in levels]
    if level is None:
        level = choose_level(sizes, spec.model_pixel_um, spec.level, str(path))
    arr = zarr.open_array(tif.aszarr(series=0, level=level), mode="r")
    return _array_image(spec, arr, axes, sizes, kind="tiff", levels=levels, level=level,
                        reopen=lambda k: _tiff_image(spec, path, k))


# ----------------------------------------------------------------------------------------- slides
def _slide_image(spec: ImageSpec, path: Path, level: int | None = None) -> LargeImage:
    try:
        from tiffslide import TiffSlide
    except ImportError as exc:
        raise ConfigError(f"{path}: whole-slide files need tiffslide", hint="pip install 'asfyolo-rt[large]'"
                          ) from exc
    try:
        slide = TiffSlide(str(path))
    except Exception as exc:  # tiffslide raises many types for an unknown or corrupt file
        raise DataError(f"{path}: tiffslide cannot open this slide ({type(exc).__name__}: {exc})",
                        hint="convert it to OME-TIFF or OME-Zarr (e.g. bioformats2raw)") from exc
    mpp = slide.properties.get("tiffslide.mpp-x")
    px0 = spec.pixel_size_um or (float(mpp) if mpp else None)
    dims = [(int(h), int(w)) for w, h in slide.level_dimensions]
    sizes: list[float | None] = [px0 * dims[0][1] / d[1] if px0 else None for d in dims]
    if level is None:
        level = choose_level(sizes, spec.model_pixel_um, spec.level, str(path))
    group: Any = slide.zarr_group
    arr: Any = group[sorted(group.array_keys(), key=int)[level]] if hasattr(group, "array_keys") else group[str(level)]
    axes = "YXS" if len(arr.shape) == 3 else "YX"
    return _array_image(spec, arr, axes, sizes, kind="slide", levels=tuple(dims), level=level,
                        reopen=lambda k: _slide_image(spec, path, k))
