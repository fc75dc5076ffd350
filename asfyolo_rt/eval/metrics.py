"""The official validation metrics (YOLOv5 v7.0 protocol, ASF-YOLO.md §6.3), re-derived.

* **Matching** (:func:`match_predictions`), per IoU threshold t in 0.50:0.05:0.95: every (GT,
  prediction) pair with IoU >= t and the same class is a candidate; candidates are ranked by IoU,
  each prediction keeps its best-IoU GT, then each GT keeps **one** of the predictions that chose
  it. After the per-prediction step the official code leaves the candidates in prediction order,
  so a GT claimed by several predictions goes to the *earliest prediction* (predictions arrive
  sorted by confidence, so the most confident one), not to the highest-IoU one. We reproduce this.
* **AP** (:func:`ap_per_class`), per class and threshold: detections sorted by confidence give a
  recall/precision sequence; it is closed with (recall 0, precision 1) in front and
  (recall 1, precision 0) behind; the precision envelope (running max from the right) is sampled
  with linear interpolation (`np.interp`) at 101 recalls 0, 0.01, …, 1 and integrated with the
  trapezoid rule. Two consequences: a perfect detector scores 0.995, not 1 (the closing point puts
  precision 0 at recall 1 and the last trapezoid halves); and a detector stopping at recall r < 1
  gains the triangle between (r, p(r)) and (1, 0). COCO has neither effect (:mod:`.coco`).
* **P, R, F1**: precision and recall per class as functions of the confidence threshold on a
  1000-point grid; the reported values are taken at the grid point maximising the class-mean F1
  smoothed by a box filter spanning 10 % of the grid.
* **Fitness** (best.pt selection): sum over box and mask of 0.1·mAP50 + 0.9·mAP50:95.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from asfyolo_rt.boxes import box_iou, mask_iou
from asfyolo_rt.errors import DataError

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_EPS = 1e-16
_N_RECALL = 101  # interpolation points of the AP integral
_N_CONF = 1000  # confidence grid of the P/R/F1 curves
_SMOOTH_FRACTION = 0.1  # width of the F1 box filter as a fraction of the grid


def match_predictions(
    pred_classes: np.ndarray,
    gt_classes: np.ndarray,
    iou: np.ndarray,
    thresholds: np.ndarray = IOU_THRESHOLDS,
) -> np.ndarray:
    """True-positive flags of one image's predictions at each IoU threshold.

    pred_classes: (n,) int, predictions in confidence order (highest first); gt_classes: (m,) int;
    iou: (m, n) float IoU of every GT with every prediction; thresholds: (T,) float.
    Returns correct: (n, T) bool. Ties in IoU keep (GT, prediction) row-major order.
    """
    pred_classes, gt_classes, iou = np.asarray(pred_classes), np.asarray(gt_classes), np.asarray(iou)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    n, m = pred_classes.shape[0], gt_classes.shape[0]
    if iou.shape != (m, n):
        raise DataError(f"match_predictions got iou of shape {iou.shape}; expected (m, n) = ({m}, {n})")
    correct = np.zeros((n, thresholds.shape[0]), dtype=bool)
    if n == 0 or m == 0:
        return correct
    same_class = gt_classes[:, None] == pred_classes[None, :]
    for ti, t in enumerate(thresholds):
        gi, pi = np.nonzero((iou >= t) & same_class)
        if gi.size == 0:
            continue
        by_iou = np.argsort(-iou[gi, pi], kind="stable")
        gi, pi = gi[by_iou], pi[by_iou]
        _, first = np.unique(pi, return_index=True)  # best GT per prediction, now in prediction order
        gi, pi = gi[first], pi[first]
        _, first = np.unique(gi, return_index=True)  # earliest prediction per GT
        correct[pi[first], ti] = True
    return correct


def interpolated_ap(recall: np.ndarray, precision: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """101-point interpolated AP of one recall/precision sequence (see module docstring).

    recall, precision: (k,) float, in detection order (recall non-decreasing).
    Returns (AP, envelope precision (k + 2,), closed recall (k + 2,)).
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    envelope = np.maximum.accumulate(mpre[::-1])[::-1]
    x = np.linspace(0.0, 1.0, _N_RECALL)
    y = np.interp(x, mrec, envelope)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x))), envelope, mrec  # trapezoid rule


def box_filter(y: np.ndarray, fraction: float = _SMOOTH_FRACTION) -> np.ndarray:
    """Moving average of odd width ≈ 2·fraction·len(y) + 1, edges padded with the end values."""
    width = round(len(y) * fraction * 2) // 2 + 1
    half = width // 2
    padded = np.concatenate((np.full(half, y[0]), y, np.full(half, y[-1])))
    return np.convolve(padded, np.ones(width) / width, mode="valid")


@dataclass(frozen=True)
class APResult:
    """Per-class metrics and curves of one task (box or mask).

    k = number of classes with ground truth, T = 10 IoU thresholds, G = 1000 grid points.
    classes: (k,) int; n_targets: (k,) int GT count; p, r, f1: (k,) at best_conf; tp, fp: (k,)
    counts implied at best_conf; ap: (k, T); px: (G,) grid (confidence for p/r/f1 curves, recall for
    pr_curve); p_curve, r_curve, f1_curve: (k, G) against confidence; pr_curve: (k, G) envelope
    precision against recall at IoU 0.5; best_conf: the confidence where P, R, F1 are read.
    """

    classes: np.ndarray
    n_targets: np.ndarray
    p: np.ndarray
    r: np.ndarray
    f1: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    ap: np.ndarray
    px: np.ndarray
    p_curve: np.ndarray
    r_curve: np.ndarray
    f1_curve: np.ndarray
    pr_curve: np.ndarray
    best_conf: float

    @property
    def mp(self) -> float:
        return float(self.p.mean()) if self.p.size else 0.0

    @property
    def mr(self) -> float:
        return float(self.r.mean()) if self.r.size else 0.0

    @property
    def map50(self) -> float:
        return float(self.ap[:, 0].mean()) if self.ap.size else 0.0

    @property
    def map(self) -> float:
        return float(self.ap.mean()) if self.ap.size else 0.0

    @classmethod
    def empty(cls, classes: np.ndarray | None = None, n_targets: np.ndarray | None = None) -> APResult:
        """All-zero result (no ground truth, or no true positive at all as the official code does)."""
        c = np.zeros(0, dtype=np.int64) if classes is None else np.asarray(classes, dtype=np.int64)
        nt = np.zeros(c.shape[0], dtype=np.int64) if n_targets is None else np.asarray(n_targets)
        z = np.zeros(c.shape[0])
        zc = np.zeros((c.shape[0], _N_CONF))
        return cls(c, nt, z, z, z, z, z, np.zeros((c.shape[0], 10)), np.linspace(0, 1, _N_CONF),
                   zc, zc, zc, zc, 0.0)


def ap_per_class(
    tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray
) -> APResult:
    """Per-class AP over all images (see module docstring for the protocol).

    tp: (n, T) bool true-positive flags of every prediction; conf: (n,) float confidence;
    pred_cls: (n,) int; target_cls: (m,) int class of every GT instance. Classes are those present
    in target_cls; predictions of other classes are ignored.
    """
    tp = np.asarray(tp, dtype=np.float64)
    conf, pred_cls = np.asarray(conf, dtype=np.float64), np.asarray(pred_cls)
    if tp.ndim != 2 or tp.shape[0] != conf.shape[0] or pred_cls.shape[0] != conf.shape[0]:
        raise DataError(f"ap_per_class got tp {tp.shape}, conf {conf.shape}, pred_cls {pred_cls.shape}; "
                        "expected (n, T), (n,), (n,)")
    order = np.argsort(-conf, kind="stable")
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    classes, n_targets = np.unique(np.asarray(target_cls).astype(np.int64), return_counts=True)
    k, n_thr = classes.shape[0], tp.shape[1]
    px = np.linspace(0.0, 1.0, _N_CONF)
    ap = np.zeros((k, n_thr))
    p_curve, r_curve, pr_curve = np.zeros((k, _N_CONF)), np.zeros((k, _N_CONF)), np.zeros((k, _N_CONF))
    for ci, c in enumerate(classes):
        sel = pred_cls == c
        if not sel.any():
            continue
        tpc = tp[sel].cumsum(0)
        fpc = (1.0 - tp[sel]).cumsum(0)
        recall = tpc / (n_targets[ci] + _EPS)
        precision = tpc / (tpc + fpc)
        # curves against confidence (x must increase for np.interp, hence the negations)
        r_curve[ci] = np.interp(-px, -conf[sel], recall[:, 0], left=0.0)
        p_curve[ci] = np.interp(-px, -conf[sel], precision[:, 0], left=1.0)
        for j in range(n_thr):
            ap[ci, j], envelope, mrec = interpolated_ap(recall[:, j], precision[:, j])
            if j == 0:
                pr_curve[ci] = np.interp(px, mrec, envelope)
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + _EPS)
    best = int(box_filter(f1_curve.mean(0)).argmax()) if k else 0
    p, r, f1 = p_curve[:, best], r_curve[:, best], f1_curve[:, best]
    tp_count = np.round(r * n_targets)
    fp_count = np.round(tp_count / (p + _EPS) - tp_count)
    return APResult(classes, n_targets, p, r, f1, tp_count, fp_count, ap, px, p_curve, r_curve,
                    f1_curve, pr_curve, float(px[best]))


class DetectionsLike(Protocol):
    boxes: Any  # (n, 4) xyxy
    scores: Any  # (n,)
    classes: Any  # (n,)


@dataclass(frozen=True)
class SegMetrics:
    """Box and mask metrics of a validation run (official protocol)."""

    box_p: float
    box_r: float
    box_map50: float
    box_map: float
    mask_p: float
    mask_r: float
    mask_map50: float
    mask_map: float
    fitness: float
    n_images: int
    n_instances: int
    box: APResult = field(repr=False)
    mask: APResult = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: headline numbers and per-class arrays (curves left out)."""
        out: dict[str, Any] = {
            k: getattr(self, k)
            for k in ("box_p", "box_r", "box_map50", "box_map", "mask_p", "mask_r", "mask_map50",
                      "mask_map", "fitness", "n_images", "n_instances")
        }
        for name, res in (("box", self.box), ("mask", self.mask)):
            out[f"{name}_per_class"] = {
                "classes": res.classes.tolist(),
                "n_targets": res.n_targets.tolist(),
                "p": res.p.tolist(),
                "r": res.r.tolist(),
                "ap50": res.ap[:, 0].tolist() if res.ap.size else [],
                "ap50_95": res.ap.mean(1).tolist() if res.ap.size else [],
                "best_conf": res.best_conf,
            }
        out["iou_thresholds"] = IOU_THRESHOLDS.round(2).tolist()
        return out


def fitness(box: APResult, mask: APResult) -> float:
    """0.1·mAP50 + 0.9·mAP50:95, summed over box and mask (official best.pt criterion)."""
    return 0.1 * box.map50 + 0.9 * box.map + 0.1 * mask.map50 + 0.9 * mask.map


class SegMetricsAccumulator:
    """Collects per-image matches, then computes :class:`SegMetrics`.

    Call :meth:`update` once per validation image, then :meth:`compute`.
    """

    def __init__(self, thresholds: np.ndarray = IOU_THRESHOLDS) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self._tp_box: list[np.ndarray] = []
        self._tp_mask: list[np.ndarray] = []
        self._conf: list[np.ndarray] = []
        self._pred_cls: list[np.ndarray] = []
        self._target_cls: list[np.ndarray] = []

    def update(
        self,
        det: DetectionsLike,
        pred_masks: Tensor,
        gt_boxes: Tensor,
        gt_classes: Tensor,
        gt_masks: Tensor,
    ) -> None:
        """Match one image.

        det: boxes (n, 4) xyxy in ORIGINAL image pixels, scores (n,), classes (n,), sorted by score
        (as NMS returns them); pred_masks: (n, Hp, Wp) bool at prototype resolution, letterboxed;
        gt_boxes: (m, 4) xyxy original pixels; gt_classes: (m,) int; gt_masks: (m, Hp, Wp) bool,
        same grid as pred_masks (see asfyolo_rt.infer.masks.resize_gt_masks). Tensors or arrays.
        """
        boxes, scores, classes = (torch.as_tensor(v) for v in (det.boxes, det.scores, det.classes))
        pm, gb, gc, gm = (torch.as_tensor(v) for v in (pred_masks, gt_boxes, gt_classes, gt_masks))
        n, m = boxes.shape[0], gb.shape[0]
        if scores.shape[0] != n or classes.shape[0] != n or pm.shape[0] != n:
            raise DataError(f"update got {n} boxes, {scores.shape[0]} scores, {classes.shape[0]} classes "
                            f"and {pm.shape[0]} masks; expected the same count")
        if gc.shape[0] != m or gm.shape[0] != m:
            raise DataError(f"update got {m} GT boxes, {gc.shape[0]} GT classes and {gm.shape[0]} GT masks; "
                            "expected the same count")
        n_thr = self.thresholds.shape[0]
        tp_box = np.zeros((n, n_thr), dtype=bool)
        tp_mask = np.zeros((n, n_thr), dtype=bool)
        if n and m:
            if pm.shape[1:] != gm.shape[1:]:
                raise DataError(
                    f"predicted masks are {tuple(pm.shape[1:])} but GT masks {tuple(gm.shape[1:])}",
                    hint="resize GT masks with asfyolo_rt.infer.masks.resize_gt_masks(gt, pred.shape[1:])",
                )
            pc, gcn = classes.cpu().numpy(), gc.cpu().numpy()
            iou_b = box_iou(gb.float(), boxes.to(gb.device).float()).cpu().numpy()
            tp_box = match_predictions(pc, gcn, iou_b, self.thresholds)
            iou_m = mask_iou(gm, pm.to(gm.device)).cpu().numpy()
            tp_mask = match_predictions(pc, gcn, iou_m, self.thresholds)
        self._tp_box.append(tp_box)
        self._tp_mask.append(tp_mask)
        self._conf.append(scores.detach().cpu().numpy().astype(np.float64))
        self._pred_cls.append(classes.cpu().numpy().astype(np.int64))
        self._target_cls.append(gc.cpu().numpy().astype(np.int64))

    def update_iou(self, det: DetectionsLike, gt_boxes: Tensor, gt_classes: Tensor, mask_iou_matrix: np.ndarray) -> None:
        """Match one image with a precomputed (m, n) mask IoU matrix (e.g. full-resolution masks held
        box-local, see asfyolo_rt.boxes.packed_mask_iou); boxes as in :meth:`update`."""
        boxes, scores, classes = (torch.as_tensor(v) for v in (det.boxes, det.scores, det.classes))
        gb, gc = torch.as_tensor(gt_boxes), torch.as_tensor(gt_classes)
        n, m = boxes.shape[0], gb.shape[0]
        if mask_iou_matrix.shape != (m, n):
            raise DataError(f"update_iou got a mask IoU matrix {mask_iou_matrix.shape} for {m} GT and {n} predictions")
        n_thr = self.thresholds.shape[0]
        tp_box = np.zeros((n, n_thr), dtype=bool)
        tp_mask = np.zeros((n, n_thr), dtype=bool)
        if n and m:
            pc, gcn = classes.cpu().numpy(), gc.cpu().numpy()
            iou_b = box_iou(gb.float(), boxes.float()).cpu().numpy()
            tp_box = match_predictions(pc, gcn, iou_b, self.thresholds)
            tp_mask = match_predictions(pc, gcn, mask_iou_matrix, self.thresholds)
        self._tp_box.append(tp_box)
        self._tp_mask.append(tp_mask)
        self._conf.append(scores.detach().cpu().numpy().astype(np.float64))
        self._pred_cls.append(classes.cpu().numpy().astype(np.int64))
        self._target_cls.append(gc.cpu().numpy().astype(np.int64))

    def compute(self) -> SegMetrics:
        """Metrics over every image seen so far.

        As in the official validator, if no prediction is a box true positive at any threshold,
        every metric is 0 (per-class arrays still list the classes with ground truth).
        """
        n_thr = self.thresholds.shape[0]
        tp_box = np.concatenate(self._tp_box) if self._tp_box else np.zeros((0, n_thr), bool)
        tp_mask = np.concatenate(self._tp_mask) if self._tp_mask else np.zeros((0, n_thr), bool)
        conf = np.concatenate(self._conf) if self._conf else np.zeros(0)
        pred_cls = np.concatenate(self._pred_cls) if self._pred_cls else np.zeros(0, np.int64)
        target_cls = np.concatenate(self._target_cls) if self._target_cls else np.zeros(0, np.int64)
        if tp_box.any():
            box = ap_per_class(tp_box, conf, pred_cls, target_cls)
            mask = ap_per_class(tp_mask, conf, pred_cls, target_cls)
        else:
            classes, counts = np.unique(target_cls, return_counts=True)
            box = mask = APResult.empty(classes, counts)
        return SegMetrics(
            box_p=box.mp, box_r=box.mr, box_map50=box.map50, box_map=box.map,
            mask_p=mask.mp, mask_r=mask.mr, mask_map50=mask.map50, mask_map=mask.map,
            fitness=fitness(box, mask), n_images=len(self._conf), n_instances=int(target_cls.shape[0]),
            box=box, mask=mask,
        )
