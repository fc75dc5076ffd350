"""Plots are written, readable, and the mosaic draws GT and predictions in their colours."""

from __future__ import annotations

import cv2
import numpy as np

from asfyolo_rt.eval.coco import ImageDet, ImageGT
from asfyolo_rt.eval.metrics import APResult, ap_per_class
from asfyolo_rt.eval.plots import plot_curves, plot_val_mosaic


def test_plot_curves_writes_four_pngs(tmp_path):
    tp = np.array([1, 0, 1, 1, 0], bool)[:, None].repeat(10, 1)
    res = ap_per_class(tp, np.linspace(0.9, 0.1, 5), np.zeros(5), np.zeros(4))
    paths = plot_curves(res, tmp_path, prefix="mask", names={0: "cell"})
    assert sorted(p.name for p in paths) == ["mask_F1_curve.png", "mask_PR_curve.png", "mask_P_curve.png",
                                             "mask_R_curve.png"]
    for p in paths:
        img = cv2.imread(str(p))
        assert img is not None and img.shape[0] > 100 and img.std() > 0  # a real, non-blank image
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    assert len(plot_curves(APResult.empty(), tmp_path / "empty", prefix="box")) == 4


def test_val_mosaic_draws_gt_green_and_predictions_red(tmp_path):
    img = np.zeros((100, 100, 3), np.uint8)
    gt_mask = np.zeros((1, 100, 100), bool)
    gt_mask[0, 10:40, 10:40] = True
    gt = ImageGT("x", 100, 100, np.array([[10.0, 10, 40, 40]]), np.array([0]), gt_mask)
    det = ImageDet("x", np.array([[60.0, 60, 90, 90], [5, 80, 15, 90]]), np.array([0.9, 0.1]), np.array([0, 0]))
    path = plot_val_mosaic([img], [gt], [det], tmp_path / "val_batch0.png")
    out = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert out.shape == (640, 640, 3)  # one tile, scaled x6.4

    def colour_near(y: int, x: int) -> np.ndarray:
        return out[y - 4 : y + 5, x - 4 : x + 5].reshape(-1, 3).max(0)

    g = colour_near(int(25 * 6.4), int(10 * 6.4))   # left edge of the GT mask
    r = colour_near(int(75 * 6.4), int(90 * 6.4))   # right edge of the high-score prediction box
    assert g[1] > 150 and g[0] < 80
    assert r[0] > 150 and r[1] < 80
    assert colour_near(int(85 * 6.4), int(5 * 6.4)).max() == 0  # left edge of the 0.1-score box: not drawn
    assert out[320, 320].tolist() == [0, 0, 0]  # interior untouched
