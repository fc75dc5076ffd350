"""What a build needs to know about an ONNX file before TensorRT sees it, and which bundle file to build.

`check_onnx_for_build` turns every bad input into one clear EngineBuildError: a missing file, bytes that
are not ONNX, the ONNX Runtime CPU INT8 flavour (`model.int8-cpu.onnx`: asymmetric uint8 QDQ, not for
TensorRT), a file whose precision metadata differs from `--precision`. `onnx` is imported lazily (the
engine runner imports this package on devices without it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asfyolo_rt.errors import ConfigError, EngineBuildError

ONNX_FOR_PRECISION = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
CPU_INT8 = "model.int8-cpu.onnx"


@dataclass(frozen=True)
class ShapeProfile:
    """Optimization profile of the `images` input as (batch, height, width) triples."""

    min: tuple[int, int, int]
    opt: tuple[int, int, int]
    max: tuple[int, int, int]

    def __post_init__(self) -> None:
        for a, b in ((self.min, self.opt), (self.opt, self.max)):
            if any(x > y for x, y in zip(a, b)):
                raise ConfigError(f"shape profile min <= opt <= max violated: {self.min}, {self.opt}, {self.max}")
        if any(v < 1 for v in self.min):
            raise ConfigError(f"shape profile minimum {self.min} has non-positive entries")


@dataclass(frozen=True)
class OnnxFacts:
    meta: dict[str, str]  # custom metadata (precision, names, img_size, e2e_* ...)
    dims: list[int | str]  # input 0 shape, dim_params as strings
    has_plugins: bool  # asfyolo_rt-domain plugin nodes
    ops: frozenset[str] = field(default_factory=frozenset)  # op types of the default domain


def end2end_name(precision: str, nms: str = "onnx") -> str:
    """model[.fp16|.int8].end2end[.rtx].onnx: the end-to-end model of a precision (`rtx`: Cluster-NMS)."""
    stem = "model" if precision == "fp32" else f"model.{precision}"
    return f"{stem}.end2end{'.rtx' if nms == 'cluster' else ''}.onnx"


def read_onnx_facts(onnx_path: Path) -> OnnxFacts:
    """Metadata, input shape and op types; EngineBuildError if the file is not an ONNX model."""
    import onnx

    try:
        m = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends: random bytes, truncated files
        raise EngineBuildError(f"{onnx_path} is not an ONNX model ({type(exc).__name__}: {str(exc)[:120]})",
                               hint="re-export it with `asfyolo-rt export`") from exc
    if not m.graph.node or not m.graph.input or not m.graph.output:
        raise EngineBuildError(f"{onnx_path} is not an ONNX model (no graph nodes, inputs or outputs)",
                               hint="re-export it with `asfyolo-rt export`")
    meta = {p.key: p.value for p in m.metadata_props}
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in m.graph.input[0].type.tensor_type.shape.dim]
    ops = frozenset(n.op_type for n in m.graph.node if n.domain in ("", "ai.onnx"))
    return OnnxFacts(meta, dims, any(n.domain == "asfyolo_rt" for n in m.graph.node), ops)


def onnx_metadata(onnx_path: Path) -> tuple[dict[str, str], list[int | str], bool]:
    """(custom metadata, input shape with dim_params as strings, has asfyolo_rt plugin nodes)."""
    facts = read_onnx_facts(Path(onnx_path))
    return facts.meta, facts.dims, facts.has_plugins


def check_onnx_for_build(onnx_path: Path, precision: str) -> OnnxFacts:
    """The facts of an ONNX file TensorRT may build at `precision` (module docstring for the refusals)."""
    if not onnx_path.is_file():
        raise EngineBuildError(f"ONNX file {onnx_path} does not exist",
                               hint=f"the bundle should hold {ONNX_FOR_PRECISION.get(precision, 'it')} for "
                                    f"{precision} (asfyolo-rt export --fp16 --int8 --out BUNDLE)")
    facts = read_onnx_facts(onnx_path)
    found = facts.meta.get("precision", precision)
    if found == "int8-cpu" or onnx_path.name.endswith("int8-cpu.onnx"):
        raise EngineBuildError(f"{onnx_path.name} is the ONNX Runtime CPU INT8 model (asymmetric uint8 Q/DQ): it is "
                               "not for TensorRT", hint=f"build {ONNX_FOR_PRECISION['int8']} with --precision int8")
    if found != precision:
        raise EngineBuildError(f"{onnx_path.name} is a {found} model but --precision is {precision}",
                               hint=f"use {ONNX_FOR_PRECISION.get(precision, 'the file of that precision')} for "
                                    f"{precision}")
    return facts


def default_profile(dims: list[int | str], img_size: list[int], max_batch: int = 8) -> ShapeProfile | None:
    """None for a static input; else batch 1..max_batch (opt 1) at the export size, H/W +-50% if dynamic."""
    if all(isinstance(d, int) and d > 0 for d in dims):
        return None
    h, w = (img_size + img_size)[:2] if img_size else (640, 640)
    b_dyn = not isinstance(dims[0], int) or dims[0] <= 0
    s_dyn = any(not isinstance(d, int) or d <= 0 for d in dims[2:])
    b = int(dims[0]) if not b_dyn else 1
    lo = (max(32, h // 2 // 32 * 32), max(32, w // 2 // 32 * 32)) if s_dyn else (h, w)
    hi = (h * 3 // 2 // 32 * 32, w * 3 // 2 // 32 * 32) if s_dyn else (h, w)
    return ShapeProfile((b, *lo), (b, h, w), (max_batch if b_dyn else b, *hi))


def json_list(text: str | None) -> list[int]:
    try:
        v = json.loads(text) if text else []
    except ValueError:
        return []
    return [int(x) for x in v] if isinstance(v, list) else []


def json_dict(text: str | None) -> dict[str, Any]:
    try:
        v = json.loads(text) if text else {}
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}
