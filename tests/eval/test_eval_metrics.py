"""Official metrics: matching, 101-point AP, P/R at max F1, the accumulator. Values computed by hand.

IoU values in the hand cases avoid the thresholds themselves (0.56 not 0.55): np.linspace(0.5, 0.95, 10)
does not hit the decimal values exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from asfyolo_rt.errors import DataError
from asfyolo_rt.eval.metrics import (
    IOU_THRESHOLDS,
    SegMetricsAccumulator,
    ap_per_class,
    box_filter,
    interpolated_ap,
    match_predictions,
)
from asfyolo_rt.infer.nms import Detections


def _ap_trapezoid(values_at_grid: np.ndarray) -> float:
    return float(0.01 * (values_at_grid.sum() - (values_at_grid[0] + values_at_grid[-1]) / 2))


def test_match_two_gt_three_predictions():
    iou = np.array([[0.91, 0.62, 0.00],
                    [0.00, 0.72, 0.56]])
    correct = match_predictions(np.zeros(3, int), np.zeros(2, int), iou)
    # p0 matches g0 up to t = 0.90; p1 matches g1 up to t = 0.70; p2 only ever competes for g1 and loses
    expected = np.zeros((3, 10), bool)
    expected[0, :9] = True
    expected[1, :5] = True
    assert correct.shape == (3, 10)
    np.testing.assert_array_equal(correct, expected)


def test_match_gt_goes_to_earliest_prediction_not_highest_iou():
    # one GT, two predictions in confidence order: p0 IoU 0.62, p1 IoU 0.93
    correct = match_predictions(np.zeros(2, int), np.zeros(1, int), np.array([[0.62, 0.93]]))
    expected = np.zeros((2, 10), bool)
    expected[0, :3] = True   # t <= 0.60: both qualify, the GT goes to the earlier prediction
    expected[1, 3:9] = True  # 0.65 <= t <= 0.90: only p1 qualifies
    np.testing.assert_array_equal(correct, expected)


def test_match_prediction_takes_its_best_gt():
    # p0 overlaps g0 (0.6) and g1 (0.8): it takes g1; p1 then matches g0
    iou = np.array([[0.61, 0.7], [0.81, 0.0]])
    correct = match_predictions(np.zeros(2, int), np.zeros(2, int), iou)
    assert correct[:, 0].tolist() == [True, True]


def test_match_requires_same_class_and_handles_empty():
    iou = np.array([[0.99]])
    assert not match_predictions(np.array([1]), np.array([0]), iou).any()
    assert match_predictions(np.zeros(0, int), np.zeros(2, int), np.zeros((2, 0))).shape == (0, 10)
    assert match_predictions(np.zeros(3, int), np.zeros(0, int), np.zeros((0, 3))).shape == (3, 10)
    with pytest.raises(DataError):
        match_predictions(np.zeros(3, int), np.zeros(2, int), np.zeros((3, 2)))


def test_perfect_detector_ap_is_0995():
    """The official integral closes the curve at (recall 1, precision 0): a perfect detector gets 0.995."""
    res = ap_per_class(np.ones((5, 10), bool), np.linspace(0.9, 0.5, 5), np.zeros(5), np.zeros(5))
    np.testing.assert_allclose(res.ap, 0.995, atol=1e-12)
    assert res.p.tolist() == [1.0] and res.r.tolist() == pytest.approx([1.0])
    assert res.map50 == pytest.approx(0.995) and res.map == pytest.approx(0.995)


def test_ap_known_sequence():
    # TP, FP, TP with 3 GT: recall 1/3, 1/3, 2/3; precision 1, 1/2, 2/3
    # envelope: 1 up to recall 1/3, 2/3 up to 2/3, then linear to 0 at recall 1
    tp = np.array([[1], [0], [1]], bool)
    res = ap_per_class(tp, np.array([0.9, 0.8, 0.7]), np.zeros(3), np.zeros(3))
    x = np.linspace(0, 1, 101)
    grid = np.where(x < 1 / 3, 1.0, np.where(x <= 2 / 3, 2 / 3, 2 * (1 - x)))
    assert res.ap[0, 0] == pytest.approx(_ap_trapezoid(grid), abs=1e-12)
    assert res.ap[0, 0] == pytest.approx(0.6672, abs=1e-12)


def test_ap_tail_triangle():
    ap, envelope, mrec = interpolated_ap(np.array([0.5]), np.array([1.0]))
    assert ap == pytest.approx(0.75, abs=1e-12)  # 0.5 + triangle 0.5 * 0.5 * 1
    assert mrec.tolist() == [0.0, 0.5, 1.0] and envelope.tolist() == [1.0, 1.0, 0.0]


def test_ap_sorts_by_confidence_and_ignores_classes_without_gt():
    # same predictions as test_ap_known_sequence, shuffled, plus a class-7 prediction (no GT of class 7)
    tp = np.array([[1], [1], [0], [1]], bool)
    res = ap_per_class(tp, np.array([0.7, 0.99, 0.8, 0.9]), np.array([0, 7, 0, 0]), np.zeros(3))
    assert res.classes.tolist() == [0]
    assert res.ap[0, 0] == pytest.approx(0.6672, abs=1e-12)


def test_p_r_at_max_f1():
    # two TPs (0.9, 0.8), two FPs (0.3, 0.2), 2 GT. Curves are linear in confidence between predictions:
    # recall is 1 from 0.8 down; precision falls linearly from 1 (at 0.8) to 2/3 (at 0.3)
    tp = np.array([1, 1, 0, 0], bool)[:, None].repeat(10, 1)
    res = ap_per_class(tp, np.array([0.9, 0.8, 0.3, 0.2]), np.zeros(4), np.zeros(2))
    assert 0.3 < res.best_conf <= 0.8
    assert res.r[0] == pytest.approx(1.0) and 2 / 3 < res.p[0] < 1.0
    assert res.p[0] == pytest.approx(1 - (0.8 - res.best_conf) / 0.5 / 3)
    assert res.tp.tolist() == [2.0] and res.fp.tolist() == [0.0]
    assert res.p_curve.shape == res.r_curve.shape == res.f1_curve.shape == res.pr_curve.shape == (1, 1000)
    # without false positives P = R = 1 at the chosen confidence
    clean = ap_per_class(tp[:2], np.array([0.9, 0.8]), np.zeros(2), np.zeros(2))
    assert clean.p[0] == pytest.approx(1.0) and clean.r[0] == pytest.approx(1.0) and clean.best_conf <= 0.8


def test_f1_is_smoothed_before_the_argmax():
    # FP 0.51, TP 0.50, FP 0.49 with 1 GT: raw F1 is 0 above 0.51, a narrow spike of 2/3 at 0.50 and
    # 1/2 below 0.49. The 0.1-wide box filter flattens the spike, so the maximum moves onto the plateau
    # (just below 0.49, where the window still catches the spike's flank): P = 1/3 there, not 1/2.
    tp = np.array([0, 1, 0], bool)[:, None].repeat(10, 1)
    res = ap_per_class(tp, np.array([0.51, 0.50, 0.49]), np.zeros(3), np.zeros(1))
    assert 0.4 < res.best_conf < 0.49
    assert res.p[0] == pytest.approx(1 / 3) and res.r[0] == pytest.approx(1.0)


def test_box_filter_width_and_edges():
    y = np.zeros(1000)
    y[500] = 101.0
    out = box_filter(y)
    assert out.shape == (1000,)
    assert out[450:551].tolist() == pytest.approx([1.0] * 101) and out[449] == 0 and out[551] == 0
    assert box_filter(np.ones(1000)).tolist() == pytest.approx([1.0] * 1000)


def _square_mask(x1: int, y1: int, x2: int, y2: int, size: int = 40) -> torch.Tensor:
    m = torch.zeros(size, size, dtype=torch.bool)
    m[y1:y2, x1:x2] = True
    return m


def test_accumulator_hand_case():
    acc = SegMetricsAccumulator()
    # image 1: two GT, two predictions with perfect boxes; the second mask has IoU 0.72 with its GT
    gt_boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    gt_masks = torch.stack([_square_mask(0, 0, 10, 10), _square_mask(20, 20, 30, 30)])
    pred_masks = torch.stack([_square_mask(0, 0, 10, 10), _square_mask(20, 20, 30, 30)])
    pred_masks[1, 20:28, 20:23] = False  # 100 - 24 = 76 px
    pred_masks[1, 28:30, 20:22] = False  # 76 - 4 = 72 px, all inside the GT: IoU 72 / 100
    det = Detections(boxes=gt_boxes.clone(), scores=torch.tensor([0.9, 0.8]),
                     classes=torch.tensor([0, 0]), coeffs=torch.zeros(2, 32))
    acc.update(det, pred_masks, gt_boxes, torch.tensor([0, 0]), gt_masks)
    # image 2: one GT, no prediction (n = 0)
    acc.update(Detections.empty(), torch.zeros(0, 40, 40, dtype=torch.bool), torch.tensor([[5.0, 5, 15, 15]]),
               torch.tensor([0]), _square_mask(5, 5, 15, 15)[None])
    # image 3: no GT, one low-confidence prediction (m = 0)
    acc.update(Detections(torch.tensor([[1.0, 1, 4, 4]]), torch.tensor([0.1]), torch.tensor([0]), torch.zeros(1, 32)),
               _square_mask(1, 1, 4, 4)[None], torch.zeros(0, 4), torch.zeros(0, dtype=torch.long),
               torch.zeros(0, 40, 40, dtype=torch.bool))
    m = acc.compute()
    x = np.linspace(0, 1, 101)
    # box, every threshold: TP, TP, FP with 3 GT -> envelope 1 up to 2/3, then linear to 0
    ap_full = _ap_trapezoid(np.where(x <= 2 / 3, 1.0, 2 * (1 - x)))
    # mask above IoU 0.72: TP, FP, FP -> envelope 1 up to 1/3, then linear from 1/3 to 0
    ap_low = _ap_trapezoid(np.where(x <= 1 / 3, 1.0, (1 - x) / 2))
    assert ap_full == pytest.approx(0.7772) and ap_low == pytest.approx(0.44555)
    assert m.box_map50 == pytest.approx(ap_full) and m.box_map == pytest.approx(ap_full)
    assert m.mask_map50 == pytest.approx(ap_full)
    assert m.mask.ap[0].tolist() == pytest.approx([ap_full] * 5 + [ap_low] * 5)
    assert m.mask_map == pytest.approx((ap_full + ap_low) / 2)
    assert m.fitness == pytest.approx(0.1 * ap_full + 0.9 * ap_full + 0.1 * ap_full + 0.9 * (ap_full + ap_low) / 2)
    # precision is linear in confidence between 0.8 (1) and 0.1 (2/3); recall is 2/3 there
    assert 0.1 < m.box.best_conf <= 0.8 and m.box_r == pytest.approx(2 / 3)
    assert m.box_p == pytest.approx(1 - (0.8 - m.box.best_conf) / 0.7 / 3)
    assert m.n_images == 3 and m.n_instances == 3
    d = json.loads(json.dumps(m.to_dict()))
    assert d["box_map50"] == pytest.approx(ap_full) and d["mask_per_class"]["classes"] == [0]


def test_accumulator_box_iou_uses_original_coordinates():
    acc = SegMetricsAccumulator()
    # predicted box shifted: IoU = 80 / 120 = 0.667 -> TP up to t = 0.65 only
    det = Detections(torch.tensor([[2.0, 0, 12, 10]]), torch.tensor([0.9]), torch.tensor([0]), torch.zeros(1, 32))
    masks = _square_mask(0, 0, 10, 10)[None]
    acc.update(det, masks, torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0]), masks)
    assert acc._tp_box[0][0].tolist() == [True] * 4 + [False] * 6
    assert acc._tp_mask[0][0].all()


def test_accumulator_without_true_positives_reports_zero():
    acc = SegMetricsAccumulator()
    det = Detections(torch.tensor([[20.0, 20, 30, 30]]), torch.tensor([0.9]), torch.tensor([0]), torch.zeros(1, 32))
    acc.update(det, _square_mask(20, 20, 30, 30)[None], torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0]),
               _square_mask(0, 0, 10, 10)[None])
    m = acc.compute()
    assert (m.box_map, m.mask_map, m.box_p, m.fitness) == (0.0, 0.0, 0.0, 0.0)
    assert m.box.classes.tolist() == [0]
    empty = SegMetricsAccumulator().compute()
    assert empty.n_images == 0 and empty.box_map50 == 0.0


def test_accumulator_rejects_mismatched_mask_sizes():
    acc = SegMetricsAccumulator()
    det = Detections(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0.9]), torch.tensor([0]), torch.zeros(1, 32))
    with pytest.raises(DataError):
        acc.update(det, torch.ones(1, 8, 8, dtype=torch.bool), torch.tensor([[0.0, 0, 10, 10]]),
                   torch.tensor([0]), torch.ones(1, 16, 16, dtype=torch.bool))


def test_iou_thresholds():
    assert IOU_THRESHOLDS.round(2).tolist() == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
