"""CPAM at inference, in plain PyTorch: the specification of `asfyolo_rt.kernels.cpam`.

Computes in float32 whatever the input dtype and casts the result back to the dtype of `t`.
Written with `mean(dim)` and matrix products only (no adaptive pooling), so it exports to ONNX
at any input size (TOOLCHAIN.md: adaptive pooling is baked to the traced size by the exporter).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def eca_gate(g: Tensor, eca_weight: Tensor) -> Tensor:
    """Channel gate a = sigmoid(conv1d(g)) with zero padding (k - 1) // 2 and no bias.

    g: (B, C) float32 channel means; eca_weight: (k,), k odd. Returns (B, C) float32 in (0, 1).
    """
    k = eca_weight.numel()
    w = eca_weight.reshape(1, 1, k).to(torch.float32)
    return torch.sigmoid(F.conv1d(g.unsqueeze(1), w, padding=(k - 1) // 2).squeeze(1))


def position_gates(
    z_h: Tensor,
    z_w: Tensor,
    reduce_weight: Tensor,
    reduce_bias: Tensor,
    h_weight: Tensor,
    w_weight: Tensor,
) -> tuple[Tensor, Tensor]:
    """The tiny projections of the position branch.

    z_h: (B, C, H) row means of U; z_w: (B, C, W) column means of U (float32).
    reduce_weight: (R, C), reduce_bias: (R,) with R = C // r (BatchNorm folded in);
    h_weight, w_weight: (C, R). Returns s_h: (B, C, H) and s_w: (B, C, W) float32 in (0, 1).
    """
    h = z_h.shape[-1]
    z = torch.cat([z_h, z_w], dim=-1)  # (B, C, H + W)
    wr = reduce_weight.to(torch.float32)
    y = torch.relu(torch.matmul(wr, z) + reduce_bias.to(torch.float32)[:, None])  # (B, R, H + W)
    s_h = torch.sigmoid(torch.matmul(h_weight.to(torch.float32), y[..., :h]))
    s_w = torch.sigmoid(torch.matmul(w_weight.to(torch.float32), y[..., h:]))
    return s_h, s_w


def cpam_reference(
    t: Tensor,
    s: Tensor,
    eca_weight: Tensor,
    reduce_weight: Tensor,
    reduce_bias: Tensor,
    h_weight: Tensor,
    w_weight: Tensor,
) -> Tensor:
    """V = U * s_h * s_w with U = T * a + S (see the package docstring for the maths).

    t, s: (B, C, H, W) float32 or float16 (same shape). Returns (B, C, H, W) in the dtype of `t`.
    Arguments are not validated here; `asfyolo_rt.kernels.cpam.cpam` validates them.
    """
    tf = t.to(torch.float32)
    sf = s.to(torch.float32)
    a = eca_gate(tf.mean(dim=(2, 3)), eca_weight)  # (B, C)
    u = tf * a[:, :, None, None] + sf
    s_h, s_w = position_gates(u.mean(dim=3), u.mean(dim=2), reduce_weight, reduce_bias, h_weight, w_weight)
    v = u * s_h[:, :, :, None] * s_w[:, :, None, :]
    return v.to(t.dtype)
