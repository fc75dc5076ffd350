"""The runtime layer: everything that turns pixels into cells (ARCHITECTURE.md, "The runtime layer").

* `ModelInfo` / `read_model_info` (:mod:`.info`): what a model needs to be run right, from any artifact;
  its versioned JSON is the contract of the C runtime, sidecars and bundles.
* `BackendSpec` / `open_backend` / `runtimes` (:mod:`.registry`): one protocol, one registry, backends
  opened from a picklable spec inside any process.
* The stages (:mod:`.stages`) and a frame through them (:mod:`.pipeline`).
* `Segmenter` / `Cells` (:mod:`.segmenter`): the public object, made once and called per frame.

Names load on first use: importing the package imports neither torch nor any runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asfyolo_rt.runtime.info import ModelInfo, read_model_info
    from asfyolo_rt.runtime.registry import BackendSpec, open_backend, runtimes
    from asfyolo_rt.runtime.segmenter import Cells, Segmenter

_LAZY = {
    "ModelInfo": "info", "read_model_info": "info",
    "BackendSpec": "registry", "open_backend": "registry", "runtimes": "registry",
    "Cells": "segmenter", "Segmenter": "segmenter",
}
__all__ = ["BackendSpec", "Cells", "ModelInfo", "Segmenter", "open_backend", "read_model_info", "runtimes"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
