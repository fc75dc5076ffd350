"""Which inputs of `asfyolo-rt predict` go the block route (`segment_large`) instead of being read whole.

* whole-slide files (.svs, .ndpi, ...): always;
* OME-Zarr images of one 2-D plane (any channel count: --channel picks one): always (a z-stack or time
  series keeps predict's plane-by-plane route, whose labels go into the input's own labels group);
* TIFF files: with --level or --block, or when their header declares more pixels than --max-pixels
  (read whole they would be refused; by block they are not held whole).

Everything else (PNG, JPEG, BMP, small TIFFs, videos, stacks) keeps predict's in-memory route.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asfyolo_rt.large.readers import SLIDE_SUFFIXES, TIFF_SUFFIXES


def is_slide(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SLIDE_SUFFIXES


def _zarr_plane(path: Path) -> bool:
    """True for an OME-Zarr (or bare zarr array) whose level 0 holds one 2-D plane (channels aside)."""
    import zarr

    try:
        found: Any = zarr.open(str(path), mode="r")
    except Exception:  # not zarr at all: predict's own reader names the problem
        return False
    if isinstance(found, zarr.Array):
        return len(found.shape) == 2
    attrs = dict(found.attrs.asdict())
    ms = (attrs.get("ome") or attrs).get("multiscales")
    if not ms:
        return False
    names = "".join(a["name"] if isinstance(a, dict) else str(a) for a in ms[0].get("axes") or []).lower()
    shape = found[ms[0]["datasets"][0]["path"]].shape
    if len(names) != len(shape):
        return False
    return all(n == 1 for a, n in zip(names, shape) if a in "tz")


def wants_blocks(path: Path, *, level: int | None, block: int | None, max_pixels: int | None) -> bool:
    """Whether `path` goes the block route (module docstring)."""
    suffix = path.suffix.lower()
    if suffix in SLIDE_SUFFIXES:
        return True
    if path.is_dir() and suffix == ".zarr":
        return _zarr_plane(path)
    if suffix in TIFF_SUFFIXES and path.is_file():
        if level is not None or block is not None:
            return True
        from asfyolo_rt.data.io import MAX_PIXELS, image_size

        try:
            h, w = image_size(path)
        except Exception:  # unreadable header: predict's own check names the problem
            return False
        return h * w > (max_pixels or MAX_PIXELS)
    return False
