"""Trainer building blocks: parameter groups, schedules, weight transfer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from asfyolo_rt.errors import CheckpointError
from asfyolo_rt.model import build_model
from asfyolo_rt.model.weights import config_of, save_checkpoint
from asfyolo_rt.train.config import OptimConfig, TrainConfig
from asfyolo_rt.train.trainer import _transfer_weights, build_optimizer, lr_factor, param_groups


def test_param_groups_split_weights_norms_and_biases() -> None:
    model = build_model("n", 1)
    groups = param_groups(model, 5e-4)
    by_name = {g["name"]: g for g in groups}
    n_conv_w = sum(1 for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Conv1d, nn.Linear)))
    n_norm = sum(1 for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase))
    n_bias = sum(1 for m in model.modules() if isinstance(getattr(m, "bias", None), nn.Parameter))
    assert len(by_name["weights"]["params"]) == n_conv_w and by_name["weights"]["weight_decay"] == 5e-4
    assert len(by_name["norm"]["params"]) == n_norm and by_name["norm"]["weight_decay"] == 0
    assert len(by_name["bias"]["params"]) == n_bias and by_name["bias"]["weight_decay"] == 0
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))  # every parameter exactly once


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_optimizers(name: str) -> None:
    cfg = TrainConfig(optim=OptimConfig(optimizer=name))
    opt = build_optimizer(build_model("n", 1), cfg, 5e-4)
    g = opt.param_groups[0]
    if name == "sgd":
        assert isinstance(opt, torch.optim.SGD) and g["nesterov"] and g["momentum"] == 0.937 and g["lr"] == 0.01
    else:
        assert isinstance(opt, torch.optim.AdamW) and g["betas"] == (0.937, 0.999) and g["lr"] == 0.001


@pytest.mark.parametrize("cos", [False, True])
def test_schedules_run_from_one_to_lrf(cos: bool) -> None:
    assert lr_factor(0, 100, 0.01, cos) == pytest.approx(1.0)
    assert lr_factor(100, 100, 0.01, cos) == pytest.approx(0.01)
    mid = lr_factor(50, 100, 0.01, cos)
    assert mid == pytest.approx(0.505)  # linear and cosine meet half-way
    if not cos:
        assert lr_factor(25, 100, 0.01, cos) == pytest.approx(0.7525)
    else:
        assert lr_factor(25, 100, 0.01, cos) > 0.7525  # cosine stays high longer


def test_weight_transfer_copies_matching_tensors_but_not_anchors(tmp_path) -> None:
    torch.manual_seed(0)
    src = build_model("n", 1)
    src.head.set_anchors(torch.full((3, 3, 2), 7.0))
    path = save_checkpoint(src, tmp_path / "w.safetensors", config_of(src))
    torch.manual_seed(1)
    dst = build_model("n", 2)  # different nc: the head's prediction convs do not fit
    _transfer_weights(dst, str(path))
    torch.testing.assert_close(dst.backbone.stem.conv.weight, src.backbone.stem.conv.weight)
    assert dst.head.m[0].weight.shape != src.head.m[0].weight.shape  # left at its own initialisation
    assert not torch.allclose(dst.head.anchors_px(), torch.full((3, 3, 2), 7.0))  # anchors never transfer
    with pytest.raises(CheckpointError):
        _transfer_weights(dst, str(tmp_path / "missing.safetensors"))
