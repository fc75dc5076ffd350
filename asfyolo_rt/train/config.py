"""Training configuration: frozen dataclasses, every default next to its field (ASF-YOLO.md §4, §5, §7).

The defaults are the official recipe (YOLOv5 v7.0 `hyp.scratch-low.yaml` as used by ASF-YOLO's
segment/train.py), except where a field's comment says otherwise. `TrainConfig.to_dict()` is what a
run folder's `config.yaml` holds; `TrainConfig.from_dict()` reads it back and rejects unknown keys
with a did-you-mean, so a typo in a hyperparameter file never passes silently.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from asfyolo_rt.errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation (hyp.scratch-low, §7)."""

    mosaic: float = 1.0  # probability of a 4-image mosaic (else one letterboxed image)
    degrees: float = 0.0  # rotation range, +/- degrees
    translate: float = 0.1  # translation range, +/- fraction of the output size
    scale: float = 0.5  # scale gain drawn from U(1 - scale, 1 + scale)
    shear: float = 0.0  # shear range, +/- degrees
    hsv_h: float = 0.015  # hue gain (fraction of the hue circle)
    hsv_s: float = 0.7  # saturation gain
    hsv_v: float = 0.4  # value gain
    fliplr: float = 0.5  # probability of a horizontal flip
    flipud: float = 0.0  # probability of a vertical flip
    resample_points: int = 1000  # polygon vertices after resampling, before the affine transform
    min_size: float = 2.0  # keep an instance only if its box is wider and taller than this (px)
    min_area_ratio: float = 0.01  # ... and keeps more than this fraction of its (scaled) pre-affine box area
    max_aspect: float = 100.0  # ... and its aspect ratio stays below this
    object_bias: float = 0.8  # scale "native": probability that a window is placed around a random instance
    # scale "native": which image a sample's window comes from. "image": sample i of an epoch is image i (every
    # image equally often, whatever its size); "area": images drawn with probability proportional to their area
    # at the model scale in windows (at least one), so a 1272 x 603 frame is seen ~17x as often as a 256 x 256 one
    # at 1.5 and 320 px windows, as its content warrants. The epoch length stays the number of images.
    window_sampling: str = "image"


@dataclass(frozen=True)
class LossConfig:
    """Loss gains before the trainer's rescaling (§4): box x3/nl, obj x3/nl x (img/640)^2, cls x3/nl x nc/80."""

    box_loss: str = "ciou"  # "ciou" (official segmentation code) or "eiou" (the paper)
    box: float = 0.05  # box gain; the mask loss re-uses it (divided by the batch size)
    obj: float = 1.0  # objectness gain
    cls: float = 0.5  # class gain (unused when nc = 1)
    balance: tuple[float, float, float] = (4.0, 1.0, 0.4)  # objectness weights of P3, P4, P5
    anchor_t: float = 4.0  # target/anchor size ratio limit for a positive match (§5.1)
    label_smoothing: float = 0.0
    mask_ratio: int = 4  # GT masks at 1/mask_ratio of the input size (= prototype resolution)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer, schedule, warm-up, EMA (§7)."""

    optimizer: str = "sgd"  # "sgd" (Nesterov) or "adamw"
    lr0: float | None = None  # initial lr; None = 0.01 for SGD, 0.001 for AdamW
    lrf: float = 0.01  # final lr = lr0 * lrf
    cos_lr: bool = False  # cosine instead of linear decay
    momentum: float = 0.937  # SGD momentum / AdamW beta1
    weight_decay: float = 5e-4  # conv/linear weights only; scaled by batch * accumulate / nbs
    warmup_epochs: float = 3.0  # warm-up lasts max(warmup_epochs epochs, warmup_min_iters iterations)
    warmup_min_iters: int = 100
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    nbs: int = 64  # nominal batch size: gradients are accumulated up to it
    grad_clip: float = 10.0  # max gradient norm
    ema_decay: float = 0.9999
    ema_tau: float = 2000.0  # EMA decay ramp: decay * (1 - exp(-updates / tau))

    def resolved_lr0(self) -> float:
        if self.lr0 is not None:
            return self.lr0
        return 0.01 if self.optimizer == "sgd" else 0.001


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Paths are stored as strings so the config round-trips through YAML."""

    data: str = ""  # dataset folder or data YAML (asfyolo_rt.data.dataset.load_split)
    model: str = "n"  # model size n, s, m, l (the paper's) or x
    img_size: int = 640  # "fit": whole images letterboxed to this; "native": windows of this size
    scale: str = "fit"  # "fit" (the paper's: whole images resized) or "native" (windows at the images' own scale)
    model_scale: float = 1.0  # "native": network pixels per image pixel (1.0 = the images' own pixel scale)
    epochs: int = 100
    batch: int = 16  # total batch over all processes (official: 8)
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:1"
    workers: int | None = None  # DataLoader workers per process; None = 1 on CPU, min(8, cores) on CUDA
    seed: int = 0
    out: str = "runs/train"
    name: str = "exp"
    val_every: int = 1  # validate every K epochs (and always after the last one)
    val_split: str = "val"
    weights: str | None = None  # initial weights (.safetensors); matching tensors are copied
    autoanchor: bool = True
    skip_bad_labels: bool = False  # drop images with label errors instead of refusing to train
    amp: bool = True  # mixed precision, CUDA only (ignored on CPU)
    cache_images: bool = True  # keep resized training images in RAM
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        check(self)

    # ----------------------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["loss"]["balance"] = list(self.loss.balance)
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> TrainConfig:
        return _build(cls, d, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read training config ({exc})") from exc
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys, got {type(d).__name__}")
        return _build(cls, d, str(path))

    def with_overrides(self, d: dict[str, Any], source: str = "overrides") -> TrainConfig:
        """A copy with the keys of `d` (nested sections allowed, e.g. {"optim": {"lr0": 0.02}}) replaced."""
        merged = self.to_dict()
        _deep_update(merged, d, source)
        return _build(TrainConfig, merged, source)


def _deep_update(base: dict[str, Any], new: dict[str, Any], source: str, prefix: str = "") -> None:
    for k, v in new.items():
        if k not in base:
            raise ConfigError(_unknown(prefix + k, list(base), source))
        if isinstance(base[k], dict) and isinstance(v, dict):
            _deep_update(base[k], v, source, prefix + k + ".")
        else:
            base[k] = v


def _unknown(key: str, known: list[str], source: str) -> str:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return f"{source}: unknown training config key {key!r}{hint}"


def _build(cls: type, d: dict[str, Any], source: str, prefix: str = "") -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for k, v in d.items():
        if k not in known:
            raise ConfigError(_unknown(prefix + k, list(known), source))
        default = getattr(cls(), k)
        if is_dataclass(default):
            if not isinstance(v, dict):
                raise ConfigError(f"{source}: {prefix + k!r} must be a mapping, got {v!r}")
            v = _build(type(default), v, source, prefix + k + ".")
        elif k == "balance":
            v = tuple(float(x) for x in v)
        kwargs[k] = v
    return cls(**kwargs)


def check(cfg: TrainConfig) -> None:
    """Raise ConfigError for values no run can use."""
    problems = []
    if cfg.model not in ("n", "s", "m", "l", "x"):
        problems.append(f"model {cfg.model!r}: expected n, s, m, l or x")
    if cfg.img_size <= 0 or cfg.img_size % 32:
        problems.append(f"img_size {cfg.img_size}: expected a positive multiple of 32")
    if cfg.scale not in ("fit", "native"):
        problems.append(f"scale {cfg.scale!r}: expected 'fit' or 'native'")
    if not 0.05 <= cfg.model_scale <= 20:
        problems.append(f"model_scale {cfg.model_scale}: expected a factor in [0.05, 20]")
    if not 0.0 <= cfg.augment.object_bias <= 1.0:
        problems.append(f"augment.object_bias {cfg.augment.object_bias}: expected a probability in [0, 1]")
    if cfg.augment.window_sampling not in ("image", "area"):
        problems.append(f"augment.window_sampling {cfg.augment.window_sampling!r}: expected 'image' or 'area'")
    if cfg.epochs < 1:
        problems.append(f"epochs {cfg.epochs}: expected >= 1")
    if cfg.batch < 1:
        problems.append(f"batch {cfg.batch}: expected >= 1")
    if cfg.val_every < 1:
        problems.append(f"val_every {cfg.val_every}: expected >= 1")
    if cfg.workers is not None and cfg.workers < 0:
        problems.append(f"workers {cfg.workers}: expected >= 0")
    if cfg.optim.optimizer not in ("sgd", "adamw"):
        problems.append(f"optimizer {cfg.optim.optimizer!r}: expected 'sgd' or 'adamw'")
    if cfg.loss.box_loss not in ("ciou", "eiou"):
        problems.append(f"box_loss {cfg.loss.box_loss!r}: expected 'ciou' or 'eiou'")
    if len(cfg.loss.balance) != 3:
        problems.append(f"loss.balance {cfg.loss.balance}: expected 3 weights (P3, P4, P5)")
    if cfg.loss.mask_ratio < 1 or cfg.img_size % (cfg.loss.mask_ratio * 8):
        problems.append(f"loss.mask_ratio {cfg.loss.mask_ratio}: expected a divisor of the stride-8 grid")
    for name in ("mosaic", "fliplr", "flipud"):
        p = getattr(cfg.augment, name)
        if not 0.0 <= p <= 1.0:
            problems.append(f"augment.{name} {p}: expected a probability in [0, 1]")
    if problems:
        raise ConfigError("invalid training config: " + "; ".join(problems))

