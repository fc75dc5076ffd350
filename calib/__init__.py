"""asfyolo_rt.calib: INT8 calibration sets, ModelOpt / ONNX Runtime quantization, caches, reports, sensitivity.

- `build_calibration_set(data, img_size, n=..., seed=...) -> CalibrationSet`
- `quantize_tensorrt(fp32_onnx, out, calib, QuantConfig(...), cache_path=...) -> QuantResult` (model.int8.onnx)
- `quantize_ort_cpu(fp32_onnx, out, calib, QuantConfig(...), cache_path=...) -> QuantResult` (model.int8-cpu.onnx)
- `calibration_report(calib, results)`, `layer_sensitivity(fp32_onnx, calib, ...) -> SensitivityResult`
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "CalibrationSet": "asfyolo_rt.calib.dataset",
    "build_calibration_set": "asfyolo_rt.calib.dataset",
    "QuantConfig": "asfyolo_rt.calib.quantize",
    "QuantResult": "asfyolo_rt.calib.quantize",
    "quantize_tensorrt": "asfyolo_rt.calib.quantize",
    "quantize_ort_cpu": "asfyolo_rt.calib.quantize",
    "Fingerprint": "asfyolo_rt.calib.cache",
    "load_cache": "asfyolo_rt.calib.cache",
    "save_cache": "asfyolo_rt.calib.cache",
    "calibration_report": "asfyolo_rt.calib.report",
    "layer_sensitivity": "asfyolo_rt.calib.sensitivity",
    "SensitivityResult": "asfyolo_rt.calib.sensitivity",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'asfyolo_rt.calib' has no attribute {name!r}")
