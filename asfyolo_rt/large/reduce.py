"""The global NMS of a whole image's blocks, as a reduction over boxes only.

`asfyolo_rt.runtime.stages.merge` runs one greedy NMS over every detection of an image. Greedy NMS decides a
box from the boxes that overlap it above the threshold, which are decided the same way: the result on the
whole image equals the union of its results on the connected groups of the "overlaps above the threshold"
graph. The groups come from a sweep over boxes sorted in horizontal bands (each box compared with the boxes
of its band and the next whose x ranges can meet: linear in the number of cells, not quadratic), and each
group runs through the same `asfyolo_rt.infer.nms.nms` on the same class-shifted boxes as `merge`. Masks
are never loaded: they stay in the block records.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from asfyolo_rt.infer.nms import MAX_WH, nms

EPS = 1e-6  # the candidate graph takes pairs a little below the threshold: NMS itself decides, exactly


def overlap_pairs(boxes: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """(i, j), i < j: the pairs of boxes (n, 4) xyxy whose IoU exceeds iou - EPS."""
    n = boxes.shape[0]
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    b = boxes.astype(np.float64)
    band = max(1.0, math.ceil(float((b[:, 3] - b[:, 1]).max())) + 1.0)
    wmax = float((b[:, 2] - b[:, 0]).max()) + 1.0
    by = np.floor((b[:, 1] - b[:, 1].min()) / band)
    span = float(b[:, 2].max() - b[:, 0].min()) + 4 * wmax + 4
    x = b[:, 0] - b[:, 0].min()
    key = by * span + x
    order = np.argsort(key, kind="stable")
    ks = key[order]
    ii, jj = [], []
    for off in (0.0, 1.0):
        lo = np.searchsorted(ks, (by + off) * span + x - wmax, "left")
        hi = np.searchsorted(ks, (by + off) * span + x + (b[:, 2] - b[:, 0]), "right")
        cnt = hi - lo
        total = int(cnt.sum())
        if total == 0:
            continue
        i = np.repeat(np.arange(n), cnt)
        start = np.repeat(lo - (np.cumsum(cnt) - cnt), cnt)
        j = order[start + np.arange(total)]
        keep = i < j if off == 0.0 else i != j
        ii.append(i[keep])
        jj.append(j[keep])
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i, j = np.concatenate(ii), np.concatenate(jj)
    i, j = np.minimum(i, j), np.maximum(i, j)
    iw = np.clip(np.minimum(b[i, 2], b[j, 2]) - np.maximum(b[i, 0], b[j, 0]), 0, None)
    ih = np.clip(np.minimum(b[i, 3], b[j, 3]) - np.maximum(b[i, 1], b[j, 1]), 0, None)
    inter = iw * ih
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area[i] + area[j] - inter
    hit = inter > (iou - EPS) * np.maximum(union, 1e-12)
    return i[hit], j[hit]


def global_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, size: tuple[int, int], iou: float,
               apply: bool = True) -> np.ndarray:
    """Indices of the detections `merge` keeps (boxes (n, 4) float32 image px, scores (n,), classes (n,) in
    the order the blocks were concatenated), sorted by score descending, ties in input order."""
    n = int(scores.shape[0])
    if n == 0:
        return np.zeros(0, np.int64)
    s = torch.from_numpy(np.ascontiguousarray(scores, np.float32))
    if not apply:
        return torch.sort(s, descending=True, stable=True).indices.numpy().astype(np.int64)
    cls = torch.from_numpy(np.ascontiguousarray(classes, np.int64))
    shifted = torch.from_numpy(np.ascontiguousarray(boxes, np.float32)) + cls[:, None].float() * float(
        max(MAX_WH, max(size) + 1))  # merge's class-aware shift, the same float32 values
    i, j = overlap_pairs(shifted.numpy(), iou)
    keep = np.ones(n, bool)
    if i.size:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        graph = coo_matrix((np.ones(i.size, np.int8), (i, j)), shape=(n, n))
        _, label = connected_components(graph, directed=False)
        sizes = np.bincount(label)
        grouped = np.nonzero(sizes[label] > 1)[0]
        order = grouped[np.argsort(label[grouped], kind="stable")]
        for members in np.split(order, np.nonzero(np.diff(label[order]))[0] + 1):
            idx = torch.from_numpy(np.sort(members))
            kept = nms(shifted[idx], s[idx], iou)
            keep[idx.numpy()] = False
            keep[idx[kept].numpy()] = True
    survivors = torch.from_numpy(np.nonzero(keep)[0])
    return survivors[torch.sort(s[survivors], descending=True, stable=True).indices].numpy().astype(np.int64)
