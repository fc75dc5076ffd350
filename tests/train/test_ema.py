"""Model EMA: decay ramp and update rule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from asfyolo_rt.train.ema import ModelEMA


def test_decay_ramp_and_update() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9999, tau=2000)
    w0 = ema.model[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    d = 0.9999 * (1 - math.exp(-1 / 2000))
    assert ema.decay() == pytest.approx(d)
    torch.testing.assert_close(ema.model[0].weight, d * w0 + (1 - d) * model[0].weight)
    assert not any(p.requires_grad for p in ema.model.parameters())
    model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    assert ema.model[1].num_batches_tracked.item() == 7  # integer buffers are copied
    ema.updates = 10**6
    assert ema.decay() == pytest.approx(0.9999)


def test_state_round_trip() -> None:
    model = nn.Linear(3, 1)
    a = ModelEMA(model)
    for _ in range(5):
        a.update(model)
    b = ModelEMA(nn.Linear(3, 1))
    b.load_state_dict(a.state_dict())
    assert b.updates == 5
    torch.testing.assert_close(b.model.weight, a.model.weight)
