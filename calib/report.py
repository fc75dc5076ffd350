"""The calibration report: images used, per-tensor ranges, excluded nodes, caches, per INT8 flavour."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from asfyolo_rt.calib.dataset import SYNTHETIC_WARNING, CalibrationSet
from asfyolo_rt.calib.quantize import QuantResult

from asfyolo_rt.model.weights import atomic_write_bytes

QUANTIZER_CHOICE = (
    "TensorRT flavour: NVIDIA ModelOpt's ONNX PTQ (modelopt.onnx.quantization.quantize, calibration on ONNX "
    "Runtime's CPU provider). It places Q/DQ the way TensorRT fuses them (inputs of weighted ops, residual-add "
    "inputs, one scale per concat group, no Q/DQ on conv outputs), symmetric int8 activations and per-channel "
    "weights, opset 19; it is what NVIDIA documents for TensorRT 11, which has no INT8 calibrator. It calls ONNX "
    "Runtime's calibrators underneath (entropy or max) and patches them process-wide, which asfyolo-rt undoes "
    "after each call. CPU flavour: ONNX Runtime's own quantize_static (QDQ, asymmetric uint8 activations, "
    "per-channel int8 weights), the format its VNNI kernels run fast."
)


def calibration_report(
    calib: CalibrationSet,
    results: list[QuantResult],
    *,
    sensitivity: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """A JSON-ready report of one calibration set and the models quantized from it (+ the export's warnings)."""
    flavours = {}
    for r in results:
        ranges = {t: {k: p[k] for k in ("min", "max", "scale", "zero_point", "dtype")}
                  for t, p in sorted(r.activation_qparams.items())}
        flavours[r.flavour] = {
            "model": str(r.artifact.path.name),
            "sha256": r.artifact.sha256,
            "quantizer": r.quantizer,
            "method": r.method,
            "n_quantized_activations": r.n_quantized_tensors,
            "zero_points": sorted({p["zero_point"] for p in r.activation_qparams.values()}),
            "excluded_nodes": dict(sorted(r.excluded.items())),
            "tensor_ranges": ranges,
            "cache": str(r.cache_path.name) if r.cache_path else None,
            "cache_hit": r.cache_hit,
            "seconds": round(r.seconds, 1),
        }
    report: dict[str, Any] = {
        "calibration_set": calib.summary(),
        "warning": SYNTHETIC_WARNING if calib.synthetic else None,
        "warnings": list(warnings or []),
        "quantizer_choice": QUANTIZER_CHOICE,
        "flavours": flavours,
    }
    if sensitivity is not None:
        report["sensitivity"] = sensitivity
    return report


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    path = Path(path)
    atomic_write_bytes(path, json.dumps(report, indent=1, sort_keys=False, default=str).encode())
    from asfyolo_rt.export.onnx_export import publish

    publish(path)
    return path
