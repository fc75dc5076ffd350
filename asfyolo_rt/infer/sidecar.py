"""The sidecar JSON of a TensorRT engine: `<name>.engine.json` next to the plain plan `<name>.engine`.

Torch-free (it runs on devices that only have TensorRT and cuda-python). The plan file is exactly what
TensorRT serialized (trtexec, C++ runtimes and Triton Inference Server load it
as is); everything else a runtime needs lives here: precision, I/O shapes and the optimization profile,
runtime (TensorRT or TensorRT-RTX) and its version, compute capability and device (standard TensorRT
builds on the GPU it targets) or target architectures (TensorRT-RTX builds ahead of time), the source
ONNX's SHA-256, class names, pre-processing, end-to-end thresholds, and the per-layer precision summary
(how many convolutions run Int8 / Half / Float). No TensorRT is needed to read or write it.

Format 2 added `runtime`, `targets` and `layers`; format 3 `model_info` (the source ONNX's ModelInfo JSON,
`asfyolo_rt.runtime.info`: the contract a non-Python runtime reads); format-1/2 sidecars still read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from asfyolo_rt.atomic import file_sha256  # noqa: F401  (re-exported)
from asfyolo_rt.errors import EngineBuildError

FORMAT = "asfyolo-rt-engine/3"
READABLE_FORMATS = ("asfyolo-rt-engine/1", "asfyolo-rt-engine/2", FORMAT)
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class EngineSidecar:
    engine: str  # plan file name (relative to the sidecar)
    precision: str  # fp32 | fp16 | int8
    onnx: str  # source ONNX file name
    onnx_sha256: str
    tensorrt_version: str  # version of `runtime` ("10.3.0.30", or TensorRT-RTX "1.7.1.116")
    compute_capability: str  # "8.7": the GPU it was built on; "" for TensorRT-RTX ahead-of-time builds
    device: str = ""
    runtime: str = "TensorRT"  # "TensorRT" or "TensorRT-RTX" (different runtimes: engines are not interchangeable)
    targets: list[str] = field(default_factory=list)  # TensorRT-RTX targets ["sm86", "sm89"]; [] = its default set
    strongly_typed: bool = True
    dla_core: int | None = None
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {dtype, shape, profile}
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {dtype, shape}
    names: dict[str, str] = field(default_factory=dict)
    nc: int = 1
    img_size: list[int] = field(default_factory=list)
    preprocess: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    end2end: bool = False
    geometry: dict[str, Any] = field(default_factory=dict)  # the ONNX's training geometry (tiled inference)
    model_info: dict[str, Any] = field(default_factory=dict)  # the ONNX's ModelInfo (asfyolo_rt.runtime.info)
    layers: dict[str, Any] = field(default_factory=dict)  # per-layer precision summary (export.engine.buildlog)
    build: dict[str, Any] = field(default_factory=dict)  # workspace, timing cache, flags, seconds, engine bytes
    asfyolo_rt: str = ""
    format: str = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def atomic_write(path: str | Path, data: bytes) -> None:
    """Atomic write (see asfyolo_rt.atomic; standard library only, no torch)."""
    from asfyolo_rt.atomic import atomic_write_bytes

    atomic_write_bytes(path, data)


def sidecar_path(engine_path: str | Path) -> Path:
    """model.int8.engine -> model.int8.engine.json."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def write_sidecar(engine_path: str | Path, sidecar: EngineSidecar) -> Path:
    if sidecar.precision not in PRECISIONS:
        raise EngineBuildError(f"sidecar precision {sidecar.precision!r}; expected one of {PRECISIONS}")
    path = sidecar_path(engine_path)
    atomic_write(path, json.dumps(sidecar.to_dict(), indent=2, sort_keys=True).encode())
    return path


def read_sidecar(engine_path: str | Path) -> EngineSidecar:
    """The sidecar of an engine; EngineBuildError naming the file when it is missing or malformed."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise EngineBuildError(
            f"{path} does not exist: an engine without its sidecar has no class names or pre-processing",
            hint="build engines with `asfyolo-rt build`, which writes <name>.engine.json beside the plan",
        )
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EngineBuildError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") not in READABLE_FORMATS:
        raise EngineBuildError(f"{path}: format {doc.get('format') if isinstance(doc, dict) else None!r}, "
                               f"expected one of {READABLE_FORMATS}")
    known = {f.name for f in fields(EngineSidecar)}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise EngineBuildError(f"{path}: unknown keys {unknown} (written by a newer asfyolo-rt?)")
    required = ("engine", "precision", "onnx", "onnx_sha256", "tensorrt_version", "compute_capability")
    missing = [k for k in required if k not in doc]
    if missing:
        raise EngineBuildError(f"{path}: missing keys {missing}")
    if doc["precision"] not in PRECISIONS:
        raise EngineBuildError(f"{path}: precision {doc['precision']!r}; expected one of {PRECISIONS}")
    if doc.get("runtime", "TensorRT") not in ("TensorRT", "TensorRT-RTX"):
        raise EngineBuildError(f"{path}: runtime {doc['runtime']!r}; expected 'TensorRT' or 'TensorRT-RTX'")
    return EngineSidecar(**{**doc, "format": FORMAT})
