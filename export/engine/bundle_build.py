"""Engines from a deployment bundle: which ONNX file each runtime builds, and the engine's name.

| runtime      | plain model (precision P)            | end-to-end model                                     |
| ------------ | ------------------------------------ | ---------------------------------------------------- |
| TensorRT     | model[.P].onnx -> model[.P].engine   | model[.P].end2end.onnx (ONNX NonMaxSuppression)      |
| TensorRT-RTX | model[.P].onnx -> model[.P].rtx.engine | model[.P].end2end.rtx.onnx (Cluster-NMS, basic ops) |

TensorRT-RTX has no NonMaxSuppression runner, so its end-to-end model is the Cluster-NMS flavour
(`export.end2end`, `nms="cluster"`): `rtx_end2end_onnx` writes it next to the NonMaxSuppression model the
bundle holds, with the same thresholds (read from that model's metadata), from the same plain model; it is
rewritten only when that plain model or the thresholds changed. Standard TensorRT engines carry the DLA
core in their name (`.dla0.engine`).

A folder with a `bundle.json` is checked first (`export.bundle_files.verify_bundle_file`): the ONNX file to
build (for the TensorRT-RTX end-to-end model: the files it is made from) must be listed there with its
sha256 and come from the bundle's weights, so an engine is never built from a file of another model. A
folder with export records but no `bundle.json` is an export that did not finish
(`asfyolo_rt.infer.bundle_check`) and is refused. The build holds the folder's lock
(`export.bundle_files.bundle_lock`): it is refused while an export writes the folder, and an export into the
folder is refused while a build runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from asfyolo_rt.export.engine.build import BuildConfig, EngineArtifact, build_command, build_engine
from asfyolo_rt.export.engine.onnx_facts import ONNX_FOR_PRECISION, end2end_name, read_onnx_facts

from asfyolo_rt.errors import ConfigError, EngineBuildError
from asfyolo_rt.infer.trt_api import load_tensorrt

Progress = Callable[[int, int], None]


@dataclass
class BundleBuild:
    artifact: EngineArtifact
    onnx: Path
    runtime_note: str  # which runtime was used and why ("auto: TensorRT-RTX (standard TensorRT not installed)")
    written: list[Path] = field(default_factory=list)  # ONNX files this build wrote (the RTX end-to-end model)


def engine_name(onnx_name: str, runtime: str, dla_core: int | None = None) -> str:
    """model.fp16.onnx -> model.fp16.engine (TensorRT), model.fp16.rtx.engine (TensorRT-RTX)."""
    stem = onnx_name.removesuffix(".onnx")
    if runtime == "rtx":
        return f"{stem if stem.endswith('.rtx') else stem + '.rtx'}.engine"
    return f"{stem}.dla{dla_core}.engine" if dla_core is not None else f"{stem}.engine"


def rtx_end2end_onnx(bundle: Path, precision: str) -> tuple[Path, bool]:
    """(the Cluster-NMS end-to-end model of `precision`, whether it was written now); see the module docstring."""
    from asfyolo_rt.export.end2end import config_from_metadata, export_end2end

    from asfyolo_rt.infer.sidecar import file_sha256

    source = bundle / end2end_name(precision)
    base = bundle / ONNX_FOR_PRECISION[precision]
    target = bundle / end2end_name(precision, "cluster")
    if not source.is_file():
        if target.is_file():
            return target, False
        raise EngineBuildError(f"the bundle {bundle} has no end-to-end model {source.name}",
                               hint="export with --end2end (asfyolo-rt export --end2end --out BUNDLE)")
    if not base.is_file():
        raise EngineBuildError(f"the bundle {bundle} has {source.name} but not {base.name}, its plain model")
    facts = read_onnx_facts(source)
    import onnx

    outputs = [o.name for o in onnx.load(str(source), load_external_data=False).graph.output]
    cfg = config_from_metadata(facts.meta, nms="cluster", masks="onnx", label_map="label_map" in outputs)
    base_sha = file_sha256(base)
    if target.is_file():
        have = read_onnx_facts(target).meta
        try:
            same = config_from_metadata(have) == cfg and have.get("e2e_source_sha256") == base_sha
        except Exception:  # stale or foreign file: rewrite it
            same = False
        if same:
            return target, False
    export_end2end(base, target, cfg)
    return target, True


def build_from_bundle(bundle: Path, cfg: BuildConfig, *, end2end: bool = False, manifest: Path | None = None,
                      bundle_timing_cache: bool = False, progress: Progress | None = None) -> BundleBuild:
    """Build the engine of `cfg.precision` (and runtime) from a bundle folder, or from one ONNX file in it.

    bundle_timing_cache: read and update `timing.cache` in the bundle where the runtime takes one (standard
    TensorRT; TensorRT-RTX's AOT builder would need a GPU with one).
    """
    from asfyolo_rt.export.bundle_files import bundle_lock, refuse_unfinished

    bundle = Path(bundle)
    if not bundle.exists():
        raise ConfigError(f"bundle {bundle} does not exist", hint="write one with `asfyolo-rt export --out DIR`")
    folder = bundle if bundle.is_dir() else bundle.parent
    with bundle_lock(folder, "build", "build an engine in"):
        # (an export of this process building its TensorRT-RTX engines holds the lock and passes: bundle.json is
        # written after them)
        refuse_unfinished(bundle, f"build an engine from {bundle}")
        return _build_locked(bundle, cfg, end2end=end2end, manifest=manifest,
                             bundle_timing_cache=bundle_timing_cache, progress=progress)


def _build_locked(bundle: Path, cfg: BuildConfig, *, end2end: bool, manifest: Path | None,
                  bundle_timing_cache: bool, progress: Progress | None) -> BundleBuild:
    api = load_tensorrt(cfg.runtime, build_command(bundle, cfg.precision, cfg.dla_core, runtime=cfg.runtime,
                                                   end2end=end2end, archs=cfg.archs))
    if cfg.runtime == "auto":
        why = "standard TensorRT is installed" if api.runtime == "trt" else "standard TensorRT is not installed"
        note = f"--runtime auto: {api.display} ({why})"
    else:
        note = api.display
    cfg = replace(cfg, runtime=api.runtime)
    written: list[Path] = []
    _verify_sources(bundle, cfg.precision, end2end=end2end, rtx=api.runtime == "rtx")
    if bundle.is_file():
        if end2end:
            raise ConfigError("--end2end picks a file of a bundle folder; pass the folder, or the end-to-end ONNX "
                              "file without --end2end")
        onnx_path = bundle
    elif end2end and api.runtime == "rtx":
        onnx_path, made = rtx_end2end_onnx(bundle, cfg.precision)
        written += [onnx_path] if made else []
    else:
        onnx_path = bundle / (end2end_name(cfg.precision) if end2end else ONNX_FOR_PRECISION[cfg.precision])
    if bundle_timing_cache and api.timing_cache:
        cfg = replace(cfg, timing_cache=onnx_path.parent / "timing.cache")
    engine = onnx_path.parent / engine_name(onnx_path.name, api.runtime, cfg.dla_core)
    art = build_engine(onnx_path, engine, cfg, manifest=manifest, progress=progress)
    return BundleBuild(art, onnx_path, note, written)


def _verify_sources(bundle: Path, precision: str, *, end2end: bool, rtx: bool) -> None:
    """Refuse bundle files that bundle.json does not vouch for (module docstring); hand-made folders pass."""
    from asfyolo_rt.export.bundle_files import verify_bundle_file

    if bundle.is_file():
        verify_bundle_file(bundle)
        return
    if end2end and rtx:  # the Cluster-NMS model is derived (and re-derived) from these two
        names = [end2end_name(precision), ONNX_FOR_PRECISION[precision]]
        if not (bundle / names[0]).is_file():
            names = [end2end_name(precision, "cluster")]
    else:
        names = [end2end_name(precision) if end2end else ONNX_FOR_PRECISION[precision]]
    for name in names:
        if (bundle / name).is_file():  # a missing file gets its own error from the build
            verify_bundle_file(bundle / name)


def build_rtx_bundle(bundle: Path, precisions: list[str], *, end2end: bool = False, archs: tuple[str, ...] = (),
                     progress: Callable[[str, int, int], None] | None = None) -> list[BundleBuild]:
    """TensorRT-RTX engines (ahead of time, no GPU) for every precision present, and their end-to-end models."""
    builds = []
    for prec in precisions:
        for e2e in (False, True) if end2end else (False,):
            label = f"TensorRT-RTX {prec}{' end-to-end' if e2e else ''}"

            def step(done: int, total: int, label: str = label) -> None:
                if progress:
                    progress(label, done, total)

            builds.append(build_from_bundle(bundle, BuildConfig(precision=prec, runtime="rtx", archs=archs),
                                            end2end=e2e, progress=step))
    return builds
