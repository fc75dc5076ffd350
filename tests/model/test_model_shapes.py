"""Parameter counts, FLOPs and output shapes of every variant (ASF-YOLO.md §2.2-2.3)."""

from __future__ import annotations

import pytest
import torch

from asfyolo_rt.model import VARIANTS, build_model
from asfyolo_rt.model.summary import count_parameters, model_info

# Trainable parameters for nc=1 from ASF-YOLO.md: exact for l (the official model's count), and the
# fact sheet's extrapolated n/s/m/x values (given to 0.01 M there; we must be within 1 %).
EXPECTED_PARAMS = {"n": 1.95e6, "s": 7.65e6, "m": 22.22e6, "x": 89.80e6}


def test_l_parameters_exact() -> None:
    assert count_parameters(build_model("l", 1)) == 48_465_467


def test_l_parameters_nc80() -> None:
    assert count_parameters(build_model("l", 80)) == 48_890_882


@pytest.mark.parametrize("variant", sorted(EXPECTED_PARAMS))
def test_variant_parameters_within_1_percent(variant: str) -> None:
    n = count_parameters(build_model(variant, 1))
    assert abs(n - EXPECTED_PARAMS[variant]) / EXPECTED_PARAMS[variant] < 0.01


def test_module_parameter_counts_l() -> None:
    m = build_model("l", 1)
    assert count_parameters(m.ssff) == 460_544
    assert count_parameters(m.cpam) == 12_325
    assert count_parameters(m.head) == 1_393_558
    assert m.cpam.eca.kernel_size == (5,)


def test_l_info_640() -> None:
    info = model_info(build_model("l", 1), 640)
    assert info.parameters == 48_465_467
    assert abs(info.gflops - 154.5) < 0.5  # ASF-YOLO.md: 154.5 GFLOPs of convolutions at 640
    assert abs(info.gflops_fused - 154.6) < 0.5  # official summary after fusion: 154.6
    assert info.pred_shape == [1, 25200, 38]
    assert info.protos_shape == [1, 32, 160, 160]
    assert info.head_outputs == [[1, 3, 80, 80, 38], [1, 3, 40, 40, 38], [1, 3, 20, 20, 38]]


def test_official_state_dict_layout() -> None:
    from asfyolo_rt.model.weights import state_dict_to_official

    keys = list(state_dict_to_official(build_model("l", 1)))
    assert len(keys) == 671
    assert keys[0] == "model.0.conv.weight"
    assert keys[-1] == "model.26.proto.cv3.bn.num_batches_tracked"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_shapes_small(variant: str) -> None:
    torch.manual_seed(0)
    m = build_model(variant, 2).eval()
    with torch.no_grad():
        pred, protos = m(torch.rand(2, 3, 64, 96))
    n = 3 * (8 * 12 + 4 * 6 + 2 * 3)
    assert pred.shape == (2, n, 5 + 2 + 32)
    assert protos.shape == (2, 32, 16, 24)
    assert torch.isfinite(pred).all()


def test_train_mode_backward() -> None:
    torch.manual_seed(0)
    m = build_model("n", 1).train()
    levels, protos = m(torch.rand(2, 3, 64, 64))
    assert [tuple(t.shape) for t in levels] == [(2, 3, 8, 8, 38), (2, 3, 4, 4, 38), (2, 3, 2, 2, 38)]
    loss = sum(t.square().mean() for t in levels) + protos.mean()
    loss.backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None for g in grads)
    # the CPAM/SSFF path reaches the P3 head and prototypes: their parameters get gradients
    assert m.cpam.eca.weight.grad.abs().sum() > 0
    assert m.ssff.conv3d.weight.grad.abs().sum() > 0


def test_bad_input_size_is_a_clear_error() -> None:
    from asfyolo_rt.errors import ConfigError

    with pytest.raises(ConfigError, match="multiples of 32"):
        build_model("n").eval()(torch.zeros(1, 3, 100, 64))


def test_unknown_variant() -> None:
    from asfyolo_rt.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown model size"):
        build_model("q")


def test_bias_priors() -> None:
    import math

    m = build_model("n", 1)
    b = m.head.m[0].bias.view(3, -1)
    assert torch.allclose(b[:, 4], torch.full((3,), math.log(8 / 80**2)), atol=0.2)  # conv bias init is U(-k, k), small
    assert (b[:, 5] > 10).all()  # nc=1: ln(0.6 / 0.00001) = 11.0


def test_decode_formula() -> None:
    """Decoded boxes follow xy = (2 sigmoid(t) - 0.5 + g) * s, wh = (2 sigmoid(t))^2 * anchor."""
    m = build_model("n", 1).eval()
    p = torch.zeros(1, 3, 2, 2, 38)
    p[0, 1, 1, 0, :4] = torch.tensor([0.3, -0.2, 0.1, 0.4])
    out = m.head.decode([p, torch.zeros(1, 3, 1, 1, 38), torch.zeros(1, 3, 1, 1, 38)])
    row = out[0, 1 * 4 + 1 * 2 + 0]  # anchor 1, cell (y=1, x=0) of level 0, stride 8
    s = torch.sigmoid(torch.tensor([0.3, -0.2, 0.1, 0.4]))
    assert torch.allclose(row[0], (2 * s[0] - 0.5 + 0) * 8)
    assert torch.allclose(row[1], (2 * s[1] - 0.5 + 1) * 8)
    assert torch.allclose(row[2], (2 * s[2]) ** 2 * 16)  # anchor (16, 30) px
    assert torch.allclose(row[3], (2 * s[3]) ** 2 * 30)
    assert torch.allclose(row[4], torch.tensor(0.5))
