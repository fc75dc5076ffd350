"""`asfyolo-rt weights ...`: import official checkpoints, inspect ours."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from asfyolo_rt.cli._common import print_json
from asfyolo_rt.cli.main import sub_app

weights_app = sub_app("weights", "Import official ASF-YOLO checkpoints; inspect asfyolo-rt checkpoints.")


@weights_app.command("import")
def import_cmd(
    source: Annotated[Path, typer.Argument(help="Official ASF-YOLO .pt (asf-yolo.yaml, e.g. runs/train-seg/exp/weights/best.pt).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the .safetensors checkpoint.")],
    img_size: Annotated[int, typer.Option("--img-size", help="Image size the model was trained at.")] = 640,
    half: Annotated[bool, typer.Option("--half/--fp32", help="Store FP16 weights (half the size).")] = False,
) -> None:
    """Convert an official ASF-YOLO checkpoint without executing its pickled code.

    Example: asfyolo-rt weights import best.pt --out asfyolo-l-dsb2018.safetensors
    """
    from dataclasses import replace

    from asfyolo_rt.model.weights import import_official, save_checkpoint

    model, cfg = import_official(source)
    save_checkpoint(model, out, replace(cfg, img_size=img_size), half=half)
    typer.echo(f"wrote {out} (ASF-YOLO-{cfg.variant}, nc={cfg.nc}, names={cfg.names})")


@weights_app.command("show")
def show(path: Annotated[Path, typer.Argument(help="An asfyolo-rt .safetensors checkpoint.")]) -> None:
    """Print a checkpoint's config (variant, classes, anchors, image size, provenance) as JSON.

    Example: asfyolo-rt weights show runs/train/dsb2018-n-320/best.safetensors
    """
    from dataclasses import asdict

    from asfyolo_rt.model.weights import read_checkpoint

    state, cfg = read_checkpoint(path)
    print_json({**asdict(cfg), "tensors": len(state), "parameters": int(sum(v.numel() for k, v in state.items()
                                                                          if "running" not in k and "num_batches" not in k))})
