"""asfyolo-rt: ASF-YOLO cell instance segmentation from PyTorch to TensorRT.

    >>> from asfyolo_rt import Segmenter
    >>> seg = Segmenter("dsb2018")       # doctest: +SKIP
    >>> cells = seg.segment(frame)        # doctest: +SKIP  (label image + per-cell table)

`Segmenter`, `Cells` and `ModelInfo` load on first use (`import asfyolo_rt` imports no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# No usage telemetry from the runtimes this package loads (ONNX Runtime writes a device id and an event
# database into HOME on import, OpenVINO/NNCF send usage events): switched off before any of them is imported.
from asfyolo_rt.privacy import disable_telemetry as _disable_telemetry  # noqa: E402

_disable_telemetry()

if TYPE_CHECKING:
    from asfyolo_rt.runtime.info import ModelInfo
    from asfyolo_rt.runtime.segmenter import Cells, Segmenter

__all__ = ["Cells", "ModelInfo", "Segmenter", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Segmenter", "Cells", "ModelInfo"):
        from asfyolo_rt import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
