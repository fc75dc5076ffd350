"""Fused inference CPAM (Channel and Position Attention, ASF-YOLO.md §3.3; upstream `attention_model`).

Maths, for T (detail branch) and S (SSFF output), both (B, C, H, W):

    g   = mean_{h,w} T                                   (B, C)
    a   = sigmoid(conv1d(g, eca_weight))                 (B, C)   k odd, zero padding (k-1)//2, no bias
    U   = T * a[..., None, None] + S                     (B, C, H, W)
    z_h = mean_w U (B, C, H);  z_w = mean_h U (B, C, W)
    y   = relu(reduce_weight @ [z_h | z_w] + reduce_bias)   (B, C/r, H + W)   BatchNorm folded in
    s_h = sigmoid(h_weight @ y[..., :H]);  s_w = sigmoid(w_weight @ y[..., H:])
    V   = U * s_h[..., :, None] * s_w[..., None, :]      (B, C, H, W)

The Triton path never writes U: one pass over T and S produces the row and column sums of T and
S and the plane sum of T (rowsum U = a * rowsum T + rowsum S), a tiny kernel computes a, s_h and
s_w from those, and a second pass writes V. See `_triton.py`.

Contract of `cpam`:
    t, s:           (B, C, H, W) float32 or float16, same shape and dtype, any B, C, H, W >= 1, any strides
    eca_weight:     (k,) float, k odd (the module's Conv1d weight (1, 1, k) is accepted too)
    reduce_weight:  (R, C) float (or (R, C, 1, 1)), R = C // r; reduce_bias: (R,)
    h_weight, w_weight: (C, R) float (or (C, R, 1, 1))
    returns V:      (B, C, H, W) in the dtype of t (contiguous). Internally float32 everywhere.
    impl: "auto" = Triton for CUDA tensors, the PyTorch reference otherwise; "torch"; "triton"
          (raises KernelUnavailableError where Triton cannot run instead of falling back).
"""

from __future__ import annotations

from typing import Literal

import torch
from asfyolo_rt.kernels.cpam.reference import cpam_reference
from torch import Tensor

from asfyolo_rt.errors import ConfigError, KernelUnavailableError

__all__ = ["cpam", "cpam_reference"]

Impl = Literal["auto", "torch", "triton"]


def _as_matrix(x: Tensor, rows: int, cols: int, name: str, expect: str) -> Tensor:
    if x.dim() == 4 and x.shape[2:] == (1, 1):
        x = x.reshape(x.shape[0], x.shape[1])
    if x.dim() != 2 or tuple(x.shape) != (rows, cols):
        raise ConfigError(f"cpam: {name} has shape {tuple(x.shape)}; expected {expect} = ({rows}, {cols})")
    return x


def _validate(
    t: Tensor, s: Tensor, eca: Tensor, wr: Tensor, br: Tensor, wh: Tensor, ww: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    if t.dim() != 4:
        raise ConfigError(f"cpam: t has shape {tuple(t.shape)}; expected rank 4 (B, C, H, W)")
    if s.shape != t.shape:
        raise ConfigError(f"cpam: s has shape {tuple(s.shape)}; expected the shape of t {tuple(t.shape)}")
    if s.dtype != t.dtype or t.dtype not in (torch.float32, torch.float16):
        raise ConfigError(
            f"cpam: t is {t.dtype} and s is {s.dtype}; expected both float32 or both float16",
            hint="cast both feature maps to the same dtype",
        )
    if s.device != t.device:
        raise ConfigError(f"cpam: t is on {t.device} and s on {s.device}; expected one device")
    c = t.shape[1]
    if eca.dim() == 3 and eca.shape[:2] == (1, 1):
        eca = eca.reshape(-1)
    if eca.dim() != 1 or eca.numel() % 2 == 0:
        raise ConfigError(f"cpam: eca_weight has shape {tuple(eca.shape)}; expected (k,) with k odd")
    if wr.dim() not in (2, 4):
        raise ConfigError(f"cpam: reduce_weight has shape {tuple(wr.shape)}; expected (C/r, C)")
    r = wr.shape[0]
    wr = _as_matrix(wr, r, c, "reduce_weight", "(C/r, C)")
    if br.dim() != 1 or br.shape[0] != r:
        raise ConfigError(f"cpam: reduce_bias has shape {tuple(br.shape)}; expected (C/r,) = ({r},)")
    wh = _as_matrix(wh, c, r, "h_weight", "(C, C/r)")
    ww = _as_matrix(ww, c, r, "w_weight", "(C, C/r)")
    for name, x in (("eca_weight", eca), ("reduce_weight", wr), ("reduce_bias", br),
                    ("h_weight", wh), ("w_weight", ww)):
        if not x.is_floating_point():
            raise ConfigError(f"cpam: {name} is {x.dtype}; expected a floating-point tensor")
        if x.device != t.device:
            raise ConfigError(f"cpam: {name} is on {x.device}; expected the device of t ({t.device})")
    return eca, wr, br, wh, ww


def cpam(
    t: Tensor,
    s: Tensor,
    eca_weight: Tensor,
    reduce_weight: Tensor,
    reduce_bias: Tensor,
    h_weight: Tensor,
    w_weight: Tensor,
    *,
    impl: Impl = "auto",
) -> Tensor:
    """Inference CPAM: V = (T * a + S) * s_h * s_w (see the module docstring for shapes and maths).

    t, s: (B, C, H, W) float32/float16. Returns (B, C, H, W) in t's dtype.
    Raises ConfigError for bad shapes/dtypes/impl, KernelUnavailableError for impl="triton" on a
    device Triton cannot use.
    """
    if impl not in ("auto", "torch", "triton"):
        raise ConfigError(f"cpam: impl={impl!r}; expected 'auto', 'torch' or 'triton'")
    eca, wr, br, wh, ww = _validate(t, s, eca_weight, reduce_weight, reduce_bias, h_weight, w_weight)
    if impl == "torch" or (impl == "auto" and t.device.type != "cuda"):
        return cpam_reference(t, s, eca, wr, br, wh, ww)
    try:
        from asfyolo_rt.kernels.cpam import _triton
    except ImportError as exc:  # triton missing on this platform
        raise KernelUnavailableError(
            f"cpam: impl={impl!r} needs Triton, which cannot be imported ({exc})",
            hint="install triton, or use impl='torch'",
        ) from exc
    return _triton.cpam_triton(t, s, eca, wr, br, wh, ww)
