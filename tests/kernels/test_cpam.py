"""Fused CPAM: Triton (interpreter on CPU, native on CUDA) against the PyTorch reference.

The reference itself is checked against an unfused, literal transcription of ASF-YOLO.md §3.3
(nn.Conv1d / Conv2d / BatchNorm2d modules), so both implementations answer to the paper maths.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
from asfyolo_rt.kernels.cpam import _triton as tri
from asfyolo_rt.kernels.cpam import cpam, cpam_reference
from kernel_env import CUDA, DEVICE, require_runnable
from torch import nn

from asfyolo_rt.errors import ConfigError, KernelUnavailableError

# Large blocks in the interpreter (it pays ~5-15 ms per program instance, not per element); the
# production blocks on a GPU, where such tiles would not fit in registers.
BIG = tri.CpamConfig() if CUDA else tri.CpamConfig(
    stats_block_c=64, stats_block_h=32, stats_block_w=128, gates_block_c=64, gates_block_p=128,
    apply_block_c=64, apply_block_h=32, apply_block_w=128,
)

# Tolerances (max |triton - reference| <= atol + rtol * |reference|), per input dtype:
# - float32: both compute in float32; they differ only in the summation order of the row/column/plane
#   sums (up to 6400 terms: relative error ~ sqrt(n) * 6e-8 ~ 5e-6) and in where U is formed; the
#   gates are sigmoids (slope <= 1/4), so V differs by a few float32 ulps of |U|.
# - float16: identical float32 internals, then one rounding to float16; the float32 differences
#   above can move a value across a float16 rounding boundary: 1 ulp = 2**-10 relative.
TOL = {
    torch.float32: {"atol": 1e-5, "rtol": 1e-5},
    torch.float16: {"atol": 2e-3, "rtol": 2e-3},
}


def _eca_k(c: int) -> int:
    k = int(abs((math.log2(c) + 1) / 2))
    return k if k % 2 else k + 1


def _params(c: int, r: int = 16, seed: int = 0, device: torch.device = DEVICE) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    rc = max(1, c // r)
    eca = torch.randn(_eca_k(c), generator=g)
    wr = torch.randn(rc, c, generator=g) / math.sqrt(c)
    br = torch.randn(rc, generator=g) * 0.1
    wh = torch.randn(c, rc, generator=g) / math.sqrt(rc)
    ww = torch.randn(c, rc, generator=g) / math.sqrt(rc)
    return tuple(x.to(device) for x in (eca, wr, br, wh, ww))


def _maps(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g)
    s = torch.randn(shape, generator=g) * 0.5 + 0.25
    return t.to(DEVICE, dtype), s.to(DEVICE, dtype)


@pytest.fixture(scope="module", autouse=True)
def _runnable() -> None:
    require_runnable(tri)


# Shape grid (B, C, H, W):
SHAPES = [
    (1, 1, 1, 1),  # minimal: one channel (C/r = 1), one pixel; ECA padding covers the whole kernel
    (1, 8, 1, 5),  # H = 1 (Triton specialises integer arguments equal to 1)
    (2, 24, 7, 13),  # non-power-of-two everything, B > 1
    (1, 64, 40, 40),  # n model at 320 (C = 64, k = 3, C/r = 4)
    (1, 48, 33, 70),  # wider than one 64-column strip with the production config
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_triton_matches_reference(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    t, s = _maps(shape, dtype)
    params = _params(shape[1])
    expected = cpam_reference(t, s, *params)
    got = tri.cpam_triton(t, s, *params, config=BIG)
    assert got.dtype == dtype and got.shape == t.shape
    torch.testing.assert_close(got, expected, **TOL[dtype])


def test_production_config_with_several_column_strips() -> None:
    # The default (GPU) config: 64-column strips -> W = 70 needs 2 partial row sums per row.
    t, s = _maps((1, 16, 9, 70), torch.float32)
    params = _params(16)
    torch.testing.assert_close(tri.cpam_triton(t, s, *params), cpam_reference(t, s, *params), **TOL[torch.float32])


def test_real_size_l_model() -> None:
    # The l model at 640: (1, 256, 80, 80), k = 5, C/r = 16.
    t, s = _maps((1, 256, 80, 80), torch.float32)
    params = _params(256)
    assert params[0].numel() == 5
    torch.testing.assert_close(tri.cpam_triton(t, s, *params, config=BIG), cpam_reference(t, s, *params),
                               **TOL[torch.float32])


def test_strided_inputs() -> None:
    # Non-contiguous views: every other channel of a larger map, and a channels-last S.
    t_big, _ = _maps((2, 32, 11, 9), torch.float32)
    t = t_big[:, ::2]
    s = _maps((2, 16, 11, 9), torch.float32, seed=5)[0].to(memory_format=torch.channels_last)
    assert not t.is_contiguous() and not s.is_contiguous()
    params = _params(16)
    got = tri.cpam_triton(t, s, *params, config=BIG)
    torch.testing.assert_close(got, cpam_reference(t.contiguous(), s.contiguous(), *params), **TOL[torch.float32])


def _literal_cpam(t: torch.Tensor, s: torch.Tensor, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """ASF-YOLO.md §3.3 written with modules: Conv1d ECA, Conv2d 1x1 + BatchNorm2d + ReLU, two Conv2d."""
    eca, wr, br, wh, ww = (p.cpu() for p in params)
    c, rc, k = t.shape[1], wr.shape[0], eca.numel()
    conv1d = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)
    conv1d.weight.data = eca.view(1, 1, k)
    reduce = nn.Conv2d(c, rc, 1, bias=False)
    bn = nn.BatchNorm2d(rc, eps=1e-3).eval()
    # Unfold the folded (weight, bias) into conv + BN with non-trivial statistics.
    gamma = torch.linspace(0.5, 2.0, rc)
    var = torch.linspace(0.2, 3.0, rc)
    mean = torch.linspace(-0.3, 0.4, rc)
    scale = gamma / torch.sqrt(var + 1e-3)
    bn.weight.data, bn.running_var, bn.running_mean = gamma, var, mean
    bn.bias.data = br + mean * scale  # bn(x) = (x - mean) * scale + bias
    reduce.weight.data = (wr / scale[:, None]).view(rc, c, 1, 1)  # so bn(reduce(z)) = wr @ z + br
    conv_h = nn.Conv2d(rc, c, 1, bias=False)
    conv_h.weight.data = wh.view(c, rc, 1, 1)
    conv_w = nn.Conv2d(rc, c, 1, bias=False)
    conv_w.weight.data = ww.view(c, rc, 1, 1)
    with torch.no_grad():
        t, s = t.cpu().float(), s.cpu().float()
        g = t.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        a = torch.sigmoid(conv1d(g.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1))
        u = t * a + s
        h, w = u.shape[2:]
        z_h = u.mean(dim=3, keepdim=True).permute(0, 1, 3, 2)  # (B, C, 1, H)
        z_w = u.mean(dim=2, keepdim=True)  # (B, C, 1, W)
        y = torch.relu(bn(reduce(torch.cat([z_h, z_w], dim=3))))
        y_h, y_w = torch.split(y, [h, w], dim=3)
        s_h = torch.sigmoid(conv_h(y_h.permute(0, 1, 3, 2)))  # (B, C, H, 1)
        s_w = torch.sigmoid(conv_w(y_w))  # (B, C, 1, W)
        return u * s_h * s_w


def test_reference_matches_literal_modules() -> None:
    t, s = _maps((2, 32, 9, 12), torch.float32)
    params = _params(32)
    torch.testing.assert_close(cpam_reference(t, s, *params).cpu(), _literal_cpam(t, s, params), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------- dispatch


def test_torch_and_auto_on_cpu_use_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    t, s = _maps((1, 8, 5, 6), torch.float32)
    t, s = t.cpu(), s.cpu()
    params = tuple(p.cpu() for p in _params(8))

    def boom(*args, **kwargs):
        raise AssertionError("auto/torch on CPU must not launch Triton")

    monkeypatch.setattr(tri, "cpam_triton", boom)
    expected = cpam_reference(t, s, *params)
    assert torch.equal(cpam(t, s, *params, impl="torch"), expected)
    assert torch.equal(cpam(t, s, *params), expected)


@pytest.mark.gpu
def test_auto_on_cuda_uses_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    import asfyolo_rt.kernels.cpam as pkg

    def boom(*args, **kwargs):
        raise AssertionError("auto on CUDA must launch Triton")

    monkeypatch.setattr(pkg, "cpam_reference", boom)
    t, s = _maps((1, 8, 5, 6), torch.float32)
    assert cpam(t, s, *_params(8)).is_cuda


def test_explicit_triton_runs_the_kernel() -> None:
    t, s = _maps((1, 8, 5, 6), torch.float16)
    params = _params(8)
    got = cpam(t, s, *params, impl="triton")
    torch.testing.assert_close(got, cpam_reference(t, s, *params), **TOL[torch.float16])


def test_triton_on_cpu_without_interpreter_raises() -> None:
    # A fresh interpreter without TRITON_INTERPRET: impl="triton" on CPU tensors must refuse, for
    # both kernels, with KernelUnavailableError (never a silent fallback).
    code = """
import torch
from asfyolo_rt.errors import KernelUnavailableError
from asfyolo_rt.kernels.cpam import cpam
from asfyolo_rt.kernels.mask_assembly import mask_assembly
t = torch.randn(1, 4, 3, 3)
w = (torch.randn(3), torch.randn(1, 4), torch.randn(1), torch.randn(4, 1), torch.randn(4, 1))
for call in (lambda: cpam(t, t, *w, impl="triton"),
             lambda: mask_assembly(torch.randn(1, 32, 4, 4), torch.randn(1, 32), torch.tensor([[0., 0., 8., 8.]]),
                                   torch.zeros(1, dtype=torch.long), torch.ones(1), (16, 16), impl="triton")):
    try:
        call()
    except KernelUnavailableError as e:
        print("refused:", e)
    else:
        raise SystemExit("no error")
"""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("refused:") == 2 and "CUDA tensors" in r.stdout


# --------------------------------------------------------------------------------------- bad input

BAD = [
    ("rank", lambda t, s, p: cpam(t[0], s[0], *p), "rank 4"),
    ("s shape", lambda t, s, p: cpam(t, s[:, :, :-1], *p), "shape of t"),
    ("dtype mismatch", lambda t, s, p: cpam(t, s.half(), *p), "float32 or both float16"),
    ("int maps", lambda t, s, p: cpam(t.long(), s.long(), *p), "float32 or both float16"),
    ("even k", lambda t, s, p: cpam(t, s, torch.ones(4), *p[1:]), "k odd"),
    ("reduce C", lambda t, s, p: cpam(t, s, p[0], p[1][:, :-1], *p[2:]), "reduce_weight"),
    ("bias", lambda t, s, p: cpam(t, s, p[0], p[1], p[2][:-1], *p[3:]), "reduce_bias"),
    ("h_weight", lambda t, s, p: cpam(t, s, *p[:3], p[3].T, p[4]), "h_weight"),
    ("impl", lambda t, s, p: cpam(t, s, *p, impl="cuda"), "impl"),
]


@pytest.mark.parametrize("name,call,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_raise_config_error(name: str, call, needle: str) -> None:
    t, s = (x.cpu() for x in _maps((1, 32, 4, 4), torch.float32))
    params = tuple(p.cpu() for p in _params(32))
    with pytest.raises(ConfigError, match=needle):
        call(t, s, params)


def test_module_shaped_weights_are_accepted() -> None:
    # Conv1d weight (1, 1, k) and Conv2d weights (out, in, 1, 1) as stored in the model.
    t, s = (x.cpu() for x in _maps((1, 32, 4, 4), torch.float32))
    eca, wr, br, wh, ww = (p.cpu() for p in _params(32))
    got = cpam(t, s, eca.view(1, 1, -1), wr[:, :, None, None], br, wh[:, :, None, None], ww[:, :, None, None])
    assert torch.equal(got, cpam_reference(t, s, eca, wr, br, wh, ww))


def test_kernel_refuses_unsupported_dtype() -> None:
    t, s = _maps((1, 4, 3, 3), torch.float32)
    with pytest.raises(KernelUnavailableError, match="float32 and float16"):
        tri.cpam_triton(t.double(), s.double(), *_params(4))
