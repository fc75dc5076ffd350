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
def show(path: Annotated[str, typer.Argument(help="An asfyolo-rt .safetensors checkpoint, or a shipped name (dsb2018, bcc).")]) -> None:
    """Print a checkpoint's config (variant, classes, anchors, image size, provenance) as JSON.

    Examples: asfyolo-rt weights show runs/train/dsb2018-n-320/best.safetensors; asfyolo-rt weights show bcc
    """
    from dataclasses import asdict

    from asfyolo_rt.model.weights import read_checkpoint
    from asfyolo_rt.weights_registry import resolve_weights

    state, cfg = read_checkpoint(resolve_weights(path, option="PATH"))
    print_json({**asdict(cfg), "tensors": len(state), "parameters": int(sum(v.numel() for k, v in state.items()
                                                                          if "running" not in k and "num_batches" not in k and not k.endswith("anchors")))})


@weights_app.command("pack")
def pack(
    source: Annotated[str, typer.Argument(help="An asfyolo-rt checkpoint, e.g. a run's best.safetensors, or a shipped name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the packed checkpoint.")],
    half: Annotated[bool, typer.Option("--half/--fp32", help="Store FP16 weights (half the size; loads as FP32).")] = True,
    note: Annotated[list[str], typer.Option("--note", help="Extra provenance KEY=VALUE (repeatable).")] = [],  # noqa: B006
    model_scale: Annotated[float | None, typer.Option("--model-scale", help="Record the network pixels per image pixel the model was trained at (1.0 = the images' own scale), for native-scale tiled inference.")] = None,
    max_object_px: Annotated[float | None, typer.Option("--max-object-px", help="Record the largest training object (network px): the default tile overlap.")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Measure --max-object-px on this dataset's train split (at the model scale).")] = None,
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Record the training images' physical pixel size in micrometres.")] = None,
    int8_exclude: Annotated[list[str] | None, typer.Option("--int8-exclude", help="Record a node-name regex that the TensorRT INT8 export of these weights keeps unquantized (repeatable; what `export --int8-sensitivity` suggests); '' clears the record.")] = None,
) -> None:
    """Repack a checkpoint for distribution (FP16 by default), keeping its config and provenance.

    Example: asfyolo-rt weights pack runs/dsb2018-n-320/best.safetensors --out asfyolo-n-dsb2018.safetensors --note hardware="2-core CPU"
    """
    from dataclasses import replace

    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.model.weights import load_checkpoint, save_checkpoint
    from asfyolo_rt.weights_registry import resolve_weights

    model, cfg = load_checkpoint(resolve_weights(source, option="SOURCE"))
    extra = {}
    for n in note:
        k, sep, v = n.partition("=")
        if not sep:
            raise ConfigError(f"--note {n!r}: expected KEY=VALUE")
        extra[k.strip()] = v.strip()
    prov = {**cfg.provenance, **extra, "packed_from": str(source), "stored_dtype": "float16" if half else "float32"}
    changes: dict[str, object] = {"provenance": prov}
    if model_scale is not None:
        if not 0.01 <= model_scale <= 100:
            raise ConfigError(f"--model-scale {model_scale}: expected a factor in [0.01, 100]")
        changes["model_scale"] = model_scale
    if pixel_size is not None:
        if not 0 < pixel_size < 1000:
            raise ConfigError(f"--pixel-size {pixel_size}: expected micrometres per pixel in (0, 1000)")
        changes["pixel_size_um"] = pixel_size
    if data is not None:
        from asfyolo_rt.data.dataset import load_split
        from asfyolo_rt.train.dataset import largest_object_px

        scale = model_scale if model_scale is not None else (cfg.model_scale or 1.0)
        changes["max_object_px"] = largest_object_px(load_split(data, "train", on_problem="skip"), scale)
    if max_object_px is not None:
        changes["max_object_px"] = max_object_px
    if int8_exclude is not None:
        import re

        for pattern in int8_exclude:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"--int8-exclude {pattern!r}: not a regular expression ({exc})",
                                  hint="quote it, e.g. --int8-exclude '/neck/c3_out_p5/.*'") from exc
        changes["int8_exclude"] = tuple(p for p in int8_exclude if p)
    save_checkpoint(model, out, replace(cfg, **changes), half=half)  # type: ignore[arg-type]
    typer.echo(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
