"""The deployment bundle: every ONNX flavour, calibration report and caches, export report, bundle.json.

`export_bundle(options)` runs the whole export on this machine (CPU is enough) and, where TensorRT and a
GPU are present, builds the engines; elsewhere it records the exact `asfyolo-rt build` and trtexec
commands to run on the target device. Files in `out/`:

    model.onnx                 FP32, metadata, parity-checked against PyTorch
    model.fp16.onnx            --fp16: FP16 with FP32 islands (report: kept_fp32)
    model.int8.onnx            --int8: TensorRT Q/DQ (symmetric int8, per-channel weights) + FP16 remainder
    model.int8-cpu.onnx        --int8: ONNX Runtime CPU flavour (uint8 activations, int8 weights)
    model[.fp16|.int8].end2end.onnx   --end2end: + top-k, NMS, masks (fixed-size outputs)
    calibration_report.json, model.int8.calib.json, model.int8-cpu.calib.json (fingerprinted caches)
    model[.P][.end2end].rtx.engine (+ .engine.json, model[.P].end2end.rtx.onnx)   TensorRT-RTX, when installed
    export_report.json         parity (ORT vs PyTorch per output and precision), FP16 notes, accuracy
    model.json                 model.onnx's ModelInfo (asfyolo_rt.runtime.info): the contract non-Python runtimes read
    bundle.json                the files THIS export wrote, with SHA-256; model config and source weights sha256

A bundle is one model (`export.bundle_files`): the export locks `out/` (a second export or build into it is
refused), the old bundle.json goes before the first write, the files of an earlier export (those its
bundle.json lists, and the exact names this exporter writes) that this one did not write are removed
(listed in the warnings), other files are never touched, every ONNX file records the checkpoint's sha256
(`weights_sha256` metadata), bundle.json is written last, and consumers refuse files bundle.json does not
vouch for. A non-empty `out/` that is not a bundle is refused unless `allow_foreign` (--force). Options and
weights are checked before anything is written (--calib-images >= 1, finite weights).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt.errors import AsfYoloError, CheckpointError, ConfigError, EngineBuildError
from asfyolo_rt.export.bundle_files import (
    BUNDLE_JSON,
    REPORT_JSON,
    SOURCE_KEY,
    bundle_lock,
    check_out_folder,
    invalidate,
    json_safe,
    non_finite_paths,
    previous_files,
    remove_stale,
    seal,
)
from asfyolo_rt.export.compare import check_sizes, compare_runners, ort_runner, torch_runner, worst
from asfyolo_rt.export.end2end import End2EndConfig
from asfyolo_rt.export.onnx_export import as_hw, file_sha256
from asfyolo_rt.model.weights import atomic_write_bytes
from asfyolo_rt.runtime.stages import DEFAULT_TILE

MODEL_JSON = "model.json"  # ModelInfo of model.onnx (asfyolo_rt.runtime.info): what a C runtime reads

log = logging.getLogger(__name__)

StageProgress = Callable[[str, int, int], None]
FORMAT = "asfyolo-rt-bundle/1"


@dataclass(frozen=True)
class BundleOptions:
    out: Path
    weights: Path | None = None  # None: the shipped DSB2018 model
    img_size: int | None = None  # None: the checkpoint's training size
    dynamic: bool = False
    fp16: bool = False
    int8: bool = False
    data: Path | None = None
    calib_images: int | None = None
    calib_method: str = "entropy"
    calib_seed: int = 0
    int8_exclude: tuple[str, ...] = ()
    int8_include: tuple[str, ...] = ()
    int8_sensitivity: bool = False
    end2end: bool = False
    e2e: End2EndConfig = field(default_factory=End2EndConfig)
    eval_images: int = 50
    build_engines: bool | None = None  # None: when TensorRT and a GPU are present
    rtx: bool | None = None  # TensorRT-RTX engines (ahead of time); None: when TensorRT-RTX is installed
    rtx_archs: tuple[str, ...] = ()  # TensorRT-RTX targets; () = its portable set
    opset: int = 18
    allow_foreign: bool = False  # export into a non-empty folder that is not a bundle (--force); its files are kept


@dataclass
class BundleResult:
    out: Path
    bundle: dict[str, Any]
    report: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    rtx_builds: list[Any] = field(default_factory=list)  # export.engine.bundle_build.BundleBuild per RTX engine


def _stage(progress: StageProgress | None, name: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    progress(name, 0, 1)
    return lambda done, total: progress(name, done, total)


def _parity(model: Any, path: Path, sizes: list[tuple[int, int]], images: np.ndarray | None) -> dict[str, Any]:
    rows = compare_runners(torch_runner(model), ort_runner(path), [(1, *s) for s in sizes], images=images)
    return {"worst": worst(rows), "rows": [r.to_dict() for r in rows]}


def engine_availability() -> str | None:
    """None when TensorRT and a CUDA GPU are usable here, else the reason."""
    try:
        from asfyolo_rt.export.engine.build import import_tensorrt
        from asfyolo_rt.infer.cuda import device_info

        import_tensorrt()
        device_info(0)
    except EngineBuildError as exc:
        return str(exc)
    return None


def _evaluate(opts: BundleOptions, model: Any, mcfg: Any, files: dict[str, Path], img: int,
              progress: StageProgress | None) -> dict[str, Any]:
    from asfyolo_rt.data.dataset import load_split
    from asfyolo_rt.eval.validate import ValConfig, validate
    from asfyolo_rt.infer.backends import TorchBackend
    from asfyolo_rt.runtime.registry import load_backend

    assert opts.data is not None
    try:
        split = load_split(opts.data, "val", on_problem="skip")
    except AsfYoloError as exc:
        return {"error": f"no val split to evaluate on: {exc}"}
    # native-scale models are judged the way they are deployed: tiles of the exported input at the model scale
    protocol = "tiled" if mcfg.train_scale == "native" else "fit"
    cfg = ValConfig(img_size=img, max_images=opts.eval_images, batch_size=1, protocol=protocol,
                    model_scale=mcfg.model_scale or 1.0, max_object_px=_overlap_object(mcfg))
    runs: dict[str, Any] = {}
    static = None if opts.dynamic else (img, img)  # PyTorch letterboxed / tiled like the static ONNX models
    backends: list[tuple[str, Any]] = [("pytorch-fp32",
                                        lambda: TorchBackend(model, names=mcfg.names, input_shape=static))]
    backends += [("openvino-" + k.removesuffix("-openvino") if p.suffix == ".xml" else f"onnxruntime-{k}",
                  (lambda p=p: load_backend(p))) for k, p in files.items()]
    for name, make in backends:
        res = validate(make(), split, cfg, progress=_stage(progress, f"validate {name}"))
        runs[name] = {k: float(v) for k, v in res.summary().items()
                      if k in ("box_map50", "box_map", "mask_map50", "mask_map")}
    ref = runs["pytorch-fp32"]
    deltas = {n: {k: r[k] - ref[k] for k in r} for n, r in runs.items() if n != "pytorch-fp32"}
    return {"split": "val", "images": min(opts.eval_images, len(split)), "img_size": img, "protocol": protocol,
            "metrics": runs, "delta_vs_pytorch": deltas}


def _mask_map50_evaluator(opts: BundleOptions, mcfg: Any, img: int, n_images: int = 8) -> Callable[[Path], float] | None:
    """With --data: ONNX path -> mask mAP50 on a few val images (the sensitivity metric), by the protocol the
    export's accuracy check uses (tiled for native-scale models); else None."""
    if opts.data is None:
        return None
    from asfyolo_rt.data.dataset import load_split
    from asfyolo_rt.eval.validate import ValConfig, validate
    from asfyolo_rt.infer.backends import OrtBackend

    try:
        split = load_split(opts.data, "val", on_problem="skip")
    except AsfYoloError:
        return None
    cfg = ValConfig(img_size=img, max_images=min(n_images, opts.eval_images or n_images), batch_size=1,
                    protocol="tiled" if mcfg.train_scale == "native" else "fit",
                    model_scale=mcfg.model_scale or 1.0, max_object_px=_overlap_object(mcfg))
    return lambda path: float(validate(OrtBackend(path), split, cfg).metrics.mask_map50)


def export_bundle(opts: BundleOptions, progress: StageProgress | None = None) -> BundleResult:
    """Run the export (module docstring). Returns the bundle.json and export report dicts.

    ConfigError before anything is written for bad options, a non-empty `out` that is not a bundle (without
    `allow_foreign`) and an `out` another export or build is writing (its lock, `export.bundle_files`).
    """
    t0 = time.perf_counter()
    check_options(opts)
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; expected a bundle folder")
    check_out_folder(out, allow_foreign=opts.allow_foreign)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with bundle_lock(out, "export", "export into"):
            return _export_locked(opts, out, t0, progress)
    except BaseException:
        if created:  # a refused or failed export into a new folder leaves no empty folder behind
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def _export_locked(opts: BundleOptions, out: Path, t0: float, progress: StageProgress | None) -> BundleResult:
    """export_bundle's work, with `out` created and locked."""
    from asfyolo_rt import __version__
    from asfyolo_rt.export.fp16 import ORT_CPU_NOTE, convert_fp16, torch_half_estimate
    from asfyolo_rt.export.onnx_export import export_onnx, load_weights
    from asfyolo_rt.weights_registry import resolve_weights

    weights = resolve_weights(opts.weights)
    model, mcfg = load_weights(weights)
    check_finite_model(model, weights)
    native = mcfg.train_scale == "native"
    hw = as_hw(opts.img_size or (DEFAULT_TILE if native else mcfg.img_size))
    tile_scale = (mcfg.model_scale or 1.0) if native else None  # calibrate on the tiles inference will see
    weights_sha = file_sha256(weights)
    rtx = _want_rtx(opts)
    previous = previous_files(out)  # what the earlier export owned (its bundle.json), read before it goes
    invalidate(out)  # no sealed bundle while files are being replaced
    warnings: list[str] = []
    files: dict[str, Path] = {}
    written: set[str] = set()  # every file of `out` this export wrote: exactly what bundle.json lists
    report: dict[str, Any] = {"weights": str(weights), "weights_sha256": weights_sha, "img_size": list(hw),
                              "dynamic": opts.dynamic}

    fp32 = export_onnx(model, out / "model.onnx", mcfg, img_size=hw, dynamic_batch=opts.dynamic,
                       dynamic_size=opts.dynamic, opset=opts.opset, extra_metadata={SOURCE_KEY: weights_sha},
                       progress=_stage(progress, "export FP32 ONNX"))
    files["fp32"] = fp32.path
    warnings += fp32.notes
    from asfyolo_rt.runtime.info import read_model_info, write_model_info

    # the bundle's contract for non-Python runtimes (C runtime): model.onnx's ModelInfo as JSON
    write_model_info(out / MODEL_JSON, read_model_info(fp32.path))
    written.add(MODEL_JSON)

    calib = None
    if opts.int8 or opts.data is not None or opts.fp16:
        from asfyolo_rt.calib.dataset import SYNTHETIC_WARNING, build_calibration_set, few_images_warning

        if opts.int8:
            calib = build_calibration_set(opts.data, hw, n=opts.calib_images, seed=opts.calib_seed,
                                          tile_scale=tile_scale, progress=_stage(progress, "calibration images"))
            if calib.synthetic:
                warnings.append(SYNTHETIC_WARNING)
            few = few_images_warning(len(calib), calib.data)
            if few:
                log.warning(few)
                warnings.append(few)
        else:  # FP16 range probing / parity inputs: a few images, real when --data is given
            calib = build_calibration_set(opts.data, hw, n=4, seed=opts.calib_seed, tile_scale=tile_scale)
    sample = calib.float_images(0, min(4, len(calib))) if calib is not None else None
    sizes = check_sizes(hw, opts.dynamic)
    model_fused = model.float().eval()
    parity: dict[str, Any] = {"fp32": _parity(model_fused, fp32.path, sizes, sample)}

    if opts.fp16:
        fp16 = convert_fp16(fp32.path, out / "model.fp16.onnx", sample_batches=[sample] if sample is not None else None,
                            progress=_stage(progress, "FP16 ONNX"))
        files["fp16"] = fp16.artifact.path
        parity["fp16"] = _parity(model_fused, fp16.artifact.path, sizes, sample)
        report["fp16"] = {**fp16.to_dict(), "ort_cpu_note": ORT_CPU_NOTE}
        if progress:
            progress("PyTorch half-precision estimate", 0, 1)
        few = sample[:2] if sample is not None else np.random.default_rng(0).random((1, 3, *hw), dtype=np.float32)
        report["fp16"]["pytorch_half_estimate"] = {
            "images": int(few.shape[0]),
            "errors_vs_fp32": torch_half_estimate(model_fused, few),
            "note": "PyTorch CPU model.half() (and bfloat16) vs FP32 on the same images: the FP16 arithmetic "
                    "estimate (ONNX Runtime on CPU runs FP16 graphs in FP32)",
        }

    if opts.int8:
        from asfyolo_rt.calib.quantize import QuantConfig, quantize_ort_cpu, quantize_tensorrt
        from asfyolo_rt.calib.report import calibration_report, write_report

        assert calib is not None
        qcfg = QuantConfig(method=opts.calib_method, exclude=opts.int8_exclude, include=opts.int8_include)
        # the TensorRT flavour also keeps what the checkpoint records as INT8-sensitive (weights pack --int8-exclude)
        qcfg_trt = replace(qcfg, exclude=tuple(dict.fromkeys((*mcfg.int8_exclude, *opts.int8_exclude))))
        if mcfg.int8_exclude:
            log.info("TensorRT INT8: keeping %s unquantized (recorded in %s)", ", ".join(mcfg.int8_exclude), weights.name)
        q_trt = quantize_tensorrt(fp32.path, out / "model.int8.onnx", calib, qcfg_trt,
                                  cache_path=out / "model.int8.calib.json", progress=_stage(progress, "INT8 (TensorRT)"))
        q_cpu = quantize_ort_cpu(fp32.path, out / "model.int8-cpu.onnx", calib, qcfg,
                                 cache_path=out / "model.int8-cpu.calib.json", progress=_stage(progress, "INT8 (CPU)"))
        files["int8"], files["int8-cpu"] = q_trt.artifact.path, q_cpu.artifact.path
        q_ov = _openvino_int8(fp32.path, out, calib, warnings, progress)
        if q_ov is not None:  # model.int8-openvino.xml/.bin: NNCF on the same calibration images
            files["int8-openvino"] = q_ov.xml
            written.add(q_ov.bin.name)
        parity["int8"] = _parity(model_fused, q_trt.artifact.path, sizes, sample)
        parity["int8-cpu"] = _parity(model_fused, q_cpu.artifact.path, sizes, sample)
        sens = None
        if opts.int8_sensitivity:
            from asfyolo_rt.calib.sensitivity import layer_sensitivity

            sens = layer_sensitivity(fp32.path, calib, qcfg_trt, cache_path=out / "model.int8.calib.json",
                                     evaluate=_mask_map50_evaluator(opts, mcfg, max(hw)),
                                     progress=_stage(progress, "INT8 sensitivity")).to_dict()
        write_report(out / "calibration_report.json", calibration_report(calib, [q_trt, q_cpu], sensitivity=sens,
                                                                         warnings=list(warnings)))
        written |= {"calibration_report.json"} | {q.cache_path.name for q in (q_trt, q_cpu) if q.cache_path}
        report["int8"] = {"calibration_report": "calibration_report.json", "method": opts.calib_method,
                          "images": len(calib), "synthetic": calib.synthetic,
                          "recorded_exclude": list(mcfg.int8_exclude),
                          "excluded": {"tensorrt": len(q_trt.excluded), "cpu": len(q_cpu.excluded)}}
        if q_ov is not None:
            report["int8"]["openvino"] = q_ov.to_dict()
        if sens is not None:
            report["int8"]["sensitivity_suggested_exclude"] = sens["suggested_exclude"]
    report["parity"] = parity
    report["parity_note"] = ("ONNX Runtime (CPU) vs PyTorch FP32 on the same input, per output; max/mean absolute "
                             "error; sizes " + ", ".join(f"{h}x{w}" for h, w in sizes)
                             + (" (dynamic export: checked away from the traced size)" if opts.dynamic else ""))

    if opts.end2end:
        report["end2end"] = _end2end(opts, files, out, progress)
        written |= {m["path"] for m in report["end2end"]["models"].values()}

    if opts.data is not None:
        report["accuracy"] = _evaluate(opts, model_fused, mcfg, {k: v for k, v in files.items()},
                                       max(hw), progress)  # square exports: img_size = side

    written |= {p.name for p in files.values()}
    report["engines"] = _engines(opts, files, out, progress)
    written |= {n for e in report["engines"]["built"].values() for n in (e["engine"], e["sidecar"])}
    rtx_builds = []
    if rtx:
        from asfyolo_rt.export.engine.bundle_build import build_rtx_bundle

        rtx_builds = build_rtx_bundle(out, [p for p in ("fp32", "fp16", "int8") if p in files], end2end=opts.end2end,
                                      archs=opts.rtx_archs, progress=progress)
        written |= {p.name for b in rtx_builds for p in (b.onnx, b.artifact.engine, b.artifact.sidecar_path)}
    report["rtx_engines"] = {b.artifact.engine.name: {"onnx": b.onnx.name, "sidecar": b.artifact.sidecar_path.name}
                             for b in rtx_builds}
    stale = remove_stale(out, written, previous)
    if stale:
        warnings.append(f"removed {len(stale)} file(s) of an earlier export into {out} that this export did not "
                        f"write: {', '.join(stale)}")
    bad = non_finite_paths(report.get("parity", {}), "parity") + non_finite_paths(report.get("accuracy", {}), "accuracy")
    if bad:
        warnings.append(f"non-finite values (NaN/Infinity, written as null) in the export report: {', '.join(bad[:6])}"
                        + (f" (+{len(bad) - 6} more)" if len(bad) > 6 else ""))
    bundle = {
        "format": FORMAT,
        "asfyolo_rt": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"variant": mcfg.variant, "nc": mcfg.nc, "names": {str(k): v for k, v in mcfg.names.items()},
                  "img_size": list(hw), "dynamic": opts.dynamic, "weights": str(weights),
                  "weights_sha256": weights_sha},
        "files": seal(out, written),
        "engines": report["engines"],
        "rtx_engines": report["rtx_engines"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    report["warnings"] = warnings
    _write_json(out / REPORT_JSON, report)
    bundle["files"][REPORT_JSON] = {"path": REPORT_JSON, "sha256": file_sha256(out / REPORT_JSON)}
    _write_json(out / BUNDLE_JSON, bundle)  # last: the seal
    return BundleResult(out, bundle, report, warnings, rtx_builds)


def _openvino_int8(fp32: Path, out: Path, calib: Any, warnings: list[str], progress: StageProgress | None) -> Any:
    """model.int8-openvino.xml/.bin (calib.openvino_int8), or None with a warning when OpenVINO/NNCF are missing."""
    from asfyolo_rt.calib.openvino_int8 import INSTALL_HINT, openvino_available, quantize_openvino

    if not openvino_available():
        warnings.append(f"no model.int8-openvino.xml: {INSTALL_HINT}")
        return None
    return quantize_openvino(fp32, out / "model.int8-openvino.xml", calib, progress=_stage(progress, "INT8 (OpenVINO)"))


def check_options(opts: BundleOptions) -> None:
    """ConfigError for inconsistent or out-of-range options; called before any file is written."""
    if opts.int8_sensitivity and not opts.int8:
        raise ConfigError("--int8-sensitivity needs --int8")
    if (opts.calib_images is not None or opts.int8_exclude or opts.int8_include) and not opts.int8:
        raise ConfigError("--calib-images / --int8-exclude / --int8-include need --int8")
    if opts.calib_images is not None and opts.calib_images < 1:
        raise ConfigError(f"--calib-images {opts.calib_images}: expected at least 1 image (32 or more advised)",
                          hint="omit it to use min(500, all) images of --data")
    if opts.eval_images < 0:
        raise ConfigError(f"--eval-images {opts.eval_images}: expected >= 0")
    if opts.int8:
        from asfyolo_rt.calib.quantize import QuantConfig

        QuantConfig(method=opts.calib_method, exclude=opts.int8_exclude, include=opts.int8_include)  # validates
    if opts.img_size is not None:
        as_hw(opts.img_size)
    if opts.data is not None and not Path(opts.data).exists():
        raise ConfigError(f"--data {opts.data} does not exist",
                          hint="pass a dataset folder, a data YAML or a folder of images")


def check_finite_model(model: Any, weights: Path) -> None:
    """CheckpointError naming the file and tensor when the loaded model holds NaN or Infinity (any format)."""
    from asfyolo_rt.model.weights import check_finite

    try:
        check_finite(dict(model.state_dict()), weights)
    except CheckpointError as exc:
        raise CheckpointError(f"cannot export: {exc}", hint=exc.hint) from None


def _want_rtx(opts: BundleOptions) -> bool:
    """Whether to build TensorRT-RTX engines; EngineBuildError up front for --rtx without TensorRT-RTX."""
    from asfyolo_rt.infer.trt_api import rtx_available

    if opts.rtx and not rtx_available():
        raise EngineBuildError("--rtx: TensorRT-RTX is not installed here",
                               hint="pip install 'asfyolo-rt[rtx]' (tensorrt-rtx-cu12-bindings tensorrt-rtx-cu12-libs), "
                                    "or export with --no-rtx")
    return rtx_available() if opts.rtx is None else opts.rtx


def _write_json(path: Path, obj: Any) -> None:
    """Strict JSON (non-finite floats as null: no bare NaN for other readers), written atomically."""
    from asfyolo_rt.export.onnx_export import publish

    atomic_write_bytes(path, json.dumps(json_safe(obj), indent=1, default=str, allow_nan=False).encode())
    publish(path)


def _end2end(opts: BundleOptions, files: dict[str, Path], out: Path, progress: StageProgress | None) -> dict[str, Any]:
    from asfyolo_rt.export.end2end import export_end2end

    made: dict[str, Any] = {}
    for prec in ("fp32", "fp16", "int8"):
        if prec not in files:
            continue
        name = "model.end2end.onnx" if prec == "fp32" else f"model.{prec}.end2end.onnx"
        if progress:
            progress(f"end-to-end {prec}", 0, 1)
        art = export_end2end(files[prec], out / name, opts.e2e)
        made[prec] = {"path": name, "sha256": art.sha256}
    return {"config": asdict(opts.e2e), "models": made,
            "equivalent_python": "non_max_suppression(pred, conf_threshold, iou_threshold, max_det, max_nms=topk) + "
                                 "process_masks_proto"}


def _engines(opts: BundleOptions, files: dict[str, Path], out: Path, progress: StageProgress | None) -> dict[str, Any]:
    from asfyolo_rt.export.engine.build import (
        BuildConfig,
        build_command,
        build_engine,
        onnx_metadata,
        trtexec_command,
    )

    reason = engine_availability()
    build = opts.build_engines if opts.build_engines is not None else reason is None
    result: dict[str, Any] = {"built": {}, "commands": {}, "trtexec": {}, "unavailable": reason}
    for prec in ("fp32", "fp16", "int8"):
        if prec not in files:
            continue
        engine = out / f"model.{prec}.engine" if prec != "fp32" else out / "model.engine"
        _, dims, _ = onnx_metadata(files[prec])
        result["commands"][prec] = build_command(out, prec)
        result["trtexec"][prec] = trtexec_command(files[prec].name, engine.name, precision=prec, dims=dims,
                                                  img_size=[int(d) for d in dims[2:] if isinstance(d, int)])
        if build:
            art = build_engine(files[prec], engine, BuildConfig(precision=prec), progress=_stage(progress, f"engine {prec}"))
            result["built"][prec] = {"engine": art.engine.name, "sidecar": art.sidecar_path.name}
    return result


def _overlap_object(mcfg: Any) -> float | None:
    """The object size the evaluation's tile overlap exceeds (as `ModelInfo.overlap_object_px`)."""
    return mcfg.object_px_p99 if mcfg.object_px_p99 is not None else mcfg.max_object_px
