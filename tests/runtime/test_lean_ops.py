"""The torch-free post-processing (`asfyolo_rt.runtime.lean_ops`) against its torch references.

Exact everywhere (indices, boxes, scores, classes, coefficients, windows, label maps built from the same
masks) except the mask bits of `assemble_masks`, whose logits sum 32 products in another order than torch:
a pixel may differ only where its probability is within float32 rounding of the threshold.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from asfyolo_rt.kernels.mask_assembly import PackedMasks, mask_assembly

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.infer import nms as nms_mod
from asfyolo_rt.infer.predict import label_map_from_packed
from asfyolo_rt.runtime import lean_ops as lean
from asfyolo_rt.runtime import stages

# Mask tolerance: the logits differ from torch's by float32 summation order only (|d logit| ~ 1e-6 for
# |logit| ~ 10), i.e. |d prob| <= 0.25 |d logit|. A pixel may flip only where |prob - t| < NEAR; at most
# MAX_FLIP_FRACTION of the window pixels may flip (in practice 0 on random and real inputs).
NEAR = 1e-4
MAX_FLIP_FRACTION = 1e-4


# --------------------------------------------------------------------------------------------- helpers
def _random_pred(rng: np.random.Generator, b: int, n: int, nc: int, nm: int = 32, ties: bool = False,
                 size: float = 320.0) -> np.ndarray:
    """(B, N, 5 + nc + nm) float32 decoded outputs; with ties, objectness and class probabilities come from
    a few values so that confidences tie, and boxes repeat."""
    cxcy = rng.uniform(-10, size + 10, (b, n, 2))
    wh = rng.uniform(0.5, 60, (b, n, 2))
    if ties:
        cxcy[:, 1::3] = cxcy[:, ::3][:, : cxcy[:, 1::3].shape[1]]
        wh[:, 1::3] = wh[:, ::3][:, : wh[:, 1::3].shape[1]]
        obj = rng.choice([0.3, 0.6, 0.9, 1.0], (b, n, 1))
        cls = rng.choice([0.5, 0.8, 1.0], (b, n, nc))
    else:
        obj = rng.uniform(0, 1, (b, n, 1))
        cls = rng.uniform(0, 1, (b, n, nc))
    coeffs = rng.normal(0, 1, (b, n, nm))
    return np.concatenate([cxcy, wh, obj, cls, coeffs], axis=2).astype(np.float32)


def _assert_dets_equal(mine: list[lean.DetArrays], ref: list[nms_mod.Detections]) -> None:
    assert len(mine) == len(ref)
    for m, r in zip(mine, ref):
        assert len(m) == len(r)
        for name, dtype in (("boxes", np.float32), ("scores", np.float32), ("classes", np.int64),
                            ("coeffs", np.float32)):
            a, e = getattr(m, name), getattr(r, name).numpy()
            assert a.dtype == dtype and a.shape == e.shape, name
            np.testing.assert_array_equal(a, e, err_msg=name)


def _ref_packed(protos: np.ndarray, coeffs: np.ndarray, boxes: np.ndarray, size: tuple[int, int], scale: float,
                pad: tuple[float, float], threshold: float = 0.5) -> PackedMasks:
    n = coeffs.shape[0]
    return mask_assembly(torch.from_numpy(protos)[None], torch.from_numpy(coeffs), torch.from_numpy(boxes),
                         torch.zeros(n, dtype=torch.int64), torch.ones(n), size, output="masks",
                         threshold=threshold, scale=scale, pad=pad, impl="torch")


def _probabilities(protos: np.ndarray, coeffs: np.ndarray, packed: lean.PackedArrays, scale: float,
                   pad: tuple[float, float]) -> np.ndarray:
    """float64 probabilities of every packed pixel (for the near-threshold test of differing bits)."""
    return 1 / (1 + np.exp(-_logits64(protos, coeffs, packed, scale, pad)))


def _logits64(protos: np.ndarray, coeffs: np.ndarray, packed: lean.PackedArrays, scale: float,
              pad: tuple[float, float]) -> np.ndarray:
    """float64 mask logits of every packed pixel."""
    nm, hp, wp = protos.shape
    out = np.zeros(packed.data.shape[0], np.float64)
    for i in range(len(packed)):
        x0, y0, w, h = (int(v) for v in packed.windows[i])
        if not (w and h):
            continue
        logits = np.tensordot(coeffs[i].astype(np.float64), protos.astype(np.float64), 1)  # (hp, wp)
        sx = np.maximum(((np.arange(x0, x0 + w) + 0.5) * scale + pad[0]) * 0.25 - 0.5, 0)
        sy = np.maximum(((np.arange(y0, y0 + h) + 0.5) * scale + pad[1]) * 0.25 - 0.5, 0)
        ix, iy = np.minimum(np.floor(sx), wp - 1).astype(int), np.minimum(np.floor(sy), hp - 1).astype(int)
        lx, ly = np.clip(sx - ix, 0, 1), np.clip(sy - iy, 0, 1)
        ix1, iy1 = np.minimum(ix + 1, wp - 1), np.minimum(iy + 1, hp - 1)
        top = (1 - lx) * logits[iy][:, ix] + lx * logits[iy][:, ix1]
        bot = (1 - lx) * logits[iy1][:, ix] + lx * logits[iy1][:, ix1]
        lg = (1 - ly[:, None]) * top + ly[:, None] * bot
        out[packed.offsets[i] : packed.offsets[i + 1]] = lg.ravel()
    return out


def _assert_masks_match(mine: lean.PackedArrays, ref: PackedMasks, probs: np.ndarray, threshold: float) -> int:
    """Windows and offsets identical; differing bits only near the threshold and rare. Returns #differing."""
    np.testing.assert_array_equal(mine.windows, ref.windows.numpy())
    np.testing.assert_array_equal(mine.offsets, ref.offsets.numpy())
    assert mine.windows.dtype == np.int32 and mine.offsets.dtype == np.int64 and mine.data.dtype == np.uint8
    assert mine.size == ref.size
    diff = mine.data != ref.data.numpy()
    assert not diff[np.abs(probs - threshold) > NEAR].any(), "a mask bit differs away from the threshold"
    assert diff.sum() <= MAX_FLIP_FRACTION * max(diff.size, 1)
    return int(diff.sum())


def _to_torch_packed(p: lean.PackedArrays) -> PackedMasks:
    return PackedMasks(torch.from_numpy(p.data), torch.from_numpy(p.offsets), torch.from_numpy(p.windows),
                       torch.from_numpy(p.batch_idx), p.size)


# ------------------------------------------------------------------------------------------------- nms
@pytest.mark.parametrize("n", [0, 1, 2, 7, 500, 3000])
@pytest.mark.parametrize("iou", [0.0, 0.45, 0.7, 1.0])
def test_nms_equals_the_torch_reference(n, iou):
    rng = np.random.default_rng(n * 7 + int(iou * 100))
    xy = rng.uniform(0, 200, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 40, (n, 2))], 1).astype(np.float32)
    scores = rng.choice(np.float32([0.2, 0.5, 0.50000006, 0.9]), n) if n > 5 else rng.uniform(0, 1, n)
    scores = scores.astype(np.float32)
    boxes[1::4] = boxes[::4][: boxes[1::4].shape[0]]  # identical boxes
    got = lean.nms(boxes, scores, iou)
    want = nms_mod.nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy()
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)
    if n > 1 and 0 < iou < 1:
        assert 0 < got.size < n  # overlapping boxes were suppressed: the comparison is not trivial


def test_nms_rejects_bad_inputs():
    with pytest.raises(ConfigError, match="expected \\(n, 4\\) and \\(n,\\)"):
        lean.nms(np.zeros((3, 5), np.float32), np.zeros(3, np.float32), 0.5)
    with pytest.raises(ConfigError, match="outside \\[0, 1\\]"):
        lean.nms(np.zeros((3, 4), np.float32), np.zeros(3, np.float32), 1.5)


@pytest.mark.parametrize(("batch", "n", "nc", "ties", "conf", "iou", "max_det", "max_nms"), [
    (1, 0, 1, False, 0.25, 0.45, 300, 30000),  # no candidates at all
    (2, 1, 1, False, 0.0, 0.45, 300, 30000),  # one box per image
    (2, 400, 1, False, 0.25, 0.45, 300, 30000),  # the shipped single-class model's setting
    (1, 2000, 1, False, 0.001, 0.6, 300, 30000),  # validation thresholds: max_det truncates
    (2, 600, 3, False, 0.1, 0.5, 1000, 30000),  # several classes: class-aware offsets
    (1, 600, 3, True, 0.1, 0.5, 1000, 30000),  # tied confidences, repeated boxes, tied class maxima
    (1, 3000, 2, True, 0.05, 0.7, 100, 257),  # max_nms truncation among ties, then max_det
    (1, 300, 1, False, 0.999, 0.45, 300, 30000),  # nothing survives the confidence test
])
def test_non_max_suppression_equals_the_torch_reference(batch, n, nc, ties, conf, iou, max_det, max_nms):
    rng = np.random.default_rng(n + nc)
    pred = _random_pred(rng, batch, n, nc, ties=ties)
    kw = dict(conf_threshold=conf, iou_threshold=iou, max_det=max_det, max_nms=max_nms)
    got = lean.non_max_suppression(pred, nm=32, **kw)
    want = nms_mod.non_max_suppression(torch.from_numpy(pred), nm=32, **kw)
    _assert_dets_equal(got, want)
    if n >= 400 and conf < 0.5:
        assert len(got[0]) > 10


def test_non_max_suppression_threshold_is_compared_in_float32():
    """An objectness equal to float32(conf) is not above conf (torch compares in float32)."""
    pred = _random_pred(np.random.default_rng(0), 1, 4, 1)
    pred[0, :, 4] = np.float32(0.1)
    pred[0, :, 5] = 1.0
    assert len(lean.non_max_suppression(pred, conf_threshold=0.1, iou_threshold=0.5, max_det=10)[0]) == 0
    assert len(nms_mod.non_max_suppression(torch.from_numpy(pred), conf_threshold=0.1, iou_threshold=0.5,
                                           max_det=10)[0]) == 0


def test_non_max_suppression_rejects_bad_inputs():
    with pytest.raises(ConfigError, match="expected float \\(B, N, 5 \\+ nc \\+ 32\\)"):
        lean.non_max_suppression(np.zeros((1, 5, 37), np.float32), conf_threshold=0.2, iou_threshold=0.5, max_det=3)
    with pytest.raises(ConfigError, match="conf_threshold=1.0"):
        lean.non_max_suppression(np.zeros((1, 5, 38), np.float32), conf_threshold=1.0, iou_threshold=0.5, max_det=3)
    with pytest.raises(ConfigError, match="max_det=0"):
        lean.non_max_suppression(np.zeros((1, 5, 38), np.float32), conf_threshold=0.2, iou_threshold=0.5, max_det=0)


def test_det_arrays_empty_and_subset():
    e = lean.DetArrays.empty(16)
    assert len(e) == 0 and e.coeffs.shape == (0, 16) and e.classes.dtype == np.int64 and e.boxes.shape == (0, 4)
    rng = np.random.default_rng(1)
    d = lean.DetArrays(rng.uniform(0, 9, (5, 4)).astype(np.float32), np.arange(5, dtype=np.float32),
                       np.arange(5), rng.normal(size=(5, 32)).astype(np.float32))
    s = d.subset([3, 0])
    assert len(s) == 2 and s.scores.tolist() == [3.0, 0.0]
    np.testing.assert_array_equal(s.coeffs, d.coeffs[[3, 0]])


# ------------------------------------------------------------------------------------------- masks
def _adversarial_boxes(rng: np.random.Generator, n: int, size: tuple[int, int]) -> np.ndarray:
    """Fractional boxes, half-pixel edges, boxes crossing and outside the borders, empty and NaN boxes."""
    h, w = size
    xy = rng.uniform(-0.2 * w, w, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 0.4 * w, (n, 2))], 1)
    boxes[::5] = np.round(boxes[::5] * 2) / 2  # edges on pixel centres
    special = [
        [0.0, 0.0, w, h],  # the whole image
        [-5.0, -5.0, 3.3, 2.7],  # top-left corner, clipped
        [w - 3.2, h - 1.6, w + 10, h + 10],  # bottom-right corner, clipped
        [5.0, 5.0, 5.4, 9.0],  # thinner than a pixel centre: empty window
        [w + 1.0, 2.0, w + 9.0, 8.0],  # outside the image: empty window
        [np.nan, 1.0, 9.0, 9.0],  # NaN: empty window
        [0.5, 0.5, 1.5, 1.5],  # exactly one pixel
    ]
    boxes[: len(special)] = special
    return boxes.astype(np.float32)


@pytest.mark.parametrize(("hp", "wp", "size", "scale", "pad", "threshold"), [
    (20, 24, (80, 96), 1.0, (0.0, 0.0), 0.5),  # identity: network resolution
    (20, 24, (61, 45), 1.25, (8.0, 17.5), 0.5),  # letterbox: fractional gain and padding
    (16, 16, (150, 170), 0.37, (3.25, 0.75), 0.3),  # output larger than the network input, t != 0.5
    (40, 40, (160, 160), 1.0, (-10.0, 2.5), 0.8),  # tile offset (negative pad), t > 0.5
])
def test_assemble_masks_matches_the_torch_reference(hp, wp, size, scale, pad, threshold):
    rng = np.random.default_rng(hp + size[0])
    protos = rng.normal(0, 1, (32, hp, wp)).astype(np.float32)
    n = 60
    coeffs = rng.normal(0, 0.5, (n, 32)).astype(np.float32)
    boxes = _adversarial_boxes(rng, n, size)
    got = lean.assemble_masks(protos, coeffs, boxes, size, scale=scale, pad=pad, threshold=threshold)
    ref = _ref_packed(protos, coeffs, boxes, size, scale, pad, threshold)
    _assert_masks_match(got, ref, _probabilities(protos, coeffs, got, scale, pad), threshold)
    assert got.data.sum() > 0 and (got.data == 0).sum() > 0 and (got.windows[:, 2] == 0).sum() >= 3
    same_bits = _to_torch_packed(got)  # PackedMasks of our bits: checks to_dense and mask
    np.testing.assert_array_equal(got.to_dense(), same_bits.to_dense().numpy())
    for i in (0, 6, n - 1):
        np.testing.assert_array_equal(got.mask(i), same_bits.mask(i).numpy())


def test_assemble_masks_handles_no_detections_and_rejects_bad_inputs():
    protos = np.zeros((32, 8, 8), np.float32)
    e = lean.assemble_masks(protos, np.zeros((0, 32), np.float32), np.zeros((0, 4), np.float32), (32, 32))
    assert len(e) == 0 and e.offsets.tolist() == [0] and e.data.size == 0 and e.to_dense().shape == (0, 32, 32)
    one = np.zeros((1, 32), np.float32)
    box = np.float32([[0, 0, 4, 4]])
    with pytest.raises(ConfigError, match="expected \\(n, 32\\) float"):
        lean.assemble_masks(protos, np.zeros((1, 31), np.float32), box, (32, 32))
    with pytest.raises(ConfigError, match="threshold=1.0"):
        lean.assemble_masks(protos, one, box, (32, 32), threshold=1.0)
    with pytest.raises(ConfigError, match="scale=0.0"):
        lean.assemble_masks(protos, one, box, (32, 32), scale=0.0)
    with pytest.raises(ConfigError, match="out_size"):
        lean.assemble_masks(protos, one, box, (0, 32))


# --------------------------------------------------------------------- assemble_masks against its loop
def _assemble_masks_loop(protos: np.ndarray, coeffs: np.ndarray, boxes: np.ndarray, out_size: tuple[int, int],
                         *, scale: float = 1.0, pad: tuple[float, float] = (0.0, 0.0),
                         threshold: float = 0.5) -> lean.PackedArrays:
    """The specification of `assemble_masks`: its former per-cell loop, verbatim (checks left out)."""
    protos, coeffs, boxes = np.asarray(protos), np.asarray(coeffs), np.asarray(boxes)
    nm, hp, wp = protos.shape
    n = coeffs.shape[0]
    h_img, w_img = out_size
    windows = lean.box_windows(boxes, (h_img, w_img))
    win = windows.astype(np.int64)
    offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(win[:, 2] * win[:, 3])])
    data = np.zeros(int(offsets[-1]), np.uint8)
    xi0, xi1, lx = lean._sources(w_img, scale, pad[0], wp)
    yi0, yi1, ly = lean._sources(h_img, scale, pad[1], hp)
    one = np.float32(1.0)
    lx_c, ly_c = one - lx, (one - ly)[:, None]
    ly = ly[:, None]
    p32 = protos.astype(np.float32, copy=False)
    c32 = coeffs.astype(np.float32, copy=False)
    thr = lean._logit_threshold(threshold)
    starts = offsets[:-1].tolist()
    for i, (x0, y0, w, h) in enumerate(win.tolist()):
        if w == 0 or h == 0:
            continue
        x1, y1 = x0 + w, y0 + h
        px_lo, px_hi = int(xi0[x0]), int(xi1[x1 - 1]) + 1
        py_lo, py_hi = int(yi0[y0]), int(yi1[y1 - 1]) + 1
        lq = (c32[i] @ p32[:, py_lo:py_hi, px_lo:px_hi].reshape(nm, -1)).reshape(py_hi - py_lo, -1)
        tx = lx_c[x0:x1] * lq[:, xi0[x0:x1] - px_lo]
        tx += lx[x0:x1] * lq[:, xi1[x0:x1] - px_lo]
        logit = ly_c[y0:y1] * tx[yi0[y0:y1] - py_lo]
        logit += ly[y0:y1] * tx[yi1[y0:y1] - py_lo]
        np.greater(logit, thr, out=data[starts[i] : starts[i] + w * h].reshape(h, w).view(np.bool_))
    return lean.PackedArrays(data, offsets, windows, np.zeros(n, np.int64), (h_img, w_img))


def _assert_same_as_loop(protos: np.ndarray, coeffs: np.ndarray, boxes: np.ndarray, size: tuple[int, int],
                         scale: float, pad: tuple[float, float], threshold: float = 0.5) -> lean.PackedArrays:
    """assemble_masks equals its loop: windows, offsets, sizes and types exactly; the bits exactly except
    where the float64 logit lies within 1e-4 of the threshold (dot products summed in another order)."""
    got = lean.assemble_masks(protos, coeffs, boxes, size, scale=scale, pad=pad, threshold=threshold)
    want = _assemble_masks_loop(protos, coeffs, boxes, size, scale=scale, pad=pad, threshold=threshold)
    for name in ("offsets", "windows", "batch_idx"):
        a, e = getattr(got, name), getattr(want, name)
        assert a.dtype == e.dtype and a.shape == e.shape, name
        np.testing.assert_array_equal(a, e, err_msg=name)
    assert got.data.dtype == np.uint8 and got.data.shape == want.data.shape and got.size == want.size
    assert np.isin(got.data, [0, 1]).all()
    diff = np.flatnonzero(got.data != want.data)
    if diff.size:
        near = np.abs(_logits64(protos, coeffs, want, scale, pad)[diff] - np.log(threshold / (1 - threshold)))
        assert (near < 1e-4).all(), f"{int((near >= 1e-4).sum())} mask bits differ away from the threshold"
        assert diff.size <= 3
    return got


def _tile_cells(rng: np.random.Generator, n: int, frame: tuple[int, int], tile: tuple[int, int, int],
                scale: float) -> np.ndarray:
    """(n, 4) float32 boxes of cells found in a tile (x0, y0, side in network px), in frame pixels and clipped
    to the frame like `LeanRunner._assemble`: some cross the tile's and the frame's borders."""
    x0, y0, side = tile
    xy = rng.uniform(-20, side + 5, (n, 2))
    net = np.concatenate([xy, xy + rng.uniform(8, 40, (n, 2)) * scale], 1).astype(np.float32)
    boxes = (net + np.float32([x0, y0, x0, y0])) / np.float32(scale)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, frame[1])
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, frame[0])
    return boxes


@pytest.mark.parametrize(("hp", "wp", "size", "scale", "pad", "threshold"), [
    (20, 24, (80, 96), 1.0, (0.0, 0.0), 0.5),  # identity
    (20, 24, (61, 45), 1.25, (8.0, 17.5), 0.5),  # letterbox
    (16, 16, (150, 170), 0.37, (3.25, 0.75), 0.3),  # output larger than the network input
    (40, 40, (160, 160), 1.0, (-10.0, 2.5), 0.8),  # negative pad
    (54, 54, (300, 260), 1.5, (-120.0, -96.0), 0.5),  # a tile of a larger frame
])
def test_assemble_masks_equals_its_loop_on_adversarial_boxes(hp, wp, size, scale, pad, threshold):
    rng = np.random.default_rng(hp * 3 + size[1])
    protos = rng.normal(0, 1, (32, hp, wp)).astype(np.float32)
    n = 90
    coeffs = rng.normal(0, 0.5, (n, 32)).astype(np.float32)
    got = _assert_same_as_loop(protos, coeffs, _adversarial_boxes(rng, n, size), size, scale, pad, threshold)
    assert got.data.sum() > 0 and (got.data == 0).sum() > 0 and (got.windows[:, 2] == 0).sum() >= 3


@pytest.mark.parametrize("dense", [0.0, np.inf])  # prototypes transposed / crops gathered from them
@pytest.mark.parametrize("tile", [(0, 0, 216), (736, 736, 216), (1832, 1000, 216)])
def test_assemble_masks_equals_its_loop_on_tile_cells(tile, dense, monkeypatch):
    """Cells of a 216 px tile (prototypes 54 x 54) of a 2048 x 2048 frame at gain 1 / 1.5, as the tiled
    pipeline assembles them: pad = -tile origin, boxes clipped to the frame (the last tile crosses it)."""
    monkeypatch.setattr(lean, "DENSE_CROPS", dense)
    rng = np.random.default_rng(tile[0])
    frame, scale = (2048, 2048), 1.5
    protos = rng.normal(0, 1, (32, 54, 54)).astype(np.float32)
    n = 150
    coeffs = rng.normal(0, 0.5, (n, 32)).astype(np.float32)
    boxes = _tile_cells(rng, n, frame, tile, scale)
    got = _assert_same_as_loop(protos, coeffs, boxes, frame, scale, (-float(tile[0]), -float(tile[1])))
    assert 0.1 < got.data.mean() < 0.9
    if tile[0] + tile[2] > frame[1] * scale:
        assert (got.windows[:, 0] + got.windows[:, 2] == frame[1]).any()  # cells touching the frame's border


@pytest.mark.parametrize("dense", [0.0, np.inf])
@pytest.mark.parametrize(("size", "scale", "pad", "threshold"), [
    ((300, 260), 1.5, (-120.3, -96.7), 0.4),  # non-dyadic weights: their products with the logit round
    ((61, 45), 1.3, (8.1, 17.5), 0.3),
    ((150, 170), 0.37, (3.25, 0.75), 0.7),
])
def test_assemble_masks_equals_its_loop_bit_for_bit_with_exact_dot_products(size, scale, pad, threshold,
                                                                          dense, monkeypatch):
    """Dyadic prototypes and coefficients make every 32-term dot product exact in float32, whatever its order:
    then no bit may differ. Every third cell has the logit threshold itself as its logit everywhere (prototype
    0 is 1, its other coefficients 0): its bits are decided by the rounding of the interpolation alone, so
    they check that its float32 operations are the loop's, one for one."""
    monkeypatch.setattr(lean, "DENSE_CROPS", dense)
    rng = np.random.default_rng(size[0])
    protos = (rng.integers(-16, 17, (32, 54, 54)) / 8).astype(np.float32)
    protos[0] = 1.0
    n = 90
    coeffs = (rng.integers(-16, 17, (n, 32)) / 64).astype(np.float32)
    coeffs[::3] = 0.0
    coeffs[::3, 0] = lean._logit_threshold(threshold)
    boxes = _adversarial_boxes(rng, n, size)
    got = lean.assemble_masks(protos, coeffs, boxes, size, scale=scale, pad=pad, threshold=threshold)
    want = _assemble_masks_loop(protos, coeffs, boxes, size, scale=scale, pad=pad, threshold=threshold)
    np.testing.assert_array_equal(got.offsets, want.offsets)
    np.testing.assert_array_equal(got.windows, want.windows)
    np.testing.assert_array_equal(got.data, want.data)
    on_thr = np.concatenate([got.mask(i).ravel() for i in range(0, n, 3)])
    assert 0.02 < on_thr.mean() < 0.98  # rounding went both ways: the check is not trivial
    assert 0.05 < got.data.mean() < 0.95


@pytest.mark.parametrize("n", [0, 1])
def test_assemble_masks_equals_its_loop_on_zero_and_one_cell(n):
    rng = np.random.default_rng(n)
    protos = rng.normal(0, 1, (32, 30, 20)).astype(np.float32)
    coeffs = rng.normal(0, 0.5, (n, 32)).astype(np.float32)
    boxes = np.float32([[3.2, 5.0, 41.7, 60.1]])[:n]
    got = _assert_same_as_loop(protos, coeffs, boxes, (100, 70), 1.25, (-2.0, 4.5))
    assert len(got) == n and got.data.size == 39 * 55 * n


@pytest.mark.parametrize("dense", [0.0, np.inf])
def test_assemble_masks_equals_its_loop_across_chunks(dense, monkeypatch):
    """Chunks of cells far smaller than the call (and a cell larger than a chunk) give the same masks."""
    chunks = []
    chunk_fn = lean._assemble_chunk
    monkeypatch.setattr(lean, "ASSEMBLY_CHUNK", 4000)
    monkeypatch.setattr(lean, "DENSE_CROPS", dense)
    monkeypatch.setattr(lean, "_assemble_chunk", lambda *a, **k: chunks.append(1) or chunk_fn(*a, **k))
    rng = np.random.default_rng(3)
    size = (200, 180)
    protos = rng.normal(0, 1, (32, 40, 36)).astype(np.float32)
    n = 120
    coeffs = rng.normal(0, 0.5, (n, 32)).astype(np.float32)
    got = _assert_same_as_loop(protos, coeffs, _adversarial_boxes(rng, n, size), size, 0.8, (1.5, -3.0))
    assert len(chunks) > 10 and got.data.size > 4000 and got.windows[0, 2] * got.windows[0, 3] > 4000


def test_label_map_select_concat_and_areas_equal_the_references():
    rng = np.random.default_rng(5)
    size = (90, 110)
    protos = rng.normal(0, 1, (32, 24, 28)).astype(np.float32)
    n = 80
    coeffs = rng.normal(0, 0.5, (n, 32)).astype(np.float32)
    boxes = _adversarial_boxes(rng, n, size)
    scores = rng.choice(np.float32([0.3, 0.6, 0.9]), n)  # ties: the lower index wins
    packed = lean.assemble_masks(protos, coeffs, boxes, size, scale=0.9, pad=(4.0, 6.0))
    ref = _to_torch_packed(packed)  # the same bits: compares the label maps exactly
    lm = lean.label_map(packed, scores, size)
    want = label_map_from_packed(ref, torch.from_numpy(scores), size)
    assert lm.dtype == np.int32 and lm.shape == size
    np.testing.assert_array_equal(lm, want)
    assert len(np.unique(lm)) > 20
    # and the kernel's own label map (computed without packed masks) agrees too
    kernel = mask_assembly(torch.from_numpy(protos)[None], torch.from_numpy(coeffs), torch.from_numpy(boxes),
                           torch.zeros(n, dtype=torch.int64), torch.from_numpy(scores), size, output="label_map",
                           scale=0.9, pad=(4.0, 6.0), impl="torch")[0].numpy()
    assert (lm != kernel).mean() <= MAX_FLIP_FRACTION
    np.testing.assert_array_equal(lean.mask_areas(packed), stages.mask_areas(ref))
    np.testing.assert_array_equal(lean.visible_pixels(lm, n), stages.visible_pixels(lm, n))
    idx = np.array([5, 0, 77, 5, 40])
    sel, sel_ref = packed.select(idx), stages.select_packed(ref, torch.from_numpy(idx))
    for name in ("data", "offsets", "windows", "batch_idx"):
        np.testing.assert_array_equal(getattr(sel, name), getattr(sel_ref, name).numpy(), err_msg=name)
    assert len(packed.select([])) == 0
    with pytest.raises(ConfigError, match="boolean mask"):
        packed.select(np.ones(n, bool))
    parts = [packed.select(np.arange(0, 30)), packed.select(np.arange(30, 30)), packed.select(np.arange(30, n))]
    cat = lean.concat_packed(parts, size)
    cat_ref = stages.concat_packed([_to_torch_packed(p) for p in parts], size)
    for name in ("data", "offsets", "windows", "batch_idx"):
        np.testing.assert_array_equal(getattr(cat, name), getattr(cat_ref, name).numpy(), err_msg=name)
    np.testing.assert_array_equal(cat.to_dense(), packed.to_dense())
    assert len(lean.concat_packed([], size)) == 0
    assert not lean.label_map(lean.concat_packed([], size), np.zeros(0, np.float32), size).any()


# ------------------------------------------------------------------------------------- a real model
@pytest.fixture(scope="module")
def real_outputs(shipped_onnx, nuclei_frame) -> tuple[np.ndarray, np.ndarray]:
    """(pred, protos) of the shipped model (ONNX Runtime) on a 320 x 320 nuclei tile."""
    from asfyolo_rt.data.io import to_uint8_rgb
    from asfyolo_rt.infer.backends import ort_session

    x = stages.preprocess([to_uint8_rgb(np.tile(nuclei_frame, (2, 2)))[:320, :320]]).numpy()
    sess = ort_session(Path(shipped_onnx), threads=1)  # no spinning worker threads left to slow later timings
    pred, protos = sess.run(["pred", "protos"], {sess.get_inputs()[0].name: x})
    return np.asarray(pred, np.float32), np.asarray(protos, np.float32)


def test_real_model_outputs_give_the_same_cells(real_outputs):
    pred, protos = real_outputs
    got = lean.non_max_suppression(pred, conf_threshold=0.25, iou_threshold=0.45, max_det=300)
    want = nms_mod.non_max_suppression(torch.from_numpy(pred), conf_threshold=0.25, iou_threshold=0.45, max_det=300)
    _assert_dets_equal(got, want)
    det = got[0]
    assert len(det) > 5
    # the letterbox case of a 480 x 400 original shown at 320 x 320 (gain 2/3, horizontal padding)
    for size, scale, pad in (((320, 320), 1.0, (0.0, 0.0)), ((480, 400), 2 / 3, (26.5, 0.0))):
        boxes = ((det.boxes - np.float32([pad[0], pad[1], pad[0], pad[1]])) / np.float32(scale)).astype(np.float32)
        packed = lean.assemble_masks(protos[0], det.coeffs, boxes, size, scale=scale, pad=pad)
        ref = _ref_packed(protos[0], det.coeffs, boxes, size, scale, pad)
        _assert_masks_match(packed, ref, _probabilities(protos[0], det.coeffs, packed, scale, pad), 0.5)
        lm = lean.label_map(packed, det.scores, size)
        np.testing.assert_array_equal(lm, label_map_from_packed(ref, torch.from_numpy(det.scores), size))
        assert len(np.unique(lm)) > 5


# ------------------------------------------------------------------------------------------ imports
_ALLOWED_IMPORTS = {"__future__", "math", "collections.abc", "dataclasses", "typing", "cv2", "numpy", "asfyolo_rt.errors",
                    "asfyolo_rt.kernels.assembly_args"}  # torch-free (the subprocess check below imports it)


def test_lean_ops_imports_no_torch():
    source = Path(lean.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= _ALLOWED_IMPORTS, imported - _ALLOWED_IMPORTS
    code = "import sys, asfyolo_rt.runtime.lean_ops; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------- timing
def test_print_assembly_and_label_map_time_against_torch():
    """Prints (never asserts) the time of assemble_masks + label_map against the torch path, 300 cells at
    1024 x 1024 (original px, letterbox gain 0.625 into a 640 network input); checks the results agree."""
    rng = np.random.default_rng(9)
    size, scale, pad = (1024, 1024), 0.625, (0.0, 0.0)
    protos = rng.normal(0, 1, (32, 160, 160)).astype(np.float32)
    n = 300
    coeffs = rng.normal(0, 0.5, (n, 32)).astype(np.float32)
    xy = rng.uniform(0, 990, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(15, 60, (n, 2))], 1).astype(np.float32)
    scores = rng.uniform(0.25, 1, n).astype(np.float32)

    def run_lean() -> np.ndarray:
        return lean.label_map(lean.assemble_masks(protos, coeffs, boxes, size, scale=scale, pad=pad), scores, size)

    def run_torch() -> np.ndarray:
        packed = _ref_packed(protos, coeffs, boxes, size, scale, pad)
        return label_map_from_packed(packed, torch.from_numpy(scores), size)

    def best_of_3(fn) -> tuple[float, np.ndarray]:
        fn()
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            lm = fn()
            runs.append(time.perf_counter() - t0)
        return 1e3 * min(runs), lm

    threads = torch.get_num_threads()
    t_lean, lm_lean = best_of_3(run_lean)
    t_torch, lm_torch = best_of_3(run_torch)
    torch.set_num_threads(1)
    try:
        t_torch1, _ = best_of_3(run_torch)
    finally:
        torch.set_num_threads(threads)
    print(f"\nassemble_masks + label_map, {n} cells at {size[0]}x{size[1]} (best of 3): numpy {t_lean:.1f} ms, "
          f"torch {t_torch:.1f} ms ({threads} threads), torch {t_torch1:.1f} ms (1 thread)")
    assert (lm_lean != lm_torch).mean() <= MAX_FLIP_FRACTION
