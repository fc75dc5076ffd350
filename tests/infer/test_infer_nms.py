"""Hard NMS against a brute-force greedy reference, soft-NMS on a hand example, the full pipeline."""

from __future__ import annotations

import math

import pytest
import torch

import asfyolo_rt.infer.nms as nms_mod
from asfyolo_rt.boxes import box_iou
from asfyolo_rt.errors import ConfigError
from asfyolo_rt.infer.nms import Detections, nms, non_max_suppression, soft_nms


def _iou_py(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _greedy_reference(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> list[int]:
    """Textbook greedy NMS, one box at a time, in float64 Python."""
    b = boxes.double().tolist()
    order = sorted(range(len(b)), key=lambda i: (-float(scores[i]), i))
    keep: list[int] = []
    for i in order:
        if all(_iou_py(b[i], b[k]) <= thr for k in keep):
            keep.append(i)
    return keep


def _random_boxes(n: int, seed: int, span: float = 200.0, size: float = 40.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * span
    wh = torch.rand(n, 2, generator=g) * size + 2.0
    return torch.cat((xy, xy + wh), 1), torch.rand(n, generator=g)


@pytest.mark.parametrize("n, thr, block, chunk", [
    (1, 0.5, 1024, 4096),     # single box
    (300, 0.5, 1024, 4096),   # one block
    (300, 0.3, 64, 16),       # many blocks and chunks: exercises the cross-block path
    (777, 0.7, 100, 7),       # non-power-of-two sizes, high threshold
    (500, 0.0, 128, 64),      # threshold 0: any overlap suppresses
])
def test_nms_matches_greedy_reference(monkeypatch, n, thr, block, chunk):
    monkeypatch.setattr(nms_mod, "_USE_OPENCV", False)  # cover the blocked torch path (CUDA) on CPU
    monkeypatch.setattr(nms_mod, "_BLOCK", block)
    monkeypatch.setattr(nms_mod, "_CHUNK", chunk)
    boxes, scores = _random_boxes(n, seed=n)
    assert nms(boxes, scores, thr).tolist() == _greedy_reference(boxes, scores, thr)


@pytest.mark.parametrize("n, thr", [(2, 0.5), (300, 0.5), (777, 0.7), (500, 0.0), (2000, 0.45)])
def test_opencv_cpu_path_matches_greedy_reference(n, thr):
    """The CPU fast path (OpenCV) must keep exactly what greedy NMS keeps, in the same order."""
    boxes, scores = _random_boxes(n, seed=n + 1)
    assert nms(boxes, scores, thr).tolist() == _greedy_reference(boxes, scores, thr)


def test_nms_ties_keep_input_order():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=torch.float32)
    scores = torch.tensor([0.5, 0.5, 0.9])
    assert nms(boxes, scores, 0.5).tolist() == [2, 0]


def test_nms_empty():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)


def test_nms_30000_boxes_is_greedy():
    """30,000 clustered boxes: kept boxes do not overlap > thr, every removed box overlaps a better kept one
    (these two properties define the greedy result uniquely)."""
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(60, 2, generator=g) * 600
    idx = torch.randint(0, 60, (30000,), generator=g)
    xy = centres[idx] + torch.randn(30000, 2, generator=g) * 3
    wh = 20 + torch.rand(30000, 2, generator=g) * 10
    boxes, scores = torch.cat((xy, xy + wh), 1), torch.rand(30000, generator=g)
    keep = nms(boxes, scores, 0.5)
    assert 60 <= keep.numel() < 2000
    assert (scores[keep][:-1] >= scores[keep][1:]).all()
    kb = boxes[keep]
    iou_kk = box_iou(kb, kb).fill_diagonal_(0)
    assert not (iou_kk > 0.5).any()
    removed = torch.ones(30000, dtype=torch.bool)
    removed[keep] = False
    rank = torch.empty(30000, dtype=torch.long)
    rank[torch.sort(scores, descending=True, stable=True).indices] = torch.arange(30000)
    iou_rk = box_iou(boxes[removed], kb)
    better = rank[keep][None, :] < rank[removed][:, None]
    assert ((iou_rk > 0.5) & better).any(1).all()


def test_soft_nms_hand_example():
    # A: 10x10; B inside A (IoU 0.6 with A); D inside A (IoU 0.4 with A, 2/3 with B); C far away
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 6], [20, 20, 30, 30], [0, 0, 10, 4]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.3, 0.7])
    keep, new = soft_nms(boxes, scores, iou_threshold=0.5, sigma=0.5, score_floor=0.25)
    # A kept (0.9); B decayed to 0.8·e^(-0.36/0.5) = 0.3894, D not decayed (IoU 0.4 <= 0.5);
    # D kept (0.7); B decayed again by e^(-(2/3)²/0.5) -> 0.1601 < 0.25: dropped; C kept (0.3)
    assert keep.tolist() == [0, 3, 2]
    assert new.tolist() == pytest.approx([0.9, 0.7, 0.3], abs=1e-6)
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.3, 0.7])  # input untouched


def test_soft_nms_keeps_decayed_box_above_floor():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 6], [20, 20, 30, 30]], dtype=torch.float32)
    keep, new = soft_nms(boxes, torch.tensor([0.9, 0.8, 0.3]), 0.5)
    assert keep.tolist() == [0, 1, 2]
    assert new[1].item() == pytest.approx(0.8 * math.exp(-0.36 / 0.5), rel=1e-5)


def test_soft_nms_drops_boxes_below_floor_from_the_start():
    keep, new = soft_nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0.2]), 0.5)
    assert keep.numel() == 0 and new.numel() == 0


def _pred(rows: list[list[float]], nm: int = 2) -> torch.Tensor:
    """rows: cx, cy, w, h, obj, cls probs..., coeffs (nm)."""
    return torch.tensor(rows, dtype=torch.float32)[None]


def test_non_max_suppression_pipeline():
    nm = 2
    pred = _pred([
        # cx  cy   w   h   obj  c0   c1   coeffs
        [50, 50, 20, 20, 0.9, 0.9, 0.1, 1.0, 2.0],   # class 0, conf 0.81
        [51, 50, 20, 20, 0.8, 0.1, 0.9, 3.0, 4.0],   # overlaps the first, class 1, conf 0.72
        [52, 50, 20, 20, 0.7, 0.9, 0.2, 5.0, 6.0],   # overlaps the first, class 0: suppressed
        [200, 200, 10, 10, 0.0005, 1.0, 0.0, 7.0, 8.0],  # objectness below conf: dropped
        [300, 300, 10, 10, 0.5, 0.001, 0.0015, 9.0, 9.0],  # conf = 0.00075 < 0.001: dropped
    ], nm)
    (det,) = non_max_suppression(pred, conf_threshold=0.001, iou_threshold=0.5, nm=nm)
    assert isinstance(det, Detections)
    assert det.classes.tolist() == [0, 1]
    assert det.scores.tolist() == pytest.approx([0.81, 0.72])
    assert det.boxes.tolist() == [[40, 40, 60, 60], [41, 40, 61, 60]]
    assert det.coeffs.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert det.classes.dtype == torch.int64

    (agn,) = non_max_suppression(pred, iou_threshold=0.5, agnostic=True, nm=nm)
    assert agn.classes.tolist() == [0]
    (capped,) = non_max_suppression(pred, iou_threshold=0.5, max_det=1, nm=nm)
    assert len(capped) == 1
    # only the two best candidates enter NMS
    (few,) = non_max_suppression(pred, iou_threshold=0.5, max_nms=1, nm=nm)
    assert few.scores.tolist() == pytest.approx([0.81])


def test_non_max_suppression_batch_and_empty_image():
    pred = torch.zeros(2, 3, 5 + 1 + 32)
    pred[0, :, :4] = torch.tensor([[10, 10, 4, 4], [100, 100, 4, 4], [200, 200, 4, 4]])
    pred[0, :, 4] = torch.tensor([0.3, 0.6, 0.9])
    pred[0, :, 5] = 1.0
    out = non_max_suppression(pred)
    assert len(out) == 2
    assert out[0].scores.tolist() == pytest.approx([0.9, 0.6, 0.3])
    assert len(out[1]) == 0 and out[1].coeffs.shape == (0, 32) and out[1].boxes.shape == (0, 4)


def test_non_max_suppression_soft_path_uses_decayed_scores():
    pred = _pred([[5, 5, 10, 10, 0.9, 1.0, 0, 0], [5, 3, 10, 6, 0.8, 1.0, 0, 0]], nm=2)
    (det,) = non_max_suppression(pred, iou_threshold=0.5, soft=True, nm=2)
    assert det.scores.tolist() == pytest.approx([0.9, 0.8 * math.exp(-0.36 / 0.5)], rel=1e-5)


def test_non_max_suppression_rejects_bad_shapes():
    with pytest.raises(ConfigError):
        non_max_suppression(torch.zeros(1, 10, 37))  # 5 + 0 classes + 32
    with pytest.raises(ConfigError):
        non_max_suppression(torch.zeros(10, 38))
