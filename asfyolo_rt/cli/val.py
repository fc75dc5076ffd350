"""`asfyolo-rt val`: the official validation protocol (+ COCO and DSB cross-checks) for any backend."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from asfyolo_rt.cli._common import print_json, progress_bar, resolve_model_source, stdout_console
from asfyolo_rt.cli.main import app

console = stdout_console()


@app.command()
def val(
    data: Annotated[Path, typer.Option("--data", "-d", help="Dataset folder or data YAML (YOLO-seg layout).")],
    weights: Annotated[str | None, typer.Option("--weights", "-w", help="Checkpoint (.safetensors, official .pt) or shipped name (dsb2018, bcc). Default: the shipped DSB2018 model.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="An exported model to evaluate instead: model.onnx, model.int8.onnx, model.engine.")] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate.")] = "val",
    img_size: Annotated[int | None, typer.Option("--img-size", help="Long side after resizing (default: the model's training size; official protocol: 640).")] = None,
    batch: Annotated[int, typer.Option(help="Batch size (static exported models use their own).")] = 16,
    conf: Annotated[float, typer.Option(help="Confidence threshold (official training-time validation: 0.001).")] = 0.001,
    iou: Annotated[float, typer.Option(help="NMS IoU threshold (official: 0.6).")] = 0.6,
    max_det: Annotated[int, typer.Option("--max-det", help="Detections kept per image.")] = 300,
    soft_nms: Annotated[bool, typer.Option("--soft-nms", help="Gaussian soft-NMS as the paper describes (sigma 0.5, floor 0.25).")] = False,
    coco: Annotated[bool, typer.Option("--coco/--no-coco", help="COCO AP cross-check on full-resolution masks.")] = True,
    dsb: Annotated[bool, typer.Option("--dsb/--no-dsb", help="DSB2018 per-image score.")] = True,
    max_images: Annotated[int | None, typer.Option("--max-images", help="Evaluate only the first N images.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda[:N] (PyTorch checkpoints).")] = "cpu",
    precision: Annotated[str, typer.Option(help="PyTorch precision: fp32, fp16 or bf16.")] = "fp32",
    plots: Annotated[Path | None, typer.Option(help="Write PR/F1/P/R curves and a validation mosaic here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print all metrics as JSON to stdout.")] = False,
) -> None:
    """Validate a model on a dataset split: box/mask P, R, mAP50, mAP50-95, COCO AP and the DSB score.

    Examples:
      asfyolo-rt val --data ../shared/datasets/DSB2018 --json
      asfyolo-rt val --weights bcc --data ../shared/datasets/BCC --plots runs/val-bcc
      asfyolo-rt val --model bundle/model.int8.onnx --data ../shared/datasets/DSB2018 --max-images 50
    """
    from asfyolo_rt.data.dataset import load_split
    from asfyolo_rt.eval.validate import ValConfig, validate
    from asfyolo_rt.infer.backends import load_backend

    path, trained_size = resolve_model_source(weights, model)
    size = img_size or trained_size or 640
    ds = load_split(data, split, on_problem="warn")
    backend = load_backend(path, device=device, precision=precision)
    cfg = ValConfig(img_size=size, batch_size=batch, conf=conf, iou=iou, max_det=max_det, soft_nms=soft_nms,
                    coco=coco, dsb=dsb, max_images=max_images)
    with progress_bar(f"val {path.name}", min(len(ds.samples), max_images or len(ds.samples))) as cb:
        result = validate(backend, ds, cfg, progress=cb, plots_dir=plots)
    out = result.to_dict()
    out["model"] = str(path)
    out["data"] = str(data)
    out["split"] = split
    if as_json:
        print_json(out)
        return
    table = Table(title=f"{path.name} on {data} [{split}], {result.n_images} images, img-size {size}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.summary().items():
        table.add_row(k, "-" if v is None else f"{v:.4f}")
    for k, v in result.speed_ms.items():
        table.add_row(f"{k} ms/img", f"{v:.1f}")
    console.print(table)
