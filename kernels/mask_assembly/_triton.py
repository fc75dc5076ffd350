"""Triton mask assembly: one program per (detection, stride of tiles of its box window).

Program (i, j) of a (N, PROGS) grid walks the tiles j, j + PROGS, ... of detection i's clipped box
window (from `reference.box_windows`), so the work per detection is bounded by its box and no host
synchronisation is needed to size the grid. For each BLOCK_H x BLOCK_W tile it gathers the four
bilinear corners of BLOCK_K prototypes at a time, interpolates them and accumulates their
coefficient-weighted sum in float32 (one accumulator and one reduction per step; equal to
interpolating the summed logits up to float32 rounding), then tests `logit > THR` (THR = logit of
the threshold, a constexpr: TensorRT AOT plugins take integer scalars only), and, by MODE:

- MODE_LABEL:  atomic_min of the detection's score rank into a (B, H, W) int32 rank map
               (initialised to N); `_label_finalize_kernel` then maps rank -> index + 1 (N -> 0).
               Integer atomic min is order-independent, so the result is deterministic.
- MODE_PACKED: the box-local uint8 mask at `offsets[i]`, row-major (w * h bytes).
- MODE_DENSE:  the window of an (N, H, W) uint8 buffer that the launcher zeroes first.

`_mask_qdp_dense_kernel` is the kernel of the TensorRT AOT plugin `asfyolo_rt::mask_assembly`
(export/engine/plugin.py): validation masks at prototype resolution (`process_masks_proto`) for a
padded (B, D) batch of detections, parameters ordered (inputs, integer scalars, output) as TensorRT
launches them, every output element written.

This is the only module of `asfyolo_rt.kernels.mask_assembly` that imports Triton.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from asfyolo_rt.errors import ConfigError, KernelUnavailableError

MODE_LABEL = 0
MODE_PACKED = 1
MODE_DENSE = 2

# Block sizes. No GPU was available when these were chosen, so none is backed by a measurement yet
# (bench/bench_mask_assembly.py records one when run on a GPU). Reasoning: DSB2018 boxes are ~26 x 26
# px at 640 (5th pct 4 x 4, 95th 80 x 80); 16 x 16 tiles waste at most 15 px per row on small cells,
# and 4 programs per detection cover a median cell (2 x 2 tiles) in one step while large cells loop.
# 8 prototypes per step: 4 corners x 8 x 256 gathered values in flight; the AOT compile (sm_87..90)
# reports 64-72 registers and no spills on sm_87 (`asfyolo-rt kernels compile`).
BLOCK_H = 16
BLOCK_W = 16
BLOCK_K = 8
PROGS_PER_DET = 4
NUM_WARPS = 4
# No fused multiply-add contraction: the logits then round like the reference's separate multiply
# and add, so masks differ from it only where the logit lies within float32 rounding of THR.
FP_FUSION = False
FINALIZE_BLOCK = 1024
# TensorRT plugin kernel (mask_qdp_dense_*): flat blocks of a detection's Hp * Wp plane, 4 prototypes per
# step (4 x 512 / 128 threads = 16 loads in flight per thread); P programs per detection stride over its
# 50 blocks at 640 x 640 (Hp = Wp = 160). Unmeasured, like the sizes above; chosen by the sm_87 compile:
# 44 registers, no spills (8 x 512: 72, 4 x 1024: 115), so ~11 blocks of 4 warps fit an SM.
# QDP_PROGRAMS_PER_DET must equal export/engine/plugin.py's (the kernel itself works for any grid y).
QDP_BLOCK = 512
QDP_BLOCK_K = 4
QDP_PROGRAMS_PER_DET = 4


@dataclass(frozen=True)
class MaskConfig:
    """Tile sizes (powers of two) and programs per detection. Tests use large tiles: the Triton
    interpreter pays per program instance, not per element."""

    block_h: int = BLOCK_H
    block_w: int = BLOCK_W
    block_k: int = BLOCK_K
    progs_per_det: int = PROGS_PER_DET
    num_warps: int = NUM_WARPS


@triton.jit
def _mask_assembly_kernel(
    out_ptr,  # LABEL: (B, H, W) int32 rank map; PACKED: (total,) uint8; DENSE: (N, H, W) uint8
    protos_ptr,  # (B, NM, Hp, Wp) float32/float16
    coeffs_ptr,  # (N, NM) float
    windows_ptr,  # (N, 4) int32 [x0, y0, w, h]
    batch_ptr,  # (N,) int32
    aux_ptr,  # LABEL: (N,) int32 score rank; PACKED: (N + 1,) int64 offsets; DENSE: unused
    letterbox_ptr,  # (3,) float32 [scale, pad_x, pad_y]
    p_sb, p_sk, p_sh, p_sw, c_sn, c_sk,
    Hp, Wp, H, W,
    THR: tl.constexpr, MODE: tl.constexpr, NM: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    i = tl.program_id(0)
    j = tl.program_id(1)
    progs = tl.num_programs(1)
    x0 = tl.load(windows_ptr + i * 4)
    y0 = tl.load(windows_ptr + i * 4 + 1)
    w = tl.load(windows_ptr + i * 4 + 2)
    h = tl.load(windows_ptr + i * 4 + 3)
    b = tl.load(batch_ptr + i)
    scale = tl.load(letterbox_ptr)
    pad_x = tl.load(letterbox_ptr + 1)
    pad_y = tl.load(letterbox_ptr + 2)
    n_tx = (w + BLOCK_W - 1) // BLOCK_W  # (no tl.cdiv / helper calls: each costs ~1 ms in the interpreter)
    n_tiles = n_tx * ((h + BLOCK_H - 1) // BLOCK_H)
    p_base = protos_ptr + b.to(tl.int64) * p_sb
    for tile in range(j, n_tiles, progs):
        ty = tile // n_tx
        tx = tile % n_tx
        ly_loc = ty * BLOCK_H + tl.arange(0, BLOCK_H)  # row inside the window
        lx_loc = tx * BLOCK_W + tl.arange(0, BLOCK_W)
        # Bilinear sources (reference.source_index): src = ((i + 0.5) * scale + pad) / 4 - 0.5, >= 0.
        sy = tl.maximum((((ly_loc + y0).to(tl.float32) + 0.5) * scale + pad_y) * 0.25 - 0.5, 0.0)
        fy = tl.minimum(tl.floor(sy), Hp - 1.0)
        wy = tl.minimum(tl.maximum(sy - fy, 0.0), 1.0)[None, :, None]
        yi0 = fy.to(tl.int32)
        yi1 = tl.minimum(yi0 + 1, Hp - 1)
        sx = tl.maximum((((lx_loc + x0).to(tl.float32) + 0.5) * scale + pad_x) * 0.25 - 0.5, 0.0)
        fx = tl.minimum(tl.floor(sx), Wp - 1.0)
        wx = tl.minimum(tl.maximum(sx - fx, 0.0), 1.0)[None, None, :]
        xi0 = fx.to(tl.int32)
        xi1 = tl.minimum(xi0 + 1, Wp - 1)
        r0 = (yi0 * p_sh)[None, :, None]
        r1 = (yi1 * p_sh)[None, :, None]
        q0 = (xi0 * p_sw)[None, None, :]
        q1 = (xi1 * p_sw)[None, None, :]
        logit = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
        for k0 in range(0, NM, BLOCK_K):
            kk = k0 + tl.arange(0, BLOCK_K)
            k_ok = kk < NM
            cf = tl.load(coeffs_ptr + i.to(tl.int64) * c_sn + kk * c_sk, mask=k_ok, other=0.0).to(tl.float32)
            kb = p_base + (kk * p_sk)[:, None, None]
            km = k_ok[:, None, None]
            # Corner indices are clamped into the prototype grid, so only k needs a mask.
            p00 = tl.load(kb + r0 + q0, mask=km, other=0.0).to(tl.float32)
            p01 = tl.load(kb + r0 + q1, mask=km, other=0.0).to(tl.float32)
            p10 = tl.load(kb + r1 + q0, mask=km, other=0.0).to(tl.float32)
            p11 = tl.load(kb + r1 + q1, mask=km, other=0.0).to(tl.float32)
            top = (1.0 - wx) * p00 + wx * p01
            bottom = (1.0 - wx) * p10 + wx * p11
            logit += tl.sum(cf[:, None, None] * ((1.0 - wy) * top + wy * bottom), axis=0)
        on = logit > THR
        rows = ly_loc[:, None]
        cols = lx_loc[None, :]
        inside = (rows < h) & (cols < w)
        if MODE == 0:  # MODE_LABEL (literal: Triton rejects non-constexpr globals)
            rank = tl.load(aux_ptr + i)
            pix = (b.to(tl.int64) * H + (y0 + rows)) * W + (x0 + cols)
            # Relaxed ordering suffices: only the values after the kernel ends are read.
            tl.atomic_min(out_ptr + pix, tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.int32) + rank, mask=inside & on,
                          sem="relaxed")
        elif MODE == 1:  # MODE_PACKED
            start = tl.load(aux_ptr + i)
            tl.store(out_ptr + start + rows * w + cols, on.to(tl.uint8), mask=inside)
        else:  # MODE_DENSE
            pix = (i.to(tl.int64) * H + (y0 + rows)) * W + (x0 + cols)
            tl.store(out_ptr + pix, on.to(tl.uint8), mask=inside)


@triton.jit
def _label_finalize_kernel(
    label_ptr,  # (total,) int32: score rank in, 1-based detection index (0 = background) out; in place
    order_ptr,  # (N,) int32: detection index of each rank
    total, N,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < total
    rank = tl.load(label_ptr + offs, mask=m, other=0)
    hit = rank < N
    idx = tl.load(order_ptr + rank, mask=m & hit, other=-1)
    tl.store(label_ptr + offs, tl.where(hit, idx + 1, 0), mask=m)


@triton.jit
def _mask_qdp_dense_kernel(
    protos_ptr,  # (B, NM, Hp, Wp) float32, contiguous
    coeffs_ptr,  # (B, D, NM) float32, contiguous
    boxes_ptr,  # (B, D, 4) float32 xyxy in network-input pixels (4 x the prototype grid)
    num_dets_ptr,  # (B,) int32: rows d >= num_dets[b] are padding
    B, D, Hp, Wp,  # int32 scalars (B is part of the plugin ABI; the grid already bounds it)
    masks_ptr,  # (B, D, Hp, Wp) uint8 output, every element written
    THR: tl.constexpr, NM: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK: tl.constexpr,
):
    """TensorRT AOT plugin kernel: parameters (inputs, integer scalars, output). Grid (B * D, P) for any P:
    program (b * D + d, j) writes flat blocks j, j + P, ... of mask (b, d)'s Hp * Wp plane."""
    i = tl.program_id(0)
    j = tl.program_id(1)
    progs = tl.num_programs(1)
    b = i // D
    d = i - b * D
    hw = Hp * Wp
    i64 = i.to(tl.int64)
    valid = d < tl.load(num_dets_ptr + b)
    # Crop of process_masks_proto: box / 4 (exact in float32), keep x1 <= c < x2 and y1 <= r < y2.
    x1 = tl.load(boxes_ptr + i64 * 4) * 0.25
    y1 = tl.load(boxes_ptr + i64 * 4 + 1) * 0.25
    x2 = tl.load(boxes_ptr + i64 * 4 + 2) * 0.25
    y2 = tl.load(boxes_ptr + i64 * 4 + 3) * 0.25
    # Necessary for any pixel to be kept (false for NaN boxes): blocks fail it cheaply below.
    any_pixel = valid & (x2 > x1) & (y2 > y1) & (x2 > 0.0) & (y2 > 0.0) & (x1 < Wp) & (y1 < Hp)
    p_base = protos_ptr + b.to(tl.int64) * NM * hw
    c_base = coeffs_ptr + i64 * NM
    o_base = masks_ptr + i64 * hw
    n_blocks = (hw + BLOCK - 1) // BLOCK
    for blk in range(j, n_blocks, progs):
        start = blk * BLOCK
        offs = start + tl.arange(0, BLOCK)
        in_plane = offs < hw
        res = tl.zeros((BLOCK,), dtype=tl.uint8)
        # This block holds rows row_lo..row_hi: unless one may be in the box, it only stores zeros.
        row_lo = (start // Wp).to(tl.float32)
        row_hi = ((start + BLOCK - 1) // Wp).to(tl.float32)
        if any_pixel & (row_hi >= y1) & (row_lo < y2):
            r = offs // Wp
            cx = (offs - r * Wp).to(tl.float32)
            ry = r.to(tl.float32)
            inside = in_plane & (cx >= x1) & (cx < x2) & (ry >= y1) & (ry < y2)
            acc = tl.zeros((BLOCK,), dtype=tl.float32)
            for k0 in range(0, NM, BLOCK_K):
                kk = k0 + tl.arange(0, BLOCK_K)
                k_ok = kk < NM
                cf = tl.load(c_base + kk, mask=k_ok, other=0.0)
                # Only pixels inside the box read prototypes; int32 offsets (NM * Hp * Wp < 2**31) save registers.
                p = tl.load(p_base + (kk[:, None] * hw + offs[None, :]),
                            mask=k_ok[:, None] & inside[None, :], other=0.0)
                acc += tl.sum(cf[:, None] * p, axis=0)
            # sigmoid(acc) > threshold  <=>  acc > THR = logit(threshold): no exp, no float scalar argument.
            res = (inside & (acc > THR)).to(tl.uint8)
        tl.store(o_base + offs, res, mask=in_plane)


# True when TRITON_INTERPRET=1 was set before this module was imported: kernels then run on CPU tensors.
INTERPRETED = type(_mask_assembly_kernel).__name__ == "InterpretedFunction"


def _check(protos: Tensor) -> None:
    if protos.device.type != "cuda" and not (INTERPRETED and protos.device.type == "cpu"):
        raise KernelUnavailableError(
            f"the Triton mask-assembly kernel needs CUDA tensors; the prototypes are on {protos.device}",
            hint="use impl='auto' or impl='torch' for CPU tensors (or TRITON_INTERPRET=1 for tests)",
        )


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _launch(
    out: Tensor, aux: Tensor, mode: int, protos: Tensor, coeffs: Tensor, windows: Tensor,
    batch_idx: Tensor, out_size: tuple[int, int], thr_logit: float, scale: float,
    pad: tuple[float, float], cfg: MaskConfig,
) -> None:
    n = coeffs.shape[0]
    if n == 0:
        return
    _, nm, hp, wp = protos.shape
    lb = torch.tensor([scale, pad[0], pad[1]], dtype=torch.float32, device=protos.device)
    grid = (n, cfg.progs_per_det)
    _mask_assembly_kernel[grid](
        out, protos, coeffs, windows, batch_idx, aux, lb,
        *protos.stride(), *coeffs.stride(), hp, wp, out_size[0], out_size[1],
        THR=thr_logit, MODE=mode, NM=nm, BLOCK_K=min(cfg.block_k, _pow2(nm)),
        BLOCK_H=cfg.block_h, BLOCK_W=cfg.block_w, num_warps=cfg.num_warps, enable_fp_fusion=FP_FUSION,
    )


def label_map_triton(
    protos: Tensor, coeffs: Tensor, windows: Tensor, batch_idx: Tensor, rank: Tensor, order: Tensor,
    out_size: tuple[int, int], thr_logit: float, scale: float, pad: tuple[float, float],
    config: MaskConfig | None = None,
) -> Tensor:
    """(B, H, W) int32 label map. windows: (N, 4) int32; batch_idx, rank, order: (N,) int32."""
    _check(protos)
    cfg = config or MaskConfig()
    n = coeffs.shape[0]
    label = torch.full((protos.shape[0], *out_size), n, dtype=torch.int32, device=protos.device)
    if n == 0 or label.numel() == 0:
        return label.zero_()
    _launch(label, rank, MODE_LABEL, protos, coeffs, windows, batch_idx, out_size, thr_logit, scale, pad, cfg)
    total = label.numel()
    _label_finalize_kernel[(triton.cdiv(total, FINALIZE_BLOCK),)](
        label, order, total, n, BLOCK=FINALIZE_BLOCK, num_warps=cfg.num_warps, enable_fp_fusion=FP_FUSION
    )
    return label


def packed_triton(
    protos: Tensor, coeffs: Tensor, windows: Tensor, batch_idx: Tensor, offsets: Tensor,
    thr_logit: float, scale: float, pad: tuple[float, float], config: MaskConfig | None = None,
) -> Tensor:
    """(offsets[-1],) uint8 box-local masks. offsets: (N + 1,) int64 (one host sync for the size)."""
    _check(protos)
    total = int(offsets[-1].item()) if offsets.numel() else 0
    data = torch.empty(total, dtype=torch.uint8, device=protos.device)
    if total:
        _launch(data, offsets, MODE_PACKED, protos, coeffs, windows, batch_idx, (0, 0), thr_logit, scale,
                pad, config or MaskConfig())
    return data


def dense_triton(
    protos: Tensor, coeffs: Tensor, windows: Tensor, batch_idx: Tensor, out_size: tuple[int, int],
    thr_logit: float, scale: float, pad: tuple[float, float], config: MaskConfig | None = None,
) -> Tensor:
    """(N, H, W) uint8 full-size masks (zeros outside each box window)."""
    _check(protos)
    n = coeffs.shape[0]
    dense = torch.zeros((n, *out_size), dtype=torch.uint8, device=protos.device)
    if dense.numel():
        _launch(dense, windows, MODE_DENSE, protos, coeffs, windows, batch_idx, out_size, thr_logit, scale,
                pad, config or MaskConfig())
    return dense


@dataclass(frozen=True)
class QdpConfig:
    """Block (power of two) and prototypes per step of `_mask_qdp_dense_kernel`, programs per detection."""

    block: int = QDP_BLOCK
    block_k: int = QDP_BLOCK_K
    progs_per_det: int = QDP_PROGRAMS_PER_DET
    num_warps: int = NUM_WARPS


def mask_qdp_dense(
    protos: Tensor, coeffs: Tensor, boxes: Tensor, num_dets: Tensor, threshold: float = 0.5, *,
    out: Tensor | None = None, config: QdpConfig | None = None,
) -> Tensor:
    """Launch the TensorRT plugin kernel from PyTorch (tests, benchmarks): validation masks of a padded batch.

    protos: (B, NM, Hp, Wp) float; coeffs: (B, D, NM) float; boxes: (B, D, 4) float xyxy in network-input
    pixels (network input = 4 * (Hp, Wp)); num_dets: (B,) integer, rows d >= num_dets[b] are padding.
    Float inputs are converted to contiguous float32, as the plugin receives them. out: optional
    (B, D, Hp, Wp) contiguous uint8 to write into (every element is overwritten).
    Returns (B, D, Hp, Wp) uint8 in {0, 1}: sigmoid(coeffs . protos) > threshold inside box / 4
    (x1 <= c < x2, y1 <= r < y2) for valid rows, 0 elsewhere (`reference.qdp_dense_reference`).
    """
    from asfyolo_rt.kernels.mask_assembly.reference import logit_threshold, qdp_check

    bsz, nm, hp, wp, d = qdp_check(protos, coeffs, boxes, num_dets, threshold)
    _check(protos)
    shape = (bsz, d, hp, wp)
    if out is None:
        out = torch.empty(shape, dtype=torch.uint8, device=protos.device)
    elif (tuple(out.shape) != shape or out.dtype != torch.uint8 or not out.is_contiguous()
          or out.device != protos.device):
        raise ConfigError(f"mask_qdp_dense: out is {tuple(out.shape)} {out.dtype} on {out.device}; expected a "
                          f"contiguous {shape} uint8 tensor on {protos.device}")
    if out.numel() == 0:
        return out
    cfg = config or QdpConfig()
    _mask_qdp_dense_kernel[(bsz * d, cfg.progs_per_det)](
        protos.to(torch.float32).contiguous(), coeffs.to(torch.float32).contiguous(),
        boxes.to(torch.float32).contiguous(), num_dets.to(torch.int32).contiguous(),
        bsz, d, hp, wp, out,
        THR=logit_threshold(threshold), NM=nm, BLOCK_K=min(cfg.block_k, _pow2(nm)), BLOCK=cfg.block,
        num_warps=cfg.num_warps, enable_fp_fusion=FP_FUSION,
    )
    return out


def aot_variants(mask_threshold: float = 0.5) -> list[dict]:
    """Production configurations for ahead-of-time compilation (`asfyolo_rt.kernels.aot`).

    One variant per output mode and prototype dtype, with the threshold baked in as the constexpr
    THR = logit(mask_threshold) (TensorRT AOT plugins accept integer scalars only), NM = 32, plus the
    label finalisation kernel and the TensorRT plugin kernel `mask_qdp_dense_fp32`. Each entry: name,
    fn, pointers, constexprs, num_warps, fp_fusion, grid.
    """
    from asfyolo_rt.kernels.mask_assembly.reference import logit_threshold

    thr = logit_threshold(mask_threshold)
    common = {"num_warps": NUM_WARPS, "fp_fusion": FP_FUSION}
    aux = {MODE_LABEL: "*i32", MODE_PACKED: "*i64", MODE_DENSE: "*i32"}
    dst = {MODE_LABEL: "*i32", MODE_PACKED: "*u8", MODE_DENSE: "*u8"}
    out = []
    for mode, mode_name in ((MODE_LABEL, "label"), (MODE_PACKED, "packed"), (MODE_DENSE, "dense")):
        for dt in ("fp32", "fp16"):
            out.append({
                "name": f"mask_{mode_name}_{dt}", "fn": _mask_assembly_kernel,
                "pointers": {"out_ptr": dst[mode], "protos_ptr": f"*{dt}", "coeffs_ptr": "*fp32",
                             "windows_ptr": "*i32", "batch_ptr": "*i32", "aux_ptr": aux[mode],
                             "letterbox_ptr": "*fp32"},
                "constexprs": {"THR": thr, "MODE": mode, "NM": 32, "BLOCK_K": BLOCK_K, "BLOCK_H": BLOCK_H,
                               "BLOCK_W": BLOCK_W},
                "grid": f"(N, {PROGS_PER_DET})", **common,
            })
    # The TensorRT plugin kernel: signature (inputs, int32 scalars B, D, Hp, Wp, output), as QDP AOT
    # launches it (export/engine/plugin.py QDP_SIGNATURE).
    out.append({
        "name": "mask_qdp_dense_fp32", "fn": _mask_qdp_dense_kernel,
        "pointers": {"protos_ptr": "*fp32", "coeffs_ptr": "*fp32", "boxes_ptr": "*fp32",
                     "num_dets_ptr": "*i32", "masks_ptr": "*u8"},
        "constexprs": {"THR": thr, "NM": 32, "BLOCK_K": QDP_BLOCK_K, "BLOCK": QDP_BLOCK},
        "grid": f"(B * D, {QDP_PROGRAMS_PER_DET})", **common,
    })
    out.append({
        "name": "mask_label_finalize", "fn": _label_finalize_kernel,
        "pointers": {"label_ptr": "*i32", "order_ptr": "*i32"}, "constexprs": {"BLOCK": FINALIZE_BLOCK},
        "grid": "(ceil(B * H * W / BLOCK),)", **common,
    })
    return out
