"""The training loop (ASF-YOLO.md §7): SGD/AdamW with warm-up, linear/cosine decay, EMA, gradient
accumulation to a nominal batch of 64, gradient clipping, AMP on CUDA, DDP under torchrun, and
exact resumption.

Run folder (`<out>/<name>/`): config.yaml (resolved TrainConfig), env.json, autoanchor.json,
last.pt (full training state, rewritten atomically after every epoch), last.safetensors and
best.safetensors (EMA weights + ModelConfig; best by fitness = 0.1 mAP50 + 0.9 mAP50:95 summed over
box and mask), results.csv and results.png (one row/point per epoch).

Resumption: last.pt holds model, EMA, optimizer, scheduler, AMP scaler, pending accumulated
gradients, epoch, best fitness, history, RNG states and config; it is written with torch.save of
plain containers and tensors and read with torch.load(weights_only=True). Data augmentation is a
pure function of (seed, epoch, index) and shuffling of (seed, epoch), so a run killed at any point
and resumed from last.pt repeats exactly what the uninterrupted run would have done after that epoch
(up to floating-point non-determinism of the device). Killing mid-epoch loses that epoch only.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from asfyolo_rt.data.dataset import load_split
from asfyolo_rt.env import environment
from asfyolo_rt.errors import CheckpointError, ConfigError
from asfyolo_rt.model import ASFYOLO, build_model
from asfyolo_rt.model.weights import atomic_write_bytes, config_of, read_checkpoint, save_checkpoint
from asfyolo_rt.train import results as results_io
from asfyolo_rt.train.autoanchor import fit_anchors
from asfyolo_rt.train.config import TrainConfig
from asfyolo_rt.train.dataset import TrainDataset, collate
from asfyolo_rt.train.ema import ModelEMA
from asfyolo_rt.train.loss import SegmentationLoss

log = logging.getLogger(__name__)

STATE_FORMAT = "asfyolo-rt-train/1"
LOSS_NAMES = ("box", "seg", "obj", "cls")


@dataclass
class TrainProgress:
    """One progress event: phase "train" (step = batch, losses = running means), "val" (step = images
    done) or "epoch" (the epoch's results row in `losses`, once per epoch)."""

    phase: str
    epoch: int
    epochs: int
    step: int
    steps: int
    losses: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    best_fitness: float
    best_epoch: int
    last: Path
    best: Path | None
    history: list[dict[str, Any]]


ProgressFn = Callable[[TrainProgress], None]


# ------------------------------------------------------------------------------------------ set-up
def _dist_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment (0, 0, 1 otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available", hint="use --device cpu")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    if name != "cpu":
        raise ConfigError(f"device {name!r}; expected auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Three groups: conv/linear weights (decayed), normalisation weights, all biases (no decay)."""
    decay: list[nn.Parameter] = []
    norm: list[nn.Parameter] = []
    bias: list[nn.Parameter] = []
    for m in model.modules():
        b = getattr(m, "bias", None)
        if isinstance(b, nn.Parameter):
            bias.append(b)
        w = getattr(m, "weight", None)
        if isinstance(w, nn.Parameter):
            (norm if isinstance(m, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm) else decay).append(w)
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "weights"},
        {"params": norm, "weight_decay": 0.0, "name": "norm"},
        {"params": bias, "weight_decay": 0.0, "name": "bias"},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig, weight_decay: float) -> torch.optim.Optimizer:
    o = cfg.optim
    groups = param_groups(model, weight_decay)
    if o.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=o.resolved_lr0(), momentum=o.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=o.resolved_lr0(), betas=(o.momentum, 0.999))


def lr_factor(epoch: float, epochs: int, lrf: float, cos: bool) -> float:
    """Schedule factor at `epoch`: linear (1 - e/E)(1 - lrf) + lrf, or cosine 1 -> lrf."""
    if cos:
        return ((1 - math.cos(epoch * math.pi / epochs)) / 2) * (lrf - 1) + 1
    return (1 - epoch / epochs) * (1.0 - lrf) + lrf


def _rng_state() -> dict[str, Any]:
    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_state(path: Path) -> dict[str, Any]:
    """A run's last.pt (code-free load; its zip's declared sizes checked before anything is inflated)."""
    from asfyolo_rt.archive import check_zip_sizes

    check_zip_sizes(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read training state ({exc})",
                              hint="last.pt is rewritten after every epoch; the previous epoch's file is lost") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not an asfyolo-rt training state ({STATE_FORMAT})")
    return state


def _transfer_weights(model: nn.Module, path: str) -> None:
    from asfyolo_rt.weights_registry import resolve_weights

    state, _ = read_checkpoint(resolve_weights(path))
    own = model.state_dict()
    take = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape and k != "head.anchors"}
    if not take:
        raise CheckpointError(f"{path}: no tensor matches the model by name and shape")
    model.load_state_dict(take, strict=False)
    log.info("initial weights: %d/%d tensors from %s", len(take), len(own), path)


# ------------------------------------------------------------------------------------------ the loop
def train(
    cfg: TrainConfig | None = None,
    *,
    resume: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    on_batch_end: Callable[[int, int], None] | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train a model from `cfg`, or continue the run in folder `resume` (its config.yaml/last.pt win).

    progress receives TrainProgress events; on_batch_end(epoch, batch) and on_epoch_end(epoch) are
    test hooks (called after the batch / after the epoch's state is saved).
    """
    state: dict[str, Any] | None = None
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "last.pt").is_file():
            raise ConfigError(f"cannot resume {run_dir}: no last.pt in it", hint="pass the run folder (<out>/<name>)")
        state = load_state(run_dir / "last.pt")
        cfg = TrainConfig.from_dict(state["config"], source=str(run_dir / "last.pt"))
        if state["epoch"] + 1 >= cfg.epochs:
            raise ConfigError(f"run {run_dir} already finished its {cfg.epochs} epochs")
    elif cfg is None:
        raise ConfigError("train() needs a TrainConfig or resume=RUN_DIR")
    else:
        if not cfg.data:
            raise ConfigError("no dataset given", hint="pass --data PATH (dataset folder or data YAML)")
        run_dir = Path(cfg.out) / cfg.name
    rank, local_rank, world = _dist_info()
    main = rank == 0
    own_group = world > 1 and not dist.is_initialized()
    device = _device(cfg.device, local_rank)
    if own_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _run(cfg, state, run_dir, rank, world, main, device, progress, on_batch_end, on_epoch_end)
    finally:
        if own_group and dist.is_initialized():
            dist.destroy_process_group()


def _run(cfg: TrainConfig, state: dict[str, Any] | None, run_dir: Path, rank: int, world: int, main: bool,
         device: torch.device, progress: ProgressFn | None, on_batch_end: Callable[[int, int], None] | None,
         on_epoch_end: Callable[[int], None] | None) -> TrainResult:
    if cfg.batch % world:
        raise ConfigError(f"batch {cfg.batch} is not divisible by the {world} processes")
    if state is None and main and run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run folder {run_dir} already exists and is not empty",
                          hint=f"pass --resume {run_dir} to continue it, or choose another --name")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if device.type == "cpu" and world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    random.seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    torch.manual_seed(cfg.seed + rank)

    on_problem: Literal["skip", "error"] = "skip" if cfg.skip_bad_labels else "error"
    train_split = load_split(cfg.data, "train", on_problem=on_problem)
    val_split = load_split(cfg.data, cfg.val_split, on_problem=on_problem) if main else None
    names = train_split.names or {0: "cell"}
    nc = max(len(names), 1)
    dataset = TrainDataset(train_split, cfg.img_size, cfg.augment, seed=cfg.seed, mask_ratio=cfg.loss.mask_ratio,
                           cache_images=cfg.cache_images, scale=cfg.scale, model_scale=cfg.model_scale)
    model: ASFYOLO = build_model(cfg.model, nc)
    from asfyolo_rt.train.dataset import largest_object_px

    max_object = largest_object_px(train_split, cfg.model_scale) if cfg.scale == "native" else None
    if state is None:
        if cfg.weights:
            _transfer_weights(model, cfg.weights)
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(run_dir / "config.yaml", cfg.to_yaml().encode())
        if cfg.autoanchor:
            current = model.head.anchors_px().reshape(-1, 2).numpy()
            rep = fit_anchors(dataset.box_sizes(), current, thr=cfg.loss.anchor_t, seed=cfg.seed)
            if rep.refit:
                model.head.set_anchors(torch.from_numpy(rep.anchors).view_as(model.head.anchors))
            if main:
                info = {"bpr_before": rep.bpr_before, "bpr_after": rep.bpr_after, "refit": rep.refit,
                        "anchors_px": model.head.anchors_px().reshape(-1, 2).tolist()}
                atomic_write_bytes(run_dir / "autoanchor.json", json.dumps(info, indent=2).encode())
    else:
        model.load_state_dict(state["model"])
    if main:
        env = environment() | {"world_size": world, "device": str(device),
                               "resumed_from_epoch": None if state is None else int(state["epoch"])}
        atomic_write_bytes(run_dir / "env.json", json.dumps(env, indent=2, default=str).encode())
    model.to(device)

    o = cfg.optim
    accumulate = max(round(o.nbs / cfg.batch), 1)
    weight_decay = o.weight_decay * cfg.batch * accumulate / o.nbs
    optimizer = build_optimizer(model, cfg, weight_decay)
    lr_fn = lambda e: lr_factor(e, cfg.epochs, o.lrf, o.cos_lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lr_fn)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    ema = ModelEMA(model, o.ema_decay, o.ema_tau) if main else None
    loss_fn = SegmentationLoss(model.head, nc, cfg.img_size, cfg.loss)
    start_epoch, best_fitness, best_epoch, last_opt_step = 0, -1.0, -1, -1
    history: list[dict[str, Any]] = []
    pending: list[torch.Tensor | None] | None = None
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start_epoch = int(state["epoch"]) + 1
        best_fitness, best_epoch = float(state["best_fitness"]), int(state["best_epoch"])
        last_opt_step, history, pending = int(state["last_opt_step"]), list(state["history"]), state["pending_grads"]
        _set_rng_state(state["rng"])
        log.info("resuming %s at epoch %d/%d", run_dir, start_epoch + 1, cfg.epochs)
    if pending is not None:
        for p, grad in zip(model.parameters(), pending):
            p.grad = None if grad is None else grad.to(device)
    ddp_model: nn.Module = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    sampler: torch.utils.data.DistributedSampler[Any] = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
    workers = cfg.workers if cfg.workers is not None else (1 if device.type == "cpu" else min(8, os.cpu_count() or 1))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch // world, sampler=sampler, num_workers=workers, collate_fn=collate,
        pin_memory=device.type == "cuda", multiprocessing_context="fork" if workers and os.name == "posix" else None,
    )
    nb = len(loader)
    n_warmup = max(round(o.warmup_epochs * nb), o.warmup_min_iters)
    last_path, best_path = run_dir / "last.safetensors", run_dir / "best.safetensors"

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch)
        mean = torch.zeros(4)
        for i, (imgs, targets, maps, _) in enumerate(loader):
            ni = i + nb * epoch
            if ni <= n_warmup:
                accumulate = max(1, round(float(np.interp(ni, [0, n_warmup], [1, o.nbs / cfg.batch]))))
                for g in optimizer.param_groups:
                    start = o.warmup_bias_lr if g["name"] == "bias" else 0.0
                    g["lr"] = float(np.interp(ni, [0, n_warmup], [start, g["initial_lr"] * lr_fn(epoch)]))
                    mom = float(np.interp(ni, [0, n_warmup], [o.warmup_momentum, o.momentum]))
                    if "momentum" in g:
                        g["momentum"] = mom
                    else:
                        g["betas"] = (mom, g["betas"][1])
            imgs = imgs.to(device, non_blocking=True).float() / 255
            with torch.autocast(device_type=device.type, enabled=use_amp):
                levels, protos = ddp_model(imgs)
            loss, items = loss_fn(levels, protos, targets, maps)
            scaler.scale(loss * world).backward()
            if ni - last_opt_step >= accumulate:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), max_norm=o.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update(model)
                last_opt_step = ni
            mean = (mean * i + items.cpu()) / (i + 1)
            if progress and main:
                progress(TrainProgress("train", epoch, cfg.epochs, i + 1, nb, dict(zip(LOSS_NAMES, mean.tolist()))))
            if on_batch_end:
                on_batch_end(epoch, i)
        lrs = [g["lr"] for g in optimizer.param_groups]
        scheduler.step()
        if not main:
            continue
        assert ema is not None
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({f"train/{k}_loss": v for k, v in zip(LOSS_NAMES, mean.tolist())})
        row.update({f"lr/{g['name']}": lr for g, lr in zip(optimizer.param_groups, lrs)})
        fitness = None
        if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
            assert val_split is not None
            metrics = _validate(ema.model, val_split, cfg, device, names, epoch, progress, max_object)
            row.update({f"metrics/{k}": v for k, v in metrics.items()})
            fitness = metrics["fitness"]
        row["time_s"] = round(time.perf_counter() - t0, 2)
        history.append(row)
        provenance = {"source": "asfyolo-rt train", "run": str(run_dir), "epoch": epoch + 1, "data": cfg.data,
                      "fitness": fitness}
        ema_model: ASFYOLO = ema.model  # type: ignore[assignment]
        mcfg = config_of(ema_model, names=names, img_size=cfg.img_size, provenance=provenance,
                         train_scale=cfg.scale, model_scale=cfg.model_scale if cfg.scale == "native" else None,
                         max_object_px=max_object)
        save_checkpoint(ema_model, last_path, mcfg)
        if fitness is not None and fitness > best_fitness:
            best_fitness, best_epoch = fitness, epoch
            save_checkpoint(ema_model, best_path, mcfg)
        _save_state(run_dir / "last.pt", cfg, epoch, model, ema, optimizer, scheduler, scaler, best_fitness,
                    best_epoch, last_opt_step, history)
        results_io.write_results(run_dir, history)
        log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs, {k: round(v, 4) if isinstance(v, float) else v
                                                          for k, v in row.items()})
        if progress:
            numeric = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and k != "epoch"}
            progress(TrainProgress("epoch", epoch, cfg.epochs, nb, nb, numeric))
        if on_epoch_end:
            on_epoch_end(epoch)
    if world > 1:
        dist.barrier()
    return TrainResult(run_dir, cfg.epochs, best_fitness, best_epoch + 1, last_path,
                       best_path if best_path.exists() else None, history)


def _validate(model: nn.Module, split: Any, cfg: TrainConfig, device: torch.device, names: dict[int, str],
              epoch: int, progress: ProgressFn | None, max_object_px: float | None = None) -> dict[str, float]:
    from asfyolo_rt.eval.validate import ValConfig, validate
    from asfyolo_rt.infer.backends import TorchBackend

    cb = None
    if progress:
        cb = lambda done, total: progress(TrainProgress("val", epoch, cfg.epochs, done, total))
    # scale "native": the deployment protocol (native scale, tiles), else the paper's whole-image letterbox
    protocol = "tiled" if cfg.scale == "native" else "fit"
    res = validate(TorchBackend(model, device=str(device), names=names), split,
                   ValConfig(img_size=cfg.img_size, batch_size=2 * cfg.batch, protocol=protocol,
                             model_scale=cfg.model_scale, max_object_px=max_object_px), progress=cb)
    m = res.metrics
    return {"box_map50": m.box_map50, "box_map": m.box_map, "mask_map50": m.mask_map50, "mask_map": m.mask_map,
            "fitness": m.fitness}


def _save_state(path: Path, cfg: TrainConfig, epoch: int, model: nn.Module, ema: ModelEMA,
                optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any, best_fitness: float,
                best_epoch: int, last_opt_step: int, history: list[dict[str, Any]]) -> None:
    state = {
        "format": STATE_FORMAT,
        "epoch": epoch,
        "config": cfg.to_dict(),
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "best_fitness": best_fitness,
        "best_epoch": best_epoch,
        "last_opt_step": last_opt_step,
        "pending_grads": [None if p.grad is None else p.grad.detach().cpu() for p in model.parameters()],
        "history": history,
        "rng": _rng_state(),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
