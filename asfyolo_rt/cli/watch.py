"""`asfyolo-rt watch`: segment each image a microscope writes into a folder, once the file is complete."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from asfyolo_rt.cli._common import (
    backend_help,
    check_device,
    check_img_size,
    check_min,
    print_json,
    rich_progress,
)
from asfyolo_rt.cli._common import stderr as log_stderr
from asfyolo_rt.cli.main import app

if TYPE_CHECKING:
    from asfyolo_rt.runtime.watch import WatchStatus


@contextmanager
def _stop_on_signals() -> Iterator[tuple[threading.Event, dict[str, int]]]:
    """First Ctrl-C (or SIGTERM): set the event, the current file finishes; a second Ctrl-C abandons it
    (KeyboardInterrupt: nothing of it is recorded). Yields the event and {"signal": number} once one came."""
    stop = threading.Event()
    got: dict[str, int] = {}

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        got.setdefault("signal", signum)
        stop.set()
        log_stderr.print("stopping after the current file (Ctrl-C again to abandon it)", highlight=False)

    if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
        yield stop, got
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop, got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@app.command()
def watch(
    folder: Annotated[Path, typer.Argument(help="Folder the microscope writes images into (not searched recursively).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (labels/, overlays/, cells.csv, summary.csv, frames.jsonl); a folder of an earlier watch is resumed.")],
    pattern: Annotated[str | None, typer.Option("--pattern", help="File names to take, e.g. '*.tif' (case-sensitive); default: every .png, .jpg, .bmp and .tif, any case.")] = None,
    settle: Annotated[float, typer.Option("--settle", help="Seconds a file's size and mtime must stay unchanged before it is read (it must also decode).")] = 1.0,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between scans of the folder.")] = 0.5,
    give_up: Annotated[float, typer.Option("--give-up", help="Record a file that still does not decode after this many seconds without a change as an error in frames.jsonl.")] = 60.0,
    max_frames: Annotated[int | None, typer.Option("--max-frames", help="Exit 0 after segmenting this many files.")] = None,
    idle_exit: Annotated[float | None, typer.Option("--idle-exit", help="Exit 0 after this many seconds without a new or unfinished file.")] = None,
    weights: Annotated[str | None, typer.Option("--weights", "-w", help="Checkpoint or shipped name (dsb2018, bcc); default: the shipped DSB2018 model.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Or an exported model (.onnx, .xml, .engine).")] = None,
    conf: Annotated[float | None, typer.Option(help="Confidence threshold; default: the one tuned for the model, else 0.25.")] = None,
    iou: Annotated[float, typer.Option(help="NMS IoU threshold.")] = 0.45,
    min_visible: Annotated[float, typer.Option("--min-visible", help="Drop a cell of which less than this fraction stays visible in the label image.")] = 0.5,
    max_det: Annotated[int, typer.Option("--max-det", help="Maximum cells per image.")] = 1000,
    scale: Annotated[str, typer.Option("--scale", help="native (tiles at the image's own pixel scale) or fit (whole image resized to --img-size).")] = "native",
    img_size: Annotated[int | None, typer.Option("--img-size", help="native: tile side; fit: long side after resizing.")] = None,
    tile_overlap: Annotated[int | None, typer.Option("--tile-overlap", help="native: pixels shared by neighbouring tiles.")] = None,
    batch: Annotated[int, typer.Option("--batch", help="Tiles per backend call.")] = 1,
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Micrometres per pixel of the images (overrides their metadata).")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda[:N].")] = "cpu",
    backend_name: Annotated[str | None, typer.Option("--backend", help=f"Runtime: {backend_help()}; default: from the file.")] = None,
    precision: Annotated[str, typer.Option("--precision", help="OpenVINO: fp32, bf16, int8; PyTorch: fp32, fp16, bf16.")] = "fp32",
    soft_nms: Annotated[bool, typer.Option("--soft-nms", help="Gaussian soft-NMS instead of hard NMS.")] = False,
    labels: Annotated[str, typer.Option(help="Label image format: tif, png or none.")] = "tif",
    overlays: Annotated[bool, typer.Option("--overlays/--no-overlays", help="Write overlay PNGs.")] = True,
    channel: Annotated[int | None, typer.Option("--channel", help="0-based channel to segment of multichannel images.")] = None,
    max_pixels: Annotated[int | None, typer.Option("--max-pixels", help="Refuse images of more pixels than this.")] = None,
    geojson: Annotated[bool, typer.Option("--geojson", help="Write <name>.geojson (QuPath detections).")] = False,
    imagej_rois: Annotated[bool, typer.Option("--imagej-rois", help="Write <name>.rois.zip (Fiji ROI Manager).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final counts as JSON.")] = False,
) -> None:
    """Segment each image written into FOLDER once it is complete, with predict's outputs, exactly once.

    A file is taken when its size and mtime have not changed for --settle seconds and it decodes (a
    half-written file is retried). Names starting with '.' or ending in .tmp/.part are ignored: write
    'x.tif.part' and rename it when done. Each finished file appends one JSON line to OUT/frames.jsonl
    (name, file, status, cells, queue/read/infer/post/total ms, finished); a file is done iff its line is
    there, so a watch that was stopped or killed resumes where it was. Ctrl-C finishes the current file and
    exits 130 (twice: abandons it). One watcher per --out.

    Examples:
      asfyolo-rt watch /data/acq --out runs/acq                      (until Ctrl-C; the shipped DSB2018 model)
      asfyolo-rt watch /data/acq --out runs/acq --pattern '*.tif' --settle 2 --model bundle/model.onnx
      asfyolo-rt watch /data/acq --out runs/acq --device cuda --model model.engine --no-overlays
      asfyolo-rt watch /data/plate --out runs/plate --idle-exit 30    (exit 0 after 30 s with nothing new)
      asfyolo-rt watch /data/acq --out runs/acq --max-frames 100 --json
    """
    from asfyolo_rt.cli._common import resolve_model_source
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.runtime.info import read_model_info
    from asfyolo_rt.runtime.pipeline import PredictConfig
    from asfyolo_rt.runtime.segmenter import Segmenter
    from asfyolo_rt.runtime.watch import WatchOptions
    from asfyolo_rt.runtime.watch import watch as run_watch

    if labels not in ("tif", "png", "none"):
        raise ConfigError(f"--labels must be tif, png or none, got {labels!r}")
    if channel is not None and channel < 0:
        raise ConfigError(f"--channel {channel}: expected a 0-based channel index (0, 1, ...)")
    check_img_size(img_size)
    check_min(batch, "--batch")
    check_min(max_pixels, "--max-pixels")
    opts = WatchOptions(folder=folder, out=out, pattern=pattern, settle_s=settle, poll_s=poll, give_up_s=give_up,
                        max_frames=max_frames, idle_exit_s=idle_exit, labels="" if labels == "none" else labels,
                        overlays=overlays, geojson=geojson, imagej_rois=imagej_rois, channel=channel,
                        max_pixels=max_pixels)
    opts.check()
    check_device(device)
    path, _ = resolve_model_source(weights, model)
    settings: dict[str, Any] = dict(img_size=img_size, scale=scale, tile_overlap=tile_overlap, batch=batch, pixel_size_um=pixel_size,
                    min_visible=min_visible, conf=conf, iou=iou, max_det=max_det, soft_nms=soft_nms)
    PredictConfig.from_info(read_model_info(path), **settings)  # every option checked before the model loads

    def make() -> Segmenter:
        seg = Segmenter(path, backend=backend_name, device=device, precision=precision, **settings)
        log_stderr.print(f"watching {folder} -> {out} ({seg.backend.name}, conf {seg.config.conf:g}); Ctrl-C to stop",
                         highlight=False, markup=False, soft_wrap=True)
        return seg

    last: dict[str, Any] = {"done": 0, "earlier": 0}
    tty = log_stderr.is_terminal
    with _stop_on_signals() as (stop, got), rich_progress(info=True, disable=not tty) as bar:
        task = bar.add_task("watch", total=None, info="")

        def show(s: WatchStatus) -> None:
            last.update(done=s.done, earlier=s.earlier)
            rate = f"{s.fps:.2f} files/s" if s.fps else "- files/s"
            state = f"done {s.done}, backlog {s.backlog}" + (f" (+{s.writing} being written)" if s.writing else "")
            bar.update(task, completed=s.done, info=f"{state}, {rate}")
            r = s.record
            if r is None or r["status"] != "ok":  # errors are logged by the engine
                return
            line = f"{r['file']}: {r['cells']} cells, {r['total_ms']:.0f} ms"
            log_stderr.print(line if tty else f"{line} ({state}, {rate})", highlight=False, markup=False)

        try:
            result = run_watch(opts, make, progress=show, stop=stop)
        except KeyboardInterrupt:
            bar.stop()
            log_stderr.print(f"interrupted: abandoned the current file; {last['done']} file(s) done in this run, "
                             f"{last['done'] + last['earlier']} in {out / 'frames.jsonl'}", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
    total = result.done + result.earlier
    if as_json:
        print_json({"out": str(out), "done": result.done, "errors": result.errors, "earlier": result.earlier,
                    "stopped_by": result.stopped_by})
    if result.stopped_by == "stop":
        code = 130 if got.get("signal", signal.SIGINT) == signal.SIGINT else 143
        log_stderr.print(f"interrupted: {result.done} file(s) done in this run ({result.errors} errors), {total} in "
                         f"{out / 'frames.jsonl'}", highlight=False, soft_wrap=True)
        raise typer.Exit(code)
    why = {"idle": f"nothing new for {idle_exit:g} s" if idle_exit is not None else "idle",
           "max-frames": f"--max-frames {max_frames}"}[result.stopped_by]
    log_stderr.print(f"{result.done} file(s) done in this run ({result.errors} errors; {why}), {total} in "
                     f"{out / 'frames.jsonl'}", highlight=False, soft_wrap=True)
