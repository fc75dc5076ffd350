"""TFE, SSFF and CPAM against the formulas of ASF-YOLO.md §3 on tiny hand-computed tensors."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from asfyolo_rt.model import build_model
from asfyolo_rt.model.neck import (
    ChannelPositionAttention,
    ScaleSequenceFusion,
    TripleFeatureEncoder,
    eca_kernel_size,
)


def test_tfe_hand_computed() -> None:
    large = torch.arange(16.0).view(1, 1, 4, 4)
    medium = torch.full((1, 1, 2, 2), 7.0)
    small = torch.tensor([[[[5.0]]]])
    out = TripleFeatureEncoder()([large, medium, small])
    # top-left 2x2 window of `large` is [[0,1],[4,5]]: max 5 + mean 2.5
    assert out.shape == (1, 3, 2, 2)
    assert torch.equal(out[0, 0], torch.tensor([[7.5, 11.5], [23.5, 27.5]]))
    assert torch.equal(out[0, 1], medium[0, 0])
    assert torch.equal(out[0, 2], torch.full((2, 2), 5.0))


def test_tfe_equals_adaptive_pooling_of_upstream() -> None:
    torch.manual_seed(0)
    large, medium, small = torch.randn(2, 4, 8, 12), torch.randn(2, 4, 4, 6), torch.randn(2, 4, 2, 3)
    ref_l = F.adaptive_max_pool2d(large, (4, 6)) + F.adaptive_avg_pool2d(large, (4, 6))
    ref_s = F.interpolate(small, size=(4, 6), mode="nearest")
    assert torch.allclose(TripleFeatureEncoder()([large, medium, small]), torch.cat([ref_l, medium, ref_s], 1))


def test_eca_kernel_sizes() -> None:
    assert [eca_kernel_size(c) for c in (64, 128, 192, 256, 320)] == [3, 5, 5, 5, 5]


def test_ssff_equals_max_over_scales_formula() -> None:
    torch.manual_seed(0)
    ssff = ScaleSequenceFusion(4, 6, 8).eval()
    with torch.no_grad():
        ssff.bn.running_mean.uniform_(-0.5, 0.5)
        ssff.bn.running_var.uniform_(0.5, 2.0)
        ssff.bn.weight.uniform_(0.5, 1.5)
    p3, p4, p5 = torch.randn(1, 4, 4, 4), torch.randn(1, 6, 2, 2), torch.randn(1, 8, 1, 1)
    with torch.no_grad():
        out = ssff([p3, p4, p5])
        w = ssff.conv3d.weight.view(4, 4)
        b = ssff.conv3d.bias
        bn = ssff.bn
        scales = [p3, ssff.conv1(p4).repeat_interleave(2, 2).repeat_interleave(2, 3), ssff.conv2(p5).expand(1, 4, 4, 4)]
        ys = []
        for x in scales:
            z = torch.einsum("oc,bchw->bohw", w, x) + b.view(1, -1, 1, 1)
            z = (z - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
            z = z * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
            ys.append(F.leaky_relu(z, 0.1))
        ref = torch.stack(ys).amax(0)
    assert torch.allclose(out, ref, atol=1e-5)
    assert ssff.bn.eps == 1e-5 and ssff.bn.momentum == 0.1  # PyTorch defaults kept (§10.14)


def test_cpam_formula_hand_built() -> None:
    torch.manual_seed(0)
    c, h, w = 32, 3, 5
    cpam = ChannelPositionAttention(c).eval()  # reduction 16 -> 2 hidden channels, ECA k = 3
    t, s = torch.randn(2, c, h, w), torch.randn(2, c, h, w)
    with torch.no_grad():
        out = cpam([t, s])
        g = t.mean((2, 3))  # (B, C)
        k = cpam.eca.weight.view(-1)
        gp = F.pad(g, (1, 1))
        a = torch.sigmoid(torch.stack([(gp[:, i : i + 3] * k).sum(1) for i in range(c)], 1))
        u = t * a[..., None, None] + s
        zh, zw = u.mean(3), u.mean(2)  # (B, C, H), (B, C, W)
        bn = cpam.reduce_bn
        wr = cpam.reduce.weight.view(2, c)

        def reduce(z: torch.Tensor) -> torch.Tensor:
            y = torch.einsum("oc,bcn->bon", wr, z)
            y = (y - bn.running_mean.view(1, -1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1) + bn.eps)
            return torch.relu(y * bn.weight.view(1, -1, 1) + bn.bias.view(1, -1, 1))

        sh = torch.sigmoid(torch.einsum("co,bon->bcn", cpam.proj_h.weight.view(c, 2), reduce(zh)))
        sw = torch.sigmoid(torch.einsum("co,bon->bcn", cpam.proj_w.weight.view(c, 2), reduce(zw)))
        ref = u * sh[..., :, None] * sw[..., None, :]
    assert torch.allclose(out, ref, atol=1e-6)
    assert bn.eps == 1e-3 and abs(bn.momentum - 0.03) < 1e-9  # YOLO init applies to CPAM's BatchNorm2d


def test_cpam_is_size_independent_mean_not_baked() -> None:
    """Row/column means must adapt to any H, W (no adaptive pooling baked to a traced size)."""
    cpam = ChannelPositionAttention(16).eval()
    for hw in [(2, 7), (6, 3)]:
        t = torch.ones(1, 16, *hw)
        assert cpam([t, t]).shape == (1, 16, *hw)


def test_fuse_leaves_outputs_unchanged() -> None:
    torch.manual_seed(0)
    m = build_model("n", 1)
    # give BatchNorms non-trivial statistics, as a trained model has
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.rand(2, 3, 64, 64))
    m.eval()
    fused = copy.deepcopy(m).fuse()
    assert not any(isinstance(x, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)) for x in fused.modules())
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        p0, q0 = m(x)
        p1, q1 = fused(x)
    assert torch.allclose(p0, p1, atol=1e-3, rtol=1e-4)
    assert torch.allclose(q0, q1, atol=1e-4, rtol=1e-4)
