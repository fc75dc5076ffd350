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
from asfyolo_rt.cli.main import app

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
    img_size: Annotated[int | None, typer.Option("--img-size", help="native: tile side (default 640, or a static model's shape); fit: long side after resizing (default: the model's training size).")] = None,
    tile_overlap: Annotated[int | None, typer.Option("--tile-overlap", help="native: pixels shared by neighbouring tiles (default: larger than the model's largest training cell).")] = None,
    batch: Annotated[int, typer.Option("--batch", help="Tiles per backend call (a static-batch model uses its own).")] = 1,
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Micrometres per pixel of the input images (overrides OME-TIFF/ImageJ metadata); with a model that records its training pixel size, images are rescaled to it.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda[:N].")] = "cpu",
    backend_name: Annotated[str | None, typer.Option("--backend", help=f"Runtime: {backend_help()}. [default: from the file: .safetensors/.pt torch, .onnx onnxruntime, .xml openvino, .engine tensorrt]")] = None,
    precision: Annotated[str, typer.Option("--precision", help=f"What the runtime runs ({precision_help()}); bf16 on CPUs with AVX512-BF16/AMX, int8 on an INT8 .xml; exported files carry their own.")] = "fp32",
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
) -> None:
    """Segment cells: label images, overlays, COCO JSON (RLE), per-cell CSV and per-image counts.

    Examples:
      asfyolo-rt predict nuclei.tif                       (native scale, 640 tiles: any frame size)
      asfyolo-rt predict camera_2048.tif --model bundle/model.onnx --batch 4
      asfyolo-rt predict small.png --scale fit --img-size 640   (the paper's whole-image protocol)
      asfyolo-rt predict he_tile.png --weights bcc
      asfyolo-rt predict 'plate1/*.png' --conf 0.3 --out runs/plate1
      asfyolo-rt predict timelapse.mp4 --video-stride 10 --model bundle/model.onnx
      asfyolo-rt predict zstack.ome.tif --channel 0 --geojson --imagej-rois --ome-zarr   (plane by plane)
      asfyolo-rt predict plate1/ --recursive --skip-bad   (every image below plate1/, unreadable ones listed)
    """
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.infer.sources import expand_sources, iter_frames
    from asfyolo_rt.infer.writers import PredictionWriter
    from asfyolo_rt.runtime.segmenter import Segmenter
    from asfyolo_rt.runtime.stages import DEFAULT_TILE, SCALES

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
    from asfyolo_rt.runtime.info import read_model_info
    from asfyolo_rt.runtime.pipeline import PredictConfig

    PredictConfig.from_info(read_model_info(path), **settings)  # every option checked before any file is read
    from asfyolo_rt.data.io import IMAGE_SUFFIXES, check_headers, pixel_limit
    from asfyolo_rt.errors import DataError
    from asfyolo_rt.infer.sources import BadInput

    bad: list[BadInput] = []
    files = expand_sources(source, recursive=recursive, skip_bad=skip_bad, skipped=bad)
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
    seg = Segmenter(path, backend=backend_name, device=device, precision=precision, **settings)
    cfg, rec, backend = seg.config, seg.info, seg.backend
    tile = backend.input_shape or (cfg.img_size or DEFAULT_TILE,) * 2
    if scale == "native" and tile_overlap is not None and tile_overlap > min(tile) // 2:
        raise ConfigError(f"--tile-overlap {tile_overlap}: expected at most half the {tile[0]}x{tile[1]} tile "
                          f"({min(tile) // 2} px)", hint="a larger --img-size (tile side) takes a larger overlap")
    out = fresh_output_folder(out)
    created = not out.exists()  # only a folder this run made may be removed again
    outputs = [n for n, on in (("cells.csv", True), ("summary.csv", True), ("labels/", labels != "none"),
                               ("overlays/", overlays), ("predictions.coco.json", coco), ("<name>.geojson", geojson),
                               ("<name>.rois.zip", imagej_rois), ("<name>.ome.zarr", ome_zarr)) if on]
    summaries: list[dict[str, Any]] = []
    sources: set[Path] = set()
    try:
        with SignalGuard() as guard:
            writer = PredictionWriter(out, names=backend.names, overlays=overlays,
                                      labels="" if labels == "none" else labels, coco=coco, geojson=geojson,
                                      imagej_rois=imagej_rois, ome_zarr=ome_zarr)
            try:
                with pixel_limit(max_pixels), progress_bar("predict", len(files)) as cb:
                    frames = iter_frames(files, video_stride=video_stride, channel=channel, skip_bad=skip_bad,
                                         skipped=bad)
                    for i, result in enumerate(seg.predict_frames(frames)):
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
