"""The post-processing of the pipeline in NumPy and OpenCV only: the torch-free CPU path.

NumPy twins of the torch post-processing (importing torch costs ~1.3 s per command; a CPU inference path
over exported ONNX / OpenVINO models needs none of it). Each function gives the result of its reference:

* `nms`                 -> `asfyolo_rt.infer.nms.nms` (CPU: OpenCV greedy NMS, then score order).
* `non_max_suppression` -> `asfyolo_rt.infer.nms.non_max_suppression` (hard, class-aware NMS).
* `DetArrays`           -> `asfyolo_rt.infer.nms.Detections`.
* `PackedArrays`, `concat_packed`, `PackedArrays.select`
                        -> `asfyolo_rt.kernels.mask_assembly.PackedMasks`, and `concat_packed` /
                           `select_packed` of `asfyolo_rt.runtime.stages`.
* `assemble_masks`      -> `mask_assembly(..., output="masks", impl="torch")`.
* `label_map`           -> `asfyolo_rt.infer.predict.label_map_from_packed`.
* `mask_areas`, `visible_pixels` -> the stages' functions of the same names.

Exactness: everything is bit-identical to the references except the mask logits, whose 32-term dot
products are summed in another order than torch sums them (float32 rounding, ~1e-6 relative): a mask pixel
can differ only where its probability lies within ~1e-5 of the threshold. The interpolation and the
threshold repeat the reference's float32 operations one for one (`kernels/mask_assembly/reference.py`).

Imports: numpy, cv2, the standard library and `asfyolo_rt.errors` only (tests/runtime/test_lean_ops.py
checks it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import cv2
import numpy as np

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.kernels.assembly_args import check_geometry

__all__ = ["MAX_WH", "DetArrays", "PackedArrays", "assemble_masks", "box_windows", "concat_packed", "label_map",
           "mask_areas", "nms", "non_max_suppression", "visible_pixels"]

MAX_WH = 7680  # px: per-class box offset for class-aware NMS (asfyolo_rt.infer.nms.MAX_WH)
ASSEMBLY_CHUNK = 1 << 18  # elements per chunk of `assemble_masks`: temporaries <= 2 MiB, kept in cache
DENSE_CROPS = 0.25  # crop pixels / prototype pixels from which `assemble_masks` transposes the prototypes


# ----------------------------------------------------------------------------------------------- NMS
def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy hard NMS (suppression at IoU > iou, continuous xyxy boxes, no "+1 pixel").

    boxes: (n, 4) float xyxy; scores: (n,) float. Returns (k,) int64 indices of the kept boxes, by score
    descending, ties in input order: those of `asfyolo_rt.infer.nms.nms` on CPU tensors.
    """
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (boxes.shape[0],):
        raise ConfigError(f"NMS got boxes {boxes.shape} and scores {scores.shape}; expected (n, 4) and (n,)")
    if not 0.0 <= iou <= 1.0:
        raise ConfigError(f"iou_threshold={iou} is outside [0, 1]")
    n = boxes.shape[0]
    if n <= 1:
        return np.arange(n, dtype=np.int64)
    b = boxes.astype(np.float64)
    xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)
    # OpenCV keeps scores > score_threshold >= 0: shift by 1 to keep every box (as the reference does)
    # (arrays go in as they are: OpenCV converts them like the reference's lists, without the Python lists)
    kept = cv2.dnn.NMSBoxes(cast(Any, xywh), cast(Any, scores.astype(np.float64) + 1.0), 0.0, float(iou))
    key = np.sort(np.asarray(kept, dtype=np.int64).reshape(-1))
    return key[np.argsort(-scores[key], kind="stable")]


@dataclass
class DetArrays:
    """Detections of one image after NMS, sorted by score, highest first (`Detections` in NumPy).

    boxes: (n, 4) float32 xyxy (network-input pixels); scores: (n,) float32 objectness x class probability;
    classes: (n,) int64 class index; coeffs: (n, nm) float32 raw mask coefficients.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    coeffs: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, nm: int = 32) -> DetArrays:
        """Zero detections with correctly shaped, typed arrays."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                   np.zeros((0, nm), np.float32))

    def subset(self, index: np.ndarray | Sequence[int]) -> DetArrays:
        """The detections `index` (integer indices in that order, or a boolean mask)."""
        idx = np.asarray(index)
        return DetArrays(self.boxes[idx], self.scores[idx], self.classes[idx], self.coeffs[idx])


def non_max_suppression(pred: np.ndarray, *, conf_threshold: float = 0.001, iou_threshold: float = 0.6,
                        max_det: int = 300, nm: int = 32, max_nms: int = 30000) -> list[DetArrays]:
    """The official post-processing of raw model outputs, hard class-aware NMS (ASF-YOLO.md §6.1).

    pred: (B, N, 5 + nc + nm) float (float32 arithmetic): cx, cy, w, h (network-input pixels),
    objectness, nc class probabilities, nm raw mask coefficients (`asfyolo_rt.infer.backends`).

    Per image: candidates with objectness > conf_threshold; confidence = objectness x probability of the
    best class (first maximum); keep confidence > conf_threshold; the max_nms most confident (stable sort)
    go into one NMS call, classes apart through a class x MAX_WH box offset; at most max_det kept.
    Returns one `DetArrays` per image: those of `non_max_suppression(soft=False, agnostic=False)`.
    """
    pred = np.asarray(pred)
    if pred.ndim != 3 or pred.shape[-1] < 6 + nm or not np.issubdtype(pred.dtype, np.floating):
        raise ConfigError(
            f"non_max_suppression got pred of shape {pred.shape} {pred.dtype}; expected float "
            f"(B, N, 5 + nc + {nm}) with nc >= 1",
            hint="pass the decoded inference output (not the raw training levels) and the right nm",
        )
    if not 0.0 <= conf_threshold < 1.0:
        raise ConfigError(f"conf_threshold={conf_threshold} is outside [0, 1)")
    if max_det < 1 or max_nms < 1:
        raise ConfigError(f"max_det={max_det}, max_nms={max_nms}; expected positive integers")
    pred = pred.astype(np.float32, copy=False)
    nc = pred.shape[-1] - 5 - nm
    thr = np.float32(conf_threshold)  # torch compares float32 tensors with a Python float in float32
    out: list[DetArrays] = []
    for x in pred:
        cand = np.flatnonzero(x[:, 4] > thr)
        cls_conf = x[cand, 5 : 5 + nc] * x[cand, 4:5]
        cls = np.argmax(cls_conf, axis=1) if cand.size else np.zeros(0, np.int64)
        conf = np.take_along_axis(cls_conf, cls[:, None], axis=1)[:, 0]
        sel = np.flatnonzero(conf > thr)
        if sel.size == 0:
            out.append(DetArrays.empty(nm))
            continue
        order = sel[np.argsort(-conf[sel], kind="stable")[:max_nms]]
        rows, conf, cls = cand[order], conf[order], cls[order].astype(np.int64)
        xywh = x[rows, :4]
        half = xywh[:, 2:4] / np.float32(2)
        boxes = np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)
        shifted = boxes + cls[:, None].astype(np.float32) * np.float32(MAX_WH)
        keep = nms(shifted, conf, iou_threshold)[:max_det]
        out.append(DetArrays(boxes[keep], conf[keep], cls[keep], x[rows[keep], 5 + nc :].copy()))
    return out


# ------------------------------------------------------------------------------------- packed masks
@dataclass(frozen=True)
class PackedArrays:
    """Box-local binary masks of N detections (`PackedMasks` in NumPy).

    data:      (sum_i w_i * h_i,) uint8 in {0, 1}; mask i is data[offsets[i]:offsets[i+1]] reshaped to
               (h_i, w_i), row-major.
    offsets:   (N + 1,) int64, offsets[0] = 0.
    windows:   (N, 4) int32 [x0, y0, w, h]: mask i covers output rows y0..y0+h-1, cols x0..x0+w-1.
    batch_idx: (N,) int64 image index.
    size:      (H, W) of the output image.
    """

    data: np.ndarray
    offsets: np.ndarray
    windows: np.ndarray
    batch_idx: np.ndarray
    size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    def mask(self, i: int) -> np.ndarray:
        """(h_i, w_i) uint8 view of detection i's box-local mask."""
        _, _, w, h = (int(v) for v in self.windows[i])
        start = int(self.offsets[i])
        return self.data[start : start + w * h].reshape(h, w)

    def to_dense(self) -> np.ndarray:
        """(N, H, W) uint8: the full-size masks (memory N * H * W)."""
        h_img, w_img = self.size
        dense = np.zeros((len(self), h_img, w_img), np.uint8)
        for i in range(len(self)):
            x0, y0, w, h = (int(v) for v in self.windows[i])
            if w and h:
                dense[i, y0 : y0 + h, x0 : x0 + w] = self.mask(i)
        return dense

    def select(self, index: np.ndarray | Sequence[int]) -> PackedArrays:
        """The masks of detections `index` (integer indices, in that order); batch_idx becomes 0."""
        idx = np.asarray(index)
        if idx.dtype == np.bool_:
            raise ConfigError("PackedArrays.select got a boolean mask; expected integer indices",
                              hint="pass np.flatnonzero(mask)")
        idx = idx.astype(np.int64).reshape(-1)
        chunks = [self.data[int(self.offsets[i]) : int(self.offsets[i + 1])] for i in idx]
        lengths = np.array([c.size for c in chunks], np.int64)
        offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(lengths)])
        data = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
        windows = self.windows[idx] if idx.size else np.zeros((0, 4), np.int32)
        return PackedArrays(data, offsets, windows, np.zeros(idx.size, np.int64), self.size)


def concat_packed(parts: Sequence[PackedArrays], size: tuple[int, int]) -> PackedArrays:
    """One PackedArrays from several (same output size), in order; batch_idx becomes 0."""
    if not parts:
        return PackedArrays(np.zeros(0, np.uint8), np.zeros(1, np.int64), np.zeros((0, 4), np.int32),
                            np.zeros(0, np.int64), size)
    offs, base = [np.zeros(1, np.int64)], 0
    for p in parts:
        o = p.offsets.astype(np.int64)
        offs.append(o[1:] + base)
        base += int(o[-1])
    windows = np.concatenate([p.windows for p in parts])
    return PackedArrays(np.concatenate([p.data for p in parts]), np.concatenate(offs), windows,
                        np.zeros(windows.shape[0], np.int64), size)


def mask_areas(masks: PackedArrays) -> np.ndarray:
    """(n,) int64 mask pixels of each detection."""
    cum = np.concatenate([[0], np.cumsum(masks.data, dtype=np.int64)])
    offsets = masks.offsets.astype(np.int64)
    return np.asarray(cum[offsets[1:]] - cum[offsets[:-1]], np.int64)


def visible_pixels(label_map: np.ndarray, n: int) -> np.ndarray:
    """(n,) int64 pixels of each label 1..n in (a chunk of) a label map: sums over chunks of the map."""
    return np.bincount(label_map.ravel(), minlength=n + 1)[1 : n + 1].astype(np.int64)


# ---------------------------------------------------------------------------------------- mask assembly
def box_windows(boxes: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """(N, 4) int32 [x0, y0, w, h]: the output pixels whose centres lie in each half-open xyxy box, clipped
    to the image (`kernels/mask_assembly/reference.box_windows`, the same float32 operations)."""
    h_img, w_img = out_size
    b32 = boxes.astype(np.float32)
    b = np.nan_to_num(b32, nan=-1.0, posinf=float(1 << 24), neginf=-1.0)
    half = np.float32(0.5)
    lo_x = np.clip(np.ceil(b[:, 0] - half), 0, w_img)
    hi_x = np.clip(np.ceil(b[:, 2] - half), 0, w_img)
    lo_y = np.clip(np.ceil(b[:, 1] - half), 0, h_img)
    hi_y = np.clip(np.ceil(b[:, 3] - half), 0, h_img)
    w = np.maximum(hi_x - lo_x, 0)
    h = np.maximum(hi_y - lo_y, 0)
    w = np.where(np.isnan(b32).any(axis=1), 0, w)
    return np.stack([lo_x, lo_y, w, h], axis=1).astype(np.int32)


def _sources(n_out: int, scale: float, pad: float, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear sources of output pixels 0..n_out-1 on a prototype axis of n_in pixels: (i0, i1) int64 in
    [0, n_in - 1] and the float32 weight of i1 (F.interpolate, align_corners=False; float32 like
    `reference.source_index`)."""
    src = ((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * np.float32(scale) + np.float32(pad))
    src = np.maximum(src * np.float32(0.25) - np.float32(0.5), np.float32(0.0))
    i0 = np.minimum(np.floor(src), np.float32(n_in - 1))
    lam = np.clip(src - i0, np.float32(0.0), np.float32(1.0))
    i0i = i0.astype(np.int64)
    return i0i, np.minimum(i0i + 1, n_in - 1), lam


def _logit_threshold(threshold: float) -> np.float32:
    """log(t / (1 - t)) rounded to float32: sigmoid(l) > t  <=>  l > this (`reference.logit_threshold`)."""
    return np.float32(math.log(threshold / (1.0 - threshold)))


def _ranges(base: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """int64 concatenation of base[i] + arange(counts[i]) over i (counts >= 0)."""
    ends = np.cumsum(counts)
    return np.repeat(base - (ends - counts), counts) + np.arange(int(ends[-1]) if ends.size else 0)


def _assemble_chunk(p_flat: np.ndarray, p_px: np.ndarray | None, wp: int, c32: np.ndarray, geo: np.ndarray,
                    xs: tuple[np.ndarray, ...], ys: tuple[np.ndarray, ...], thr: np.float32,
                    out: np.ndarray) -> None:
    """Mask bits of a run of cells with non-empty windows into out (bool: their packed pixels, in order).

    p_flat: (NM, Hp * Wp) float32 prototypes; p_px: the same pixel-major (a crop row is one block), or None
    (crops gathered from p_flat); c32: (m, NM) float32 coefficients; geo: (m, 8) int64 [x0, y0, w, h, px_lo,
    py_lo, pw, ph]: window and prototype crop; xs, ys: (i0, i1, 1 - lambda, lambda) of every output column /
    row. All cells at once on flat arrays (no Python loop per cell), with the float32 operations of the
    per-cell computation described in `assemble_masks`: crop logits, along x, along y, threshold.
    """
    x0, y0, w, h, px_lo, py_lo, pw, ph = geo.T
    xi0, xi1, lx_c, lx = xs
    yi0, yi1, ly_c, ly = ys
    m = geo.shape[0]
    # crop logits, crop rows one after another: coeffs[cell] . prototypes of each crop pixel
    rc = np.repeat(np.arange(m), ph)  # cell of each crop row
    pr = pw[rc]
    px = _ranges(_ranges(py_lo, ph) * wp + px_lo[rc], pr)  # prototype pixel of each crop pixel
    crop = p_flat[:, px].T if p_px is None else p_px.take(px, axis=0)  # (crop pixels, NM)
    crop *= np.repeat(c32, ph * pw, axis=0)  # a cell's crop pixels are consecutive
    logits = crop @ np.ones(c32.shape[1], np.float32)
    row_start = np.cumsum(pr) - pr  # first logit of each crop row
    # along x: for each crop row, the w columns of its cell's window
    wr = w[rc]
    gx = _ranges(x0[rc], wr)  # output column of each value
    base = np.repeat(row_start - px_lo[rc], wr)
    tx = lx_c.take(gx) * logits.take(base + xi0.take(gx))
    tx += lx.take(gx) * logits.take(base + xi1.take(gx))
    # along y: for each output row, its cell's two along-x rows
    ro = np.repeat(np.arange(m), h)  # cell of each output row
    gy = _ranges(y0, h)  # output row
    wo = w[ro]
    tx_start = np.cumsum(ph * w) - ph * w  # first along-x value of each cell
    e0 = _ranges(tx_start[ro] + (yi0[gy] - py_lo[ro]) * wo, wo)  # along-x value of each pixel
    logit = np.repeat(ly_c[gy], wo) * tx.take(e0)
    e0 += np.repeat((yi1[gy] - yi0[gy]) * wo, wo)  # the next source row
    logit += np.repeat(ly[gy], wo) * tx.take(e0)
    np.greater(logit, thr, out=out)


def assemble_masks(protos: np.ndarray, coeffs: np.ndarray, boxes: np.ndarray, out_size: tuple[int, int], *,
                   scale: float = 1.0, pad: tuple[float, float] = (0.0, 0.0),
                   threshold: float = 0.5) -> PackedArrays:
    """Box-local binary masks of one image's detections at output resolution.

    protos: (NM, Hp, Wp) float prototypes (stride 4 of the network input); coeffs: (n, NM) float raw mask
    coefficients; boxes: (n, 4) float xyxy in OUTPUT pixels; out_size: (H, W); scale, pad=(pad_x, pad_y):
    x_net = x_out * scale + pad_x; threshold: mask probability in (0, 1).

    Mask i, pixel (y, x) of its window (`box_windows`): sigmoid(bilinear sample of coeffs[i] . protos at the
    pixel centre, F.interpolate align_corners=False) > threshold. Only the window is computed: logits on
    the prototype crop the window's samples touch, then interpolation along x (t = (1 - lx) * L[:, i0] +
    lx * L[:, i1]), then along y ((1 - ly) * t[i0] + ly * t[i1]), with the reference's float32 operations
    (kernels/mask_assembly/reference.py). Vectorized over the cells, in chunks of ASSEMBLY_CHUNK elements
    (a Python loop over the cells costs ~35 us a cell). Returns PackedArrays (batch_idx 0) with the windows of
    `mask_assembly(output="masks")` and its bits up to float summation order.
    """
    protos, coeffs, boxes = np.asarray(protos), np.asarray(coeffs), np.asarray(boxes)
    if protos.ndim != 3 or not np.issubdtype(protos.dtype, np.floating):
        raise ConfigError(f"assemble_masks: protos is {protos.shape} {protos.dtype}; expected (NM, Hp, Wp) float",
                          hint="pass the prototypes of one image (protos[b])")
    nm, hp, wp = protos.shape
    if coeffs.ndim != 2 or coeffs.shape[1] != nm or not np.issubdtype(coeffs.dtype, np.floating):
        raise ConfigError(f"assemble_masks: coeffs is {coeffs.shape} {coeffs.dtype}; expected (n, {nm}) float "
                          "(one coefficient per prototype)")
    n = coeffs.shape[0]
    if boxes.shape != (n, 4) or not np.issubdtype(boxes.dtype, np.floating):
        raise ConfigError(f"assemble_masks: boxes is {boxes.shape} {boxes.dtype}; expected ({n}, 4) float xyxy")
    (h_img, w_img), pad = check_geometry("assemble_masks", out_size, threshold, scale, pad)
    windows = box_windows(boxes, (h_img, w_img))
    win = windows.astype(np.int64)
    offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(win[:, 2] * win[:, 3])])
    data = np.zeros(int(offsets[-1]), np.uint8)
    # sources of every output column / row once: the reference's per-pixel values, elementwise the same
    xi0, xi1, lx = _sources(w_img, scale, pad[0], wp)
    yi0, yi1, ly = _sources(h_img, scale, pad[1], hp)
    one = np.float32(1.0)
    xs, ys = (xi0, xi1, one - lx, lx), (yi0, yi1, one - ly, ly)  # with the reference's (1 - lambda), float32
    cells = np.flatnonzero((win[:, 2] > 0) & (win[:, 3] > 0))
    x0, y0, w, h = win[cells].T
    px_lo, py_lo = xi0[x0], yi0[y0]  # sources are monotonic in the output coordinate: the prototype crop
    pw, ph = xi1[x0 + w - 1] + 1 - px_lo, yi1[y0 + h - 1] + 1 - py_lo
    geo = np.stack([x0, y0, w, h, px_lo, py_lo, pw, ph], axis=1)
    # chunks of whole cells: output pixels + along-x values + gathered prototype crops
    cost = np.cumsum(h * w + ph * w + nm * ph * pw)
    p_flat = np.ascontiguousarray(protos, np.float32).reshape(nm, hp * wp)
    # crops covering much of the prototypes (a tile full of cells) read them faster pixel-major, in one pass
    p_px = cv2.transpose(p_flat) if (ph * pw).sum() >= DENSE_CROPS * hp * wp else None
    c32 = coeffs.astype(np.float32, copy=False)[cells]
    thr = _logit_threshold(threshold)
    bits = data.view(np.bool_)
    a = 0
    while a < cells.size:
        b = max(a + 1, int(np.searchsorted(cost, (cost[a - 1] if a else 0) + ASSEMBLY_CHUNK, side="right")))
        lo, hi = offsets[cells[a]], offsets[cells[b - 1] + 1]  # empty windows between cells hold no pixels
        _assemble_chunk(p_flat, p_px, wp, c32[a:b], geo[a:b], xs, ys, thr, bits[lo:hi])
        a = b
    return PackedArrays(data, offsets, windows, np.zeros(n, np.int64), (h_img, w_img))


def label_map(packed: PackedArrays, scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) int32 label map from box-local masks: 1 + index of the highest-scoring covering mask (ties:
    lower index), 0 = background (`asfyolo_rt.infer.predict.label_map_from_packed`)."""
    h, w = size
    scores = np.asarray(scores)
    n = int(scores.shape[0])
    out = np.zeros((h, w), np.int32)  # int32 (not int64): an 8192 x 8192 frame is 256 MiB
    if n == 0:
        return out
    if len(packed) != n:
        raise ConfigError(f"label_map got {len(packed)} masks and {n} scores; expected one score per mask")
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    win = packed.windows.astype(np.int64)
    offsets = packed.offsets.astype(np.int64)
    data = packed.data.view(np.bool_)  # {0, 1} uint8 read as bool, no copy
    for i in order[::-1].tolist():  # ascending priority: higher-scoring masks are painted last
        x0, y0, ww, hh = win[i].tolist()
        if ww == 0 or hh == 0:
            continue
        m = data[offsets[i] : offsets[i + 1]].reshape(hh, ww)
        np.copyto(out[y0 : y0 + hh, x0 : x0 + ww], np.int32(i + 1), where=m)
    return out
