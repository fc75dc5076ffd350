"""`asfyolo-rt info` (model size and shapes) and `asfyolo-rt env` (versions and devices)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from asfyolo_rt.cli._common import stdout_console
from asfyolo_rt.cli.main import app

console = stdout_console()


@app.command()
def info(
    model: Annotated[str, typer.Option("--model", "-m", help="Model size: n, s, m, l (the paper's) or x.")] = "l",
    nc: Annotated[int, typer.Option(help="Number of classes (1 = cell).")] = 1,
    img_size: Annotated[int, typer.Option("--img-size", help="Square input size (multiple of 32).")] = 640,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")] = False,
) -> None:
    """Parameters, GFLOPs and output shapes of an ASF-YOLO architecture.

    Example: asfyolo-rt info --model l --nc 1 --img-size 640 --json
    """
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.model import build_model
    from asfyolo_rt.model.summary import model_info

    if img_size <= 0 or img_size % 32:
        raise ConfigError(f"--img-size must be a positive multiple of 32, got {img_size}", hint="try 320, 640 or 672")
    result = model_info(build_model(model, nc), img_size).to_dict()
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"ASF-YOLO-{model}  nc={nc}  {img_size}x{img_size}", show_header=False)
    for k, v in result.items():
        table.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
    console.print(table)


@app.command()
def env(as_json: Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")] = False) -> None:
    """Python, torch, Triton, ONNX Runtime and TensorRT versions; CUDA devices.

    Example: asfyolo-rt env --json
    """
    from asfyolo_rt.env import environment

    result = environment()
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(show_header=False)
    for k, v in result.items():
        table.add_row(k, "-" if v is None else str(v))
    console.print(table)
