"""`asfyolo-rt val`: the paper's whole-image protocol and the tiled deployment protocol, for any backend."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from asfyolo_rt.cli._common import (
    backend_help,
    check_device,
    check_img_size,
    check_min,
    check_range,
    load_labelled_split,
    precision_help,
    print_json,
    progress_bar,
    resolve_model_source,
    stdout_console,
)
from asfyolo_rt.cli.main import app

console = stdout_console()


@app.command()
def val(
    data: Annotated[Path, typer.Option("--data", "-d", help="Dataset folder or data YAML (YOLO-seg layout).")],
    weights: Annotated[str | None, typer.Option("--weights", "-w", help="Checkpoint (.safetensors, official .pt) or shipped name (dsb2018, bcc). Default: the shipped DSB2018 model.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="An exported model to evaluate instead: model.onnx, model.int8.onnx, model.engine.")] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate.")] = "val",
    protocol: Annotated[str, typer.Option("--protocol", help="Default fit: whole images letterboxed to --img-size with exact geometry, masks at 1/4 resolution. tiled: each image at its own pixel scale in tiles, stitched, full-resolution masks (what predict does). official: the official code's train-time validation, quirks included (rect batches of 16, conf 0.001, IoU 0.6, overlap masks at 1/4); official-val: the official segment/val.py defaults (batch 1, conf 0.01, IoU 0.45, full-resolution masks); both official protocols fix their own conf/IoU/max-det/batch and skip COCO/DSB. both: fit and tiled.")] = "fit",
    img_size: Annotated[int | None, typer.Option("--img-size", help="fit: long side after resizing; tiled: tile side. Default 640 (a static model's own shape).")] = None,
    tile_overlap: Annotated[int | None, typer.Option("--tile-overlap", help="tiled: pixels shared by neighbouring tiles (default: larger than the model's largest training cell).")] = None,
    batch: Annotated[int, typer.Option(help="Images (fit) or tiles (tiled) per backend call; static exported models use their own.")] = 16,
    conf: Annotated[float, typer.Option(help="Confidence threshold (official training-time validation: 0.001).")] = 0.001,
    iou: Annotated[float, typer.Option(help="NMS IoU threshold (official: 0.6).")] = 0.6,
    max_det: Annotated[int, typer.Option("--max-det", help="Detections kept per image (fit) or per tile (tiled: an image of many tiles can keep more).")] = 300,
    soft_nms: Annotated[bool, typer.Option("--soft-nms", help="Gaussian soft-NMS as the paper describes (sigma 0.5, floor 0.25).")] = False,
    coco: Annotated[bool, typer.Option("--coco/--no-coco", help="COCO AP cross-check on full-resolution masks.")] = True,
    dsb: Annotated[bool, typer.Option("--dsb/--no-dsb", help="DSB2018 per-image score.")] = True,
    max_images: Annotated[int | None, typer.Option("--max-images", help="Evaluate only the first N images.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda[:N] (PyTorch checkpoints).")] = "cpu",
    precision: Annotated[str, typer.Option(help=f"What the runtime runs ({precision_help()}); bf16 on CPUs with AVX512-BF16/AMX, int8 on an INT8 .xml; exported files carry their own.")] = "fp32",
    backend_name: Annotated[str | None, typer.Option("--backend", help=f"Runtime: {backend_help()}. [default: from the file: .safetensors/.pt torch, .onnx onnxruntime, .xml openvino, .engine tensorrt]")] = None,
    skip_bad_labels: Annotated[bool, typer.Option("--skip-bad-labels", help="Leave out images with label errors (and say how many) instead of refusing to validate.")] = False,
    max_pixels: Annotated[int | None, typer.Option("--max-pixels", help="Refuse images of more pixels (H x W) than this, read from the header before decoding. [default: 268435456 = 16384 x 16384]")] = None,
    plots: Annotated[Path | None, typer.Option(help="Write PR/F1/P/R curves and a validation mosaic here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print all metrics as JSON to stdout.")] = False,
) -> None:
    """Validate a model on a dataset split: box/mask P, R, mAP50, mAP50-95, COCO AP and the DSB score.

    Examples:
      asfyolo-rt val --data ../shared/datasets/DSB2018 --json
      asfyolo-rt val --data ../shared/datasets/DSB2018 --protocol tiled --json
      asfyolo-rt val --data ../shared/datasets/DSB2018 --protocol official --json
      asfyolo-rt val --data ../shared/datasets/DSB2018 --protocol both --model bundle/model.onnx
      asfyolo-rt val --weights bcc --data ../shared/datasets/BCC --plots runs/val-bcc
      asfyolo-rt val --model bundle/model.int8.onnx --data ../shared/datasets/DSB2018 --max-images 50
    """
    from asfyolo_rt.data.io import pixel_limit
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.eval.validate import ValConfig, validate
    from asfyolo_rt.runtime.info import read_model_info
    from asfyolo_rt.runtime.registry import load_backend

    if protocol not in ("fit", "tiled", "official", "official-val", "both"):
        raise ConfigError(f"--protocol {protocol!r}: expected fit, tiled, official, official-val or both")
    if batch < 1:
        raise ConfigError(f"--batch {batch}: expected >= 1")
    if max_det < 1:
        raise ConfigError(f"--max-det {max_det}: expected >= 1")
    check_img_size(img_size)
    check_range(conf, "--conf", 0.0, 1.0, high_open=True, what="a threshold")
    check_range(iou, "--iou", 0.0, 1.0, low_open=True, what="a threshold")
    check_min(tile_overlap, "--tile-overlap", 0)
    check_min(max_images, "--max-images")
    check_min(max_pixels, "--max-pixels")
    check_device(device)
    path, _ = resolve_model_source(weights, model)
    rec = read_model_info(path)
    ds = load_labelled_split(data, split, skip_bad_labels=skip_bad_labels)
    backend = load_backend(path, device=device, precision=precision, backend=backend_name)
    if backend.input_shape is not None and img_size is not None and img_size != max(backend.input_shape):
        raise ConfigError(f"--img-size {img_size} conflicts with {path.name}'s fixed input "
                          f"{backend.input_shape[0]}x{backend.input_shape[1]}", hint="leave out --img-size")
    size = img_size or (max(backend.input_shape) if backend.input_shape else 640)
    protocols = ["fit", "tiled"] if protocol == "both" else [protocol]
    results = {}
    n = min(len(ds.samples), max_images or len(ds.samples))
    for p in protocols:
        cfg = ValConfig(img_size=size, batch_size=batch, conf=conf, iou=iou, max_det=max_det, soft_nms=soft_nms,
                        coco=coco, dsb=dsb, max_images=max_images, protocol=p, model_scale=rec.model_scale,
                        tile_overlap=tile_overlap, max_object_px=rec.overlap_object_px,
                        dsb_conf=rec.default_conf)
        plots_dir = None if plots is None else (plots / p if len(protocols) > 1 else plots)
        with pixel_limit(max_pixels), progress_bar(f"val {p} {path.name}", n) as cb:
            results[p] = validate(backend, ds, cfg, progress=cb, plots_dir=plots_dir)
    head = {"model": str(path), "data": str(data), "split": split}
    if as_json:
        if len(protocols) == 1:
            print_json(results[protocols[0]].to_dict() | {"protocol": protocols[0]} | head)
        else:
            print_json(head | {"protocols": {p: r.to_dict() | {"protocol": p} for p, r in results.items()}})
        return
    first = results[protocols[0]]
    table = Table(title=f"{path.name} on {data} [{split}], {first.n_images} images, "
                        + ", ".join(f"{p} {_describe(p, r, size)}" for p, r in results.items()))
    table.add_column("metric")
    for p in protocols:
        table.add_column(p, justify="right")
    keys = list(first.summary())
    for k in keys:
        table.add_row(k, *["-" if r.summary().get(k) is None else f"{r.summary()[k]:.4f}" for r in results.values()])
    for k in first.speed_ms:
        table.add_row(f"{k} ms/img", *[f"{r.speed_ms[k]:.1f}" for r in results.values()])
    console.print(table)


def _describe(protocol: str, result: object, size: int) -> str:
    if protocol.startswith("official"):
        return f"(img-size {size}, {result.backend['protocol_settings']})"  # type: ignore[attr-defined]
    if protocol == "fit":
        return f"(img-size {size})"
    b = result.backend  # type: ignore[attr-defined]
    return f"(tiles {b['tile'][0]}x{b['tile'][1]}, overlap {b['tile_overlap']}, {b['tiles']} tiles)"
