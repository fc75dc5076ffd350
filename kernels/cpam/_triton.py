"""Triton implementation of inference CPAM: three kernels, two passes over the feature maps.

1. `_cpam_stats_kernel` reads T and S once and writes, per (image, channel), the row sums and column
   sums of T and of S plus the plane sum of T (all float32). U = T * a + S is never written: its row
   and column sums follow from these (rowsum U = a * rowsum T + rowsum S).
2. `_cpam_gates_kernel` works on those (B, C, H + W) statistics only: ECA gate a, the C -> C/r
   projection with ReLU, and the two C/r -> C projections with sigmoid, giving s = [s_h | s_w].
3. `_cpam_apply_kernel` reads T and S again and writes V = (T * a + S) * s_h * s_w.

Traffic: 2 reads of T and S, 1 write of V (5 planes) plus O(B * C * (H + W)) statistics.
This is the only module of `asfyolo_rt.kernels.cpam` that imports Triton.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from asfyolo_rt.errors import KernelUnavailableError

# Block sizes. No GPU was available while these were chosen, so none is backed by a measurement
# yet (bench/bench_cpam.py records one when run on a GPU); the reasoning behind each:
# - stats/apply: one channel per program and a 32 x 64 (stats) / 16 x 64 (apply) pixel tile keep
#   2 K elements per program (16 fp32 registers per thread and array at 4 warps) and give
#   B * C * ceil(W / 64) >= 256 programs for the l model at 640 (1 x 256 x 80 x 80). The AOT compile
#   (sm_87..sm_90) reports 48-60 registers, no spills, 512 B (stats) / 0 B (apply) shared memory.
STATS_BLOCK_C = 1
STATS_BLOCK_H = 32
STATS_BLOCK_W = 64
APPLY_BLOCK_C = 1
APPLY_BLOCK_H = 16
APPLY_BLOCK_W = 64
# - gates: 16 channels x 16 positions per step; with BLOCK_R = 16 (C / r for C = 256, r = 16) the
#   broadcast product holds 4 K fp32 (32 registers per thread at 4 warps). AOT compile: 40-64
#   registers, no spills, 6 KB (BLOCK_R = 16) / 12 KB (32) of reduction scratch in shared memory.
GATES_BLOCK_C = 16
GATES_BLOCK_P = 16
NUM_WARPS = 4
# No fused multiply-add contraction: keeps results within float32 rounding of the reference's
# separate multiply and add (these kernels are memory-bound; FMA would not make them faster).
FP_FUSION = False


@dataclass(frozen=True)
class CpamConfig:
    """Block sizes of the three kernels (all powers of two). Tests use large blocks: the Triton
    interpreter pays per program instance, not per element."""

    stats_block_c: int = STATS_BLOCK_C
    stats_block_h: int = STATS_BLOCK_H
    stats_block_w: int = STATS_BLOCK_W
    gates_block_c: int = GATES_BLOCK_C
    gates_block_p: int = GATES_BLOCK_P
    apply_block_c: int = APPLY_BLOCK_C
    apply_block_h: int = APPLY_BLOCK_H
    apply_block_w: int = APPLY_BLOCK_W
    num_warps: int = NUM_WARPS


@triton.jit
def _cpam_stats_kernel(
    rows_t_ptr, rows_s_ptr, cols_t_ptr, cols_s_ptr, gsum_ptr,  # outputs, float32
    t_ptr, s_ptr,  # inputs (B, C, H, W)
    t_sb, t_sc, t_sh, t_sw, s_sb, s_sc, s_sh, s_sw,  # strides in elements
    C, H, W, NWT,
    BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    """Program (b * ceil(C / BLOCK_C) + cb, wt): channels cb*BLOCK_C.., columns wt*BLOCK_W.., all rows.

    rows_*: (B, C, NWT, H) partial row sums of this column strip; cols_*: (B, C, W); gsum: (B, C, NWT).
    """
    pid_bc = tl.program_id(0)
    wt = tl.program_id(1)
    n_cb = tl.cdiv(C, BLOCK_C)
    b = pid_bc // n_cb
    cc = (pid_bc % n_cb) * BLOCK_C + tl.arange(0, BLOCK_C)
    ww = wt * BLOCK_W + tl.arange(0, BLOCK_W)
    c3 = cc[:, None, None]
    w3 = ww[None, None, :]
    cw_mask = (c3 < C) & (w3 < W)
    t_base = t_ptr + b.to(tl.int64) * t_sb + c3.to(tl.int64) * t_sc + w3.to(tl.int64) * t_sw
    s_base = s_ptr + b.to(tl.int64) * s_sb + c3.to(tl.int64) * s_sc + w3.to(tl.int64) * s_sw
    col_t = tl.zeros((BLOCK_C, BLOCK_W), dtype=tl.float32)
    col_s = tl.zeros((BLOCK_C, BLOCK_W), dtype=tl.float32)
    c2 = cc[:, None]
    row_base = (b * C + c2).to(tl.int64) * (NWT * H) + wt * H
    for h0 in range(0, H, BLOCK_H):
        hh = h0 + tl.arange(0, BLOCK_H)
        h3 = hh[None, :, None]
        m = cw_mask & (h3 < H)
        tv = tl.load(t_base + h3.to(tl.int64) * t_sh, mask=m, other=0.0).to(tl.float32)
        sv = tl.load(s_base + h3.to(tl.int64) * s_sh, mask=m, other=0.0).to(tl.float32)
        col_t += tl.sum(tv, axis=1)
        col_s += tl.sum(sv, axis=1)
        h2 = hh[None, :]
        rm = (c2 < C) & (h2 < H)
        tl.store(rows_t_ptr + row_base + h2, tl.sum(tv, axis=2), mask=rm)
        tl.store(rows_s_ptr + row_base + h2, tl.sum(sv, axis=2), mask=rm)
    w2 = ww[None, :]
    col_off = (b * C + c2).to(tl.int64) * W + w2
    cm = (c2 < C) & (w2 < W)
    tl.store(cols_t_ptr + col_off, col_t, mask=cm)
    tl.store(cols_s_ptr + col_off, col_s, mask=cm)
    tl.store(gsum_ptr + (b * C + cc).to(tl.int64) * NWT + wt, tl.sum(col_t, axis=1), mask=cc < C)


@triton.jit
def _cpam_gates_kernel(
    gates_ptr, a_ptr,  # outputs: (B, C, H + W) float32 [s_h | s_w], (B, C) float32
    rows_t_ptr, rows_s_ptr, cols_t_ptr, cols_s_ptr, gsum_ptr,  # statistics from _cpam_stats_kernel
    eca_ptr, wr_ptr, br_ptr, wh_ptr, ww_ptr,  # float32 weights: (K,), (R, C), (R,), (C, R), (C, R)
    C, H, W, R, NWT, K,
    BLOCK_C: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr,
):
    """Program (b, pb): positions pb*BLOCK_P.. of the row part (pb < ceil(H / BLOCK_P)) or of the
    column part (the rest). Every program recomputes the ECA gate of the channels it needs."""
    b = tl.program_id(0)
    pb = tl.program_id(1)
    n_hb = tl.cdiv(H, BLOCK_P)
    is_h = pb < n_hb
    first = tl.where(is_h, pb * BLOCK_P, (pb - n_hb) * BLOCK_P)
    pp = first + tl.arange(0, BLOCK_P)  # index along H (row part) or along W (column part)
    p_len = tl.where(is_h, H, W)
    inv_len = tl.where(is_h, 1.0 / W, 1.0 / H)  # a row mean averages W values, a column mean H
    p2 = pp[None, :]
    # The segment flags as (1, BLOCK_P) tensors: the interpreter rejects scalar booleans in masks.
    is_h2 = (p2 * 0 + pb) < n_hb
    is_w2 = (p2 * 0 + pb) >= n_hb
    rr = tl.arange(0, BLOCK_R)
    r_mask = rr < R
    inv_hw = 1.0 / (H * W)
    pad = (K - 1) // 2
    acc = tl.zeros((BLOCK_R, BLOCK_P), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_C):
        cc = c0 + tl.arange(0, BLOCK_C)
        c_mask = cc < C
        # ECA gate: a[c] = sigmoid(sum_k eca[k] * g[c + k - pad]), g = plane mean, zero padding.
        logit = tl.zeros((BLOCK_C,), dtype=tl.float32)
        for k in range(K):
            src = cc + k - pad
            src_ok = (src >= 0) & (src < C)
            g = tl.zeros((BLOCK_C,), dtype=tl.float32)
            for j in range(NWT):
                g += tl.load(gsum_ptr + (b * C + src).to(tl.int64) * NWT + j, mask=src_ok, other=0.0)
            logit += tl.load(eca_ptr + k) * (g * inv_hw)
        a = tl.sigmoid(logit)
        tl.store(a_ptr + b * C + cc, a, mask=c_mask & ((cc * 0 + pb) == 0))
        # z[c, p] = mean of U along the row / column p, from the sums of T and S.
        c2 = cc[:, None]
        zm = (c2 < C) & (p2 < p_len)
        row_off = (b * C + c2).to(tl.int64) * (NWT * H) + p2
        sum_t = tl.zeros((BLOCK_C, BLOCK_P), dtype=tl.float32)
        sum_s = tl.zeros((BLOCK_C, BLOCK_P), dtype=tl.float32)
        for j in range(NWT):
            sum_t += tl.load(rows_t_ptr + row_off + j * H, mask=zm & is_h2, other=0.0)
            sum_s += tl.load(rows_s_ptr + row_off + j * H, mask=zm & is_h2, other=0.0)
        col_off = (b * C + c2).to(tl.int64) * W + p2
        sum_t += tl.load(cols_t_ptr + col_off, mask=zm & is_w2, other=0.0)
        sum_s += tl.load(cols_s_ptr + col_off, mask=zm & is_w2, other=0.0)
        z = (a[:, None] * sum_t + sum_s) * inv_len
        wr = tl.load(wr_ptr + rr[:, None] * C + cc[None, :], mask=r_mask[:, None] & (cc[None, :] < C), other=0.0)
        acc += tl.sum(wr[:, :, None] * z[None, :, :], axis=1)
    br = tl.load(br_ptr + rr, mask=r_mask, other=0.0)
    y = tl.maximum(acc + br[:, None], 0.0)  # (BLOCK_R, BLOCK_P); rows r >= R are 0
    out_pos = tl.where(is_h, 0, H) + p2
    for c0 in range(0, C, BLOCK_C):
        cc = c0 + tl.arange(0, BLOCK_C)
        c2 = cc[:, None]
        w_off = c2 * R + rr[None, :]
        w_mask = (c2 < C) & r_mask[None, :]
        wx = tl.load(wh_ptr + w_off, mask=w_mask & ((rr[None, :] * 0 + pb) < n_hb), other=0.0)
        wx += tl.load(ww_ptr + w_off, mask=w_mask & ((rr[None, :] * 0 + pb) >= n_hb), other=0.0)
        gate = tl.sigmoid(tl.sum(wx[:, :, None] * y[None, :, :], axis=1))
        tl.store(gates_ptr + (b * C + c2).to(tl.int64) * (H + W) + out_pos, gate, mask=(c2 < C) & (p2 < p_len))


@triton.jit
def _cpam_apply_kernel(
    v_ptr,  # output (B, C, H, W), contiguous, dtype of t
    t_ptr, s_ptr, a_ptr, gates_ptr,  # inputs; a: (B, C) fp32, gates: (B, C, H + W) fp32
    t_sb, t_sc, t_sh, t_sw, s_sb, s_sc, s_sh, s_sw,
    C, H, W,
    BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    """Program (b * ceil(C / BLOCK_C) + cb, hb, wb): V = (T * a + S) * s_h * s_w on one tile."""
    pid_bc = tl.program_id(0)
    n_cb = tl.cdiv(C, BLOCK_C)
    b = pid_bc // n_cb
    cc = (pid_bc % n_cb) * BLOCK_C + tl.arange(0, BLOCK_C)
    hh = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    ww = tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W)
    c3 = cc[:, None, None]
    h3 = hh[None, :, None]
    w3 = ww[None, None, :]
    m = (c3 < C) & (h3 < H) & (w3 < W)
    bl = b.to(tl.int64)
    tv = tl.load(t_ptr + bl * t_sb + c3.to(tl.int64) * t_sc + h3 * t_sh + w3 * t_sw, mask=m, other=0.0)
    sv = tl.load(s_ptr + bl * s_sb + c3.to(tl.int64) * s_sc + h3 * s_sh + w3 * s_sw, mask=m, other=0.0)
    a = tl.load(a_ptr + b * C + cc, mask=cc < C, other=0.0)
    g_base = gates_ptr + (b * C + c3).to(tl.int64) * (H + W)
    s_h = tl.load(g_base + h3, mask=(c3 < C) & (h3 < H), other=0.0)
    s_w = tl.load(g_base + H + w3, mask=(c3 < C) & (w3 < W), other=0.0)
    u = tv.to(tl.float32) * a[:, None, None] + sv.to(tl.float32)
    v = u * s_h * s_w
    out = v_ptr + ((b * C + c3).to(tl.int64) * H + h3) * W + w3
    tl.store(out, v.to(v_ptr.dtype.element_ty), mask=m)


# True when TRITON_INTERPRET=1 was set before this module was imported: kernels then run on CPU tensors.
INTERPRETED = type(_cpam_stats_kernel).__name__ == "InterpretedFunction"


def _check(t: Tensor, s: Tensor) -> None:
    for name, x in (("t", t), ("s", s)):
        if x.device.type != "cuda" and not (INTERPRETED and x.device.type == "cpu"):
            raise KernelUnavailableError(
                f"the Triton CPAM kernel needs CUDA tensors; `{name}` is on {x.device}",
                hint="use impl='auto' or impl='torch' for CPU tensors (or TRITON_INTERPRET=1 for tests)",
            )
        if x.dtype not in (torch.float32, torch.float16):
            raise KernelUnavailableError(
                f"the Triton CPAM kernel supports float32 and float16; `{name}` is {x.dtype}",
                hint="cast the feature maps, or use impl='torch'",
            )


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def cpam_triton(
    t: Tensor,
    s: Tensor,
    eca_weight: Tensor,
    reduce_weight: Tensor,
    reduce_bias: Tensor,
    h_weight: Tensor,
    w_weight: Tensor,
    *,
    config: CpamConfig | None = None,
) -> Tensor:
    """Launch the three kernels. Shapes are validated by `asfyolo_rt.kernels.cpam.cpam`.

    t, s: (B, C, H, W) float32/float16 on CUDA (any strides); returns contiguous (B, C, H, W) in
    t's dtype. Limits: H * W * C * B below 2**31 per statistics buffer index (int64 for the maps).
    """
    _check(t, s)
    cfg = config or CpamConfig()
    bsz, c, h, w = t.shape
    r = reduce_weight.shape[0]
    k = eca_weight.numel()
    dev = t.device
    f32 = torch.float32
    eca = eca_weight.reshape(-1).to(device=dev, dtype=f32).contiguous()
    wr = reduce_weight.reshape(r, c).to(device=dev, dtype=f32).contiguous()
    br = reduce_bias.reshape(r).to(device=dev, dtype=f32).contiguous()
    wh = h_weight.reshape(c, r).to(device=dev, dtype=f32).contiguous()
    ww = w_weight.reshape(c, r).to(device=dev, dtype=f32).contiguous()
    v = torch.empty((bsz, c, h, w), device=dev, dtype=t.dtype)
    if v.numel() == 0:
        return v
    bw1 = min(cfg.stats_block_w, _pow2(w))
    nwt = triton.cdiv(w, bw1)
    bc1 = min(cfg.stats_block_c, _pow2(c))
    rows_t = torch.empty((bsz, c, nwt, h), device=dev, dtype=f32)
    rows_s = torch.empty_like(rows_t)
    cols_t = torch.empty((bsz, c, w), device=dev, dtype=f32)
    cols_s = torch.empty_like(cols_t)
    gsum = torch.empty((bsz, c, nwt), device=dev, dtype=f32)
    grid1 = (bsz * triton.cdiv(c, bc1), nwt)
    _cpam_stats_kernel[grid1](
        rows_t, rows_s, cols_t, cols_s, gsum, t, s, *t.stride(), *s.stride(), c, h, w, nwt,
        BLOCK_C=bc1, BLOCK_H=min(cfg.stats_block_h, _pow2(h)), BLOCK_W=bw1,
        num_warps=cfg.num_warps, enable_fp_fusion=FP_FUSION,
    )
    gates = torch.empty((bsz, c, h + w), device=dev, dtype=f32)
    a = torch.empty((bsz, c), device=dev, dtype=f32)
    bp = min(cfg.gates_block_p, _pow2(max(h, w)))
    grid2 = (bsz, triton.cdiv(h, bp) + triton.cdiv(w, bp))
    _cpam_gates_kernel[grid2](
        gates, a, rows_t, rows_s, cols_t, cols_s, gsum, eca, wr, br, wh, ww, c, h, w, r, nwt, k,
        BLOCK_C=min(cfg.gates_block_c, _pow2(c)), BLOCK_R=_pow2(r), BLOCK_P=bp,
        num_warps=cfg.num_warps, enable_fp_fusion=FP_FUSION,
    )
    bc3 = min(cfg.apply_block_c, _pow2(c))
    bh3 = min(cfg.apply_block_h, _pow2(h))
    bw3 = min(cfg.apply_block_w, _pow2(w))
    grid3 = (bsz * triton.cdiv(c, bc3), triton.cdiv(h, bh3), triton.cdiv(w, bw3))
    _cpam_apply_kernel[grid3](
        v, t, s, a, gates, *t.stride(), *s.stride(), c, h, w,
        BLOCK_C=bc3, BLOCK_H=bh3, BLOCK_W=bw3, num_warps=cfg.num_warps, enable_fp_fusion=FP_FUSION,
    )
    return v


def aot_variants(mask_threshold: float = 0.5) -> list[dict]:
    """Production configurations for ahead-of-time compilation (`asfyolo_rt.kernels.aot`).

    Each entry: name, fn, pointers (arg -> Triton pointer type; other non-constexpr args are i32),
    constexprs, num_warps, fp_fusion, grid (launch grid, as in `cpam_triton`). The gates variants
    need C / r <= BLOCK_R. `mask_threshold` is unused (same signature as the mask-assembly module).
    """
    del mask_threshold
    common = {"num_warps": NUM_WARPS, "fp_fusion": FP_FUSION}
    stats_ptrs = {p: "*fp32" for p in ("rows_t_ptr", "rows_s_ptr", "cols_t_ptr", "cols_s_ptr", "gsum_ptr")}
    out = []
    for dt in ("fp32", "fp16"):
        out.append({
            "name": f"cpam_stats_{dt}", "fn": _cpam_stats_kernel,
            "pointers": {**stats_ptrs, "t_ptr": f"*{dt}", "s_ptr": f"*{dt}"},
            "constexprs": {"BLOCK_C": STATS_BLOCK_C, "BLOCK_H": STATS_BLOCK_H, "BLOCK_W": STATS_BLOCK_W},
            "grid": "(B * ceil(C / BLOCK_C), NWT = ceil(W / BLOCK_W))", **common,
        })
        out.append({
            "name": f"cpam_apply_{dt}", "fn": _cpam_apply_kernel,
            "pointers": {"v_ptr": f"*{dt}", "t_ptr": f"*{dt}", "s_ptr": f"*{dt}", "a_ptr": "*fp32",
                         "gates_ptr": "*fp32"},
            "constexprs": {"BLOCK_C": APPLY_BLOCK_C, "BLOCK_H": APPLY_BLOCK_H, "BLOCK_W": APPLY_BLOCK_W},
            "grid": "(B * ceil(C / BLOCK_C), ceil(H / BLOCK_H), ceil(W / BLOCK_W))", **common,
        })
    gate_ptrs = {a: "*fp32" for a in _cpam_gates_kernel.arg_names if a.endswith("_ptr")}
    for block_r in (16, 32):  # C / r for the n..l models (C <= 256) and x (C = 320, C / r = 20)
        out.append({
            "name": f"cpam_gates_r{block_r}", "fn": _cpam_gates_kernel, "pointers": gate_ptrs,
            "constexprs": {"BLOCK_C": GATES_BLOCK_C, "BLOCK_R": block_r, "BLOCK_P": GATES_BLOCK_P},
            "grid": "(B, ceil(H / BLOCK_P) + ceil(W / BLOCK_P))", **common,
        })
    return out
