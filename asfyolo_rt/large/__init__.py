"""Images larger than memory and work larger than one machine (ARCHITECTURE.md, "Images larger than memory").

* `segment_large` (:mod:`.api`): one image (OME-Zarr, TIFF, whole-slide file, zarr array) read by block,
  labels written chunk by chunk into OME-Zarr, the cell table streamed, resumable, serial or on Dask;
* `ImageSpec` (:mod:`.readers`): an image read by window, at the pyramid level the model's pixel size asks for;
* `predict_images` (:mod:`.plate`): a folder or plate, one Dask task per image, predict's outputs.

Names load on first use: importing the package imports neither Dask nor torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asfyolo_rt.large.api import LargeResult, segment_large
    from asfyolo_rt.large.readers import ImageSpec

_LAZY = {"segment_large": "api", "LargeResult": "api", "ImageSpec": "readers"}
__all__ = ["ImageSpec", "LargeResult", "segment_large"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
