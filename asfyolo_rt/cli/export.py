"""`asfyolo-rt export` (deployment bundle: ONNX FP32/FP16/INT8, reports) and `asfyolo-rt build` (engines)."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from asfyolo_rt.cli.main import app
from asfyolo_rt.errors import Interrupted


@contextlib.contextmanager
def _stages() -> Iterator[Callable[[str, int, int], None]]:
    """A `progress(stage, done, total)` callback: one Rich bar per stage on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    from asfyolo_rt.cli._common import stderr

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=stderr) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                for t in tasks.values():  # a new stage starts: finish the previous ones
                    task = bar.tasks[t]
                    bar.update(t, completed=task.total or 1, total=task.total or 1)
                tasks[stage] = bar.add_task(stage, total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None)

        yield update


@app.command()
def export(
    weights: Annotated[str | None, typer.Option("--weights", "-w", help="Checkpoint (.safetensors) or official "
                                                 "ASF-YOLO .pt; default: the shipped DSB2018 model.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to write.")] = Path("bundle"),
    img_size: Annotated[int | None, typer.Option("--img-size", help="Input size (multiple of 32); default: 640 "
                                                  "(the tile) for native-scale checkpoints, else the checkpoint's "
                                                  "training size.")] = None,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Dynamic batch and input size (default: static).")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="Also write model.fp16.onnx.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also write model.int8.onnx (TensorRT Q/DQ) and "
                                        "model.int8-cpu.onnx (ONNX Runtime CPU), calibrated on --data.")] = False,
    data: Annotated[Path | None, typer.Option("--data", help="Dataset folder/YAML or image folder: calibration "
                                               "images (train split) and accuracy evaluation (val split).")] = None,
    calib_images: Annotated[int | None, typer.Option("--calib-images", help="Calibration images (default "
                                                      "min(500, all); 64 synthetic without --data).")] = None,
    calib_method: Annotated[str, typer.Option("--calib-method", help="entropy or max.")] = "entropy",
    int8_exclude: Annotated[list[str] | None, typer.Option("--int8-exclude", help="Regex of node names to keep "
                                                            "unquantized (repeatable).")] = None,
    int8_include: Annotated[list[str] | None, typer.Option("--int8-include", help="Regex of nodes to quantize "
                                                            "despite the default exclusions (repeatable).")] = None,
    int8_sensitivity: Annotated[bool, typer.Option("--int8-sensitivity", help="Rank blocks by INT8 damage and "
                                                    "suggest an exclude list.")] = False,
    end2end: Annotated[bool, typer.Option("--end2end", help="Also write end-to-end models (top-k, NMS, masks).")] = False,
    conf: Annotated[float | None, typer.Option("--conf", help="End-to-end score threshold (default 0.25, looser than any predict threshold; --bioimageio: the model's tuned one, as predict, else 0.25).")] = None,
    iou: Annotated[float | None, typer.Option("--iou", help="End-to-end NMS IoU threshold (default 0.6; "
                                               "--bioimageio: 0.45, as predict).")] = None,
    max_det: Annotated[int | None, typer.Option("--max-det", help="End-to-end detections per image (default 300; "
                                                 "--bioimageio: 1000, as predict).")] = None,
    topk: Annotated[int, typer.Option("--topk", help="End-to-end candidates into NMS (<= 3840, TensorRT's TopK limit).")] = 3840,
    label_map: Annotated[bool, typer.Option("--label-map", help="End-to-end: also output the instance label map.")] = False,
    eval_images: Annotated[int, typer.Option("--eval-images", help="Val images for accuracy per precision "
                                              "(with --data).")] = 50,
    force: Annotated[bool, typer.Option("--force", help="Export into a --out folder that is not a bundle and holds other files (they are left alone and not listed).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print bundle.json and the export report as JSON.")] = False,
    rtx: Annotated[bool | None, typer.Option("--rtx/--no-rtx", help="Build TensorRT-RTX engines into the bundle "
                                             "(default: when TensorRT-RTX is installed); listed in bundle.json.")] = None,
    bioimageio: Annotated[Path | None, typer.Option("--bioimageio", help="Instead of a bundle, write a bioimage.io "
                                                    "model package (rdf.yaml 0.5, ONNX image -> label image) "
                                                    "into this new folder; uses --weights, --conf, --iou, --max-det.")] = None,
    bioimageio_image: Annotated[Path | None, typer.Option("--bioimageio-image", help="Grey image for the package's "
                                                          "test tensors and cover (default: synthetic nuclei).")] = None,
) -> None:
    """Export a deployment bundle: ONNX per precision, calibration, parity and accuracy reports, bundle.json.

    With TensorRT and a GPU present the engines are built too; otherwise the `asfyolo-rt build` (and trtexec)
    commands to run on the target device are printed. Where TensorRT-RTX is installed (pip install
    'asfyolo-rt[rtx]') its portable engines (RTX GPUs, compute capability 8.0+) are built ahead of time into
    the bundle as model[.P][.end2end].rtx.engine, GPU or not.

    Examples:
      asfyolo-rt export --out bundle
      asfyolo-rt export --weights runs/train/best.safetensors --fp16 --int8 --data ../shared/datasets/DSB2018 --out bundle
      asfyolo-rt export --int8 --calib-method max --img-size 320 --dynamic --end2end --out bundle320
      asfyolo-rt export --bioimageio asfyolo-bioimageio   (then: bioimageio test asfyolo-bioimageio/rdf.yaml)
    """
    _check_options(conf, iou, max_det, topk, calib_images, eval_images, img_size)
    if bioimageio is not None:
        if conf is None:  # the package draws its own label image: with predict's threshold for these weights
            from asfyolo_rt.runtime.info import read_model_info
            from asfyolo_rt.weights_registry import resolve_weights

            conf = read_model_info(resolve_weights(weights)).default_conf
        _export_bioimageio(bioimageio, weights, conf, 0.45 if iou is None else iou, max_det or 1000,
                           bioimageio_image, fp16 or int8 or end2end, as_json)
        return
    iou = 0.6 if iou is None else iou
    max_det = 300 if max_det is None else max_det
    conf = 0.25 if conf is None else conf
    from rich.table import Table

    from asfyolo_rt.bundle import BundleOptions, export_bundle
    from asfyolo_rt.cli._common import check_img_size, print_json, stderr, stdout_console
    from asfyolo_rt.export.end2end import End2EndConfig

    check_img_size(img_size)
    opts = BundleOptions(
        out=out, weights=Path(weights) if weights else None, img_size=img_size, dynamic=dynamic, fp16=fp16,
        int8=int8, data=data, calib_images=calib_images, calib_method=calib_method,
        int8_exclude=tuple(int8_exclude or ()), int8_include=tuple(int8_include or ()),
        int8_sensitivity=int8_sensitivity, end2end=end2end,
        e2e=End2EndConfig(conf_threshold=conf, iou_threshold=iou, max_det=max_det, topk=topk, label_map=label_map),
        eval_images=eval_images, rtx=rtx, allow_foreign=force,
    )
    from asfyolo_rt.export.bundle_files import json_safe

    started = time.time()
    try:
        with _stages() as progress:
            result = export_bundle(opts, progress=progress)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM (asfyolo_rt.cli.main): say what is there
        raise _interrupted(exc, _export_done(out, started)) from None
    rtx_builds = result.rtx_builds
    from rich.markup import escape

    for w in result.warnings:
        stderr.print(f"[yellow]warning:[/] {escape(w)}")
    rtx_engines = {b.artifact.engine.name: {"onnx": b.onnx.name, "sidecar": b.artifact.sidecar_path.name,
                                            "convolutions": b.artifact.sidecar.layers.get("convolutions"),
                                            "bytes": b.artifact.sidecar.build.get("engine_bytes"),
                                            "seconds": round(b.artifact.seconds, 1)} for b in rtx_builds}
    if as_json:
        print_json(json_safe({"bundle": result.bundle, "report": result.report, "rtx_engines": rtx_engines}))
        return
    console = stdout_console()
    table = Table(title=f"bundle {result.out} (ONNX Runtime CPU vs PyTorch FP32)")
    for col in ("precision", "file", "pred max|err|", "pred mean|err|", "protos max|err|"):
        table.add_column(col)
    names = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx",
             "int8-cpu": "model.int8-cpu.onnx"}
    for prec, par in result.report["parity"].items():
        w = par["worst"]
        table.add_row(prec, names[prec], f"{w['pred']['max_abs']:.3g}", f"{w['pred']['mean_abs']:.3g}",
                      f"{w['protos']['max_abs']:.3g}")
    console.print(table)
    acc = result.report.get("accuracy", {}).get("metrics")
    if acc:
        t2 = Table(title="accuracy on val images")
        for col in ("backend", "box mAP50", "box mAP50-95", "mask mAP50", "mask mAP50-95"):
            t2.add_column(col)
        for name, m in acc.items():
            t2.add_row(name, *(f"{m[k]:.4f}" for k in ("box_map50", "box_map", "mask_map50", "mask_map")))
        console.print(t2)
    eng = result.report["engines"]
    if eng["built"]:
        for prec, e in eng["built"].items():
            console.print(f"engine {prec}: {result.out / e['engine']}")
    else:
        console.print(f"Standard TensorRT engines (Jetson, GPU servers) are built on the target device, not here "
                      f"({eng['unavailable']}). There run:")
        for prec, cmd in eng["commands"].items():
            console.print(f"  {cmd}")
            console.print(f"  # or: {eng['trtexec'][prec]}")
    if rtx_builds:
        console.print("TensorRT-RTX engines built here, ahead of time, for RTX GPUs:")
    for b in rtx_builds:
        side = b.artifact.sidecar
        convs = " / ".join(f"{k} {v}" for k, v in (side.layers.get("convolutions") or {}).items())
        console.print(f"  {result.out / b.artifact.engine.name} (TensorRT-RTX {side.tensorrt_version}) from "
                      f"{b.onnx.name}" + (f", convolutions {convs}" if convs else ""))
    _summary(console, result, data)


def _check_options(conf: float | None, iou: float | None, max_det: int | None, topk: int, calib_images: int | None,
                   eval_images: int, img_size: int | None) -> None:
    """Every option value checked before anything is read or written, in the option's own name (the library's
    End2EndConfig speaks of conf_threshold, iou_threshold)."""
    from asfyolo_rt.cli._common import check_img_size, check_min, check_range
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.export.end2end import LEGACY_DEFAULT_TOPK, TRT_TOPK_LIMIT

    check_img_size(img_size)
    check_range(conf, "--conf", 0.0, 1.0, high_open=True, what="a score threshold")
    check_range(iou, "--iou", 0.0, 1.0, what="an IoU threshold")
    if topk != LEGACY_DEFAULT_TOPK and not 1 <= topk <= TRT_TOPK_LIMIT:
        raise ConfigError(f"--topk {topk}: TensorRT's TopK takes 1..{TRT_TOPK_LIMIT}",
                          hint=f"pass --topk {TRT_TOPK_LIMIT} or less")
    check_min(max_det, "--max-det")
    if max_det is not None and max_det > min(topk, TRT_TOPK_LIMIT):
        raise ConfigError(f"--max-det {max_det}: expected at most --topk ({min(topk, TRT_TOPK_LIMIT)})")
    check_min(calib_images, "--calib-images")
    check_min(eval_images, "--eval-images", 0)


def _interrupted(exc: KeyboardInterrupt, done: str) -> Interrupted:
    """The Interrupted to leave with (exit 130 / 143): what the library said was stopped, then `done`."""
    inner = exc.done if isinstance(exc, Interrupted) else ""
    return Interrupted(exc.signum if isinstance(exc, Interrupted) else signal.SIGINT,
                       "; ".join(t for t in (inner, done) if t))


def _export_done(out: Path, started: float) -> str:
    """What an interrupted export left in `out`: the files it wrote (modified since `started`)."""
    try:
        new = sorted(f.name for f in out.iterdir() if not f.name.startswith(".") and f.stat().st_mtime >= started - 1)
    except OSError:
        new = []
    if not new:
        return f"nothing written to {out}"
    complete = "bundle.json" in new
    return (f"wrote {', '.join(new)} to {out}" + ("" if complete else
            " (no bundle.json: not a complete bundle; run the export again)"))


# Exported file per precision key of the export report (`report["parity"]`, `report["accuracy"]`).
_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx",
          "int8-cpu": "model.int8-cpu.onnx", "int8-openvino": "model.int8-openvino.xml"}


def _summary(console: Any, result: Any, data: Path | None) -> None:
    """The last lines of an export: what was written where, which accuracy gates passed, what to run next.
    Every number is this run's; the gates are `asfyolo-rt parity`'s (eval.parity.DEFAULT_THRESHOLDS)."""
    from asfyolo_rt.eval.parity import DEFAULT_THRESHOLDS

    out, files = result.out, sorted(result.bundle["files"])
    models = [f for f in _FILES.values() if f in files]
    engines = [f for f in files if f.endswith(".engine")]
    reports = [f for f in ("export_report.json", "calibration_report.json") if f in files]
    console.print(f"\n[bold]Summary[/]: bundle {out}/ ({len(files)} files, each with its SHA-256 in "
                  f"{out / 'bundle.json'})")
    console.print(f"  models   {', '.join(models)}")
    if engines:
        console.print(f"  engines  {', '.join(engines)} (TensorRT-RTX, each with its .json sidecar)")
    console.print(f"  reports  {', '.join(reports)}; model.json: the ModelInfo that other runtimes read")
    acc = result.report.get("accuracy", {})
    deltas = acc.get("delta_vs_pytorch")
    if deltas:
        console.print(f"  gates    mask mAP50 against PyTorch FP32 on {acc['images']} {acc['split']} images "
                      f"({acc['protocol']} protocol), with the limits of `asfyolo-rt parity`:")
        passed = 0
        for backend, d in deltas.items():
            key = backend.split("-", 1)[1] + ("-openvino" if backend.startswith("openvino-") else "")
            limit = DEFAULT_THRESHOLDS.get(key.removesuffix("-openvino"), 1.0)
            ok = 100.0 * d["mask_map50"] >= -limit
            passed += ok
            console.print(f"           {'[green]pass[/]' if ok else '[red]FAIL[/]'}  {_FILES.get(key, backend):<24} "
                          f"{100.0 * d['mask_map50']:+.2f} points (limit -{limit:.1f})")
        console.print(f"           {passed} of {len(deltas)} passed")
    else:
        reason = acc.get("error") or "no --data"
        console.print(f"  gates    not measured ({reason}): run `asfyolo-rt parity` below with a labelled dataset")
    d = str(data) if data is not None else "DATA"
    console.print("  next     [dim]# every file against PyTorch on labelled images; exit 1 when one fails its gate[/]")
    console.print(f"           asfyolo-rt parity {out} --data {d}")
    console.print("           [dim]# segment an image with the exported model[/]")
    console.print(f"           asfyolo-rt predict IMAGE --model {out / 'model.onnx'}")
    console.print("           [dim]# on a Jetson (standard TensorRT): build the engine there[/]")
    console.print(f"           asfyolo-rt build {out} --runtime trt --precision "
                  f"{'int8' if 'model.int8.onnx' in files else 'fp16' if 'model.fp16.onnx' in files else 'fp32'}")


def _export_bioimageio(out: Path, weights: str | None, conf: float, iou: float, max_det: int, image: Path | None,
                       bundle_options: bool, as_json: bool) -> None:
    from asfyolo_rt.cli._common import print_json, progress_bar, stdout_console
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.export.bioimageio import BioimageioOptions, export_bioimageio

    if bundle_options:
        raise ConfigError("--bioimageio writes a bioimage.io package only",
                          hint="drop --fp16/--int8/--end2end, or export the bundle in a separate run")
    opts = BioimageioOptions(out=out, weights=Path(weights) if weights else None, conf=conf, iou=iou, max_det=max_det,
                             test_image=image)
    with progress_bar("bioimage.io package"):
        res = export_bioimageio(opts)
    if as_json:
        print_json({"out": str(res.out), "rdf": str(res.rdf), "onnx": str(res.onnx),
                    "test_shape": list(res.test_shape), "test_cells": res.test_cells})
        return
    stdout_console().print(f"bioimage.io package {res.out} (rdf.yaml, {res.onnx.name}; test image "
                           f"{res.test_shape[-1]}x{res.test_shape[-2]}, {res.test_cells} cells). "
                           f"Check it with: bioimageio test {res.rdf}")


@app.command()
def build(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `asfyolo-rt export` (or one ONNX file "
                                          "in it).")],
    precision: Annotated[str, typer.Option("--precision", "-p", help="fp32, fp16 or int8.")] = "fp16",
    runtime: Annotated[str, typer.Option("--runtime", help="rtx (TensorRT-RTX: ahead of time, any machine, "
                                         "RTX GPUs), trt (standard TensorRT, on the target device), or auto "
                                         "(standard TensorRT if installed, else TensorRT-RTX).")] = "auto",
    arch: Annotated[str | None, typer.Option("--arch", help="TensorRT-RTX target GPUs, e.g. sm86,sm89,sm120 "
                                             "(default: its portable set, compute capability 8.0+).")] = None,
    dla_core: Annotated[int | None, typer.Option("--dla-core", help="Build for DLA core N (Jetson Orin; "
                                                  "TensorRT 8.6-10.x weakly typed path).")] = None,
    workspace: Annotated[float, typer.Option("--workspace", help="Builder workspace limit in GiB.")] = 4.0,
    end2end: Annotated[bool, typer.Option("--end2end", help="Build the end-to-end model of this precision "
                                          "(TensorRT-RTX: its Cluster-NMS flavour, written if missing).")] = False,
    kernels: Annotated[Path | None, typer.Option("--kernels", help="manifest.json of `asfyolo-rt kernels compile` "
                                                  "(end-to-end models with the plugin mask assembly).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the engine sidecar as JSON.")] = False,
) -> None:
    """Build a TensorRT or TensorRT-RTX engine from a bundle (plan + <name>.engine.json).

    Standard TensorRT builds on the device that will run the engine; TensorRT-RTX builds portable engines
    ahead of time on any machine, without a GPU.

    Examples:
      asfyolo-rt build bundle --runtime rtx --precision int8 --arch sm86,sm89
      asfyolo-rt build bundle --runtime rtx --precision fp16 --end2end
      asfyolo-rt build bundle --runtime trt --precision fp16 --dla-core 0
    """
    from asfyolo_rt.cli._common import print_json, progress_bar, stderr, stdout_console
    from asfyolo_rt.export.engine.build import BuildConfig
    from asfyolo_rt.export.engine.bundle_build import build_from_bundle

    archs = tuple(a.strip() for a in arch.split(",") if a.strip()) if arch else ()
    cfg = BuildConfig(precision=precision, workspace_gib=workspace, dla_core=dla_core, runtime=runtime, archs=archs)
    try:
        with progress_bar(f"building {precision}{' end-to-end' if end2end else ''} engine") as progress:
            res = build_from_bundle(bundle, cfg, end2end=end2end, manifest=kernels, bundle_timing_cache=True,
                                    progress=progress)
    except KeyboardInterrupt as exc:
        raise _interrupted(exc, f"no {precision} engine built from {bundle}") from None
    stderr.print(res.runtime_note)
    for path in res.written:
        stderr.print(f"wrote {path.name} (Cluster-NMS end-to-end model for TensorRT-RTX)")
    art = res.artifact
    if as_json:
        print_json(art.sidecar.to_dict())
        return
    side = art.sidecar
    where = (f"targets {','.join(side.targets) or 'default portable set'}" if side.runtime == "TensorRT-RTX"
             else f"sm {side.compute_capability}")
    convs = side.layers.get("convolutions")
    conv_text = f", convolutions {' / '.join(f'{k} {v}' for k, v in convs.items())}" if convs else ""
    stdout_console().print(f"engine {art.engine} ({side.precision}, {side.runtime} {side.tensorrt_version}, {where}"
                           f"{conv_text}, {side.build.get('engine_bytes', 0) / 2**20:.1f} MiB) + "
                           f"{art.sidecar_path.name} in {art.seconds:.1f} s")
