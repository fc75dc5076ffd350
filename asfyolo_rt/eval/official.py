"""Protocols "official" and "official-val": the official ASF-YOLO validation reproduced exactly.

* ``official`` — what the official training loop validates with (and what its results.csv reports):
  rectangular batches of 16 images sorted by aspect ratio, padding 0.5 stride, conf 0.001, NMS IoU 0.6,
  max_det 300, overlap ground-truth masks at 1/4 resolution.
* ``official-val`` — the defaults of the official ``segment/val.py`` command line: batch 1 (every image
  its own rectangle), conf 0.01, NMS IoU 0.45, max_det 300, one full-resolution ground-truth mask per
  instance (no overlap), shrunk to the prototype grid for matching.

Both use the official loader's placement and ground truth (:mod:`.official_gt`: truncating resize,
whole-pixel padding with a float label shift, cv2-filled polygon masks), predicted masks at prototype
resolution, float32 IoUs with the 1e-7 epsilon against float32 thresholds 0.50:0.05:0.95, the official
candidate ordering in matching (a descending argsort of IoU, not a stable one), detections ranked by
``np.argsort(-conf)``, and the 101-point AP integrated with ``np.trapezoid``. As in the official code,
every metric is 0 when no prediction is a *mask* true positive. The settings are fixed by the protocol
(conf, IoU, max_det, batching); COCO and DSB cross-checks belong to the ``fit`` and ``tiled`` protocols.

Written from the documented behaviour of the official code; none of it is copied.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from asfyolo_rt.data.dataset import DatasetSplit
from asfyolo_rt.data.io import read_image
from asfyolo_rt.errors import ConfigError
from asfyolo_rt.eval.metrics import APResult, SegMetrics, ap_per_class, fitness, interpolated_ap
from asfyolo_rt.eval.official_gt import official_batches, official_letterbox, official_targets
from asfyolo_rt.eval.results import DetView, Progress, ValConfig, ValResult, finish_result
from asfyolo_rt.infer.backends import detect_batch
from asfyolo_rt.infer.masks import process_masks_proto
from asfyolo_rt.infer.nms import Detections

if TYPE_CHECKING:
    from asfyolo_rt.infer.backends import Backend

IOU_THRESHOLDS_F32 = torch.linspace(0.5, 0.95, 10)  # float32, as the official validator compares
_IOU_EPS = 1e-7


@dataclass(frozen=True)
class OfficialProtocol:
    """The fixed settings of one official protocol."""

    name: str
    conf: float
    iou: float
    max_det: int
    batch: int  # images per rectangular batch (decides each batch's network shape)
    pad: float  # rectangle padding in strides
    overlap: bool  # one overlap index map per image (True) or one mask per instance
    mask_ratio: int  # ground-truth masks rasterised at 1/mask_ratio of the network input

    def describe(self) -> str:
        masks = f"overlap masks at 1/{self.mask_ratio}" if self.overlap else (
            "full-resolution masks" if self.mask_ratio == 1 else f"masks at 1/{self.mask_ratio}")
        return (f"rect batches of {self.batch}, pad {self.pad}, conf {self.conf}, NMS IoU {self.iou}, "
                f"max_det {self.max_det}, {masks}")


PROTOCOLS = {
    "official": OfficialProtocol("official", 0.001, 0.6, 300, 16, 0.5, True, 4),
    "official-val": OfficialProtocol("official-val", 0.01, 0.45, 300, 1, 0.5, False, 1),
}


def protocol_settings(name: str) -> OfficialProtocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"--protocol {name!r}: expected one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def apply_protocol(cfg: ValConfig) -> ValConfig:
    """`cfg` with the protocol's fixed settings (conf, IoU, max_det, batch) and no cross-checks."""
    p = protocol_settings(cfg.protocol)
    return replace(cfg, conf=p.conf, iou=p.iou, max_det=p.max_det, batch_size=p.batch, soft_nms=False,
                   coco=False, dsb=False)


def box_iou_official(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """(m, n) float32 IoU of xyxy boxes, intersection / (union + 1e-7)."""
    a, b = gt.float(), pred.float()
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(0).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + _IOU_EPS)


def mask_iou_official(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """(m, n) float32 IoU of binary masks (m, H, W) and (n, H, W), intersection / (union + 1e-7)."""
    a = gt.reshape(gt.shape[0], -1).float()
    b = pred.reshape(pred.shape[0], -1).float()
    inter = (a @ b.T).clamp(0)
    return inter / (a.sum(1)[:, None] + b.sum(1)[None, :] - inter + _IOU_EPS)


def official_match(pred_cls: np.ndarray, gt_cls: np.ndarray, iou: torch.Tensor) -> np.ndarray:
    """(n, 10) bool true positives of one image's n predictions against m GT (iou: (m, n) float32).

    Per threshold: candidates (GT, prediction) with IoU >= t and equal class in row-major order,
    ordered by a descending argsort of their IoU; each prediction keeps its first candidate, then
    each GT its first remaining one in prediction order.
    """
    n = len(pred_cls)
    correct = np.zeros((n, IOU_THRESHOLDS_F32.numel()), dtype=bool)
    if n == 0 or len(gt_cls) == 0:
        return correct
    same = torch.from_numpy(np.asarray(gt_cls)[:, None] == np.asarray(pred_cls)[None, :])
    for t, thr in enumerate(IOU_THRESHOLDS_F32):
        gi, pi = torch.where((iou >= thr) & same)
        if gi.numel() == 0:
            continue
        g, p = gi.numpy(), pi.numpy()
        if g.shape[0] > 1:
            order = np.argsort(iou[gi, pi].numpy())[::-1]
            g, p = g[order], p[order]
            _, first = np.unique(p, return_index=True)
            g, p = g[first], p[first]
            _, first = np.unique(g, return_index=True)
            g, p = g[first], p[first]
        correct[p, t] = True
    return correct


def official_ap_per_class(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray) -> APResult:
    """:func:`ap_per_class` with the official detection ranking (``np.argsort(-conf)``, whose ties are
    not in input order) and the AP integral taken with ``np.trapezoid``."""
    order = np.argsort(-np.asarray(conf))
    tp, conf, pred_cls = np.asarray(tp)[order], np.asarray(conf)[order], np.asarray(pred_cls)[order]
    res = ap_per_class(tp, conf, pred_cls, target_cls)  # its stable sort keeps this order
    x = np.linspace(0.0, 1.0, 101)
    ap = np.zeros_like(res.ap)
    tpf = tp.astype(np.float64)
    for ci, c in enumerate(res.classes):
        sel = pred_cls == c
        if not sel.any():
            continue
        tpc, fpc = tpf[sel].cumsum(0), (1.0 - tpf[sel]).cumsum(0)
        recall, precision = tpc / (res.n_targets[ci] + 1e-16), tpc / (tpc + fpc)
        for j in range(tp.shape[1]):
            _, envelope, mrec = interpolated_ap(recall[:, j], precision[:, j])
            ap[ci, j] = np.trapezoid(np.interp(x, mrec, envelope), x)
    return replace(res, ap=ap)


class OfficialAccumulator:
    """Per-image true positives in the official order; :meth:`compute` gives :class:`SegMetrics`."""

    def __init__(self) -> None:
        self.tp_box: list[np.ndarray] = []
        self.tp_mask: list[np.ndarray] = []
        self.conf: list[np.ndarray] = []
        self.pred_cls: list[np.ndarray] = []
        self.target_cls: list[np.ndarray] = []
        self.n_images = 0

    def update(self, boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, masks: torch.Tensor,
               gt_boxes: torch.Tensor, gt_classes: np.ndarray, gt_masks: torch.Tensor) -> None:
        """boxes/gt_boxes: original pixels (mapped the official way); masks/gt_masks: same grid."""
        self.n_images += 1
        n, m = boxes.shape[0], gt_boxes.shape[0]
        if n == 0 and m == 0:
            return  # the official validator records nothing for such an image
        pc = classes.numpy().astype(np.int64)
        self.tp_box.append(official_match(pc, gt_classes, box_iou_official(gt_boxes, boxes)))
        self.tp_mask.append(official_match(pc, gt_classes, mask_iou_official(gt_masks, masks)))
        self.conf.append(scores.numpy().astype(np.float32))
        self.pred_cls.append(pc)
        self.target_cls.append(np.asarray(gt_classes, np.int64))

    def compute(self) -> SegMetrics:
        cat = (lambda xs, empty: np.concatenate(xs) if xs else empty)  # noqa: E731
        tp_b, tp_m = cat(self.tp_box, np.zeros((0, 10), bool)), cat(self.tp_mask, np.zeros((0, 10), bool))
        conf, pcls = cat(self.conf, np.zeros(0, np.float32)), cat(self.pred_cls, np.zeros(0, np.int64))
        tcls = cat(self.target_cls, np.zeros(0, np.int64))
        if tp_m.any():
            box, mask = official_ap_per_class(tp_b, conf, pcls, tcls), official_ap_per_class(tp_m, conf, pcls, tcls)
        else:
            classes, counts = np.unique(tcls, return_counts=True)
            box = mask = APResult.empty(classes, counts)
        return SegMetrics(box_p=box.mp, box_r=box.mr, box_map50=box.map50, box_map=box.map,
                          mask_p=mask.mp, mask_r=mask.mr, mask_map50=mask.map50, mask_map=mask.map,
                          fitness=fitness(box, mask), n_images=self.n_images, n_instances=int(tcls.shape[0]),
                          box=box, mask=mask)


def validate_official(backend: Backend, split: DatasetSplit, cfg: ValConfig, progress: Progress | None,
                      plots_dir: str | Path | None) -> ValResult:
    """Evaluate with protocol cfg.protocol ("official" or "official-val"); cfg as given by :func:`apply_protocol`."""
    proto = protocol_settings(cfg.protocol)
    samples = sorted(split.samples[: cfg.max_images] if cfg.max_images else split.samples,
                     key=lambda s: str(s.image_path))
    images = [read_image(s.image_path) for s in samples]
    fixed = backend.input_shape or cfg.fixed_shape
    batches = official_batches([im.shape[:2] for im in images], proto.batch, cfg.img_size, pad=proto.pad)
    acc = OfficialAccumulator()
    mosaic: list[tuple[np.ndarray, DetView, DetView]] = []
    t_pre = t_inf = t_post = 0.0
    done = 0
    for idx, rect in batches:
        t0 = time.perf_counter()
        net_shape = fixed if fixed is not None else rect
        placed = [official_letterbox(images[i], net_shape, cfg.img_size) for i in idx]
        x = torch.from_numpy(np.stack([p[0] for p in placed])).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
        t1 = time.perf_counter()
        dets, protos, forward_s = detect_batch(backend, x, conf=proto.conf, iou=proto.iou, max_det=proto.max_det)
        t2 = t1 + forward_s  # NMS counts as post-processing
        for k, (i, det) in enumerate(zip(idx, dets)):
            place = placed[k][1]
            det = Detections(det.boxes.cpu(), det.scores.cpu(), det.classes.cpu(), det.coeffs.cpu())
            pr = protos[k].cpu()
            masks = process_masks_proto(pr, det.coeffs, det.boxes, net_shape)
            gt = official_targets(samples[i], place, (int(pr.shape[1]), int(pr.shape[2])),
                                  overlap=proto.overlap, mask_ratio=proto.mask_ratio)
            boxes_orig = place.boxes_to_original(det.boxes)
            acc.update(boxes_orig, det.scores, det.classes, masks, gt.boxes_orig, gt.classes, gt.masks)
            if plots_dir is not None and len(mosaic) < 16:
                mosaic.append((images[i], DetView(gt.boxes_orig, torch.ones(len(gt.classes)), torch.from_numpy(gt.classes)),
                               DetView(boxes_orig, det.scores, det.classes)))
        t3 = time.perf_counter()
        t_pre, t_inf, t_post = t_pre + (t1 - t0), t_inf + (t2 - t1), t_post + (t3 - t2)
        done += len(idx)
        if progress:
            progress(done, len(samples))
    n = max(done, 1)
    result = ValResult(
        metrics=acc.compute(), config=cfg,
        speed_ms={"preprocess": 1e3 * t_pre / n, "inference": 1e3 * t_inf / n, "postprocess": 1e3 * t_post / n},
        backend={"name": backend.name, "precision": backend.precision,
                 "input_shape": list(backend.input_shape) if backend.input_shape else None,
                 "protocol_settings": proto.describe()},
        n_images=done,
    )
    return finish_result(result, cfg, [], [], [], [], None, plots_dir, mosaic)
