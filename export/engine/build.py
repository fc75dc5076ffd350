"""Build a TensorRT engine on the machine it will run on, from the ONNX of the wanted precision.

- TensorRT >= 10: a strongly typed network parsed from the precision-specific ONNX (model.onnx,
  model.fp16.onnx, model.int8.onnx): precision comes from the graph, no builder precision flags (they do
  not exist in TensorRT 11).
- TensorRT 8.6-10.x with `dla_core` (DLA on Jetson Orin), or TensorRT 8.6 at all: a weakly typed network
  with builder precision flags (FP16; INT8 + FP16 for Q/DQ graphs), behind a TensorRT-major-version guard
  (`_legacy_*` functions; a test forbids the TensorRT-11-removed APIs anywhere else).
- Dynamic inputs get one optimization profile (min/opt/max batch and size), a timing cache is read and
  written when given, the workspace is limited.
- Output: the plain plan file (nothing prepended) plus `<name>.engine.json` (export.engine.sidecar).

Without TensorRT or a GPU, `build_engine` raises EngineBuildError saying what to run on the target device.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from asfyolo_rt.export.engine.sidecar import (
    PRECISIONS,
    EngineSidecar,
    atomic_write,
    file_sha256,
    write_sidecar,
)

from asfyolo_rt.errors import ConfigError, EngineBuildError

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
ONNX_FOR_PRECISION = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}


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
class BuildConfig:
    precision: str = "fp16"
    workspace_gib: float = 4.0
    dla_core: int | None = None
    profile: ShapeProfile | None = None  # required when the ONNX input has dynamic axes
    timing_cache: Path | None = None
    version_compatible: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        if self.workspace_gib <= 0:
            raise ConfigError(f"workspace {self.workspace_gib} GiB; expected > 0")
        if self.dla_core is not None and self.dla_core < 0:
            raise ConfigError(f"--dla-core {self.dla_core}; expected 0 or 1")


@dataclass
class EngineArtifact:
    engine: Path
    sidecar_path: Path
    sidecar: EngineSidecar
    seconds: float


def import_tensorrt(what_to_run: str = "") -> ModuleType:
    """The real `tensorrt` module; EngineBuildError (with the command for the target device) otherwise."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineBuildError(
            "TensorRT is not installed on this machine, so no engine can be built here",
            hint=f"copy the bundle to the target device and run there: {what_to_run or 'asfyolo-rt build BUNDLE'}",
        ) from exc
    if not hasattr(trt, "Builder"):  # e.g. an empty `tensorrt` package left by tensorrt-stubs
        raise EngineBuildError("the installed `tensorrt` package has no Builder (a stubs-only install?)",
                               hint="install TensorRT (pip install tensorrt, or JetPack's python3-libnvinfer)")
    return trt


def trt_version(version: str) -> tuple[int, int]:
    """'10.3.0.30' -> (10, 3)."""
    parts = str(version).split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0


def onnx_metadata(onnx_path: Path) -> tuple[dict[str, str], list[int | str], bool]:
    """(custom metadata, input shape with dim_params as strings, has asfyolo_rt plugin nodes)."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    meta = {p.key: p.value for p in m.metadata_props}
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in m.graph.input[0].type.tensor_type.shape.dim]
    return meta, dims, any(n.domain == "asfyolo_rt" for n in m.graph.node)


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


def network_flags(strongly_typed: bool, aot_plugins: bool) -> int:
    import tensorrt as trt

    major, _ = trt_version(trt.__version__)
    flags = 0
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly_typed and major == 10:  # always on (and the flag a deprecated no-op) from TensorRT 11
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if aot_plugins:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.PREFER_AOT_PYTHON_PLUGINS)
    return flags


def _legacy_precision_flags(config: trt.IBuilderConfig, precision: str) -> None:
    """Builder precision flags of weakly typed networks: TensorRT < 11 only (removed in 11)."""
    import tensorrt as trt

    if trt_version(trt.__version__)[0] >= 11:
        raise EngineBuildError("builder precision flags do not exist in TensorRT >= 11 (strongly typed only)")
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # legacy path, TensorRT < 11 only (checked above)
    if precision == "int8":  # Q/DQ graphs need the INT8 flag in weakly typed mode; scales come from the graph
        config.set_flag(trt.BuilderFlag.INT8)  # legacy path, TensorRT < 11 only (checked above)


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    cfg: BuildConfig,
    *,
    manifest: Path | None = None,
    progress: Progress | None = None,
) -> EngineArtifact:
    """Parse `onnx_path` and build a plan at `engine_path` (+ sidecar). See the module docstring.

    manifest: the kernels manifest.json (`asfyolo-rt kernels compile`) for graphs with plugin nodes.
    """
    from asfyolo_rt.export.engine.cuda import device_info

    from asfyolo_rt import __version__

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise EngineBuildError(f"ONNX file {onnx_path} does not exist",
                               hint=f"the bundle should hold {ONNX_FOR_PRECISION[cfg.precision]} for {cfg.precision}")
    t0 = time.perf_counter()
    meta, dims, has_plugins = onnx_metadata(onnx_path)
    if meta.get("precision", cfg.precision) != cfg.precision:
        extra = " (the ONNX Runtime CPU flavour: asymmetric uint8, not for TensorRT)" if meta.get(
            "precision") == "int8-cpu" else ""
        raise EngineBuildError(f"{onnx_path.name} is a {meta.get('precision')} model{extra} but --precision is "
                               f"{cfg.precision}", hint=f"use {ONNX_FOR_PRECISION[cfg.precision]} for {cfg.precision}")
    import_tensorrt(build_command(onnx_path.parent, cfg.precision, cfg.dla_core))
    import tensorrt as trt

    dev = device_info(0)
    major, minor = trt_version(trt.__version__)
    if (major, minor) < (8, 6):
        raise EngineBuildError(f"TensorRT {trt.__version__} is older than 8.6, the oldest supported here")
    if has_plugins:
        if (major, minor) < (10, 9):
            raise EngineBuildError(f"{onnx_path.name} has TensorRT plugin nodes (AOT plugins need TensorRT >= 10.9, "
                                   f"found {trt.__version__})", hint="export with the pure-ONNX mask assembly")
        from asfyolo_rt.export.engine.plugin import register_mask_plugin

        register_mask_plugin(manifest)
    strongly_typed = major >= 11 or (major == 10 and cfg.dla_core is None)
    steps = 4
    if progress:
        progress(0, steps)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(strongly_typed, has_plugins))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT {trt.__version__} cannot parse {onnx_path.name}: {errors}")
    if progress:
        progress(1, steps)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(cfg.workspace_gib * (1 << 30)))
    if cfg.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if not strongly_typed and major < 11:
        _legacy_precision_flags(config, cfg.precision)
    if cfg.dla_core is not None:
        if builder.num_DLA_cores <= cfg.dla_core:
            raise EngineBuildError(f"--dla-core {cfg.dla_core} requested, this device has {builder.num_DLA_cores} "
                                   "DLA cores", hint="AGX Orin / Orin NX 16GB have 2, Orin Nano and Thor none")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = cfg.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    profile = cfg.profile or default_profile(dims, _json_list(meta.get("img_size")))
    input_name = network.get_input(0).name
    if profile is not None:
        p = builder.create_optimization_profile()
        c = int(network.get_input(0).shape[1])
        p.set_shape(input_name, (profile.min[0], c, *profile.min[1:]), (profile.opt[0], c, *profile.opt[1:]),
                    (profile.max[0], c, *profile.max[1:]))
        config.add_optimization_profile(p)
    if cfg.timing_cache is not None:
        blob = Path(cfg.timing_cache).read_bytes() if Path(cfg.timing_cache).is_file() else b""
        config.set_timing_cache(config.create_timing_cache(blob), False)
    if progress:
        progress(2, steps)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path.name} (see its log above)",
                               hint="try a larger --workspace, or check the ONNX with `polygraphy inspect model`")
    atomic_write(engine_path, bytes(memoryview(plan)))  # type: ignore[arg-type]
    if cfg.timing_cache is not None:
        cache = config.get_timing_cache()
        if cache is not None:
            atomic_write(Path(cfg.timing_cache), bytes(memoryview(cache.serialize())))  # type: ignore[arg-type]
    if progress:
        progress(3, steps)
    io = _io_description(engine_path, logger, profile)
    sidecar = EngineSidecar(
        engine=engine_path.name, precision=cfg.precision, onnx=onnx_path.name, onnx_sha256=file_sha256(onnx_path),
        tensorrt_version=str(trt.__version__), compute_capability=dev.compute_capability, device=dev.name,
        strongly_typed=strongly_typed, dla_core=cfg.dla_core, inputs=io[0], outputs=io[1],
        names=_json_dict(meta.get("names")), nc=int(meta.get("nc", "1")), img_size=_json_list(meta.get("img_size")),
        preprocess=_json_dict(meta.get("preprocess")), end2end=meta.get("end2end") == "true",
        thresholds={k[4:]: v for k, v in meta.items() if k.startswith("e2e_")},
        build={"workspace_gib": cfg.workspace_gib, "timing_cache": str(cfg.timing_cache) if cfg.timing_cache else None,
               "version_compatible": cfg.version_compatible, "seconds": round(time.perf_counter() - t0, 1),
               "plugins": has_plugins},
        asfyolo_rt=__version__,
    )
    side = write_sidecar(engine_path, sidecar)
    if progress:
        progress(4, steps)
    return EngineArtifact(engine_path, side, sidecar, time.perf_counter() - t0)


def _io_description(engine_path: Path, logger: trt.ILogger,
                    profile: ShapeProfile | None) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    import tensorrt as trt

    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:
        raise EngineBuildError(f"the engine just built ({engine_path}) does not deserialize")
    inputs: dict[str, dict[str, Any]] = {}
    outputs: dict[str, dict[str, Any]] = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        entry: dict[str, Any] = {"shape": list(engine.get_tensor_shape(name)),
                                 "dtype": str(engine.get_tensor_dtype(name)).split(".")[-1].lower()}
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            if profile is not None:
                entry["profile"] = {"min": list(profile.min), "opt": list(profile.opt), "max": list(profile.max)}
            inputs[name] = entry
        else:
            outputs[name] = entry
    return inputs, outputs


def _json_list(text: str | None) -> list[int]:
    import json

    try:
        v = json.loads(text) if text else []
    except ValueError:
        return []
    return [int(x) for x in v] if isinstance(v, list) else []


def _json_dict(text: str | None) -> dict[str, Any]:
    import json

    try:
        v = json.loads(text) if text else {}
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def build_command(bundle: str | Path, precision: str, dla_core: int | None = None) -> str:
    """The `asfyolo-rt build` command to run on the target device."""
    cmd = ["asfyolo-rt", "build", str(bundle), "--precision", precision]
    if dla_core is not None:
        cmd += ["--dla-core", str(dla_core)]
    return shlex.join(cmd)


def trtexec_command(onnx_path: str | Path, engine_path: str | Path, *, precision: str,
                    dims: list[int | str] | None = None, img_size: list[int] | None = None,
                    workspace_gib: float = 4.0, dla_core: int | None = None) -> str:
    """The equivalent trtexec command line (TensorRT >= 10 strongly typed; DLA: TensorRT 10 flags)."""
    cmd = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
           f"--memPoolSize=workspace:{int(workspace_gib * 1024)}M", f"--timingCacheFile={Path(engine_path).parent / 'timing.cache'}"]
    if dla_core is None:
        cmd.append("--stronglyTyped")  # TensorRT 10; a no-op on 11, where every network is strongly typed
    else:  # DLA on JetPack's TensorRT 10.x: weakly typed with precision flags
        cmd += [f"--useDLACore={dla_core}", "--allowGPUFallback", "--fp16"] + (["--int8"] if precision == "int8" else [])
    profile = default_profile(dims or [], img_size or []) if dims else None
    if profile is not None:
        def s(t: tuple[int, int, int]) -> str:
            return f"images:{t[0]}x3x{t[1]}x{t[2]}"

        cmd += [f"--minShapes={s(profile.min)}", f"--optShapes={s(profile.opt)}", f"--maxShapes={s(profile.max)}"]
    return shlex.join(cmd)
