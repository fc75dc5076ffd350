"""`asfyolo-rt predict`: cells out of images, folders, globs and videos, at original resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from asfyolo_rt.cli._common import (
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
        if used(out):
            raise ConfigError(f"--out {out} already holds results of an earlier run (cells.csv, labels/, ...)",
                              hint="choose another --out, or move the old results away; nothing was overwritten")
        return out
    base = Path("runs/predict")
    k = 1
    while used(base if k == 1 else base.with_name(f"predict{k}")):
        k += 1
    return base if k == 1 else base.with_name(f"predict{k}")


@app.command()
def predict(
    source: Annotated[list[str], typer.Argument(help="Image files, folders, glob patterns ('imgs/*.tif') or video files.")],
    weights: Annotated[str | None, typer.Option("--weights", "-w", help="Checkpoint or shipped name (dsb2018, bcc); default: the shipped DSB2018 model.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Or an exported model (.onnx, .engine).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder; must not hold earlier results. [default: runs/predict, then runs/predict2, ...]")] = None,
    conf: Annotated[float | None, typer.Option(help="Confidence threshold of the cells drawn. [default: the one tuned for the model on data and recorded with it (`asfyolo-rt weights show`), else 0.25]")] = None,
    iou: Annotated[float, typer.Option(help="NMS IoU threshold.")] = 0.45,
    min_visible: Annotated[float, typer.Option("--min-visible", help="Drop a cell of which less than this fraction of its mask stays visible in the label image (covered by higher-scoring cells: a duplicate); 0 keeps all.")] = 0.5,
    max_det: Annotated[int, typer.Option("--max-det", help="Maximum cells per image (dense nuclei need hundreds).")] = 1000,
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
    """
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.infer.sources import expand_sources, iter_frames
    from asfyolo_rt.infer.writers import PredictionWriter
    from asfyolo_rt.runtime.segmenter import Segmenter
    from asfyolo_rt.runtime.stages import SCALES

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
    files = expand_sources(source)
    from asfyolo_rt.data.io import IMAGE_SUFFIXES, check_headers, pixel_limit

    with pixel_limit(max_pixels):
        check_headers(files, IMAGE_SUFFIXES)  # unreadable or oversized images: refused before any output
    seg = Segmenter(path, backend=backend_name, device=device, precision=precision, **settings)
    cfg, rec, backend = seg.config, seg.info, seg.backend
    out = fresh_output_folder(out)
    writer = PredictionWriter(out, names=backend.names, overlays=overlays, labels="" if labels == "none" else labels,
                              coco=coco, geojson=geojson, imagej_rois=imagej_rois, ome_zarr=ome_zarr)
    summaries = []
    try:
        with pixel_limit(max_pixels), progress_bar("predict", len(files)) as cb:
            for i, result in enumerate(seg.predict_frames(iter_frames(files, video_stride=video_stride, channel=channel))):
                summaries.append(writer.write(result))
                where = result.frame.source.name + ("" if result.frame.frame_index is None
                                                    else f" frame {result.frame.frame_index}")
                log_stderr.print(f"{where}: {summaries[-1]['cells']} cells, {sum(result.timing_ms.values()):.0f} ms",
                                 highlight=False, markup=False)
                cb(i + 1, max(len(files), i + 1))
    finally:
        writer.close()
    if as_json:
        print_json({"out": str(out), "conf": cfg.conf, "images": summaries})
    else:
        total = sum(s["cells"] for s in summaries)
        extra = "".join(f", {n}" for n, on in (("predictions.coco.json", coco), ("<name>.geojson", geojson),
                                                ("<name>.rois.zip", imagej_rois), ("<name>.ome.zarr", ome_zarr)) if on)
        how = "" if conf is not None else (" (tuned for the model)" if rec.conf is not None else " (default)")
        console.print(f"{len(summaries)} images, {total} cells at conf {cfg.conf:g}{how} -> {out} (labels/, overlays/, "
                      f"cells.csv, summary.csv{extra})")
