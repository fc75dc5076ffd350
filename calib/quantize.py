"""INT8 post-training quantization of the FP32 ONNX: two flavours from one calibration set.

`quantize_tensorrt` -> model.int8.onnx, for TensorRT: NVIDIA ModelOpt's ONNX quantizer
(`modelopt.onnx.quantization.quantize`, calibration on ONNX Runtime's CPU provider). TensorRT Q/DQ rules:
symmetric int8 activations (zero-point 0), per-channel int8 weights, Q/DQ on the inputs of weighted ops,
residual-add and concat handling by ModelOpt; opset 19. The non-quantized remainder is then cast to FP16
by the FP16 rules of `asfyolo_rt.export.fp16` (head decode kept in FP32), so a strongly typed TensorRT
build gets INT8 + FP16 with an FP32 decode (`high_precision="fp32"` keeps the remainder FP32).

`quantize_ort_cpu` -> model.int8-cpu.onnx, for ONNX Runtime on CPUs: `quant_pre_process(...,
skip_symbolic_shape=True)` then `quantize_static` QDQ with asymmetric uint8 activations and per-channel
int8 weights (U8S8: ONNX Runtime's fast VNNI kernels). Symmetric int8 Q/DQ runs slower than FP32 in ONNX
Runtime on CPU (TOOLCHAIN.md), which is why there are two files.

Kept in higher precision in both flavours (node names in the result): the head decode (everything after
the head prediction convs: sigmoids, box arithmetic, the final concat), by default the head prediction
convs themselves, the prototype output conv and the first conv (NVIDIA's YOLO INT8 recipe); plus `exclude` patterns; minus `include` patterns
(which cannot re-enable the decode). Patterns are Python regular expressions matched in full against
node names ("/neck/c3_p4/.*").

ModelOpt monkey-patches ONNX Runtime's calibrators process-wide when it runs; `_ort_patch_guard`
restores them afterwards so the CPU flavour (plain ONNX Runtime) is unaffected by call order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from asfyolo_rt.calib.cache import Fingerprint, load_cache, quantizer_version, save_cache
from asfyolo_rt.calib.dataset import CalibrationSet
from asfyolo_rt.export.graph import head_conv_nodes, head_decode_nodes, proto_output_nodes
from asfyolo_rt.export.onnx_export import (
    OnnxArtifact,
    file_sha256,
    get_metadata,
    input_shape_of,
    set_metadata,
)
from onnx import numpy_helper

from asfyolo_rt.errors import CalibrationError, ConfigError

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
METHODS = ("entropy", "max")


@dataclass(frozen=True)
class QuantConfig:
    method: str = "entropy"  # "entropy" (default) or "max"
    exclude: tuple[str, ...] = ()  # regexes (full match) of node names kept unquantized
    include: tuple[str, ...] = ()  # regexes of nodes to quantize despite the default exclusions
    exclude_head_convs: bool = True  # NVIDIA's YOLO recipe keeps the detect head in high precision
    exclude_first_conv: bool = True  # 3 input channels, [0, 1] input: little speed to gain, accuracy to lose
    exclude_proto_output: bool = True
    high_precision: str = "fp16"  # remainder of the TensorRT flavour: "fp16" or "fp32"
    on_cache_mismatch: str = "recalibrate"  # or "error"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"--calib-method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.high_precision not in ("fp16", "fp32"):
            raise ConfigError(f"high_precision={self.high_precision!r}; expected fp16 or fp32")
        if self.on_cache_mismatch not in ("recalibrate", "error"):
            raise ConfigError(f"on_cache_mismatch={self.on_cache_mismatch!r}; expected recalibrate or error")


@dataclass
class QuantResult:
    artifact: OnnxArtifact
    flavour: str  # "tensorrt" or "cpu"
    method: str
    excluded: dict[str, str]  # node -> reason
    activation_qparams: dict[str, dict[str, Any]]  # tensor -> {scale, zero_point, dtype, min, max}
    n_quantized_tensors: int
    cache_path: Path | None = None
    cache_hit: bool = False
    seconds: float = 0.0
    quantizer: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact.to_dict(), "flavour": self.flavour, "method": self.method,
            "quantizer": self.quantizer, "excluded": self.excluded, "n_quantized_tensors": self.n_quantized_tensors,
            "activation_qparams": self.activation_qparams, "cache": str(self.cache_path) if self.cache_path else None,
            "cache_hit": self.cache_hit, "seconds": round(self.seconds, 2), "notes": self.notes,
        }


def match_nodes(model: onnx.ModelProto, patterns: tuple[str, ...] | list[str], what: str) -> list[str]:
    """Node names matching any pattern in full; ConfigError for an invalid or unmatched pattern."""
    names = [n.name for n in model.graph.node]
    out: list[str] = []
    for p in patterns:
        try:
            rx = re.compile(p)
        except re.error as exc:
            raise ConfigError(f"{what} pattern {p!r} is not a valid regular expression: {exc}") from exc
        hits = [n for n in names if rx.fullmatch(n)]
        if not hits:
            raise ConfigError(f"{what} pattern {p!r} matches no node of the model",
                              hint="node names look like '/neck/c3_p4/cv1/conv/Conv'; see the calibration report")
        out.extend(h for h in hits if h not in out)
    return out


def first_conv_nodes(model: onnx.ModelProto) -> list[str]:
    """Convolutions reading the graph input directly."""
    inputs = {i.name for i in model.graph.input}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.input and n.input[0] in inputs]


def exclusions(model: onnx.ModelProto, cfg: QuantConfig) -> dict[str, str]:
    """node name -> why it stays unquantized (see the module docstring)."""
    decode = head_decode_nodes(model)
    out = {n: "head decode (sigmoid, box arithmetic, final concat): higher precision" for n in decode}
    if cfg.exclude_head_convs:
        out.update({n: "head prediction conv (detect head kept in higher precision)" for n in head_conv_nodes(model)})
    if cfg.exclude_first_conv:
        for n in first_conv_nodes(model):
            out.setdefault(n, "first conv (3 input channels) kept in higher precision")
    if cfg.exclude_proto_output:
        for n in proto_output_nodes(model):
            out.setdefault(n, "prototype output (last proto conv) kept in higher precision")
    for n in match_nodes(model, cfg.exclude, "--int8-exclude"):
        out.setdefault(n, "user exclude list")
    for n in match_nodes(model, cfg.include, "--int8-include"):
        if n in decode:
            raise ConfigError(f"--int8-include {n!r} is part of the head decode, which is never quantized")
        out.pop(n, None)
    return out


class _Reader:
    """ONNX Runtime CalibrationDataReader over a CalibrationSet (batch size 1 for static-batch models)."""

    def __init__(self, calib: CalibrationSet, input_name: str, *, limit: int | None = None,
                 progress: Progress | None = None) -> None:
        self.calib, self.input_name, self.progress = calib, input_name, progress
        self.n = min(len(calib), limit) if limit else len(calib)
        self.start, self.stop, self.i, self.done = 0, self.n, 0, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.start + self.i >= self.stop:
            return None
        k = self.start + self.i
        self.i += 1
        self.done += 1
        if self.progress:
            self.progress(min(self.done, self.n), self.n)
        return {self.input_name: self.calib.float_images(k, k + 1)}

    def rewind(self) -> None:
        self.i = 0

    def __len__(self) -> int:
        return self.n

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.stop, self.i = start_index, min(end_index, self.n), 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while (x := self.get_next()) is not None:
            yield x


@contextlib.contextmanager
def _ort_patch_guard() -> Iterator[None]:
    """Undo ModelOpt's process-wide monkey patches of onnxruntime.quantization after the block."""
    from onnxruntime.quantization import base_quantizer, calibrate, qdq_quantizer

    owners: list[Any] = [calibrate, calibrate.CalibraterBase, calibrate.MinMaxCalibrater,
                         calibrate.HistogramCalibrater, calibrate.HistogramCollector,
                         qdq_quantizer.QDQQuantizer, base_quantizer.BaseQuantizer]
    saved = [dict(vars(o)) for o in owners]
    try:
        yield
    finally:
        for owner, before in zip(owners, saved):
            now = dict(vars(owner))
            for k, v in now.items():
                if k not in before:
                    with contextlib.suppress(AttributeError, TypeError):
                        delattr(owner, k)
                elif before[k] is not v:
                    with contextlib.suppress(AttributeError, TypeError):
                        setattr(owner, k, before[k])


def activation_qparams(model: onnx.ModelProto) -> dict[str, dict[str, Any]]:
    """tensor -> {scale, zero_point, dtype, min, max} for every per-tensor activation QuantizeLinear."""
    inits = {i.name: i for i in model.graph.initializer}
    out: dict[str, dict[str, Any]] = {}
    for n in model.graph.node:
        if n.op_type != "QuantizeLinear" or n.input[0] in inits or n.input[1] not in inits:
            continue
        scale = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
        if scale.size != 1:
            continue
        zp_arr = numpy_helper.to_array(inits[n.input[2]]) if len(n.input) > 2 and n.input[2] in inits else None
        zp = int(zp_arr.reshape(-1)[0]) if zp_arr is not None else 0
        dtype = str(zp_arr.dtype) if zp_arr is not None else "uint8"
        qmin, qmax = (-128, 127) if dtype == "int8" else (0, 255)
        s = float(scale.reshape(-1)[0])
        out[n.input[0]] = {"scale": s, "zero_point": zp, "dtype": dtype,
                           "min": (qmin - zp) * s, "max": (qmax - zp) * s}
    return out


def _replace_activation_scales(model: onnx.ModelProto, scales: dict[str, float]) -> list[str]:
    """Set activation Q/DQ scales from a cache; returns quantized tensors the cache does not cover."""
    inits = {i.name: i for i in model.graph.initializer}
    missing = []
    for n in model.graph.node:
        if n.op_type != "QuantizeLinear" or n.input[0] in inits or n.input[1] not in inits:
            continue
        if n.input[0] not in scales:
            missing.append(n.input[0])
            continue
        init = inits[n.input[1]]
        dtype = numpy_helper.to_array(init).dtype
        init.CopyFrom(numpy_helper.from_array(np.asarray(scales[n.input[0]], dtype=dtype), init.name))
    return missing


def _fingerprint(fp32_path: Path, calib: CalibrationSet, method: str, flavour: str, quantizer: str) -> Fingerprint:
    return Fingerprint(onnx_sha256=file_sha256(fp32_path), preprocess=calib.preprocess,
                       image_list_sha256=calib.image_list_sha256(), n_images=len(calib), method=method,
                       flavour=flavour, quantizer=quantizer)


def _finish(model: onnx.ModelProto, source: onnx.ModelProto, out_path: Path, precision: str,
            extra_meta: dict[str, str]) -> OnnxArtifact:
    from asfyolo_rt.export.fp16 import check_types
    from asfyolo_rt.export.onnx_export import save_model

    meta = get_metadata(source)
    meta.update({"precision": precision, **extra_meta})
    set_metadata(model, meta)
    check_types(model, f"the quantized model {out_path.name}")
    save_model(model, out_path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxArtifact(path=out_path, sha256=file_sha256(out_path), precision=precision,
                        input_shape=input_shape_of(model), opset=int(opset), exporter=extra_meta.get("quantizer", ""),
                        metadata=meta)


def quantize_tensorrt(
    fp32_path: str | Path,
    out_path: str | Path,
    calib: CalibrationSet,
    cfg: QuantConfig = QuantConfig(),
    *,
    cache_path: str | Path | None = None,
    progress: Progress | None = None,
) -> QuantResult:
    """TensorRT-style INT8 Q/DQ ONNX with ModelOpt (see the module docstring)."""
    try:
        with _ort_patch_guard():
            from modelopt.onnx.quantization import quantize as mo_quantize
    except ImportError as exc:
        raise CalibrationError(
            f"NVIDIA ModelOpt's ONNX quantizer is not importable ({exc})",
            hint="pip install 'asfyolo-rt[quant]' (nvidia-modelopt without its [onnx] extra, onnx-graphsurgeon, "
            "onnxconverter-common, polygraphy, lief, cppimport, onnxslim)",
        ) from exc
    t0 = time.perf_counter()
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    source = onnx.load(str(fp32_path))
    excluded = exclusions(source, cfg)
    qname = quantizer_version("modelopt")
    fp = _fingerprint(fp32_path, calib, cfg.method, "tensorrt", qname)
    cache = load_cache(cache_path, fp, on_mismatch=cfg.on_cache_mismatch) if cache_path else None  # type: ignore[arg-type]
    input_name = source.graph.input[0].name

    def run(limit: int | None) -> onnx.ModelProto:
        with tempfile.TemporaryDirectory(prefix="asfyolo-int8-") as tmp:
            src = Path(tmp) / "model.onnx"
            shutil.copyfile(fp32_path, src)
            dst = Path(tmp) / "model.int8.onnx"
            reader = _Reader(calib, input_name, limit=limit, progress=None if limit else progress)
            try:  # ONNX Runtime's calibrators print progress to stdout: keep stdout for results (--json)
                with _ort_patch_guard(), contextlib.redirect_stdout(sys.stderr):
                    mo_quantize(
                        onnx_path=str(src), quantize_mode="int8", calibration_method=cfg.method,
                        calibration_data_reader=reader, calibration_eps=["cpu"],
                        nodes_to_exclude=["^" + re.escape(n) + "$" for n in excluded],
                        output_path=str(dst), high_precision_dtype="fp32", log_level="WARNING",
                    )
            except Exception as exc:
                raise CalibrationError(f"ModelOpt INT8 quantization failed: {type(exc).__name__}: {exc}") from exc
            if not dst.is_file():
                raise CalibrationError("ModelOpt INT8 quantization wrote no model")
            return onnx.load(str(dst))

    quantized: onnx.ModelProto | None = None
    hit = False
    if cache is not None:
        quantized = run(limit=1)
        missing = _replace_activation_scales(quantized, cache.payload.get("scales", {}))
        if missing:
            log.warning("calibration cache %s lacks %d quantized tensors (e.g. %s); recalibrating",
                        cache_path, len(missing), missing[0])
            quantized = None
        else:
            hit = True
    if quantized is None:
        quantized = run(limit=None)
        if cache_path:
            scales = {t: p["scale"] for t, p in activation_qparams(quantized).items()}
            save_cache(cache_path, fp, {"scales": scales})
    qparams = activation_qparams(quantized)
    if any(p["zero_point"] != 0 for p in qparams.values()):
        raise CalibrationError("ModelOpt produced a non-zero activation zero-point; TensorRT needs symmetric INT8")
    model = quantized
    if cfg.high_precision == "fp16":
        from asfyolo_rt.export.fp16 import to_fp16

        decode = [n for n in head_decode_nodes(source)]
        model = to_fp16(quantized, decode)
    artifact = _finish(model, source, out_path, "int8", {
        "quantizer": qname, "calib_method": cfg.method, "calib_images": str(len(calib)),
        "int8_flavour": "tensorrt", "high_precision": cfg.high_precision})
    return QuantResult(artifact, "tensorrt", cfg.method, excluded, qparams, len(qparams),
                       Path(cache_path) if cache_path else None, hit, time.perf_counter() - t0, qname)


def _stride(n: int, limit: int = 16) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def quantize_ort_cpu(
    fp32_path: str | Path,
    out_path: str | Path,
    calib: CalibrationSet,
    cfg: QuantConfig = QuantConfig(),
    *,
    cache_path: str | Path | None = None,
    progress: Progress | None = None,
) -> QuantResult:
    """ONNX Runtime CPU INT8 (QDQ U8S8) ONNX (see the module docstring)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    t0 = time.perf_counter()
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    source = onnx.load(str(fp32_path))
    qname = quantizer_version("onnxruntime")
    fp = _fingerprint(fp32_path, calib, cfg.method, "cpu", qname)
    cache = load_cache(cache_path, fp, on_mismatch=cfg.on_cache_mismatch) if cache_path else None  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="asfyolo-int8cpu-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        except Exception as exc:
            raise CalibrationError(f"ONNX Runtime quant_pre_process failed: {exc}") from exc
        pre_model = onnx.load(str(pre))
        excluded = exclusions(pre_model, cfg)
        ranges_file = Path(tmp) / "ranges.json"
        if cache is not None:
            ranges_file.write_text(json.dumps(cache.payload["tensors_data"]))
        reader = _Reader(calib, pre_model.graph.input[0].name, progress=progress)
        dst = Path(tmp) / "model.int8-cpu.onnx"
        try:
            with contextlib.redirect_stdout(sys.stderr):
                quantize_static(
                    str(pre), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.Entropy if cfg.method == "entropy" else CalibrationMethod.MinMax,
                    nodes_to_exclude=list(excluded), calibration_cache_path=str(ranges_file),
                    extra_options={"CalibStridedMinMax": _stride(len(reader)), "ActivationSymmetric": False,
                                   "WeightSymmetric": True},
                )
        except Exception as exc:
            raise CalibrationError(f"ONNX Runtime quantize_static failed: {type(exc).__name__}: {exc}") from exc
        if cache is None and cache_path:
            save_cache(cache_path, fp, {"tensors_data": json.loads(ranges_file.read_text())})
        quantized = onnx.load(str(dst))
    qparams = activation_qparams(quantized)
    artifact = _finish(quantized, source, out_path, "int8-cpu", {
        "quantizer": qname, "calib_method": cfg.method, "calib_images": str(len(calib)), "int8_flavour": "cpu"})
    return QuantResult(artifact, "cpu", cfg.method, excluded, qparams, len(qparams),
                       Path(cache_path) if cache_path else None, cache is not None, time.perf_counter() - t0, qname)
