"""Mask assembly in plain PyTorch: the specification of `asfyolo_rt.kernels.mask_assembly`, and the
CPU post-processing path.

Work per detection is bounded by its box: only the prototype pixels that the bilinear samples of
the box window touch are combined with the coefficients, and only the box window is sampled.

Cost, for detections i with clipped box windows of w_i x h_i output pixels and proto windows of
pw_i x ph_i prototype pixels (pw_i ~ w_i * scale / 4 + 2):
    sum_i pw_i * ph_i * NM multiply-adds   (logits at prototype resolution, inside the windows)
  + sum_i ph_i * w_i * ~10 element ops     (interpolation along x)
  + sum_i h_i * w_i * ~15 element ops      (interpolation along y, threshold, output)
all as whole-tensor ops over flat row/pixel lists (index_select gathers, no Python loop over
detections). Detections are processed in chunks of at most `CHUNK_PIXELS` window pixels, which
bounds temporary memory to ~100 bytes per chunk pixel (~25 MB). Measured with one thread on a
shared Zen 4 core (bench/results/mask_assembly.csv; +-30 % noise): 300 DSB2018-like cells at
640 x 640 (~0.3 M window pixels) take ~18 ms for packed masks and ~30 ms for the label map
(10-25 M window pixels per second); 1000 cells ~50 / ~90 ms; 10 cells ~1-2 ms.

Numerics (the Triton kernel uses the same source coordinates and weights; it interpolates each
prototype before the weighted sum instead of after, so logits agree to float32 rounding):
    output pixel (row y, col x), centre (x + 0.5, y + 0.5) in output-pixel units
    network coords   xn = (x + 0.5) * scale + pad_x          (float32)
    proto source     sx = xn * 0.25 - 0.5, clamped below at 0  (F.interpolate, align_corners=False)
    x0 = min(floor(sx), Wp - 1), x1 = min(x0 + 1, Wp - 1), lx = clamp(sx - x0, 0, 1)   (same for y)
    l(c) = coeffs . protos[:, c] at the four corners c
    logit = (1 - ly) * ((1 - lx) * l00 + lx * l01) + ly * ((1 - lx) * l10 + lx * l11)
    mask = sigmoid(logit) > threshold, evaluated as logit > logit(threshold) (same set, no exp).

`qdp_dense_reference` specifies the TensorRT plugin kernel (`_triton._mask_qdp_dense_kernel`): the
validation masks of `asfyolo_rt.infer.masks.process_masks_proto` at prototype resolution for a padded
(B, D) batch of detections. Its two dense building blocks, `mask_probabilities` and `crop_masks`, live
here and `asfyolo_rt.infer.masks` builds every dense mask variant on them (kernels sit below infer).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from asfyolo_rt.errors import ConfigError, DataError

# Largest number of window pixels processed at once by the reference (bounds temporary memory).
CHUNK_PIXELS = 1 << 18


def logit_threshold(threshold: float) -> float:
    """log(t / (1 - t)) rounded to float32: sigmoid(l) > t  <=>  l > logit_threshold(t)."""
    v = math.log(threshold / (1.0 - threshold))
    return float(torch.tensor(v, dtype=torch.float32).item())


def box_windows(boxes: Tensor, out_size: tuple[int, int]) -> Tensor:
    """Box-local windows of the output image covered by each box.

    A pixel (row y, col x) belongs to box (x1, y1, x2, y2) when its centre lies in the half-open
    box: x1 <= x + 0.5 < x2 and y1 <= y + 0.5 < y2, i.e. x in [ceil(x1 - 0.5), ceil(x2 - 0.5)),
    then clipped to the image. Exact in float32 for coordinates below 2**22 in magnitude; NaN
    coordinates give an empty window.

    boxes: (N, 4) float xyxy in output pixels. Returns (N, 4) int32 [x0, y0, w, h], w, h >= 0,
    0 <= x0 <= W, 0 <= y0 <= H (a window with w == 0 or h == 0 covers nothing).
    """
    h_img, w_img = out_size
    b = torch.nan_to_num(boxes.to(torch.float32), nan=-1.0, posinf=float(1 << 24), neginf=-1.0)
    lo_x = torch.ceil(b[:, 0] - 0.5).clamp(0, w_img)
    hi_x = torch.ceil(b[:, 2] - 0.5).clamp(0, w_img)
    lo_y = torch.ceil(b[:, 1] - 0.5).clamp(0, h_img)
    hi_y = torch.ceil(b[:, 3] - 0.5).clamp(0, h_img)
    w = (hi_x - lo_x).clamp(min=0)
    h = (hi_y - lo_y).clamp(min=0)
    nan_box = torch.isnan(boxes.to(torch.float32)).any(dim=1)
    w = torch.where(nan_box, torch.zeros_like(w), w)
    return torch.stack([lo_x, lo_y, w, h], dim=1).to(torch.int32)


def source_index(coord: Tensor, scale: float, pad: float, n_in: int) -> tuple[Tensor, Tensor, Tensor]:
    """Bilinear source of output pixel indices `coord` (int tensor) on a prototype axis of n_in pixels.

    Returns (i0, i1, lam): int64 corner indices in [0, n_in - 1] and float32 weights of i1 in [0, 1].
    """
    src = ((coord.to(torch.float32) + 0.5) * scale + pad) * 0.25 - 0.5
    src = src.clamp(min=0.0)
    i0 = torch.floor(src).clamp(max=n_in - 1)
    lam = (src - i0).clamp(0.0, 1.0)
    i0 = i0.to(torch.int64)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    return i0, i1, lam


def _take(values: Tensor, index: Tensor) -> Tensor:
    """values[index] for 1-D tensors (index_select is several times faster than advanced indexing)."""
    return torch.index_select(values, 0, index)


def _flat(counts: Tensor) -> tuple[Tensor, Tensor]:
    """For per-item counts (n,), return (item index, index within the item) of every element."""
    n = counts.shape[0]
    item = torch.repeat_interleave(torch.arange(n, device=counts.device), counts)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(item.shape[0], device=counts.device) - _take(start, item)
    return item, local


def window_pixels(
    protos: Tensor,
    coeffs: Tensor,
    windows: Tensor,
    batch_idx: Tensor,
    thr_logit: float,
    scale: float,
    pad: tuple[float, float],
    out_w: int,
    *,
    coords: bool = True,
) -> Iterator[tuple[Tensor | None, Tensor | None, Tensor]]:
    """Yield (det, pix, on) for every pixel of every window, in detection order, row-major inside
    a window: det (P,) int64 detection index, pix (P,) int64 flat offset y * W + x in the image of
    the detection, on (P,) bool. With coords=False only `on` is computed (det, pix are None).

    protos: (B, NM, Hp, Wp); coeffs: (N, NM); windows: (N, 4) int32 from `box_windows`;
    batch_idx: (N,) int64 in [0, B); out_w: W of the output image.
    """
    dev = protos.device
    bsz, nm, hp, wp = protos.shape
    pix_t = protos.permute(0, 2, 3, 1).reshape(bsz * hp * wp, nm)  # (B*Hp*Wp, NM): one row per proto pixel
    win = windows.to(device=dev, dtype=torch.int64)
    area = win[:, 2] * win[:, 3]
    # Chunk boundaries so that no chunk holds more than CHUNK_PIXELS window pixels (one big window
    # may exceed it alone).
    ends = torch.cumsum(area, 0).tolist()
    start, base = 0, 0
    n = win.shape[0]
    while start < n:
        stop = start + 1
        while stop < n and ends[stop] - base <= CHUNK_PIXELS:
            stop += 1
        base = ends[stop - 1]
        yield _chunk(pix_t, protos.shape, coeffs[start:stop], win[start:stop], batch_idx[start:stop], start,
                     thr_logit, scale, pad, out_w, coords)
        start = stop


def _chunk(
    pix_t: Tensor, shape: torch.Size, coeffs: Tensor, win: Tensor, batch: Tensor, first: int, thr_logit: float,
    scale: float, pad: tuple[float, float], out_w: int, coords: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor]:
    _, _, hp, wp = shape
    x0, y0, w, h = win.unbind(1)
    nonempty = (w > 0) & (h > 0)
    zero = torch.zeros_like(w)
    w = torch.where(nonempty, w, zero)
    h = torch.where(nonempty, h, zero)
    # Prototype window touched by the samples (sources are monotonic in the output coordinate).
    px_lo, _, _ = source_index(x0, scale, pad[0], wp)
    _, px_hi, _ = source_index(x0 + w - 1, scale, pad[0], wp)
    py_lo, _, _ = source_index(y0, scale, pad[1], hp)
    _, py_hi, _ = source_index(y0 + h - 1, scale, pad[1], hp)
    pw = torch.where(nonempty, px_hi - px_lo + 1, zero)
    ph = torch.where(nonempty, py_hi - py_lo + 1, zero)
    b = batch.to(torch.int64)
    # 1. Logits at prototype resolution inside each proto window: lq (Q,) float32, one dot product
    #    of NM terms per prototype pixel. Proto row r of window d starts at q_row[d-th rows].
    r_det, r_loc = _flat(ph)  # prototype rows of all proto windows
    q_row = _take((b * hp + py_lo) * wp + px_lo, r_det) + r_loc * wp  # flat (b, y, x) offset, x = px_lo
    q_det, q_col = _flat(_take(pw, r_det))
    q_off = _take(q_row, q_det) + q_col  # (Q,) flat offsets into (B, Hp, Wp)
    vals = _take(pix_t, q_off).to(torch.float32)  # (Q, NM)
    lq = (vals * _take(coeffs.to(torch.float32), _take(r_det, q_det))).sum(dim=1)
    del vals
    q_start = torch.cumsum(pw * ph, 0) - pw * ph
    # 2. Interpolate along x: for each proto row of the window and each output column, tx (T,).
    t_row, t_col = _flat(_take(w, r_det))  # (T,): proto row index (into r_*), output column in window
    xi0, xi1, lx = source_index(_take(_take(x0, r_det), t_row) + t_col, scale, pad[0], wp)
    row_base = _take(_take(q_start, r_det) + r_loc * _take(pw, r_det) - _take(px_lo, r_det), t_row)
    tx = (1.0 - lx) * _take(lq, row_base + xi0) + lx * _take(lq, row_base + xi1)
    t_start = torch.cumsum(ph * w, 0) - ph * w
    # 3. Interpolate along y at every window pixel (row quantities first, then expanded), threshold.
    o_det, o_loc = _flat(h)  # output rows of all windows
    yi0, yi1, ly = source_index(_take(y0, o_det) + o_loc, scale, pad[1], hp)
    w_o = _take(w, o_det)
    tb = _take(t_start - py_lo * w, o_det)
    p_row, p_col = _flat(w_o)
    top = _take(tx, _take(tb + yi0 * w_o, p_row) + p_col)
    bottom = _take(tx, _take(tb + yi1 * w_o, p_row) + p_col)
    ly_p = _take(ly, p_row)
    logit = (1.0 - ly_p) * top + ly_p * bottom
    on = logit > thr_logit
    if not coords:
        return None, None, on
    det = _take(o_det, p_row)
    pix = _take((_take(y0, o_det) + o_loc) * out_w + _take(x0, o_det), p_row) + p_col
    return det + first, pix, on


def rank_by_score(scores: Tensor) -> tuple[Tensor, Tensor]:
    """Deterministic priority: order (N,) int64 = detections by descending score, ties by lower
    index (stable sort); rank (N,) int64 = position of each detection in that order."""
    order = torch.sort(scores.to(torch.float32), descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.shape[0], device=order.device)
    return order, rank


def label_map_reference(
    protos: Tensor, coeffs: Tensor, windows: Tensor, batch_idx: Tensor, scores: Tensor,
    out_size: tuple[int, int], thr_logit: float, scale: float, pad: tuple[float, float],
) -> Tensor:
    """(B, H, W) int32: 1 + index of the highest-scoring detection covering each pixel, 0 if none."""
    h_img, w_img = out_size
    bsz = protos.shape[0]
    n = coeffs.shape[0]
    order, rank = rank_by_score(scores)
    best = torch.full((bsz * h_img * w_img,), n, dtype=torch.int64, device=protos.device)
    b = batch_idx.to(torch.int64)
    for det, pix, on in window_pixels(protos, coeffs, windows, b, thr_logit, scale, pad, w_img):
        assert det is not None and pix is not None
        det, pix = det[on], pix[on]
        best.scatter_reduce_(0, _take(b, det) * (h_img * w_img) + pix, _take(rank, det), reduce="amin")
    lut = torch.cat([order + 1, order.new_zeros(1)])
    return _take(lut, best).to(torch.int32).reshape(bsz, h_img, w_img)


def packed_reference(
    protos: Tensor, coeffs: Tensor, windows: Tensor, batch_idx: Tensor,
    thr_logit: float, scale: float, pad: tuple[float, float],
) -> Tensor:
    """(sum of window areas,) uint8: the box-local masks, row-major, concatenated in detection order."""
    parts = [on.to(torch.uint8) for _, _, on in
             window_pixels(protos, coeffs, windows, batch_idx.to(torch.int64), thr_logit, scale, pad, 0,
                           coords=False)]
    if not parts:
        return torch.zeros(0, dtype=torch.uint8, device=protos.device)
    return torch.cat(parts)


def dense_reference(
    protos: Tensor, coeffs: Tensor, windows: Tensor, batch_idx: Tensor, out_size: tuple[int, int],
    thr_logit: float, scale: float, pad: tuple[float, float],
) -> Tensor:
    """(N, H, W) uint8 in {0, 1}: one full-size mask per detection (memory N * H * W)."""
    n = coeffs.shape[0]
    h_img, w_img = out_size
    dense = torch.zeros(n * h_img * w_img, dtype=torch.uint8, device=protos.device)
    for det, pix, on in window_pixels(protos, coeffs, windows, batch_idx.to(torch.int64), thr_logit, scale, pad,
                                      w_img):
        assert det is not None and pix is not None
        dense[det * (h_img * w_img) + pix] = on.to(torch.uint8)
    return dense.reshape(n, h_img, w_img)


# ----------------------------------------------------------------------------- TensorRT plugin contract


def crop_masks(masks: Tensor, boxes: Tensor) -> Tensor:
    """Zero everything outside each box.

    masks: (n, h, w) float or bool; boxes: (n, 4) xyxy in the masks' pixel units.
    Returns (n, h, w), same dtype, pixels with x1 <= c < x2 and y1 <= r < y2 kept.
    """
    h, w = masks.shape[1:]
    cols = torch.arange(w, device=masks.device, dtype=boxes.dtype)[None, None, :]
    rows = torch.arange(h, device=masks.device, dtype=boxes.dtype)[None, :, None]
    x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
    inside = (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    return masks * inside if masks.dtype != torch.bool else masks & inside


def mask_probabilities(protos: Tensor, coeffs: Tensor) -> Tensor:
    """sigmoid(coeffs @ protos). protos: (nm, Hp, Wp) float; coeffs: (n, nm) float.

    Returns (n, Hp, Wp) float32 probabilities in [0, 1].
    """
    if protos.ndim != 3 or coeffs.ndim != 2 or coeffs.shape[1] != protos.shape[0]:
        raise DataError(
            f"mask assembly got protos {tuple(protos.shape)} and coeffs {tuple(coeffs.shape)}; "
            "expected (nm, Hp, Wp) and (n, nm) with the same nm",
            hint="pass the prototypes of one image (protos[b]) and that image's Detections.coeffs",
        )
    nm, hp, wp = protos.shape
    logits = coeffs.float() @ protos.float().reshape(nm, hp * wp)
    return logits.sigmoid().reshape(-1, hp, wp)


def qdp_check(protos: Tensor, coeffs: Tensor, boxes: Tensor, num_dets: Tensor,
              threshold: float) -> tuple[int, int, int, int, int]:
    """Validate the inputs of the plugin contract (`qdp_dense_reference`); returns (B, NM, Hp, Wp, D)."""
    if protos.dim() != 4 or not protos.is_floating_point():
        raise ConfigError(f"mask_qdp_dense: protos is {tuple(protos.shape)} {protos.dtype}; "
                          "expected (B, NM, Hp, Wp) float")
    bsz, nm, hp, wp = protos.shape
    if coeffs.dim() != 3 or coeffs.shape[0] != bsz or coeffs.shape[2] != nm or not coeffs.is_floating_point():
        raise ConfigError(f"mask_qdp_dense: coeffs is {tuple(coeffs.shape)} {coeffs.dtype}; "
                          f"expected ({bsz}, D, {nm}) float (one row of coefficients per detection slot)")
    d = coeffs.shape[1]
    if tuple(boxes.shape) != (bsz, d, 4) or not boxes.is_floating_point():
        raise ConfigError(f"mask_qdp_dense: boxes is {tuple(boxes.shape)} {boxes.dtype}; "
                          f"expected ({bsz}, {d}, 4) float xyxy in network-input pixels")
    if tuple(num_dets.shape) != (bsz,) or num_dets.is_floating_point():
        raise ConfigError(f"mask_qdp_dense: num_dets is {tuple(num_dets.shape)} {num_dets.dtype}; "
                          f"expected ({bsz},) integer")
    for name, x in (("coeffs", coeffs), ("boxes", boxes), ("num_dets", num_dets)):
        if x.device != protos.device:
            raise ConfigError(f"mask_qdp_dense: {name} is on {x.device}; expected the device of protos "
                              f"({protos.device})")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"mask_qdp_dense: threshold={threshold}; expected a probability in (0, 1)")
    return bsz, nm, hp, wp, d


def qdp_dense_reference(protos: Tensor, coeffs: Tensor, boxes: Tensor, num_dets: Tensor,
                        threshold: float = 0.5) -> Tensor:
    """The TensorRT plugin's masks: validation masks (`process_masks_proto`) of a padded detection batch.

    protos: (B, NM, Hp, Wp) float; coeffs: (B, D, NM) float; boxes: (B, D, 4) float xyxy in network-input
    pixels, the network input being (4 * Hp, 4 * Wp); num_dets: (B,) integer, rows d >= num_dets[b] are
    padding (values < 0 count as 0, > D as D).
    Returns (B, D, Hp, Wp) uint8 in {0, 1}: for valid rows, sigmoid(coeffs . protos) > threshold (float32)
    where x1 / 4 <= c < x2 / 4 and y1 / 4 <= r < y2 / 4 (no rounding), 0 elsewhere; 0 for padding rows.
    With threshold = 0.5 each image's valid rows equal process_masks_proto(protos[b], coeffs[b, :n],
    boxes[b, :n], (4 * Hp, 4 * Wp)).
    """
    bsz, _, hp, wp, d = qdp_check(protos, coeffs, boxes, num_dets, threshold)
    out = torch.zeros((bsz, d, hp, wp), dtype=torch.uint8, device=protos.device)
    for b in range(bsz):
        n = min(max(int(num_dets[b]), 0), d)
        if n == 0 or hp * wp == 0:
            continue
        probs = mask_probabilities(protos[b], coeffs[b, :n])  # (n, Hp, Wp) float32
        # boxes / 4 = boxes * (Wp / W): the multiply of process_masks_proto, exact in float32.
        out[b, :n] = (crop_masks(probs, boxes[b, :n].float() * 0.25) > threshold).to(torch.uint8)
    return out
