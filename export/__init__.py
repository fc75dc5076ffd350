"""asfyolo_rt.export: ONNX export (FP32/FP16/INT8 flavours), end-to-end graphs, TensorRT engines.

Public API (imported lazily so `asfyolo_rt.export.engine` stays torch-free on devices):

- `export_onnx(model, path, config, img_size=..., dynamic_batch=..., dynamic_size=...) -> OnnxArtifact`
- `convert_fp16(fp32_path, out_path, rules=..., sample_batches=...) -> Fp16Result`
- `export_end2end(source, out_path, End2EndConfig(...)) -> OnnxArtifact`
- (a whole bundle, with calibration and evaluation: `asfyolo_rt.bundle.export_bundle`, a layer above)
- `compare_runners(reference, candidate, shapes) -> list[OutputError]`
- `asfyolo_rt.export.engine`: `build_engine`, `TensorRTBackend` (runner), sidecar JSON.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "OnnxArtifact": "asfyolo_rt.export.onnx_export",
    "export_onnx": "asfyolo_rt.export.onnx_export",
    "load_weights": "asfyolo_rt.export.onnx_export",
    "Fp16Rules": "asfyolo_rt.export.fp16",
    "Fp16Result": "asfyolo_rt.export.fp16",
    "convert_fp16": "asfyolo_rt.export.fp16",
    "torch_half_estimate": "asfyolo_rt.export.fp16",
    "End2EndConfig": "asfyolo_rt.export.end2end",
    "build_end2end": "asfyolo_rt.export.end2end",
    "export_end2end": "asfyolo_rt.export.end2end",
    "OutputError": "asfyolo_rt.export.compare",
    "compare_runners": "asfyolo_rt.export.compare",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'asfyolo_rt.export' has no attribute {name!r}")
