"""TrainConfig: official defaults, YAML round trip, unknown keys rejected with a did-you-mean."""

from __future__ import annotations

import pytest

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.train.config import TrainConfig


def test_defaults_are_the_official_recipe() -> None:
    cfg = TrainConfig()
    o, a, lo = cfg.optim, cfg.augment, cfg.loss
    assert (o.optimizer, o.resolved_lr0(), o.lrf, o.momentum, o.weight_decay) == ("sgd", 0.01, 0.01, 0.937, 5e-4)
    assert (o.warmup_epochs, o.warmup_min_iters, o.warmup_momentum, o.warmup_bias_lr, o.nbs) == (3.0, 100, 0.8, 0.1, 64)
    assert (o.grad_clip, o.ema_decay, o.ema_tau) == (10.0, 0.9999, 2000.0)
    assert (a.mosaic, a.degrees, a.translate, a.scale, a.shear, a.fliplr, a.flipud) == (1.0, 0.0, 0.1, 0.5, 0.0, 0.5, 0.0)
    assert (a.hsv_h, a.hsv_s, a.hsv_v, a.resample_points, a.min_area_ratio) == (0.015, 0.7, 0.4, 1000, 0.01)
    assert (lo.box, lo.obj, lo.cls, lo.balance, lo.anchor_t, lo.box_loss) == (0.05, 1.0, 0.5, (4.0, 1.0, 0.4), 4.0, "ciou")
    assert TrainConfig(optim=TrainConfig().optim.__class__(optimizer="adamw")).optim.resolved_lr0() == 0.001


def test_yaml_round_trip(tmp_path) -> None:
    cfg = TrainConfig(data="d", epochs=7).with_overrides({"optim": {"lr0": 0.02}, "loss": {"box_loss": "eiou"}})
    p = tmp_path / "c.yaml"
    p.write_text(cfg.to_yaml())
    back = TrainConfig.from_yaml(p)
    assert back == cfg
    assert back.optim.lr0 == 0.02 and back.loss.box_loss == "eiou" and back.loss.balance == (4.0, 1.0, 0.4)


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [({"epoch": 3}, "epochs"), ({"optim": {"lr_0": 0.1}}, "lr0"), ({"augment": {"mosaik": 0.5}}, "mosaic")],
)
def test_unknown_keys_are_rejected_with_a_suggestion(override, suggestion) -> None:
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        TrainConfig().with_overrides(override)


@pytest.mark.parametrize("bad", [{"img_size": 100}, {"model": "q"}, {"loss": {"box_loss": "giou"}},
                                 {"optim": {"optimizer": "adam"}}, {"augment": {"fliplr": 2.0}}])
def test_invalid_values_are_rejected(bad) -> None:
    with pytest.raises(ConfigError):
        TrainConfig().with_overrides(bad)
