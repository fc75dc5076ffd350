"""`asfyolo-rt predict`: cells out of images, folders, globs and videos, at original resolution."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from asfyolo_rt.cli._common import (
    SignalGuard,
    backend_help,
    check_device,
    check_img_size,
    check_min,
    precision_help,
    print_json,
    progress_bar,
    resolve_model_source,
)
from asfyolo_rt.cli._common import stderr as log_stderr
from asfyolo_rt.cli.main import app, finished

console = Console(stderr=True)


RESULT_NAMES = ("cells.csv", "summary.csv", "predictions.coco.json", "labels", "overlays")


def fresh_output_folder(out: Path | None) -> Path:
    """--out, refused if it already holds results; without --out the first free runs/predict, runs/predict2, ..."""
    from asfyolo_rt.errors import ConfigError

    def used(p: Path) -> bool:
        return p.exists() and any((p / n).exists() for n in RESULT_NAMES)

    if out is not None:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file", hint="pass a folder for the results")
        above = next((a for a in out.parents if a.exists()), None)
        if above is not None and not above.is_dir():
            raise ConfigError(f"--out {out}: {above} is a file, not a folder", hint="pass a folder for the results")
        if used(out):
            raise ConfigError(f"--out {out} already holds results of an earlier run (cells.csv, labels/, ...)",
                              hint="choose another --out, or move the old results away; nothing was overwritten")
        return out
    base = Path("runs/predict")
    k = 1
    while used(base if k == 1 else base.with_name(f"predict{k}")):
        k += 1
    return base if k == 1 else base.with_name(f"predict{k}")


# What a run writes before its first image result: removing a folder holding only these loses nothing.
_HEADER_FILES = ("cells.csv", "summary.csv", "predictions.coco.json")


def remove_unfinished(out: Path) -> bool:
    """Remove `out` (created by this run) if it holds nothing but the header-only files and empty folders a
    run writes before its first result, so that the corrected re-run into the same --out is not refused.
    Anything else in it (a file of the user's, a result): left alone. True if removed."""
    import shutil

    if not out.is_dir():
        return False
    for entry in out.iterdir():
        if entry.is_symlink() or (entry.is_file() and entry.name not in _HEADER_FILES):
            return False
        if entry.is_dir() and (entry.name not in ("labels", "overlays") or any(entry.iterdir())):
            return False
    shutil.rmtree(out, ignore_errors=True)
    return not out.exists()


def written_line(out: Path, done: int, total: int, outputs: list[str]) -> str:
    """'93 of 134 images written to runs/predict (cells.csv, labels/, ...)'."""
    return f"{done} of {total} images written to {out} ({', '.join(outputs)})"


@app.command()
def predict(
    source: Annotated[list[str], typer.Argument(help="Image files, folders, glob patterns ('imgs/*.tif') or video files.")],
    weights: Annotated[str | None, typer.Option("--weights", "-w", help="Checkpoint or shipped name (dsb2018, bcc); default: the shipped DSB2018 model.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Or an exported model (.onnx, .engine).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder; must not hold earlier results. [default: runs/predict, then runs/predict2, ...]")] = None,
    conf: Annotated[float | None, typer.Option(help="Confidence threshold of the cells drawn. [default: the one tuned for the model on data and recorded with it (`asfyolo-rt weights show`), else 0.25]")] = None,
    iou: Annotated[float, typer.Option(help="NMS IoU threshold.")] = 0.45,
    min_visible: Annotated[float, typer.Option("--min-visible", help="Drop a cell of which less than this fraction of its mask stays visible in the label image (covered by higher-scoring cells: a duplicate); 0 keeps all.")] = 0.5,
    max_det: Annotated[int, typer.Option("--max-det", help="Maximum cells per tile (--scale native: an image of many tiles can hold more) or per image (--scale fit); dense nuclei need hundreds.")] = 1000,
    scale: Annotated[str, typer.Option("--scale", help="native: the image at its own pixel scale (x the model's), cut into overlapping tiles; fit: the whole image resized to --img-size (the paper's protocol; cells shrink with the image).")] = "native",
    img_size: Annotated[int | None, typer.Option("--img-size", help="native: tile side (default: a static model's shape; a dynamic one takes each image's own tile, the fewest network pixels, e.g. 864 x 864 for a 2048 x 2048 frame at scale 1.5); fit: long side after resizing (default: the model's training size).")] = None,
    tile_overlap: Annotated[int | None, typer.Option("--tile-overlap", help="native: pixels shared by neighbouring tiles (default: larger than the model's largest training cell).")] = None,
    batch: Annotated[int, typer.Option("--batch", help="Tiles per backend call (a static-batch model uses its own).")] = 1,
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Micrometres per pixel of the input images (overrides OME-TIFF/ImageJ metadata); with a model that records its training pixel size, images are rescaled to it.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda[:N].")] = "cpu",
    backend_name: Annotated[str | None, typer.Option("--backend", help=f"Runtime: {backend_help()}. [default: a checkpoint on the CPU runs the fastest exported path of this machine, made once and cached (OpenVINO INT8/BF16/FP32 or ONNX Runtime, checked against PyTorch; ASFYOLO_RT_FAST=0 turns it off); else from the file: .safetensors/.pt torch, .onnx onnxruntime, .xml openvino, .engine tensorrt]")] = None,
    precision: Annotated[str | None, typer.Option("--precision", help=f"What the runtime runs ({precision_help()}); bf16 on CPUs with AVX512-BF16/AMX, int8 on an INT8 .xml; exported files carry their own. [default: fp32; --backend openvino: BF16 where the CPU has it, else the bundle's INT8 IR on CPUs with VNNI/AMX, else FP32, and says which]")] = None,
    soft_nms: Annotated[bool, typer.Option("--soft-nms", help="Gaussian soft-NMS (paper) instead of hard NMS.")] = False,
    labels: Annotated[str, typer.Option(help="Label image format: tif (uint16/uint32), png (uint16), or none.")] = "tif",
    overlays: Annotated[bool, typer.Option("--overlays/--no-overlays", help="Write overlay PNGs.")] = True,
    coco: Annotated[bool, typer.Option("--coco/--no-coco", help="Write predictions.coco.json with RLE masks.")] = True,
    video_stride: Annotated[int, typer.Option("--video-stride", help="Use every N-th video frame.")] = 1,
    max_pixels: Annotated[int | None, typer.Option("--max-pixels", help="Refuse images of more pixels (H x W) than this, read from the header before decoding. [default: 268435456 = 16384 x 16384]")] = None,
    channel: Annotated[int | None, typer.Option("--channel", help="0-based channel to segment (the nuclear stain) of a multichannel image or OME/ImageJ hyperstack; one colour of an RGB image.")] = None,
    geojson: Annotated[bool, typer.Option("--geojson", help="Write <name>.geojson: cell polygons QuPath imports as detections (class, score).")] = False,
    imagej_rois: Annotated[bool, typer.Option("--imagej-rois", help="Write <name>.rois.zip: one polygon ROI per cell for Fiji's ROI Manager.")] = False,
    ome_zarr: Annotated[bool, typer.Option("--ome-zarr", help="Write <name>.ome.zarr: the image with the labels as an OME-Zarr labels group (napari-ome-zarr).")] = False,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Search folders given as sources recursively (symlink loops are not followed).")] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Go on past unreadable or oversized files and list them at the end (default: stop at the first, before any output).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-image summary as JSON.")] = False,
    cluster: Annotated[str | None, typer.Option("--cluster", help="Run on a Dask LocalCluster: local (one worker process per core) or local:N (N worker processes, the cores shared between them): one task per block of an OME-Zarr/slide/large input, one task per image of a folder, glob or plate (same outputs as without).")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Run on a running Dask cluster at this address (tcp://host:8786: dask-jobqueue on SLURM/PBS/LSF, Kubernetes), as --cluster does.")] = None,
    level: Annotated[int | None, typer.Option("--level", help="Pyramid level of an OME-Zarr/pyramidal TIFF/slide input (0 = full resolution). [default: the level nearest the model's training pixel size where both are recorded, else 0]")] = None,
    block: Annotated[int | None, typer.Option("--block", help="Block side in pixels for OME-Zarr/slide/large inputs (a multiple of 1024 above 1024); a TIFF given --block or --level is read by block. [default: 4096]")] = None,
) -> None:
    """Segment cells: label images, overlays, COCO JSON (RLE), per-cell CSV and per-image counts.

    Examples:
      asfyolo-rt predict nuclei.tif                       (native scale, tiles: any frame size; the
                                                          fastest CPU path, made once, says which)
      asfyolo-rt predict nuclei.tif --backend torch       (the checkpoint itself, in PyTorch)
      asfyolo-rt predict camera_2048.tif --model bundle/model.onnx --batch 4
      asfyolo-rt predict small.png --scale fit --img-size 640   (the paper's whole-image protocol)
      asfyolo-rt predict he_tile.png --weights bcc
      asfyolo-rt predict 'plate1/*.png' --conf 0.3 --out runs/plate1
      asfyolo-rt predict timelapse.mp4 --video-stride 10 --model bundle/model.onnx
      asfyolo-rt predict zstack.ome.tif --channel 0 --geojson --imagej-rois --ome-zarr   (plane by plane)
      asfyolo-rt predict plate1/ --recursive --skip-bad   (every image below plate1/, unreadable ones listed)
      asfyolo-rt predict 'plate1/*.tif' --cluster local:2   (one Dask task per image, same outputs)
      asfyolo-rt predict big.ome.zarr --out runs/big --cluster local:2   (by block: runs/big/big.ome.zarr labels,
                                                           big.cells.csv/.parquet; re-run to resume after a kill)
      asfyolo-rt predict slide.svs --level 0 --out runs/slide   (whole-slide: + slide.geojson for QuPath)

    OME-Zarr images of one plane, whole-slide files and TIFFs above --max-pixels (or given --level/--block) are
    read block by block and never held whole: their outputs are <name>.ome.zarr (labels/cells, uint32, with a
    pyramid), <name>.cells.csv and <name>.cells.parquet (and <name>.geojson for slides or with --geojson).
    """
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.infer.sources import expand_sources, iter_frames
    from asfyolo_rt.infer.writers import PredictionWriter
    from asfyolo_rt.runtime.segmenter import Segmenter
    from asfyolo_rt.runtime.tiles import SCALES

    if labels not in ("tif", "png", "none"):
        raise ConfigError(f"--labels must be tif, png or none, got {labels!r}")
    if scale not in SCALES:
        raise ConfigError(f"--scale {scale!r}: expected native or fit")
    if channel is not None and channel < 0:
        raise ConfigError(f"--channel {channel}: expected a 0-based channel index (0, 1, ...)")
    check_img_size(img_size)
    check_min(batch, "--batch")
    check_min(video_stride, "--video-stride")
    check_min(max_pixels, "--max-pixels")
    check_device(device)
    path, _ = resolve_model_source(weights, model)
    settings: dict[str, Any] = dict(img_size=img_size, scale=scale, tile_overlap=tile_overlap, batch=batch, pixel_size_um=pixel_size,
                    min_visible=min_visible, conf=conf, iou=iou, max_det=max_det, soft_nms=soft_nms)
    from asfyolo_rt import fastpath
    from asfyolo_rt.runtime.info import read_model_info
    from asfyolo_rt.runtime.pipeline import PredictConfig

    # every option checked before any file is read; against the fast path's ONNX where it is made (the same
    # model info, read without loading the checkpoint's tensors or PyTorch)
    made = fastpath.cached(path) if fastpath.applies(path, backend=backend_name, device=device, precision=precision,
                                                      scale=scale) else None
    PredictConfig.from_info(read_model_info(made.model if made else path), **settings)
    from asfyolo_rt.data.io import IMAGE_SUFFIXES, check_headers, pixel_limit
    from asfyolo_rt.errors import DataError
    from asfyolo_rt.infer.sources import BadInput

    bad: list[BadInput] = []
    from asfyolo_rt.large.route import is_slide, wants_blocks

    slides = [Path(s) for s in source if is_slide(s)]
    others = [s for s in source if not is_slide(s)]
    files = slides + (expand_sources(others, recursive=recursive, skip_bad=skip_bad, skipped=bad) if others else [])
    big = [f for f in files if wants_blocks(f, level=level, block=block, max_pixels=max_pixels)]
    if big:
        if len(big) != len(files):
            small = next(f for f in files if f not in big)
            raise ConfigError(f"{big[0]} is read by block (OME-Zarr, slide or large TIFF) but {small} is not",
                              hint="predict them in two runs")
        if imagej_rois or ome_zarr:
            raise ConfigError(f"{'--imagej-rois' if imagej_rois else '--ome-zarr'}: {big[0]} is read by block, and its "
                              "labels are always written as OME-Zarr (<name>.ome.zarr) with a GeoJSON (--geojson)",
                              hint="leave the option out")
        _predict_large(big, path, settings, backend_name=backend_name, device=device, precision=precision, out=out,
                       cluster=cluster, scheduler=scheduler, level=level, block=block, channel=channel,
                       pixel_size=pixel_size, geojson=geojson, as_json=as_json)
        return
    if level is not None or block is not None:
        raise ConfigError("--level/--block apply to OME-Zarr, whole-slide and TIFF inputs",
                          hint="leave them out for these images")
    with pixel_limit(max_pixels):
        if not skip_bad:
            check_headers(files, IMAGE_SUFFIXES)  # unreadable or oversized images: refused before any output
        else:
            for f in list(files):
                try:
                    check_headers([f], IMAGE_SUFFIXES)
                except DataError as exc:
                    bad.append(BadInput(f, str(exc)))
                    files.remove(f)
            if not files:
                raise ConfigError(f"none of the {len(bad)} input file(s) is readable",
                                  hint="; ".join(f"{b.path}: {b.reason}" for b in bad[:3]))
    model_file, runtime, prec = choose_runtime(path, backend_name, device, precision, scale)
    seg = Segmenter(model_file, backend=runtime, device=device, precision=prec, **settings)
    cfg, rec, backend = seg.config, seg.info, seg.backend
    from asfyolo_rt.runtime.tiles import MAX_FIT_TILE

    tiler = seg.tiler
    tile = (MAX_FIT_TILE, MAX_FIT_TILE) if tiler.adaptive else tiler.tile
    if scale == "native" and tile_overlap is not None and tile_overlap > min(tile) // 2:
        what = f"the largest tile chosen per image, {tile[0]} px," if tiler.adaptive else f"the {tile[0]}x{tile[1]} tile"
        raise ConfigError(f"--tile-overlap {tile_overlap}: expected at most half {what} ({min(tile) // 2} px)",
                          hint="a larger --img-size (tile side) takes a larger overlap")
    out = fresh_output_folder(out)
    created = not out.exists()  # only a folder this run made may be removed again
    if cluster is None and scheduler is None and files and files[0].suffix.lower() in IMAGE_SUFFIXES:
        _warm(seg, files[0], pixel_size)  # the first image's tile shape compiled while the image is read
    outputs = [n for n, on in (("cells.csv", True), ("summary.csv", True), ("labels/", labels != "none"),
                               ("overlays/", overlays), ("predictions.coco.json", coco), ("<name>.geojson", geojson),
                               ("<name>.rois.zip", imagej_rois), ("<name>.ome.zarr", ome_zarr)) if on]
    summaries: list[dict[str, Any]] = []
    sources: set[Path] = set()
    from asfyolo_rt.large.engine import start_cluster

    engine = start_cluster(cluster, scheduler)
    if engine is not None:
        log_stderr.print(f"Dask: {engine.workers} worker(s), dashboard {engine.dashboard}", highlight=False,
                         markup=False, soft_wrap=True)
    try:
        with SignalGuard() as guard:
            writer = PredictionWriter(out, names=backend.names, overlays=overlays,
                                      labels="" if labels == "none" else labels, coco=coco, geojson=geojson,
                                      imagej_rois=imagej_rois, ome_zarr=ome_zarr)
            try:
                with pixel_limit(max_pixels), progress_bar("predict", len(files)) as cb:
                    frames = iter_frames(files, video_stride=video_stride, channel=channel, skip_bad=skip_bad,
                                         skipped=bad)
                    for i, result in enumerate(seg.predict_frames(frames) if engine is None else
                                               _cluster_results(engine, seg, settings, files, device,
                                                                video_stride, channel, skip_bad, max_pixels, bad)):
                        with guard.critical():  # one image's outputs whole, or none of them
                            summaries.append(writer.write(result))
                        sources.add(result.frame.source)
                        where = result.frame.source.name + ("" if result.frame.frame_index is None
                                                            else f" frame {result.frame.frame_index}")
                        log_stderr.print(f"{where}: {summaries[-1]['cells']} cells, "
                                         f"{sum(result.timing_ms.values()):.0f} ms", highlight=False, markup=False)
                        cb(i + 1, max(len(files), i + 1))
            except BaseException:  # close what was written (the COCO file of the finished images); an error
                with guard.critical(), contextlib.suppress(Exception):  # there must not hide the first one
                    writer.close()
                raise
            with guard.critical():
                writer.close()
    except BaseException as exc:
        removed = created and not summaries and remove_unfinished(out)
        if isinstance(exc, KeyboardInterrupt):
            from asfyolo_rt.errors import Interrupted

            signum = exc.signum if isinstance(exc, Interrupted) else 2
            done = (f"nothing written, {out} removed" if removed
                    else written_line(out, len(sources), len(files), outputs))
            raise Interrupted(signum, done) from None
        if removed:
            log_stderr.print(f"removed {out}: nothing was written into it before the error", highlight=False,
                             markup=False, soft_wrap=True)
        raise
    finally:
        if engine is not None:
            engine.close()
    if bad:
        log_stderr.print(f"skipped {len(bad)} file(s) (--skip-bad):", highlight=False, markup=False)
        for b in bad:
            log_stderr.print(f"  {b.path}: {b.reason}", highlight=False, markup=False, soft_wrap=True)
    if as_json:
        print_json({"out": str(out), "conf": cfg.conf, "images": summaries,
                    "skipped": [{"path": str(b.path), "reason": b.reason} for b in bad]})
    else:
        total = sum(s["cells"] for s in summaries)
        extra = "".join(f", {n}" for n, on in (("predictions.coco.json", coco), ("<name>.geojson", geojson),
                                                ("<name>.rois.zip", imagej_rois), ("<name>.ome.zarr", ome_zarr)) if on)
        how = "" if conf is not None else (" (tuned for the model)" if rec.conf is not None else " (default)")
        console.print(f"{len(summaries)} images, {total} cells at conf {cfg.conf:g}{how} -> {out} (labels/, overlays/, "
                      f"cells.csv, summary.csv{extra})")
    if engine is None:  # every file closed, no cluster: the process may end without the interpreter's teardown
        finished()


def _warm(seg: Any, first: Path, pixel_size: float | None) -> None:
    """`Segmenter.warm` for the size of the first image, from its header (any fault: left to the read)."""
    from asfyolo_rt.data.header import image_size
    from asfyolo_rt.data.io import read_pixel_size

    with contextlib.suppress(Exception):
        seg.warm(image_size(first), pixel_size or read_pixel_size(first))


def choose_runtime(path: Path, backend_name: str | None, device: str, precision: str | None,
                   scale: str) -> tuple[str, str | None, str]:
    """(model file, runtime, precision) that predict runs, said on stderr where predict chose them: the fast CPU
    path for a checkpoint (asfyolo_rt.fastpath), OpenVINO's precision for this CPU when --backend openvino has no
    --precision (infer.openvino.pick_precision), else what was asked (precision default fp32)."""
    from asfyolo_rt import fastpath

    if fastpath.applies(path, backend=backend_name, device=device, precision=precision, scale=scale):
        fast = fastpath.fast_choice(path, log=lambda s: log_stderr.print(s, highlight=False, markup=False))
        log_stderr.print(fast.describe(), highlight=False, markup=False, soft_wrap=True)
        return fast.model, fast.runtime, fast.precision
    if backend_name == "openvino" and precision is None:
        from asfyolo_rt.infer.openvino import pick_precision

        model = path / "model.onnx" if path.is_dir() else path
        if model.suffix.lower() in (".onnx", ".xml"):
            file, prec, why = pick_precision(model)
            log_stderr.print(f"OpenVINO {prec.upper()} of {file.name}: {why} (--precision to choose)",
                             highlight=False, markup=False, soft_wrap=True)
            return str(file), backend_name, prec
    return str(path), backend_name, precision or "fp32"


def _cluster_results(engine: Any, seg: Any, settings: dict[str, Any], files: list[Path],
                     device: str, video_stride: int, channel: int | None, skip_bad: bool, max_pixels: int | None,
                     bad: list[Any]) -> Any:
    """predict's results with one Dask task per input (asfyolo_rt.large.plate), in input order."""
    from asfyolo_rt.large.engine import worker_threads
    from asfyolo_rt.large.plate import ImageTask, predict_images

    threads = worker_threads(engine.workers) if engine.local else None
    spec = seg.spec  # the model and runtime this run chose (the fast CPU path included), opened by every worker
    task = ImageTask(spec.path, spec.runtime, device, spec.precision, threads, tuple(sorted(settings.items())),
                     video_stride, channel, skip_bad, max_pixels)
    return predict_images(engine.client, task, files, skipped=bad)


class _LargeBar:
    """A Rich bar per step of one block-route image (blocks, count, paint, ...): tasks done, and for blocks the
    cells found and the throughput in megapixels per second."""

    def __init__(self, name: str) -> None:
        import time

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.name, self.clock = name, time.perf_counter
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)
        self.tasks: dict[str, Any] = {}
        self.cells = self.pixels = 0
        self.t0 = self.clock()

    def __enter__(self) -> _LargeBar:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def update(self, step: str, n: int, total: int, info: dict[str, Any]) -> None:
        text = ""
        if step == "blocks":
            self.cells += int(info.get("cells", 0))
            self.pixels += int(info.get("pixels", 0))
            text = f"{self.cells} cells, {self.pixels / 1e6 / max(self.clock() - self.t0, 1e-9):.2f} MP/s"
        if step not in self.tasks:
            self.tasks[step] = self.bar.add_task(f"{self.name} {step}", total=total, info=text)
        self.bar.update(self.tasks[step], completed=n, total=total, info=text)


def _predict_large(files: list[Path], model: Path, settings: dict[str, Any], *, backend_name: str | None, device: str,
                   precision: str | None, out: Path | None, cluster: str | None, scheduler: str | None, level: int | None,
                   block: int | None, channel: int | None, pixel_size: float | None, geojson: bool,
                   as_json: bool) -> None:
    """The block route (asfyolo_rt.large.segment_large) for each input, with a Rich bar: blocks done, cells, MP/s."""
    from asfyolo_rt.large.api import segment_large
    from asfyolo_rt.large.context import DEFAULT_BLOCK
    from asfyolo_rt.large.engine import start_cluster, worker_threads
    from asfyolo_rt.large.route import is_slide

    model_file, runtime, prec = choose_runtime(model, backend_name, device, precision, "native")
    out = out if out is not None else fresh_output_folder(None)
    engine = start_cluster(cluster, scheduler)
    if engine is not None:
        log_stderr.print(f"Dask: {engine.workers} worker(s), dashboard {engine.dashboard}", highlight=False,
                         markup=False, soft_wrap=True)
    threads = worker_threads(engine.workers) if engine is not None and engine.local else None
    kw = {k: v for k, v in settings.items() if k != "pixel_size_um"}
    done: list[dict[str, Any]] = []
    try:
        for f in files:
            bar = _LargeBar(f.name)
            with bar:
                res = segment_large(f, out, engine.client if engine is not None else None, model=model_file,
                                    backend=runtime, device=device, precision=prec, threads=threads,
                                    level=level, channel=channel, pixel_size=pixel_size, block=block or DEFAULT_BLOCK,
                                    geojson=geojson or is_slide(f), progress=bar.update, **kw)
            done.append({"image": str(f), "labels": str(res.image), "cells": res.cells, "cells_csv": str(res.cells_csv),
                         "level": res.level, "shape": list(res.shape), "blocks": res.blocks, "resumed": res.resumed,
                         "intensity": res.norm.to_json(), "seconds": res.seconds})
            if not as_json:
                console.print(f"{f.name}: {res.cells} cells in {res.shape[1]}x{res.shape[0]} px (level {res.level}, "
                              f"{res.blocks} blocks{', resumed' if res.resumed else ''}) -> {res.image}, "
                              f"{res.cells_csv.name}", highlight=False, markup=False, soft_wrap=True)
    except KeyboardInterrupt:
        from asfyolo_rt.errors import Interrupted

        raise Interrupted(2, f"{len(done)} of {len(files)} images finished in {out}; re-run the same command to "
                             "resume the unfinished one") from None
    finally:
        if engine is not None:
            engine.close()
    if as_json:
        print_json({"out": str(out), "images": done})
