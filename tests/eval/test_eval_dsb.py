"""DSB2018 score on hand-made label maps."""

from __future__ import annotations

import numpy as np
import pytest

from asfyolo_rt.errors import DataError
from asfyolo_rt.eval.dsb import dsb_image_scores, dsb_score, instance_iou


def _labels(*rects: tuple[int, int, int, int, int], size: int = 20) -> np.ndarray:
    out = np.zeros((size, size), np.int32)
    for label, y1, x1, y2, x2 in rects:
        out[y1:y2, x1:x2] = label
    return out


def test_one_perfect_one_missed():
    gt = _labels((1, 0, 0, 5, 5), (2, 10, 10, 15, 15))
    pred = _labels((1, 0, 0, 5, 5))
    # TP 1, FP 0, FN 1 at every threshold
    assert dsb_image_scores(gt, pred).tolist() == [0.5] * 10


def test_partial_overlap_counts_up_to_its_iou():
    gt = _labels((1, 0, 0, 10, 10))
    pred = _labels((1, 0, 0, 10, 10))
    pred[0:2, 0:10] = 0   # 20 px removed
    pred[2, 0:2] = 0      # 2 more: IoU 78 / 100
    s = dsb_image_scores(gt, pred)
    # IoU 0.78 > t for t = 0.50 … 0.75 (6 thresholds): score 1; then TP 0, FP 1, FN 1: score 0
    assert s.tolist() == [1.0] * 6 + [0.0] * 4
    assert s.mean() == pytest.approx(0.6)


def test_iou_exactly_half_is_not_a_match():
    gt = _labels((1, 0, 0, 2, 2))
    pred = _labels((1, 0, 0, 1, 2))  # 2 px inside a 4 px GT: IoU 0.5
    assert instance_iou(gt, pred)[0, 0] == 0.5
    assert dsb_image_scores(gt, pred).tolist() == [0.0] * 10


def test_empty_conventions():
    empty = np.zeros((8, 8), int)
    one = _labels((1, 0, 0, 3, 3), size=8)
    assert dsb_image_scores(empty, empty).tolist() == [1.0] * 10
    assert dsb_image_scores(one, empty).tolist() == [0.0] * 10
    assert dsb_image_scores(empty, one).tolist() == [0.0] * 10


def test_label_values_stacks_and_split_mean():
    gt = _labels((5, 0, 0, 5, 5), (17, 10, 10, 15, 15))  # arbitrary label values
    pred_stack = np.zeros((3, 20, 20), bool)
    pred_stack[0, 10:15, 10:15] = True  # matches label 17
    pred_stack[1, 0:5, 0:5] = True      # matches label 5
    pred_stack[2, 0:3, 16:19] = True    # false positive
    iou = instance_iou(gt, pred_stack)
    assert iou.shape == (2, 3)
    assert iou.round(6).tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    # TP 2, FP 1, FN 0 -> 2/3
    assert dsb_image_scores(gt, pred_stack).tolist() == pytest.approx([2 / 3] * 10)
    overlapping = np.concatenate([pred_stack, pred_stack[:1]])  # duplicate: overlapping stack path
    assert dsb_image_scores(gt, overlapping).tolist() == pytest.approx([2 / 4] * 10)
    res = dsb_score([gt, np.zeros((4, 4), int)], [pred_stack, np.zeros((4, 4), int)])
    assert res.per_image.tolist() == pytest.approx([2 / 3, 1.0])
    assert res.score == pytest.approx((2 / 3 + 1.0) / 2)
    assert res.to_dict()["thresholds"][-1] == 0.95


def test_shape_mismatch_raises():
    with pytest.raises(DataError):
        dsb_image_scores(np.zeros((4, 4), int), np.zeros((5, 4), int))
    with pytest.raises(DataError):
        dsb_score([np.zeros((4, 4), int)], [])
