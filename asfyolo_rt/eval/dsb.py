"""The 2018 Data Science Bowl score (Kaggle, stage 1), on full-resolution instance masks.

For one image and each threshold t in 0.50, 0.55, …, 0.95, predicted instances are matched one to
one to ground-truth instances with mask IoU **> t** (strictly); with TP matches, FP unmatched
predictions and FN unmatched GT, the image scores TP / (TP + FP + FN) at t. The image score is the
mean over the 10 thresholds; the split score is the mean over images.

Since t ≥ 0.5 and non-overlapping instances can overlap one instance by more than half at most
once, matches are unique for label maps; for overlapping instance stacks we match greedily by
descending IoU, which coincides with that whenever matches are unique.

Convention: an image with no GT and no prediction scores 1.0 (nothing to find, nothing invented);
an image with one side empty scores 0.0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from asfyolo_rt.errors import DataError

DSB_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_PIXEL_CHUNK = 1 << 14  # pixels per matmul chunk for overlapping stacks (bounded memory)


@dataclass(frozen=True)
class DSBResult:
    """score: mean over images; per_image: (I,) image scores; per_threshold: (10,) mean over images
    of TP/(TP+FP+FN) at each threshold."""

    score: float
    per_image: np.ndarray
    per_threshold: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "per_image": self.per_image.tolist(),
                "per_threshold": self.per_threshold.tolist(), "thresholds": DSB_THRESHOLDS.round(2).tolist()}


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def instance_iou(gt: Any, pred: Any) -> np.ndarray:
    """IoU of every GT instance with every predicted instance.

    gt, pred: a label map (H, W) int (0 = background, each other value one instance) or an instance
    stack (k, H, W) bool; both of the same (H, W). Returns (m, n) float64.
    """
    g, p = _as_array(gt), _as_array(pred)
    hw_g, hw_p = g.shape[-2:], p.shape[-2:]
    if hw_g != hw_p or g.ndim not in (2, 3) or p.ndim not in (2, 3):
        raise DataError(f"DSB score got GT of shape {g.shape} and prediction of shape {p.shape}; "
                        "expected label maps (H, W) or stacks (k, H, W) of the same size")
    g = _stack_to_labels(g) if g.ndim == 3 else g
    p = _stack_to_labels(p) if p.ndim == 3 else p
    if g.ndim == 2 and p.ndim == 2:
        return _label_iou(g, p)
    return _stack_iou(_labels_to_stack(g), _labels_to_stack(p))


def _stack_to_labels(stack: np.ndarray) -> np.ndarray:
    """Overlap-free stack → label map (1..k); overlapping stacks are returned unchanged."""
    s = stack.astype(bool)
    if s.shape[0] == 0:
        return np.zeros(s.shape[1:], dtype=np.int64)
    if (s.sum(0) > 1).any():
        return s
    labels = np.zeros(s.shape[1:], dtype=np.int64)
    for k in range(s.shape[0]):
        labels[s[k]] = k + 1
    return labels


def _labels_to_stack(x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:
        return x.astype(bool)
    values = np.unique(x)
    values = values[values != 0]
    return x[None] == values[:, None, None]


def _label_iou(g: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Contingency table of two label maps via one bincount; instances keep sorted label order."""
    gv, gi = np.unique(g.ravel(), return_inverse=True)
    pv, pi = np.unique(p.ravel(), return_inverse=True)
    # make index 0 background whether or not background is present
    g_off = 0 if gv[0] == 0 else 1
    p_off = 0 if pv[0] == 0 else 1
    ng, np_ = len(gv) + g_off, len(pv) + p_off
    table = np.bincount((gi + g_off) * np_ + (pi + p_off), minlength=ng * np_).reshape(ng, np_)
    inter = table[1:, 1:].astype(np.float64)
    area_g = table[1:, :].sum(1).astype(np.float64)
    area_p = table[:, 1:].sum(0).astype(np.float64)
    union = area_g[:, None] + area_p[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _stack_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a2 = a.reshape(a.shape[0], -1)
    b2 = b.reshape(b.shape[0], -1)
    inter = np.zeros((a2.shape[0], b2.shape[0]))
    for s in range(0, a2.shape[1], _PIXEL_CHUNK):
        inter += a2[:, s : s + _PIXEL_CHUNK].astype(np.float32) @ b2[:, s : s + _PIXEL_CHUNK].astype(np.float32).T
    union = a2.sum(1)[:, None] + b2.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _count_matches(iou: np.ndarray, t: float) -> int:
    gi, pi = np.nonzero(iou > t)
    if gi.size == 0:
        return 0
    order = np.argsort(-iou[gi, pi], kind="stable")
    used_g: set[int] = set()
    used_p: set[int] = set()
    for g, p in zip(gi[order].tolist(), pi[order].tolist()):
        if g not in used_g and p not in used_p:
            used_g.add(g)
            used_p.add(p)
    return len(used_g)


def dsb_image_scores(gt: Any, pred: Any, thresholds: np.ndarray = DSB_THRESHOLDS) -> np.ndarray:
    """TP/(TP+FP+FN) of one image at each threshold. Returns (T,) float64 (see module docstring)."""
    iou = instance_iou(gt, pred)
    m, n = iou.shape
    scores = np.zeros(len(thresholds))
    for k, t in enumerate(thresholds):
        if m == 0 and n == 0:
            scores[k] = 1.0
            continue
        tp = _count_matches(iou, float(t))
        scores[k] = tp / (m + n - tp)  # TP + FP + FN = (n - TP) + (m - TP) + TP
    return scores


def dsb_score(
    gts: Sequence[Any],
    preds: Sequence[Any],
    progress: Callable[[int, int], None] | None = None,
) -> DSBResult:
    """DSB2018 score of a split. gts, preds: per-image label maps or instance stacks, same order."""
    if len(gts) != len(preds):
        raise DataError(f"dsb_score got {len(gts)} GT images and {len(preds)} predictions; expected equal")
    rows = []
    for i, (g, p) in enumerate(zip(gts, preds)):
        rows.append(dsb_image_scores(g, p))
        if progress is not None:
            progress(i + 1, len(gts))
    table = np.asarray(rows).reshape(-1, len(DSB_THRESHOLDS))
    per_image = table.mean(1)
    return DSBResult(
        score=float(per_image.mean()) if per_image.size else 0.0,
        per_image=per_image,
        per_threshold=table.mean(0) if table.size else np.zeros(len(DSB_THRESHOLDS)),
    )


@dataclass(frozen=True)
class InstanceF1:
    """One-to-one instance matching at mask IoU > threshold (unique for label maps, see module docstring)."""

    tp: int
    fp: int
    fn: int
    threshold: float

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 1.0

    def to_dict(self) -> dict[str, float]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "threshold": self.threshold,
                "precision": round(self.precision, 4), "recall": round(self.recall, 4), "f1": round(self.f1, 4)}


def instance_f1(gt: Any, pred: Any, threshold: float = 0.5) -> InstanceF1:
    """Instance F1 of a predicted label map (or stack) against GT: TP = pairs with mask IoU > threshold.

    An instance that appears twice (two labels on one nucleus) is one TP and one FP; a nucleus split in
    halves is one FN and two FP: duplicates and half-cells both cost F1.
    """
    iou = instance_iou(gt, pred)
    m, n = iou.shape
    tp = _count_matches(iou, threshold)
    return InstanceF1(tp=tp, fp=n - tp, fn=m - tp, threshold=threshold)
