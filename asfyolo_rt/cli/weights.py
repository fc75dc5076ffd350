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
    max_object_px: Annotated[float | None, typer.Option("--max-object-px", help="Record the largest training object (network px); --data records it and the 99th percentile (the default tile overlap).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Measure --max-object-px on this dataset's train split (at the model scale).")] = None,
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Record the training images' physical pixel size in micrometres.")] = None,
    conf: Annotated[float | None, typer.Option("--conf", help="Record predict's default confidence threshold (what `weights tune-conf` measures and records itself); 0 clears the record.")] = None,
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
        from asfyolo_rt.train.dataset import largest_object_px, object_size_px

        scale = model_scale if model_scale is not None else (cfg.model_scale or 1.0)
        train = load_split(data, "train", on_problem="skip")
        changes["max_object_px"] = largest_object_px(train, scale)
        changes["object_px_p99"] = object_size_px(train, scale, 99.0)
    if max_object_px is not None:
        changes["max_object_px"] = max_object_px
    if conf is not None:
        if not 0.0 <= conf < 1.0:
            raise ConfigError(f"--conf {conf}: expected a threshold in (0, 1), or 0 to clear the record")
        changes["predict_conf"] = conf or None
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


@weights_app.command("tune-conf")
def tune_conf(
    source: Annotated[str, typer.Argument(help="An asfyolo-rt checkpoint (.safetensors) or a shipped name.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Labelled dataset (YOLO-seg layout) to tune on.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write a copy of the checkpoint that records the threshold here (must not exist). Without it only the curve is reported.")] = None,
    split: Annotated[str, typer.Option(help="Split to tune on: train keeps the validation split for the report.")] = "train",
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the F1 / precision / recall curve (PNG) here.")] = None,
    max_images: Annotated[int | None, typer.Option("--max-images", help="Use only the first N images (by name).")] = None,
    half: Annotated[bool, typer.Option("--half/--fp32", help="Store FP16 weights in --out (as shipped).")] = True,
    skip_bad_labels: Annotated[bool, typer.Option("--skip-bad-labels", help="Leave out images with label errors.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the curve as JSON.")] = False,
) -> None:
    """Choose predict's confidence threshold on labelled data and record it with the weights.

    Runs predict's pipeline (native-scale tiles, NMS, stitching, label images without occluded duplicates)
    on every image of the split once and scores the label images at each threshold 0.05, 0.10, ... 0.80:
    instance F1 at mask IoU 0.5, counted over all cells. The best threshold becomes the default --conf of
    predict, view/napari and the DSB score for these weights and the models exported from them.

    Example: asfyolo-rt weights tune-conf dsb2018 --data ../shared/datasets/DSB2018 --split train --out tuned.safetensors --plot f1_conf.png
    """
    from dataclasses import replace

    from asfyolo_rt.cli._common import check_min, load_labelled_split, progress_bar, stdout_console
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.eval.conf_tune import f1_vs_conf, plot_curve
    from asfyolo_rt.model.weights import load_checkpoint, save_checkpoint
    from asfyolo_rt.runtime.info import read_model_info
    from asfyolo_rt.runtime.registry import load_backend
    from asfyolo_rt.weights_registry import resolve_weights

    path = resolve_weights(source, option="SOURCE")
    if path.suffix.lower() != ".safetensors":
        raise ConfigError(f"{path}: tune-conf records the threshold in an asfyolo-rt .safetensors checkpoint",
                          hint="import an official .pt first: asfyolo-rt weights import best.pt --out x.safetensors")
    for p, opt in ((out, "--out"), (plot, "--plot")):
        if p is not None and p.exists():
            raise ConfigError(f"{opt} {p} already exists", hint="give a new file name (results are never overwritten)")
    check_min(max_images, "--max-images")
    ds = load_labelled_split(data, split, skip_bad_labels=skip_bad_labels)
    rec = read_model_info(path)
    backend = load_backend(path)
    n = min(len(ds.samples), max_images or len(ds.samples))
    with progress_bar(f"tune-conf {path.name} [{split}]", n) as cb:
        curve = f1_vs_conf(backend, ds, model_scale=rec.model_scale, max_object_px=rec.overlap_object_px,
                           max_images=max_images, progress=cb)
    best, before = curve.row(curve.best_index), curve.at(rec.default_conf)
    if plot is not None:
        plot_curve([curve], plot, mark=curve.best)
    if out is not None:
        model, cfg = load_checkpoint(path)
        note = (f"{data.name}/{split}, {curve.n_images} images: instance F1 {best['f1']:.3f} at conf {best['conf']:g} "
                f"({before['f1']:.3f} at {before['conf']:g})")
        prov = {**cfg.provenance, "predict_conf_tuned_on": note, "stored_dtype": "float16" if half else "float32"}
        save_checkpoint(model, out, replace(cfg, predict_conf=float(best["conf"]), provenance=prov), half=half)
    if as_json:
        print_json(curve.to_dict() | {"model": str(path), "data": str(data), "previous_conf": rec.default_conf,
                                      "out": str(out) if out else None})
        return
    from rich.table import Table

    table = Table(title=f"{path.name} on {data} [{split}], {curve.n_images} images: instance F1 of predict's label "
                        f"images at mask IoU 0.5")
    for col in ("conf", "F1", "precision", "recall", "mean image F1", "TP", "FP", "FN"):
        table.add_column(col, justify="right")
    for i in range(len(curve.confs)):
        r = curve.row(i)
        current = " (recorded)" if rec.conf is not None else " (default)"
        mark = (" *" if i == curve.best_index else "") + (current if r["conf"] == before["conf"] else "")
        table.add_row(f"{r['conf']:g}{mark}", f"{r['f1']:.4f}", f"{r['precision']:.4f}", f"{r['recall']:.4f}",
                      f"{r['image_f1']:.4f}", str(r["tp"]), str(r["fp"]), str(r["fn"]))
    console = stdout_console()
    console.print(table)
    console.print(f"best: conf {best['conf']:g}, F1 {best['f1']:.4f} (conf {before['conf']:g}: {before['f1']:.4f})"
                  + (f"; wrote {out} (predict's default --conf is now {best['conf']:g})" if out else "")
                  + (f"; curve {plot}" if plot else ""))
