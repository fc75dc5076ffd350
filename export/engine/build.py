"""Build a TensorRT or TensorRT-RTX engine from the ONNX of the wanted precision.

One code path for every flavour, driven by the features `export.engine.api` detects:

- strongly typed (TensorRT 11, TensorRT-RTX; TensorRT 10 without DLA): precision comes from the graph
  (model.onnx, model.fp16.onnx, model.int8.onnx), no builder precision flags;
- weakly typed (TensorRT 8.6, and TensorRT 10 with `dla_core` for DLA on Jetson Orin): builder precision
  flags (FP16; INT8 + FP16 for Q/DQ graphs) in `_legacy_precision_flags`, only where `BuilderFlag.FP16`
  exists (a test forbids the TensorRT-11-removed APIs anywhere else);
- standard TensorRT builds for the GPU it runs on (it probes the GPU first); TensorRT-RTX builds ahead of
  time on any machine, GPU or not, for the target architectures given (`archs`, default: TensorRT-RTX's
  portable set, compute capability 8.0 and later except Turing) and never uses a timing cache (one makes
  its builder query a GPU).
- Dynamic inputs get one optimization profile; the workspace is limited.

Output: the plain plan file (nothing prepended) plus `<name>.engine.json` (export.engine.sidecar) written
from the parsed network (I/O names, dtypes, shapes: deserializing the engine would need a GPU), with the
per-layer precision summary of `export.engine.buildlog` (DETAILED profiling verbosity).
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from asfyolo_rt.export.engine.buildlog import (
    BuildLog,
    LayerInfo,
    NetworkInfo,
    capture_logger,
    network_info,
    parse_inspector_json,
    parse_log_layers,
    precision_summary,
)
from asfyolo_rt.export.engine.onnx_facts import (
    ONNX_FOR_PRECISION,
    ShapeProfile,
    check_onnx_for_build,
    default_profile,
    json_dict,
    json_list,
    onnx_metadata,
    read_onnx_facts,
)

from asfyolo_rt.errors import ConfigError, EngineBuildError, Interrupted
from asfyolo_rt.infer.sidecar import (
    PRECISIONS,
    EngineSidecar,
    atomic_write,
    file_sha256,
    write_sidecar,
)
from asfyolo_rt.infer.trt_api import TensorRTApi, load_tensorrt, parse_archs

if TYPE_CHECKING:
    import tensorrt as trt
    import tensorrt_rtx

__all__ = ["ONNX_FOR_PRECISION", "BuildConfig", "EngineArtifact", "ShapeProfile", "build_command", "build_engine",
           "default_profile", "import_tensorrt", "onnx_metadata", "parse_onnx", "trtexec_command"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BuildConfig:
    precision: str = "fp16"
    workspace_gib: float = 4.0
    dla_core: int | None = None
    profile: ShapeProfile | None = None  # required when the ONNX input has dynamic axes
    timing_cache: Path | None = None  # standard TensorRT only
    version_compatible: bool = False
    runtime: str = "auto"  # "trt", "rtx", or "auto" (standard TensorRT if installed, else TensorRT-RTX)
    archs: tuple[str, ...] = ()  # TensorRT-RTX targets, e.g. ("sm86", "sm89"); () = its default portable set
    optimization_level: int | None = None  # builder optimization level (None: the flavour's default, 3)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        if self.workspace_gib <= 0:
            raise ConfigError(f"workspace {self.workspace_gib} GiB; expected > 0")
        if self.dla_core is not None and self.dla_core < 0:
            raise ConfigError(f"--dla-core {self.dla_core}; expected 0 or 1")
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise ConfigError(f"optimization level {self.optimization_level}; expected 0..5")


@dataclass
class EngineArtifact:
    engine: Path
    sidecar_path: Path
    sidecar: EngineSidecar
    seconds: float
    runtime: str = "TensorRT"  # "TensorRT" or "TensorRT-RTX"


def import_tensorrt(what_to_run: str = "") -> ModuleType:
    """The real standard `tensorrt` module; EngineBuildError (with the command for the target device) otherwise."""
    return load_tensorrt("trt", what_to_run).module  # type: ignore[no-any-return]


def _strongly_typed(api: TensorRTApi, dla_core: int | None) -> bool:
    if not api.precision_flags:  # TensorRT 11, TensorRT-RTX: every network is strongly typed
        return True
    return api.strongly_typed_flag and dla_core is None  # TensorRT 10: opt-in, but DLA wants weak typing


def network_flags(api: TensorRTApi, strongly_typed: bool, aot_plugins: bool) -> int:
    """create_network flags by feature (names, not integers: the flavours number them differently)."""
    flags = 0
    if api.explicit_batch_flag:  # TensorRT 8.6 (implicit batch is its default)
        flags |= 1 << int(api.enum("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH"))
    if strongly_typed and api.precision_flags and api.strongly_typed_flag:  # opt-in only where weak typing exists
        flags |= 1 << int(api.enum("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"))
    if aot_plugins:
        flags |= 1 << int(api.enum("NetworkDefinitionCreationFlag", "PREFER_AOT_PYTHON_PLUGINS"))
    return flags


def _legacy_precision_flags(api: TensorRTApi, config: trt.IBuilderConfig, precision: str) -> None:
    """Builder precision flags of weakly typed networks: only where they exist (TensorRT < 11)."""
    trt_mod = api.module
    if not api.precision_flags or int(api.version.split(".")[0]) >= 11 and api.runtime == "trt":
        raise EngineBuildError(f"{api.display} has no builder precision flags (strongly typed only)")
    if precision in ("fp16", "int8"):
        config.set_flag(trt_mod.BuilderFlag.FP16)  # legacy path: exists (checked above)
    if precision == "int8":  # Q/DQ graphs need the INT8 flag in weakly typed mode; scales come from the graph
        config.set_flag(trt_mod.BuilderFlag.INT8)  # legacy path: exists (checked above)


def _parse(api: TensorRTApi, builder: trt.Builder, logger: trt.ILogger, onnx_path: Path, flags: int,
           record: BuildLog) -> tuple[trt.INetworkDefinition, Any]:
    network = builder.create_network(flags)
    parser = api.module.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i).desc() for i in range(parser.num_errors)] or record.errors[-1:]
        more = f" (+{len(errors) - 2} more)" if len(errors) > 2 else ""
        raise EngineBuildError(f"{api.display} cannot parse {onnx_path.name}: {'; '.join(errors[:2])}{more}",
                               hint="check the file with `polygraphy inspect model`, or re-export it")
    return network, parser  # the parser must outlive the network's use (it owns the weights)


def _set_targets(api: TensorRTApi, config: trt.IBuilderConfig, archs: list[str]) -> None:
    if not archs:
        return
    rtx_config: tensorrt_rtx.IBuilderConfig = config  # type: ignore[assignment]  # TensorRT-RTX only API
    known = api.archs()
    rtx_config.num_compute_capabilities = len(archs)
    for i, arch in enumerate(archs):
        if not rtx_config.set_compute_capability(known[arch], i):
            raise EngineBuildError(f"{api.display} refused target {arch}")


def _configure(api: TensorRTApi, builder: trt.Builder, network: trt.INetworkDefinition, cfg: BuildConfig,
               strongly_typed: bool, archs: list[str], profile: ShapeProfile | None) -> trt.IBuilderConfig:
    trt_mod = api.module
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt_mod.MemoryPoolType.WORKSPACE, int(cfg.workspace_gib * (1 << 30)))
    config.profiling_verbosity = trt_mod.ProfilingVerbosity.DETAILED  # per-kernel datatypes for the summary
    if cfg.optimization_level is not None:
        config.builder_optimization_level = cfg.optimization_level
    if cfg.version_compatible:
        config.set_flag(api.enum("BuilderFlag", "VERSION_COMPATIBLE"))
    if not strongly_typed and api.precision_flags and int(api.version.split(".")[0]) < 11:
        _legacy_precision_flags(api, config, cfg.precision)
    if cfg.dla_core is not None:
        if not api.dla or builder.num_DLA_cores <= cfg.dla_core:
            raise EngineBuildError(f"--dla-core {cfg.dla_core} requested, this device has "
                                   f"{builder.num_DLA_cores if api.dla else 0} DLA cores ({api.display})",
                                   hint="AGX Orin / Orin NX 16GB have 2, Orin Nano, Thor and RTX GPUs none")
        config.default_device_type = trt_mod.DeviceType.DLA
        config.DLA_core = cfg.dla_core
        config.set_flag(api.enum("BuilderFlag", "GPU_FALLBACK"))
    if profile is not None:
        p = builder.create_optimization_profile()
        first = network.get_input(0)
        c = int(first.shape[1])
        p.set_shape(first.name, (profile.min[0], c, *profile.min[1:]), (profile.opt[0], c, *profile.opt[1:]),
                    (profile.max[0], c, *profile.max[1:]))
        config.add_optimization_profile(p)
    if cfg.timing_cache is not None:
        blob = Path(cfg.timing_cache).read_bytes() if Path(cfg.timing_cache).is_file() else b""
        config.set_timing_cache(config.create_timing_cache(blob), False)
    _set_targets(api, config, archs)
    return config


class BuildCancel:
    """Ctrl-C / SIGTERM during a build. TensorRT calls back into Python (its logger, the progress monitor)
    while it builds, and an exception raised there is swallowed ("Exception caught in log():
    KeyboardInterrupt") and the build goes on; so while it builds, the signal handler only records the
    signal and the progress monitor (`progress_monitor`) tells TensorRT to stop at its next step."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def handler(self, signum: int, _frame: Any) -> None:
        if self.signum is None:
            self.signum = signum

    @contextlib.contextmanager
    def signals(self) -> Iterator[BuildCancel]:
        """SIGINT and SIGTERM recorded instead of raised for the duration (main thread only: signals reach
        no other thread, so there it records nothing)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self.handler) for s in (signal.SIGINT, signal.SIGTERM)
               if signal.getsignal(s) is not signal.SIG_IGN}  # a signal ignored (nohup, &) stays so
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def progress_monitor(api: TensorRTApi, cancel: BuildCancel) -> Any | None:
    """An `IProgressMonitor` of `api`'s flavour whose `step_complete` returns False (stop the build) once
    `cancel` holds a signal; None where the flavour has none (TensorRT < 10: the build then stops when it
    ends, and its plan is dropped)."""
    base = getattr(api.module, "IProgressMonitor", None)
    if base is None:
        return None

    class _Monitor(base):  # type: ignore[misc, valid-type]  # a class of the runtime-selected module
        def __init__(self) -> None:
            super().__init__()

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            pass

        def step_complete(self, phase_name: str, step: int) -> bool:
            return cancel.signum is None

        def phase_finish(self, phase_name: str) -> None:
            pass

    return _Monitor()


def _build_plan(api: TensorRTApi, builder: trt.Builder, network: trt.INetworkDefinition,
                config: trt.IBuilderConfig, onnx_path: Path, engine_path: Path) -> Any:
    """builder.build_serialized_network, stopped promptly by Ctrl-C / SIGTERM (BuildCancel): Interrupted
    then, with nothing written."""
    cancel = BuildCancel()
    monitor = progress_monitor(api, cancel)
    if monitor is not None and hasattr(config, "progress_monitor"):
        config.progress_monitor = monitor
    with cancel.signals():
        plan = builder.build_serialized_network(network, config)
    if monitor is not None and hasattr(config, "progress_monitor"):
        config.progress_monitor = None
    if cancel.signum is not None:
        raise Interrupted(cancel.signum, f"the engine build from {onnx_path.name} was stopped; {engine_path} "
                                         "was not written")
    return plan


def _inspector_layers(api: TensorRTApi, logger: trt.ILogger, plan: bytes) -> list[LayerInfo]:
    """Standard TensorRT on its GPU: the engine inspector's JSON ([] if the engine cannot be inspected)."""
    try:
        engine = api.module.Runtime(logger).deserialize_cuda_engine(plan)
        inspector = engine.create_engine_inspector()
        fmt = api.module.LayerInformationFormat.JSON
        return parse_inspector_json(inspector.get_engine_information(fmt))
    except Exception:  # an engine that does not inspect only loses the summary, not the build
        return []


def _layer_summary(api: TensorRTApi, logger: trt.ILogger, record: BuildLog, info: NetworkInfo,
                   plan: bytes) -> dict[str, Any]:
    if record.layer_messages:
        return precision_summary(parse_log_layers(record.layer_messages[-1]), info,
                                 "build log (ProfilingVerbosity.DETAILED)", record.scale_conversions)
    if not api.needs_gpu_to_build:
        return {}
    return precision_summary(_inspector_layers(api, logger, plan), info, "engine inspector (DETAILED)")


def parse_onnx(onnx_path: str | Path, runtime: str = "auto") -> NetworkInfo:
    """Parse an ONNX file with the flavour's ONNX parser only (no build, no GPU): the network's I/O and convs.

    Raises EngineBuildError with the parser's errors when it does not parse.
    """
    onnx_path = Path(onnx_path)
    read_onnx_facts(onnx_path)
    api = load_tensorrt(runtime)
    logger, record = capture_logger(api)
    builder: trt.Builder = api.module.Builder(logger)
    network, _parser = _parse(api, builder, logger, onnx_path, network_flags(api, _strongly_typed(api, None), False),
                              record)
    return network_info(api, network)


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
    from asfyolo_rt import __version__

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    t0 = time.perf_counter()
    facts = check_onnx_for_build(onnx_path, cfg.precision)
    api = load_tensorrt(cfg.runtime, build_command(onnx_path.parent, cfg.precision, cfg.dla_core,
                                                   runtime=cfg.runtime))
    archs = parse_archs(api, list(cfg.archs))
    device, capability = "", ""
    if api.needs_gpu_to_build:
        from asfyolo_rt.infer.cuda import device_info

        dev = device_info(0)
        device, capability = dev.name, dev.compute_capability
    if facts.has_plugins:
        if not api.aot_plugins:
            raise EngineBuildError(f"{onnx_path.name} has TensorRT plugin nodes; {api.display} has no ahead-of-time "
                                   "Python plugins (TensorRT >= 10.9 has)", hint="export with the pure-ONNX mask assembly")
        from asfyolo_rt.export.engine.plugin import register_mask_plugin

        register_mask_plugin(manifest)
    if "NonMaxSuppression" in facts.ops and not api.nms_runner:
        raise EngineBuildError(f"{onnx_path.name} uses ONNX NonMaxSuppression, which {api.display} cannot run",
                               hint="build the Cluster-NMS end-to-end model (`asfyolo-rt build BUNDLE --runtime rtx "
                                    "--end2end` writes and builds model[.PREC].end2end.rtx.onnx)")
    if cfg.timing_cache is not None and not api.timing_cache:
        raise ConfigError(f"a timing cache makes {api.display} query a GPU (no ahead-of-time build); pass none")
    strongly_typed = _strongly_typed(api, cfg.dla_core)
    steps = 4
    if progress:
        progress(0, steps)
    logger, record = capture_logger(api)
    builder: trt.Builder = api.module.Builder(logger)
    network, _parser = _parse(api, builder, logger, onnx_path, network_flags(api, strongly_typed, facts.has_plugins),
                              record)
    info = network_info(api, network)
    if progress:
        progress(1, steps)
    profile = cfg.profile or default_profile(facts.dims, json_list(facts.meta.get("img_size")))
    config = _configure(api, builder, network, cfg, strongly_typed, archs, profile)
    if progress:
        progress(2, steps)
    t_build = time.perf_counter()
    plan = _build_plan(api, builder, network, config, onnx_path, engine_path)
    if plan is None:
        why = f": {record.errors[-1]}" if record.errors else " (see its log above)"
        raise EngineBuildError(f"{api.display} failed to build an engine from {onnx_path.name}{why}",
                               hint="try a larger --workspace, or check the ONNX with `polygraphy inspect model`")
    build_seconds = time.perf_counter() - t_build
    data = bytes(memoryview(plan))  # type: ignore[arg-type]
    atomic_write(engine_path, data)
    if cfg.timing_cache is not None:
        cache = config.get_timing_cache()
        if cache is not None:
            atomic_write(Path(cfg.timing_cache), bytes(memoryview(cache.serialize())))  # type: ignore[arg-type]
    if progress:
        progress(3, steps)
    inputs = {k: dict(v) for k, v in info.inputs.items()}
    if profile is not None:
        for entry in inputs.values():
            entry["profile"] = {"min": list(profile.min), "opt": list(profile.opt), "max": list(profile.max)}
    meta = facts.meta
    sidecar = EngineSidecar(
        engine=engine_path.name, precision=cfg.precision, onnx=onnx_path.name, onnx_sha256=file_sha256(onnx_path),
        tensorrt_version=api.version, compute_capability=capability, device=device, runtime=api.name,
        targets=archs, strongly_typed=strongly_typed, dla_core=cfg.dla_core, inputs=inputs, outputs=info.outputs,
        names=json_dict(meta.get("names")), nc=int(meta.get("nc", "1")), img_size=json_list(meta.get("img_size")),
        preprocess=json_dict(meta.get("preprocess")), end2end=meta.get("end2end") == "true",
        thresholds={k[4:]: v for k, v in meta.items() if k.startswith("e2e_")},
        geometry=json_dict(meta.get("geometry")),
        model_info=json_dict(meta.get("model_info")),
        layers=_layer_summary(api, logger, record, info, data),
        build={"workspace_gib": cfg.workspace_gib, "timing_cache": str(cfg.timing_cache) if cfg.timing_cache else None,
               "version_compatible": cfg.version_compatible, "optimization_level": cfg.optimization_level,
               "ahead_of_time": not api.needs_gpu_to_build, "module": api.module_name,
               "targets": ",".join(archs) if archs else ("default portable set (compute capability 8.0+, not "
                                                         "Turing)" if api.target_archs else "this GPU"),
               "engine_bytes": len(data), "build_seconds": round(build_seconds, 2),
               "seconds": round(time.perf_counter() - t0, 1), "plugins": facts.has_plugins,
               "warnings": len(record.warnings)},
        asfyolo_rt=__version__,
    )
    side = write_sidecar(engine_path, sidecar)
    if progress:
        progress(4, steps)
    return EngineArtifact(engine_path, side, sidecar, time.perf_counter() - t0, api.name)


def build_command(bundle: str | Path, precision: str, dla_core: int | None = None, *, runtime: str = "auto",
                  end2end: bool = False, archs: tuple[str, ...] = ()) -> str:
    """The `asfyolo-rt build` command (to run on the target device for standard TensorRT)."""
    cmd = ["asfyolo-rt", "build", str(bundle), "--precision", precision]
    if runtime != "auto":
        cmd += ["--runtime", runtime]
    if end2end:
        cmd.append("--end2end")
    if archs:
        cmd += ["--arch", ",".join(archs)]
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
