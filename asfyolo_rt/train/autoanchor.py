"""AutoAnchor: check the anchors against the training boxes and re-fit them when recall is low (§5.2).

Box sizes are taken with each image's long side at the training size and jittered by a random
0.9-1.1 scale. Best possible recall (BPR) = fraction of boxes with at least one anchor whose w and h
ratios are both within 1/thr .. thr (thr = anchor_t = 4). When BPR <= 0.98 the anchors are
re-estimated: k-means (9 clusters, on whitened w, h of boxes >= 2 px), then 1,000 generations of
random multiplicative mutation (probability 0.9, sigma 0.1, factors clipped to 0.3-3, anchors >= 2 px)
keeping a mutation only when it raises the fitness = mean over boxes of the best anchor's ratio
metric where that is above 1/thr. The new anchors replace the old ones only if their BPR is higher.
Anchors are returned sorted by area, 3 per level (P3 smallest). Everything is seeded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

BPR_THRESHOLD = 0.98


@dataclass
class AnchorReport:
    """What AutoAnchor did. anchors: (9, 2) float32 pixels, sorted by area (3 per level)."""

    anchors: np.ndarray
    bpr_before: float
    bpr_after: float
    refit: bool  # True when the returned anchors are new
    fitness_history: list[float] = field(default_factory=list)  # best fitness after each generation


def _ratio_metric(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(M, K) per box and anchor: min over w, h of min(r, 1/r), r = box / anchor (1 = identical)."""
    r = wh[:, None, :] / anchors[None, :, :]
    return np.minimum(r, 1 / r).min(2)


def best_possible_recall(wh: np.ndarray, anchors: np.ndarray, thr: float = 4.0) -> float:
    """Fraction of boxes wh (M, 2) with an anchor (K, 2) within ratio thr in both w and h."""
    if len(wh) == 0:
        return 1.0
    best = _ratio_metric(wh, anchors).max(1)
    return float((best > 1 / thr).mean())


def anchor_fitness(wh: np.ndarray, anchors: np.ndarray, thr: float = 4.0) -> float:
    """Mean best-anchor ratio metric, counting only boxes above 1/thr (the evolution's objective)."""
    best = _ratio_metric(wh, anchors).max(1)
    return float((best * (best > 1 / thr)).mean())


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iters: int = 30) -> np.ndarray:
    """Lloyd's k-means with k-means++ initialisation. points: (M, D). Returns (k, D) centres."""
    m = len(points)
    centres = [points[rng.integers(m)]]
    for _ in range(1, k):
        d2 = ((points[:, None, :] - np.array(centres)[None]) ** 2).sum(2).min(1)
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(m, 1 / m)
        centres.append(points[rng.choice(m, p=p)])
    c = np.array(centres, np.float64)
    for _ in range(iters):
        lab = ((points[:, None, :] - c[None]) ** 2).sum(2).argmin(1)
        new = np.array([points[lab == j].mean(0) if (lab == j).any() else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return c


def evolve_anchors(
    wh: np.ndarray, anchors: np.ndarray, rng: np.random.Generator, *, thr: float = 4.0, generations: int = 1000,
    mutation_prob: float = 0.9, sigma: float = 0.1,
) -> tuple[np.ndarray, list[float]]:
    """Random multiplicative mutation, keeping only improvements. Returns (anchors, best fitness per gen)."""
    k = anchors.astype(np.float64).copy()
    f = anchor_fitness(wh, k, thr)
    history = []
    for _ in range(generations):
        v = np.ones_like(k)
        while (v == 1).all():  # mutate until something changes
            v = ((rng.random(k.shape) < mutation_prob) * rng.random() * rng.standard_normal(k.shape) * sigma + 1)
            v = v.clip(0.3, 3.0)
        kg = (k * v).clip(min=2.0)
        fg = anchor_fitness(wh, kg, thr)
        if fg > f:
            f, k = fg, kg
        history.append(f)
    return k, history


def fit_anchors(
    wh: np.ndarray, anchors: np.ndarray, *, thr: float = 4.0, seed: int = 0, generations: int = 1000,
    force: bool = False,
) -> AnchorReport:
    """Check `anchors` (9, 2) px against box sizes `wh` (M, 2) px; re-fit them when BPR <= 0.98.

    force=True re-fits regardless of the BPR (the result is still kept only if its BPR is higher).
    """
    rng = np.random.default_rng(seed)
    anchors = np.asarray(anchors, np.float64).reshape(-1, 2)
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    jittered = wh * rng.uniform(0.9, 1.1, size=(len(wh), 1))
    bpr = best_possible_recall(jittered, anchors, thr)
    if (bpr > BPR_THRESHOLD and not force) or len(wh) < 2:
        return AnchorReport(anchors.astype(np.float32), bpr, bpr, False)
    n = len(anchors)
    small = (wh < 3.0).any(1).sum()
    if small:
        log.info("%d of %d boxes are smaller than 3 px", small, len(wh))
    fit = wh[(wh >= 2.0).any(1)]
    if len(fit) < n:
        return AnchorReport(anchors.astype(np.float32), bpr, bpr, False)
    std = fit.std(0)
    std[std == 0] = 1.0
    centres = kmeans(fit / std, n, rng) * std
    centres = centres[np.argsort(centres.prod(1))]
    evolved, history = evolve_anchors(fit, centres, rng, thr=thr, generations=generations)
    evolved = evolved[np.argsort(evolved.prod(1))]
    new_bpr = best_possible_recall(jittered, evolved, thr)
    if new_bpr > bpr:
        log.info("AutoAnchor: BPR %.4f -> %.4f, new anchors %s", bpr, new_bpr, np.round(evolved, 1).tolist())
        return AnchorReport(evolved.astype(np.float32), bpr, new_bpr, True, history)
    log.info("AutoAnchor: re-fitted anchors do not raise BPR (%.4f vs %.4f); keeping the originals", new_bpr, bpr)
    return AnchorReport(anchors.astype(np.float32), bpr, bpr, False, history)
