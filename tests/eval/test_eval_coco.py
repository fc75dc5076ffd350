"""COCO cross-check: perfect and shifted predictions, maxDets, agreement with the official mAP50."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asfyolo_rt.errors import DataError
from asfyolo_rt.eval.coco import ImageDet, ImageGT, coco_evaluate, masks_to_rle, polygons_to_rle
from asfyolo_rt.eval.metrics import SegMetricsAccumulator
from asfyolo_rt.infer.nms import Detections


def _rect_masks(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    out = np.zeros((len(boxes), h, w), bool)
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, int)):
        out[k, y1:y2, x1:x2] = True
    return out


def _gt(image_id, boxes, h=80, w=100) -> ImageGT:
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    return ImageGT(image_id, h, w, boxes, np.zeros(len(boxes), int), _rect_masks(boxes, h, w))


def _det(image_id, boxes, scores, h=80, w=100) -> ImageDet:
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    return ImageDet(image_id, boxes, np.asarray(scores, float), np.zeros(len(boxes), int), _rect_masks(boxes, h, w))


def test_perfect_predictions_score_one():
    boxes = [[10, 10, 30, 30], [40, 40, 60, 70]]
    r = coco_evaluate([_gt("a", boxes), _gt("b", [])], [_det("a", boxes, [0.9, 0.8])])
    for task in ("bbox", "segm"):
        assert (r[task]["AP"], r[task]["AP50"], r[task]["AP75"]) == (1.0, 1.0, 1.0)
    assert r["params"]["max_dets"] == 1000 and r["params"]["n_gt"] == 2 and r["params"]["n_images"] == 2


def test_rle_inputs_equal_array_inputs():
    boxes = [[10, 10, 30, 30], [40, 40, 60, 70]]
    g, d = _gt("a", boxes), _det("a", [[12, 10, 32, 30], [40, 40, 60, 70]], [0.9, 0.8])
    g_rle = ImageGT("a", 80, 100, g.boxes, g.classes, masks_to_rle(g.masks, 80, 100))
    d_rle = ImageDet("a", d.boxes, d.scores, d.classes, masks_to_rle(d.masks, 80, 100))
    a, b = coco_evaluate([g], [d]), coco_evaluate([g_rle], [d_rle])
    assert a["segm"]["AP"] == b["segm"]["AP"] and 0.5 < a["segm"]["AP"] < 1.0


def test_shifted_box_ap50_one_ap75_zero():
    # 20x20 box shifted 6 px: IoU = 280 / 520 = 0.54
    r = coco_evaluate([_gt(0, [[10, 10, 30, 30]])], [_det(0, [[16, 10, 36, 30]], [0.9])])
    for task in ("bbox", "segm"):
        assert r[task]["AP50"] == pytest.approx(1.0)
        assert r[task]["AP75"] == pytest.approx(0.0)
        assert r[task]["AP"] == pytest.approx(0.1)  # matched at 0.50 only: 1 of 10 thresholds


def test_false_positive_in_empty_image_counts():
    boxes = [[10, 10, 30, 30]]
    r = coco_evaluate([_gt("a", boxes), _gt("b", [])],
                      [_det("a", boxes, [0.5]), _det("b", [[50, 50, 60, 60]], [0.9])])
    # the FP ranks first: precision 1/2 at recall 1 -> AP 0.5
    assert r["bbox"]["AP50"] == pytest.approx(0.5)


def test_max_dets_truncates_dense_images():
    boxes = [[(k % 15) * 20, (k // 15) * 20, (k % 15) * 20 + 10, (k // 15) * 20 + 10] for k in range(150)]
    gts, dts = [_gt(0, boxes, 200, 300)], [_det(0, boxes, np.linspace(0.9, 0.5, 150), 200, 300)]
    assert coco_evaluate(gts, dts, iou_types=("bbox",))["bbox"]["AP"] == 1.0
    # the COCO default (100) keeps 100 of the 150 detections: recall 2/3
    capped = coco_evaluate(gts, dts, max_dets=100, iou_types=("bbox",))["bbox"]
    assert capped["AP"] == pytest.approx(67 / 101)
    assert capped["AR"] == pytest.approx(100 / 150)


def test_official_map50_agrees_with_coco_ap50():
    """Separated objects, every GT detected (recall 1 at IoU 0.5), false positives interleaved in score:
    both protocols see the same true positives; they differ only in how the 101-point envelope is
    integrated (trapezoid closing to precision 0 at recall 1 vs step average), < 0.01 here."""
    rng = np.random.default_rng(0)
    h, w = 200, 300
    gts, dts = [], []
    acc = SegMetricsAccumulator()
    for i in range(12):
        gt_boxes = np.array([[x, y, x + 30, y + 30] for x in range(10, 200, 50) for y in range(10, 200, 50)], float)
        keep = rng.random(len(gt_boxes)) < 0.8
        gt_boxes = gt_boxes[keep]
        pred = gt_boxes + rng.integers(-3, 4, gt_boxes.shape)
        n_fp = 4
        fp = np.stack([rng.uniform(210, 270, n_fp), rng.uniform(0, 170, n_fp)], 1)
        pred = np.concatenate([pred, np.concatenate([fp, fp + 25], 1).round()])
        scores = rng.uniform(0.05, 1.0, len(pred))
        order = np.argsort(-scores)
        pred, scores = pred[order], scores[order]
        gt = _gt(i, gt_boxes, h, w)
        det = _det(i, pred, scores, h, w)
        gts.append(gt)
        dts.append(det)
        acc.update(Detections(torch.tensor(pred), torch.tensor(scores), torch.zeros(len(pred), dtype=torch.long),
                              torch.zeros(len(pred), 32)),
                   torch.tensor(det.masks), torch.tensor(gt_boxes), torch.zeros(len(gt_boxes), dtype=torch.long),
                   torch.tensor(gt.masks))
    official = acc.compute()
    coco = coco_evaluate(gts, dts)
    assert 0.3 < coco["bbox"]["AP50"] < 0.95  # a non-trivial curve
    assert official.box_map50 == pytest.approx(coco["bbox"]["AP50"], abs=0.01)
    assert official.mask_map50 == pytest.approx(coco["segm"]["AP50"], abs=0.01)


def test_rle_helpers_and_bad_input():
    m = _rect_masks(np.array([[1, 2, 4, 6]]), 8, 8)
    rle = masks_to_rle(m, 8, 8)
    assert len(rle) == 1 and list(rle[0]["size"]) == [8, 8]
    poly = polygons_to_rle([[0, 0, 4, 0, 4, 4, 0, 4]], 8, 8)
    assert len(poly) == 1
    with pytest.raises(DataError):
        masks_to_rle(m, 9, 8)
    with pytest.raises(DataError):
        coco_evaluate([_gt("a", [[0, 0, 5, 5]])], [_det("zzz", [[0, 0, 5, 5]], [0.5])])
    with pytest.raises(DataError):
        coco_evaluate([_gt("a", [[0, 0, 5, 5]])], [], max_dets=0)
