"""Multi-plane TIFF inputs (z-stacks, time-lapses, ImageJ hyperstacks, OME-TIFF) and their label outputs.

`read_image` (asfyolo_rt.data.io) reads one 2-D plane per file. Prediction also takes stacks: the axes
come from tifffile's series (OME-XML, the ImageJ description, or a plain multi-page file: axis "I"),
every plane (each T x Z x ... position) is segmented as its own image, and the label output keeps the
stack's layout without the channel axis (one label TIFF per input).

Channels: a C axis of 3 or 4 samples without `channel` is RGB(A), as `read_image` reads a CYX TIFF;
any other C axis needs `channel` (0-based: the nuclear stain) and is refused without it. `channel`
also picks one colour of an RGB image.

Several images in one file (tifffile series: a multi-page file's pages grouped by size, the Images of an
OME-TIFF): `stack_layouts` gives one layout per series and prediction segments each at its own size as an
input of its own (`<name>_s<k>`, asfyolo_rt.infer.sources); `stack_layout` describes series 0 only.

Physical sizes (micrometres; x, y and z spacing) are read from OME `PhysicalSize{X,Y,Z}` or the ImageJ
resolution tags and `spacing`, and written back into the label TIFF in the input's flavour (OME-TIFF
stays OME-TIFF, ImageJ stays ImageJ; a plain file gets resolution tags in centimetres).
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asfyolo_rt.atomic import atomic_write_bytes
from asfyolo_rt.data.layout import PhysicalSize, StackLayout, layout_of
from asfyolo_rt.data.omezarr import read_ome_zarr
from asfyolo_rt.errors import DataError

PLANE_AXES_ORDER = "TZ"  # axes named in cells.csv (t, z); any other stack axis only has the plane index
_UNIT_UM = {"um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6, "cm": 1e4}


@dataclass(frozen=True)
class StackPlane:
    """One plane of a stack: its linear index (C order over plane_axes) and coordinates per axis."""

    layout: StackLayout
    index: int
    coords: dict[str, int]

    @property
    def count(self) -> int:
        return self.layout.count

    def suffix(self) -> str:
        """File-name suffix of the plane, e.g. `_t002_z013` (or `_p0004` for axes other than T/Z)."""
        parts = [f"_{a.lower()}{self.coords[a]:03d}" for a in self.layout.plane_axes if a in PLANE_AXES_ORDER]
        return "".join(parts) if len(parts) == len(self.layout.plane_axes) else f"_p{self.index:04d}"


def input_stem(path: Path) -> str:
    """The file name without its suffixes: `cells.ome.tif`, `cells.ome.zarr` -> `cells`."""
    name = path.stem
    return name[:-4] if name.lower().endswith(".ome") else name


def label_file_name(layout: StackLayout, stem: str | None = None) -> str:
    """`<stem>.ome.tif` for OME-TIFF inputs (the labels are OME-TIFF too), else `<stem>.tif`; stem: the
    input's output name (default: `input_stem` of its path)."""
    stem = input_stem(layout.path) if stem is None else stem
    return f"{stem}{'.ome' if layout.kind in ('ome', 'ome-zarr') else ''}.tif"


def _tiff_kind(tif: object) -> str:
    if getattr(tif, "is_ome", False) and getattr(tif, "ome_metadata", None):
        return "ome"
    return "imagej" if getattr(tif, "is_imagej", False) else "tiff"


def physical_size(tif: object) -> PhysicalSize:
    """x/y/z micrometres per pixel of an open tifffile.TiffFile (OME-XML or ImageJ metadata)."""
    xml = getattr(tif, "ome_metadata", None)
    if xml:
        m = re.search(r"<(?:\w+:)?Pixels\b[^>]*>", xml)
        tag = m.group(0) if m else ""

        def ome(axis: str) -> float | None:
            v = re.search(rf'PhysicalSize{axis}="([^"]+)"', tag)
            u = re.search(rf'PhysicalSize{axis}Unit="([^"]+)"', tag)
            factor = _UNIT_UM.get((u.group(1) if u else "µm").strip().lower())
            try:
                return _sane(float(v.group(1)) * factor) if v and factor else None
            except ValueError:
                return None

        return PhysicalSize(ome("X"), ome("Y"), ome("Z"))
    ij = getattr(tif, "imagej_metadata", None) or {}
    factor = _UNIT_UM.get(str(ij.get("unit", "")).strip().lower().replace("\\u00b5", "µ"))
    page = tif.pages[0]  # type: ignore[attr-defined]
    if not factor:
        unit = page.tags.get("ResolutionUnit")
        if unit is None or int(unit.value) != 3:  # centimetre; inch resolutions are screen/print defaults
            return PhysicalSize()
        factor = 1e4

    def res(tag: str) -> float | None:
        t = page.tags.get(tag)
        if t is None:
            return None
        num, den = t.value
        return _sane(factor * den / num) if num and den else None

    spacing = ij.get("spacing")
    return PhysicalSize(res("XResolution"), res("YResolution"),
                        _sane(float(spacing) * factor) if isinstance(spacing, (int, float)) else None)


def _sane(um: float) -> float | None:
    return float(um) if math.isfinite(um) and 1e-4 < um < 1e4 else None


def ome_channel_names(xml: str, series: int = 0) -> tuple[str, ...]:
    """The `Name` of every Channel of the series-th OME Image ("" where one has none; () where none has)."""
    blocks = re.findall(r"<(?:\w+:)?Pixels\b.*?</(?:\w+:)?Pixels>", xml, re.S)
    if series >= len(blocks):
        return ()
    names = []
    for attrs in re.findall(r"<(?:\w+:)?Channel\b([^>]*)>", blocks[series]):
        m = re.search(r'\bName="([^"]*)"', attrs)
        names.append(html.unescape(m.group(1)).strip() if m else "")
    return tuple(names) if any(names) else ()


def stack_layout(path: str | Path, channel: int | None = None) -> StackLayout:
    """The layout of a TIFF file's first series (header only: no pixels are decoded). Raises DataError /
    ConfigError. See `stack_layouts` for files holding several images."""
    return _layouts(Path(path), channel, every=False)[0]


def stack_layouts(path: str | Path, channel: int | None = None) -> list[StackLayout]:
    """One layout per image of a TIFF file (tifffile series: a multi-page file's pages grouped by size and
    dtype, an OME-TIFF's Images), header only. Most files hold one. Every series' plane is checked against
    the pixel limit (asfyolo_rt.data.header). Raises DataError / ConfigError."""
    from asfyolo_rt.data.header import check_pixels

    layouts = _layouts(Path(path), channel, every=True)
    for lay in layouts:
        check_pixels(lay.path, (lay.shape[lay.axes.index("Y")], lay.shape[lay.axes.index("X")]))
    return layouts


def _layouts(path: Path, channel: int | None, *, every: bool) -> list[StackLayout]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            found = [(s.axes, tuple(int(n) for n in s.shape)) for s in (tif.series if every else tif.series[:1])]
            kind, size = _tiff_kind(tif), physical_size(tif)
            xml = tif.ome_metadata if kind == "ome" else None
    except Exception as exc:  # tifffile raises many types (ValueError, TiffFileError, struct.error)
        raise DataError(f"{path}: unreadable or corrupt TIFF ({exc})", hint="re-copy or re-export it") from exc
    if not found:
        raise DataError(f"{path}: the TIFF holds no image", hint="re-copy or re-export it")
    return [layout_of(path, kind, axes, shape, size, channel, series=k,
                      channel_names=ome_channel_names(xml, k) if xml else ())
            for k, (axes, shape) in enumerate(found)]


def iter_planes(layout: StackLayout) -> Iterator[tuple[StackPlane, np.ndarray]]:
    """Every plane as stored: (H, W) grey (picked channel) or (H, W, 3|4) colour, dtype preserved."""
    data = read_pixels(layout).reshape(layout.shape)
    axes = layout.axes
    if "C" in axes:  # colour/channel axis next to YX: (..., C, Y, X) -> (..., Y, X, C)
        data = np.moveaxis(data, axes.index("C"), -1)
        axes = axes.replace("C", "") + "C"
    colour = axes[-1] if axes[-1] in "SC" else ""
    if colour and layout.channel is not None:
        data = data[..., layout.channel]
    data = data.reshape((*layout.plane_shape, *data.shape[len(layout.plane_axes):]))
    for index in range(layout.count):
        coords = np.unravel_index(index, layout.plane_shape) if layout.plane_shape else ()
        plane = data[tuple(coords)] if layout.plane_shape else data
        yield StackPlane(layout, index, {a: int(c) for a, c in zip(layout.plane_axes, coords)}), plane


def read_pixels(layout: StackLayout) -> np.ndarray:
    """All pixels of the image as stored (the layout's series of a TIFF, level 0 of an OME-Zarr image)."""
    if layout.kind == "ome-zarr":
        return read_ome_zarr(layout.path)[0]
    import tifffile

    try:
        with tifffile.TiffFile(layout.path) as tif:
            return tif.series[layout.series].asarray()
    except Exception as exc:
        raise DataError(f"{layout.path}: unreadable or corrupt TIFF ({exc})", hint="re-copy or re-export it") from exc


def label_dtype(max_id: int) -> type:
    return np.uint16 if max_id <= 65535 else np.uint32


def write_label_tiff(path: Path, labels: np.ndarray, axes: str, kind: str, size: PhysicalSize) -> Path:
    """Write a label volume (axes e.g. "TZYX") atomically, with the input's metadata flavour and sizes.

    ImageJ hyperstacks hold at most uint16: more than 65,535 cells are written as OME-TIFF instead.
    """
    import tifffile

    labels = np.ascontiguousarray(labels)
    buf = io.BytesIO()
    if kind == "ome-zarr" or (kind == "imagej" and labels.dtype.itemsize > 2):
        kind = "ome"
    if kind == "ome":
        meta: dict[str, object] = {"axes": axes}
        for a, v in (("X", size.x), ("Y", size.y), ("Z", size.z)):
            if v is not None:
                meta[f"PhysicalSize{a}"], meta[f"PhysicalSize{a}Unit"] = v, "µm"
        tifffile.imwrite(buf, labels, ome=True, photometric="minisblack", metadata=meta)
    elif kind == "imagej":
        ij: dict[str, object] = {"axes": axes, **({"unit": "um"} if size.x else {}),
                                 **({"spacing": size.z} if size.z else {})}
        res = (1 / size.x, 1 / (size.y or size.x)) if size.x else None
        tifffile.imwrite(buf, labels, imagej=True, resolution=res, metadata=ij)
    else:
        res_cm = (1e4 / size.x, 1e4 / (size.y or size.x)) if size.x else None
        tifffile.imwrite(buf, labels, photometric="minisblack", metadata={"axes": axes}, resolution=res_cm,
                         resolutionunit="CENTIMETER" if res_cm else None)
    atomic_write_bytes(path, buf.getvalue())
    return path


class StackAssembler:
    """Collects the label planes of one stack; ids run on across planes (unique within the stack)."""

    def __init__(self, layout: StackLayout, height: int, width: int) -> None:
        self.layout = layout
        self.volume = np.zeros((*layout.plane_shape, height, width), np.uint32)
        self.next_id = 1  # the id the next plane's first cell gets
        self.filled = 0

    def add(self, plane: StackPlane, label_map: np.ndarray, n: int) -> int:
        """Place a plane's (H, W) label map (ids 1..n); returns the id offset its cells got."""
        if label_map.shape != self.volume.shape[-2:]:
            raise DataError(f"{self.layout.path}: plane {plane.index} is {label_map.shape}, the stack's planes are "
                            f"{self.volume.shape[-2:]}")
        offset = self.next_id - 1
        coords = tuple(plane.coords[a] for a in self.layout.plane_axes)
        self.volume[coords] = np.where(label_map > 0, label_map.astype(np.uint32) + offset, 0)
        self.next_id += n
        self.filled += 1
        return offset

    @property
    def complete(self) -> bool:
        return self.filled == self.layout.count

    def labels(self) -> np.ndarray:
        return self.volume.astype(label_dtype(self.next_id - 1))
