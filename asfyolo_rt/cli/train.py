"""`asfyolo-rt train`: train ASF-YOLO on a YOLO-seg dataset (single process, or multi-GPU under torchrun)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from asfyolo_rt.cli._common import print_json, rich_progress, stderr
from asfyolo_rt.cli.main import app


class Size(str, Enum):
    n = "n"
    s = "s"
    m = "m"
    l = "l"  # noqa: E741 (the model size is called l)
    x = "x"


class Optim(str, Enum):
    sgd = "sgd"
    adamw = "adamw"


class BoxLoss(str, Enum):
    ciou = "ciou"
    eiou = "eiou"


@app.command()
def train(
    data: Annotated[Path | None, typer.Option("--data", "-d", help="Dataset folder or data YAML (YOLO-seg layout, splits train and val).")] = None,
    model: Annotated[Size | None, typer.Option("--model", help="Model size; l is the paper's ASF-YOLO. [default: n]")] = None,
    img_size: Annotated[int | None, typer.Option("--img-size", help="Training image size (square mosaics), multiple of 32. [default: 640]")] = None,
    scale: Annotated[str | None, typer.Option("--scale", help="fit: whole images resized to --img-size (the paper's); native: --img-size windows cut from full-resolution images, so cells keep their size (use with tiled predict/val). [default: fit]")] = None,
    epochs: Annotated[int | None, typer.Option(help="Number of epochs. [default: 100]")] = None,
    batch: Annotated[int | None, typer.Option(help="Total batch size over all processes; gradients accumulate to 64. [default: 16]")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N. [default: auto]")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader workers per process. [default: 1 on CPU, 8 on CUDA]")] = None,
    optimizer: Annotated[Optim | None, typer.Option(help="SGD (Nesterov, official) or AdamW. [default: sgd]")] = None,
    lr0: Annotated[float | None, typer.Option("--lr0", help="Initial learning rate. [default: 0.01 SGD, 0.001 AdamW]")] = None,
    cos_lr: Annotated[bool, typer.Option("--cos-lr", help="Cosine instead of linear learning-rate decay.")] = False,
    box_loss: Annotated[BoxLoss | None, typer.Option("--box-loss", help="ciou (official code) or eiou (the paper). [default: ciou]")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue the run in this folder from its last.pt; every other setting comes from the run.")] = None,
    out: Annotated[Path | None, typer.Option(help="Parent folder of run folders. [default: runs/train]")] = None,
    name: Annotated[str | None, typer.Option(help="Run folder name under --out; must not exist yet. [default: exp]")] = None,
    val_every: Annotated[int | None, typer.Option("--val-every", help="Validate every K epochs (and after the last). [default: 1]")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (augmentation, shuffling, initialisation, AutoAnchor). [default: 0]")] = None,
    weights: Annotated[Path | None, typer.Option("--weights", "-w", help="Initial weights (.safetensors); tensors matching by name and shape are copied.")] = None,
    noautoanchor: Annotated[bool, typer.Option("--noautoanchor", help="Keep the default anchors (skip the AutoAnchor check/re-fit).")] = False,
    skip_bad_labels: Annotated[bool, typer.Option("--skip-bad-labels", help="Leave out images with label errors instead of refusing to train.")] = False,
    hyp: Annotated[Path | None, typer.Option("--hyp", help="YAML of config values (any TrainConfig key, nested: 'optim: {lr0: 0.02}', 'augment: {mosaic: 0.5}'); options given on the command line win.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result (run folder, best fitness, last epoch's row) as JSON.")] = False,
) -> None:
    """Train ASF-YOLO; writes a run folder with last/best checkpoints, results.csv/png, config and env.

    Examples:
      asfyolo-rt train --data ../shared/datasets/DSB2018 --model n --img-size 320 --epochs 60 --batch 16 --out runs --name dsb-n
      asfyolo-rt train --data ../shared/datasets/DSB2018 --model n --img-size 320 --scale native --weights dsb2018 --out runs --name dsb-native
      asfyolo-rt train --resume runs/dsb-n
      torchrun --nproc_per_node 4 $(which asfyolo-rt) train --data ../shared/datasets/DSB2018 --model l --batch 64
    """
    import yaml

    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.train.config import TrainConfig
    from asfyolo_rt.train.trainer import train as run_training

    if device not in (None, "auto"):
        from asfyolo_rt.cli._common import check_device

        check_device(device)
    given: dict[str, Any] = {
        "data": data, "model": model.value if model else None, "img_size": img_size, "scale": scale, "epochs": epochs, "batch": batch,
        "device": device, "workers": workers, "seed": seed, "out": out, "name": name, "val_every": val_every,
        "weights": weights, "autoanchor": False if noautoanchor else None, "skip_bad_labels": skip_bad_labels or None,
    }
    optim = {"optimizer": optimizer.value if optimizer else None, "lr0": lr0, "cos_lr": cos_lr or None}
    overrides: dict[str, Any] = {k: str(v) if isinstance(v, Path) else v for k, v in given.items() if v is not None}
    if any(v is not None for v in optim.values()):
        overrides["optim"] = {k: v for k, v in optim.items() if v is not None}
    if box_loss is not None:
        overrides["loss"] = {"box_loss": box_loss.value}
    cfg = None
    if resume is not None:
        if overrides or hyp is not None:
            raise ConfigError(f"--resume continues {resume} with its own settings; got other options too "
                              f"({', '.join(sorted(overrides)) or '--hyp'})", hint=f"run `asfyolo-rt train --resume {resume}` alone")
    else:
        if data is None:
            raise ConfigError("--data is required (unless --resume RUN_DIR)", hint="asfyolo-rt train --data DATASET ...")
        cfg = TrainConfig()
        if hyp is not None:
            try:
                extra = yaml.safe_load(hyp.read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"{hyp}: cannot read hyperparameter YAML ({exc})") from exc
            if not isinstance(extra, dict):
                raise ConfigError(f"{hyp}: expected a mapping of config keys, got {type(extra).__name__}")
            cfg = cfg.with_overrides(extra, source=str(hyp))
        cfg = cfg.with_overrides(overrides, source="command line")

    with rich_progress(info=True, transient=True, disable=not stderr.is_terminal) as bar:
        tasks: dict[str, Any] = {}

        def on_progress(ev: Any) -> None:
            if ev.phase == "epoch":  # one permanent line per epoch
                row = " ".join(f"{k.split('/')[-1]} {v:.4g}" for k, v in ev.losses.items())
                bar.console.print(f"epoch {ev.epoch + 1}/{ev.epochs}: {row}", highlight=False)
                return
            label = f"{ev.phase:5s} {ev.epoch + 1}/{ev.epochs}"
            if ev.phase not in tasks:
                tasks[ev.phase] = bar.add_task(label, total=ev.steps, info="")
            elif ev.step <= 1:
                bar.reset(tasks[ev.phase], total=ev.steps, description=label)
            info = " ".join(f"{k} {v:.4f}" for k, v in ev.losses.items())
            bar.update(tasks[ev.phase], completed=ev.step, total=ev.steps, info=info)

        result = run_training(cfg, resume=resume, progress=on_progress)
    summary = {"run_dir": str(result.run_dir), "epochs": result.epochs_done, "best_fitness": result.best_fitness,
               "best_epoch": result.best_epoch, "last": str(result.last),
               "best": str(result.best) if result.best else None, "last_row": result.history[-1] if result.history else None}
    if as_json:
        print_json(summary)
    else:
        stderr.print(f"run folder: {result.run_dir}  best fitness {result.best_fitness:.4f} (epoch {result.best_epoch})")
