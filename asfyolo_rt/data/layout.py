"""How an image file's pixels are laid out, whatever the file format.

A :class:`StackLayout` names the axes of the stored pixels (tifffile style: upper case, "YX" or "YXS"
last), the plane axes a label output keeps, the picked channel and the physical pixel size.
:mod:`.stacks` (TIFF) and :mod:`.omezarr` (OME-Zarr) both describe their inputs with it; this module
reads no file and imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asfyolo_rt.errors import ConfigError, DataError


@dataclass(frozen=True)
class PhysicalSize:
    """Micrometres per pixel along x and y, and between z planes (None where the file records none)."""

    x: float | None = None
    y: float | None = None
    z: float | None = None


@dataclass(frozen=True)
class StackLayout:
    """How an image's pixels are laid out (a TIFF's series, an OME-Zarr image's level 0). axes/shape:
    tifffile-style axes (size-1 axes dropped, "YX" last); plane_axes/plane_shape: the axes a label output
    keeps besides YX (no C, no S)."""

    path: Path
    kind: str  # "ome", "imagej", "tiff" or "ome-zarr"
    axes: str
    shape: tuple[int, ...]
    plane_axes: str
    plane_shape: tuple[int, ...]
    channel: int | None  # picked channel (C axis, or the colour samples of an RGB image)
    rgb: bool  # planes are colour images (C or S of 3/4 samples, no channel picked)
    size: PhysicalSize = field(default_factory=PhysicalSize)
    series: int = 0  # which image of the file (a TIFF series: pages of one size, an OME Image); 0 for most files
    channel_names: tuple[str, ...] = ()  # the C axis's channel names where the file records them (OME)

    @property
    def count(self) -> int:
        return int(np.prod(self.plane_shape)) if self.plane_shape else 1

    @property
    def is_stack(self) -> bool:
        return self.count > 1


def layout_of(path: Path, kind: str, axes: str, shape: tuple[int, ...], size: PhysicalSize,
              channel: int | None, *, series: int = 0, channel_names: tuple[str, ...] = ()) -> StackLayout:
    """The layout of pixels with tifffile-style `axes` (upper case, YX or YXS last) and `shape`."""
    original = axes
    kept = [(a, n) for a, n in zip(axes, shape) if n != 1 or a in "YX"]
    axes, shape = "".join(a for a, _ in kept), tuple(n for _, n in kept)
    if not axes.endswith("YX") and not axes.endswith("YXS"):
        raise DataError(f"{path}: axes {original!r} do not end with the image plane (YX or YXS)")
    colour = "S" if "S" in axes else ("C" if "C" in axes else "")
    n_colour = shape[axes.index(colour)] if colour else 1
    if channel is not None and (channel < 0 or channel >= n_colour):
        raise ConfigError(f"--channel {channel}: {path.name} has {n_colour} channel(s) (axes {axes!r}); "
                          f"expected 0..{n_colour - 1}" if n_colour > 1 else
                          f"--channel {channel}: {path.name} has a single channel", hint="omit --channel")
    if colour == "C" and channel is None and n_colour not in (3, 4):
        raise ConfigError(f"{path.name} has {n_colour} channels (axes {axes!r})",
                          hint="pass --channel N (0-based) to pick the nuclear channel")
    plane = [(a, n) for a, n in zip(axes, shape) if a not in "YXSC"]
    return StackLayout(path, kind, axes, shape, "".join(a for a, _ in plane), tuple(n for _, n in plane),
                       channel if n_colour > 1 else None, bool(colour) and channel is None, size, series,
                       channel_names if colour == "C" and len(channel_names) == n_colour else ())


def blend_note(layout: StackLayout) -> str | None:
    """A note for a C axis of 3/4 channels read as one RGB(A) image without a picked channel, else None: it
    names the channels and how to pick one (the nuclear stain is usually one channel, not a colour blend)."""
    if not layout.rgb or "C" not in layout.axes:
        return None
    n = layout.shape[layout.axes.index("C")]
    names = ", ".join(f"{i}: {c}" for i, c in enumerate(layout.channel_names)) if layout.channel_names else ""
    return (f"{layout.path.name}: its {n} channels{f' ({names})' if names else ''} are blended as one RGB image; "
            f"pass --channel N (0-based) to segment one of them, e.g. the nuclear stain")
