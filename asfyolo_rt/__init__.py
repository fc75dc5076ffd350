"""asfyolo-rt: ASF-YOLO cell instance segmentation from PyTorch to TensorRT.

    >>> from asfyolo_rt import Segmenter
    >>> seg = Segmenter("dsb2018")       # doctest: +SKIP
    >>> cells = seg.segment(frame)        # doctest: +SKIP  (label image + per-cell table)

`Segmenter`, `Cells` and `ModelInfo` load on first use (`import asfyolo_rt` imports no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from asfyolo_rt.runtime.info import ModelInfo
    from asfyolo_rt.runtime.segmenter import Cells, Segmenter

__all__ = ["Cells", "ModelInfo", "Segmenter", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Segmenter", "Cells", "ModelInfo"):
        from asfyolo_rt import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
