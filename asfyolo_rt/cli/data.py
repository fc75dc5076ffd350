"""`asfyolo-rt data ...`: check datasets, convert formats, generate synthetic data."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from asfyolo_rt.cli._common import progress_bar
from asfyolo_rt.cli.main import sub_app
from asfyolo_rt.data.check import CheckReport, check_dataset
from asfyolo_rt.data.convert import (
    ConvertReport,
    coco_to_yolo,
    convert_dsb2018,
    convert_instance_masks,
    yolo_to_coco,
)
from asfyolo_rt.data.synth import write_synth_dataset

grp = sub_app("data", "Check datasets, convert between formats, generate synthetic cell images.")
convert_grp = typer.Typer(
    name="convert",
    help="Convert DSB2018 / instance label images / COCO JSON to YOLO-seg, and YOLO-seg to COCO JSON.",
    no_args_is_help=True,
)
grp.add_typer(convert_grp, name="convert")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON to stdout.")]


def _fmt_pct(p: dict[str, float]) -> str:
    return "/".join(f"{v:g}" for v in p.values()) if p else "-"


def _print_check(report: CheckReport) -> None:
    echo = typer.echo
    echo(f"dataset {report.source}")
    echo(f"{'split':<8}{'images':>8}{'instances':>11}{'per image mean/max':>21}{'empty':>7}")
    for s in report.splits:
        per = f"{s.instances_per_image_mean:.2f} / {s.instances_per_image_max}"
        echo(f"{s.split:<8}{s.n_images:>8}{s.n_instances:>11,}{per:>21}{s.n_images_without_instances:>7}")
    for alias, target in report.aliases.items():
        echo(f"{alias:<8}(same images as {target})")
    for s in report.splits:
        sizes = ", ".join(f"{k} x{v}" for k, v in s.size_histogram.items())
        echo(f"{s.split}: image sizes (WxH): {sizes or '-'}")
        echo(f"{s.split}: box size p5/p25/p50/p75/p95, original px: w {_fmt_pct(s.box_width_px)}, "
             f"h {_fmt_pct(s.box_height_px)}; long side at 640: w {_fmt_pct(s.box_width_640)}, "
             f"h {_fmt_pct(s.box_height_640)}")
    echo(f"problems: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    for p in report.problems:
        echo(str(p))


@grp.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="Dataset folder (images/<split>, labels/<split>) or data YAML.")],
    split: Annotated[list[str] | None, typer.Option("--split", help="Check only this split (repeatable).")] = None,
    no_decode: Annotated[bool, typer.Option("--no-decode", help="Read image headers only: faster, but misses "
                                                                 "truncated pixel data and duplicates.")] = False,
    max_pixels: Annotated[int | None, typer.Option("--max-pixels", help="List images of more pixels (H x W) than "
                                                   "this as errors, without decoding them. [default: 268435456]")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Statistics and every problem (with file and line) of a YOLO-seg dataset; exit 1 on errors.

    Examples:

      asfyolo-rt data check ../shared/datasets/DSB2018

      asfyolo-rt data check ../shared/datasets/BCC --split val --json
    """
    from asfyolo_rt.data.io import pixel_limit

    with pixel_limit(max_pixels), progress_bar("checking", transient=True) as progress:
        report = check_dataset(path, split or None, decode=not no_decode, progress=progress)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_check(report)
    if not report.ok:
        raise typer.Exit(1)


def _finish_convert(report: ConvertReport, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(f"wrote {report.n_images} images, {report.n_instances} instances -> {report.out}")
        for p in report.problems:
            typer.echo(str(p))
    if any(p.severity == "error" for p in report.problems):
        raise typer.Exit(1)


@convert_grp.command("dsb2018")
def convert_dsb(
    src: Annotated[Path, typer.Argument(help="Kaggle stage1_train folder holding <id>/images and <id>/masks.")],
    out: Annotated[Path, typer.Argument(help="Output YOLO-seg dataset folder.")],
    split: Annotated[str, typer.Option(help="Split for the samples not in --val-ids.")] = "train",
    val_ids: Annotated[Path | None, typer.Option("--val-ids", help="Text file, one image id per line, "
                                                                  "to put in split 'val'.")] = None,
    rgb8: Annotated[bool, typer.Option("--rgb8", help="Re-encode images as 8-bit RGB PNG (drops alpha).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Kaggle DSB2018 (one binary PNG per nucleus) -> YOLO-seg.

    Example: asfyolo-rt data convert dsb2018 stage1_train/ datasets/DSB2018 --val-ids val_ids.txt --rgb8
    """
    ids = {line.strip() for line in val_ids.read_text().splitlines() if line.strip()} if val_ids else set()
    with progress_bar("converting", transient=True) as progress:
        report = convert_dsb2018(src, out, split=split, val_ids=ids, rgb8=rgb8, progress=progress)
    _finish_convert(report, as_json)


@convert_grp.command("instances")
def convert_instances(
    images: Annotated[Path, typer.Argument(help="Folder of images.")],
    masks: Annotated[Path, typer.Argument(help="Folder of instance label images (0 = background, k = instance).")],
    out: Annotated[Path, typer.Argument(help="Output YOLO-seg dataset folder.")],
    split: Annotated[str, typer.Option(help="Split to write.")] = "train",
    mask_suffix: Annotated[str, typer.Option(help="Label image name = image stem + this (e.g. _masks).")] = "",
    rgb8: Annotated[bool, typer.Option("--rgb8", help="Re-encode images as 8-bit RGB PNG.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Instance label images (16-bit TIFF/PNG) -> YOLO-seg.

    Example: asfyolo-rt data convert instances imgs/ masks/ datasets/mine --mask-suffix _masks --split val
    """
    with progress_bar("converting", transient=True) as progress:
        report = convert_instance_masks(images, masks, out, split=split, mask_suffix=mask_suffix, rgb8=rgb8,
                                        progress=progress)
    _finish_convert(report, as_json)


@convert_grp.command("yolo2coco")
def convert_yolo2coco(
    dataset: Annotated[Path, typer.Argument(help="YOLO-seg dataset folder or data YAML.")],
    out_json: Annotated[Path, typer.Argument(help="COCO instance JSON to write.")],
    split: Annotated[str, typer.Option(help="Split to convert.")] = "val",
    as_json: JsonOpt = False,
) -> None:
    """YOLO-seg split -> COCO instance JSON (polygons, category id = class + 1).

    Example: asfyolo-rt data convert yolo2coco ../shared/datasets/DSB2018 dsb_val.json --split val
    """
    with progress_bar("converting", transient=True) as progress:
        report = yolo_to_coco(dataset, split, out_json, progress=progress)
    _finish_convert(report, as_json)


@convert_grp.command("coco2yolo")
def convert_coco2yolo(
    coco_json: Annotated[Path, typer.Argument(help="COCO instance JSON (polygon or RLE segmentations).")],
    images: Annotated[Path, typer.Argument(help="Folder the JSON's file_name entries are relative to.")],
    out: Annotated[Path, typer.Argument(help="Output YOLO-seg dataset folder.")],
    split: Annotated[str, typer.Option(help="Split to write.")] = "train",
    as_json: JsonOpt = False,
) -> None:
    """COCO instance JSON -> YOLO-seg (crowd regions skipped; categories mapped to 0, 1, ...).

    Example: asfyolo-rt data convert coco2yolo annotations.json images/ datasets/mine --split val
    """
    with progress_bar("converting", transient=True) as progress:
        report = coco_to_yolo(coco_json, images, out, split=split, progress=progress)
    _finish_convert(report, as_json)


class SynthKindOpt(str, Enum):
    nuclei = "nuclei"
    tissue = "tissue"


@grp.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="Output YOLO-seg dataset folder.")],
    kind: Annotated[SynthKindOpt, typer.Option(help="nuclei: fluorescence; tissue: H&E-like.")] = SynthKindOpt.nuclei,
    train: Annotated[int, typer.Option(min=0, help="Number of training images.")] = 16,
    val: Annotated[int, typer.Option(min=0, help="Number of validation images.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same images.")] = 0,
    size: Annotated[int, typer.Option(min=16, help="Square image side in pixels.")] = 256,
    bit_depth: Annotated[int, typer.Option(help="8 or 16 (16 only for nuclei).")] = 8,
) -> None:
    """Write a synthetic YOLO-seg dataset (PNG images, labels, data.yaml) with exact instance labels.

    Example: asfyolo-rt data synth /tmp/synth --kind nuclei --train 32 --val 8 --seed 0
    """
    with progress_bar("generating", transient=True) as progress:
        root = write_synth_dataset(out, train, val, kind=kind.value, shape=(size, size), seed=seed,
                                   bit_depth=bit_depth, progress=progress)
    typer.echo(f"wrote {train} train + {val} val {kind.value} images -> {root}")


@grp.command("frame")
def frame(
    data: Annotated[Path, typer.Argument(help="Dataset folder or data YAML whose images are packed.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Frame TIFF to write; its ground truth goes beside it as <name>.labels.tif.")],
    size: Annotated[int, typer.Option(min=64, max=16384, help="Frame side in pixels (scientific cameras: 2048).")] = 2048,
    split: Annotated[str, typer.Option(help="Split whose images are packed.")] = "val",
    seed: Annotated[int, typer.Option(help="Seed of the camera noise.")] = 0,
    all_images: Annotated[bool, typer.Option("--all-images", help="Use every image, not only fluorescence-looking ones.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a camera-sized 16-bit test frame of a split's images at their own scale, with its ground truth.

    Example: asfyolo-rt data frame ../shared/datasets/DSB2018 --size 2048 --out frame2048.tif
    """
    import tifffile

    from asfyolo_rt.data.dataset import load_split
    from asfyolo_rt.data.frames import camera_frame
    from asfyolo_rt.errors import ConfigError

    if out.suffix.lower() not in (".tif", ".tiff"):
        raise ConfigError(f"--out {out}: expected a .tif file (16-bit frames)")
    labels = out.with_name(out.stem + ".labels.tif")
    for p in (out, labels):
        if p.exists():
            raise ConfigError(f"{p} already exists", hint="choose another --out or remove the old frame")
    fr = camera_frame(load_split(data, split, on_problem="warn"), size, seed=seed, fluorescence_only=not all_images)
    out.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(out, fr.image)
    lm = fr.index_map()
    tifffile.imwrite(labels, lm.astype(np.uint16 if lm.max() < 65536 else np.uint32))
    info = {"frame": str(out), "labels": str(labels), "size": size, "nuclei": len(fr.polygons),
            "images": len(fr.sources), "dtype": str(fr.image.dtype)}
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        typer.echo(f"wrote {out} ({size}x{size} {fr.image.dtype}, {len(fr.sources)} images, {len(fr.polygons)} "
                   f"instances) and {labels}")


@grp.command("mosaic")
def mosaic(
    data: Annotated[Path, typer.Argument(help="Dataset folder or data YAML whose images are tiled (DSB2018).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="OME-Zarr folder to write (e.g. big.ome.zarr): the uint16 image with a pyramid, and its ground truth as labels/ground_truth.")],
    size: Annotated[int, typer.Option(min=64, max=1_000_000, help="Side of the square mosaic in pixels (20000 and 40000 are the large-image checks).")] = 40_000,
    split: Annotated[str, typer.Option(help="Split whose images are tiled.")] = "val",
    tile: Annotated[int, typer.Option(min=64, help="Side of each image crop in the mosaic.")] = 256,
    chunk: Annotated[int, typer.Option(min=64, help="Zarr chunk side (the image and labels are written one chunk at a time).")] = 1024,
    seed: Annotated[int, typer.Option(help="Seed of the crop choice and the camera noise.")] = 0,
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Micrometres per pixel to record (default: none, as DSB2018 records none).")] = None,
    all_images: Annotated[bool, typer.Option("--all-images", help="Use every image, not only fluorescence-looking ones.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a SIZE x SIZE 16-bit OME-Zarr mosaic of a split's nuclei with ground truth, chunk by chunk (never
    whole in memory): the input of the large-image checks (`asfyolo-rt predict big.ome.zarr`).

    Example: asfyolo-rt data mosaic ../shared/datasets/DSB2018 --size 40000 --out big.ome.zarr
    """
    from asfyolo_rt.data.dataset import load_split
    from asfyolo_rt.data.mosaic import write_mosaic

    sp = load_split(data, split, on_problem="warn")
    with progress_bar("mosaic chunks") as cb:
        m = write_mosaic(sp, out, (size, size), tile=tile, chunk=chunk, seed=seed, fluorescence_only=not all_images,
                         pixel_size_um=pixel_size, progress=cb)
    info = {"mosaic": str(m.path), "size": size, "crops": m.tiles, "nuclei_visible": m.nuclei, "dtype": "uint16",
            "labels": str(m.path / "labels" / "ground_truth")}
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        typer.echo(f"wrote {m.path} ({size}x{size} uint16, {m.tiles} crops, {m.nuclei} nuclei) with its ground truth "
                   "in labels/ground_truth")
