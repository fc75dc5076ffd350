"""One validation function for every backend (ASF-YOLO.md §6.3), four protocols.

`official` and `official-val` reproduce the official code's own validation, quirks included
(asfyolo_rt/eval/official.py); `fit` and `tiled` are ours:

`protocol="fit"` (the paper's): every image letterboxed to img_size, described below.
`protocol="tiled"` (the deployment protocol): every image at its own pixel scale times the model
scale, cut into tiles of img_size (or a static model's shape) by `asfyolo_rt.runtime.stages`, stitched,
and scored with the same matching and 101-point AP on FULL-RESOLUTION masks in original pixels
(box-local, so memory stays bounded on large images); conf/iou/max_det as the fit protocol (max_det per tile).

`validate(backend, split)` with protocol "fit" (the default) uses the official settings with exact
geometry (rectangular batches sorted by aspect ratio, long side = img_size, conf 0.001, NMS IoU 0.6, max_det 300, masks at 1/4 resolution in letterboxed
space, YOLOv5-style matching, 101-point AP) and, on request, two cross-checks on full-resolution
masks in original-image pixels: COCO box/mask AP (faster-coco-eval) and the DSB2018 score.

Backends with a fixed input shape (static ONNX / TensorRT) get every image letterboxed into that
shape instead of a rectangular batch shape; that is the one intended difference between backends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asfyolo_rt.data.dataset import DatasetSplit, Sample
from asfyolo_rt.data.io import read_image
from asfyolo_rt.data.letterbox import LetterboxTransform, preprocess, rect_shape_batch
from asfyolo_rt.errors import ConfigError
from asfyolo_rt.eval.metrics import SegMetricsAccumulator
from asfyolo_rt.eval.results import PROTOCOLS, DetView, Progress, ValConfig, ValResult, finish_result
from asfyolo_rt.infer.backends import Backend, detect_batch
from asfyolo_rt.infer.masks import process_masks_proto
from asfyolo_rt.infer.nms import Detections


@dataclass
class ImagePrediction:
    """What validation (and parity) keeps per image."""

    sample: Sample
    transform: LetterboxTransform
    det: Detections  # boxes in network pixels
    boxes_orig: torch.Tensor  # (n, 4) original pixels
    masks_proto: torch.Tensor  # (n, Hp, Wp) bool


def gt_instances(sample: Sample, shape: tuple[int, int]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Polygons in original pixels, boxes (m, 4) xyxy original pixels, classes (m,) of one sample."""
    h0, w0 = shape
    polys = [p.astype(np.float32) * np.array([w0, h0], np.float32) for p in sample.polygons]
    boxes = np.array([[p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()] for p in polys], np.float32)
    return polys, boxes.reshape(-1, 4), np.asarray(sample.classes, np.int64).reshape(-1)


def gt_masks_proto(polys_orig: list[np.ndarray], t: LetterboxTransform, proto_shape: tuple[int, int]) -> torch.Tensor:
    """GT masks as the official validator sees them: polygons in letterboxed space, rasterised at 1/4
    resolution as one overlap index map (smaller instances painted over larger), split per instance.

    Returns (m, Hp, Wp) bool in the order of `polys_orig`.
    """
    from asfyolo_rt.data.masks import polygons_to_index_map
    from asfyolo_rt.infer.masks import resize_gt_masks

    m = len(polys_orig)
    ds = 4
    grid = (t.net_shape[0] // ds, t.net_shape[1] // ds)
    if m == 0:
        return torch.zeros((0, *proto_shape), dtype=torch.bool)
    polys_net = [t.points_to_network(p) for p in polys_orig]
    index_map, order = polygons_to_index_map(polys_net, t.net_shape, downsample=ds)
    painted = np.empty(m, np.int64)
    painted[np.asarray(order)] = np.arange(1, m + 1)  # painted id of each input instance
    out = torch.from_numpy(index_map[None] == painted[:, None, None])
    return resize_gt_masks(out, proto_shape) if grid != proto_shape else out


def validate(
    backend: Backend,
    split: DatasetSplit,
    config: ValConfig | None = None,
    *,
    progress: Progress | None = None,
    keep_predictions: bool = False,
    plots_dir: str | Path | None = None,
) -> ValResult:
    """Evaluate `backend` on `split` with the official protocol (+ optional COCO and DSB cross-checks).

    Returns a ValResult; with keep_predictions=True, `result.predictions` holds ImagePrediction per image
    (used by parity to compare detections between backends).
    """
    cfg = config or ValConfig()
    if cfg.img_size % 32:
        raise ConfigError(f"img_size must be a multiple of 32, got {cfg.img_size}")
    if not split.samples:
        raise ConfigError(f"split {split.split!r} of {split.root} has no images")
    if cfg.protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {cfg.protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if cfg.protocol.startswith("official"):
        from asfyolo_rt.eval.official import apply_protocol, validate_official

        if keep_predictions:
            raise ConfigError(f"protocol {cfg.protocol!r} keeps no predictions", hint="use fit or tiled")
        return validate_official(backend, split, apply_protocol(cfg), progress, plots_dir)
    if cfg.protocol == "tiled":
        return _validate_tiled(backend, split, cfg, progress, keep_predictions, plots_dir)
    acc = SegMetricsAccumulator()
    coco_gts: list[Any] = []
    coco_dts: list[Any] = []
    dsb_gt: list[np.ndarray] = []
    dsb_pred: list[np.ndarray] = []
    kept: list[ImagePrediction] = []
    t_pre = t_inf = t_post = 0.0
    samples_sorted = sorted(
        split.samples[: cfg.max_images] if cfg.max_images else split.samples,
        key=lambda s: s.image_path.name,
    )
    images_total = len(samples_sorted)
    # official rect batching: sort by aspect ratio (h/w) -> read sizes as we go (one decode per image)
    loaded: list[tuple[Sample, np.ndarray]] = []
    for s in samples_sorted:
        loaded.append((s, read_image(s.image_path)))
    loaded.sort(key=lambda x: x[1].shape[0] / x[1].shape[1])
    bs = backend.max_batch or cfg.batch_size
    done = 0
    mosaic_payload: list[tuple[np.ndarray, DetView, DetView]] = []
    for start in range(0, len(loaded), bs):
        chunk = loaded[start : start + bs]
        imgs = [im for _, im in chunk]
        t0 = time.perf_counter()
        fixed = backend.input_shape or cfg.fixed_shape
        shape: tuple[int, int] = fixed if fixed is not None else rect_shape_batch([im.shape[:2] for im in imgs], cfg.img_size)
        size = None if fixed is not None else cfg.img_size
        x, transforms = preprocess(imgs, shape, size=size)
        t1 = time.perf_counter()
        dets, protos, forward_s = detect_batch(backend, x, conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det,
                                               soft=cfg.soft_nms)
        t2 = t1 + forward_s  # NMS counts as post-processing
        net_shape = (int(x.shape[2]), int(x.shape[3]))
        for i, ((sample, img), t, det) in enumerate(zip(chunk, transforms, dets)):
            det = Detections(det.boxes.cpu(), det.scores.cpu(), det.classes.cpu(), det.coeffs.cpu())
            pr = protos[i].cpu()
            masks = process_masks_proto(pr, det.coeffs, det.boxes, net_shape)
            boxes_orig = t.boxes_to_original(det.boxes.clone())
            polys, gt_boxes, gt_cls = gt_instances(sample, img.shape[:2])
            gtm = gt_masks_proto(polys, t, (int(pr.shape[1]), int(pr.shape[2])))
            acc.update(DetView(boxes_orig, det.scores, det.classes), masks, torch.from_numpy(gt_boxes),
                       torch.from_numpy(gt_cls), gtm)
            if cfg.coco or cfg.dsb:
                _full_res(sample, img, pr, det, boxes_orig, t, net_shape, polys, gt_boxes, gt_cls, cfg,
                          coco_gts, coco_dts, dsb_gt, dsb_pred)
            if keep_predictions:
                kept.append(ImagePrediction(sample, t, det, boxes_orig, masks))
            if plots_dir is not None and len(mosaic_payload) < 16:
                mosaic_payload.append((img, DetView(torch.from_numpy(gt_boxes), torch.ones(len(gt_boxes)), torch.from_numpy(gt_cls)),
                                       DetView(boxes_orig, det.scores, det.classes)))
        t3 = time.perf_counter()
        t_pre, t_inf, t_post = t_pre + (t1 - t0), t_inf + (t2 - t1), t_post + (t3 - t2)
        done += len(chunk)
        if progress:
            progress(done, images_total)
    n = max(done, 1)
    metrics = acc.compute()
    result = ValResult(
        metrics=metrics,
        config=cfg,
        speed_ms={"preprocess": 1e3 * t_pre / n, "inference": 1e3 * t_inf / n, "postprocess": 1e3 * t_post / n},
        backend={"name": backend.name, "precision": backend.precision,
                 "input_shape": list(backend.input_shape) if backend.input_shape else None},
        n_images=done,
    )
    return finish_result(result, cfg, coco_gts, coco_dts, dsb_gt, dsb_pred, kept if keep_predictions else None,
                         plots_dir, mosaic_payload)


@dataclass
class TiledPrediction:
    """What tiled validation keeps per image (parity compares these between backends)."""

    sample: Sample
    result: Any  # asfyolo_rt.runtime.stages.FrameResult, original pixels


def gt_packed(polys: list[np.ndarray], shape: tuple[int, int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """GT masks at full resolution, box-local: windows (m, 4) [x0, y0, w, h] and m crops (h, w) uint8."""
    from asfyolo_rt.data.masks import _rasterise

    windows, crops = [], []
    for r0, c0, crop in _rasterise(polys, shape, 1):
        windows.append([c0, r0, crop.shape[1], crop.shape[0]])
        crops.append(crop)
    return np.asarray(windows, np.int64).reshape(-1, 4), crops


def _validate_tiled(backend: Backend, split: DatasetSplit, cfg: ValConfig, progress: Progress | None,
                    keep_predictions: bool, plots_dir: str | Path | None) -> ValResult:
    from asfyolo_rt.boxes import window_mask_iou
    from asfyolo_rt.eval.coco import ImageDet, ImageGT
    from asfyolo_rt.infer.writers import window_rle
    from asfyolo_rt.runtime.stages import Geometry, PostConfig, Runner

    geo = Geometry("native", img_size=None if backend.input_shape else cfg.img_size, tile_overlap=cfg.tile_overlap,
                   model_scale=cfg.model_scale, batch=backend.max_batch or cfg.batch_size)
    post = PostConfig(conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det, soft_nms=cfg.soft_nms)
    runner = Runner(backend, geo, post, max_object_px=cfg.max_object_px)
    acc = SegMetricsAccumulator()
    coco_gts: list[Any] = []
    coco_dts: list[Any] = []
    dsb_gt: list[np.ndarray] = []
    dsb_pred: list[np.ndarray] = []
    kept: list[TiledPrediction] = []
    mosaic_payload: list[tuple[np.ndarray, DetView, DetView]] = []
    samples = sorted(split.samples[: cfg.max_images] if cfg.max_images else split.samples, key=lambda s: s.image_path.name)
    times = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    tiles = 0
    for done, sample in enumerate(samples, 1):
        img = read_image(sample.image_path)
        h0, w0 = img.shape[:2]
        res = runner(img)
        tiles += res.tiles
        for k, v in res.timing_ms.items():
            times[k] += v
        t0 = time.perf_counter()
        polys, gt_boxes, gt_cls = gt_instances(sample, (h0, w0))
        gt_win, gt_crops = gt_packed(polys, (h0, w0))
        packed: Any = res.masks
        pred_win = packed.windows.numpy().astype(np.int64)
        pred_crops = [packed.mask(i).numpy() for i in range(len(res))]
        iou_m = window_mask_iou(gt_win, gt_crops, pred_win, pred_crops)
        acc.update_iou(DetView(res.boxes, res.scores, res.classes), torch.from_numpy(gt_boxes),
                       torch.from_numpy(gt_cls), iou_m)
        if cfg.coco:
            gt_rles = [window_rle(c, int(w[0]), int(w[1]), h0, w0) for w, c in zip(gt_win, gt_crops)]
            dt_rles = [window_rle(c, int(w[0]), int(w[1]), h0, w0) for w, c in zip(pred_win, pred_crops)]
            coco_gts.append(ImageGT(str(sample.image_path), h0, w0, gt_boxes, gt_cls, gt_rles))
            coco_dts.append(ImageDet(str(sample.image_path), res.boxes.numpy(), res.scores.numpy(),
                                     res.classes.numpy(), dt_rles))
        if cfg.dsb:
            from asfyolo_rt.data.masks import polygons_to_index_map
            dsb_gt.append(polygons_to_index_map(polys, (h0, w0))[0].astype(np.int32) if polys
                          else np.zeros((h0, w0), np.int32))
            sel = torch.nonzero(res.scores >= cfg.dsb_conf).reshape(-1)
            dsb_pred.append(res.select(sel).final_labels(cfg.min_visible)[1])  # the label image predict writes
        if keep_predictions:
            kept.append(TiledPrediction(sample, res))
        if plots_dir is not None and len(mosaic_payload) < 16:
            mosaic_payload.append((img, DetView(torch.from_numpy(gt_boxes), torch.ones(len(gt_boxes)),
                                                torch.from_numpy(gt_cls)), DetView(res.boxes, res.scores, res.classes)))
        times["postprocess"] += 1e3 * (time.perf_counter() - t0)
        if progress:
            progress(done, len(samples))
    n = max(len(samples), 1)
    metrics = acc.compute()
    result = ValResult(
        metrics=metrics, config=cfg, speed_ms={k: v / n for k, v in times.items()},
        backend={"name": backend.name, "precision": backend.precision,
                 "input_shape": list(backend.input_shape) if backend.input_shape else None,
                 "tile": list(runner.tile), "tile_overlap": runner.overlap, "tiles": tiles},
        n_images=len(samples),
    )
    return finish_result(result, cfg, coco_gts, coco_dts, dsb_gt, dsb_pred, kept if keep_predictions else None,
                         plots_dir, mosaic_payload)


def _full_res(sample: Sample, img: np.ndarray, protos: torch.Tensor, det: Detections, boxes_orig: torch.Tensor,
              t: LetterboxTransform, net_shape: tuple[int, int], polys: list[np.ndarray], gt_boxes: np.ndarray,
              gt_cls: np.ndarray, cfg: ValConfig, coco_gts: list, coco_dts: list, dsb_gt: list, dsb_pred: list) -> None:
    """Full-resolution cross-check inputs of one image, O(H*W) memory whatever the instance count.

    Predicted masks come from the same box-bounded mask assembly as `predict` (label map + box-local
    masks); GT instances are rasterised one at a time and kept as RLE.
    """
    from asfyolo_rt.data.masks import polygons_to_index_map, polygons_to_masks
    from asfyolo_rt.data.rle import rle_encode
    from asfyolo_rt.eval.coco import ImageDet, ImageGT
    from asfyolo_rt.infer.predict import assemble
    from asfyolo_rt.infer.writers import window_rle

    h0, w0 = img.shape[:2]
    _, packed = assemble(protos, det, t)
    if cfg.coco:
        gt_rles = [rle_encode(polygons_to_masks([p], (h0, w0))[0]) for p in polys]
        dt_rles = []
        for i in range(len(det)):
            x0, y0, _, _ = (int(v) for v in packed.windows[i].tolist())  # type: ignore[attr-defined]
            dt_rles.append(window_rle(packed.mask(i).cpu().numpy(), x0, y0, h0, w0))  # type: ignore[attr-defined]
        coco_gts.append(ImageGT(str(sample.image_path), h0, w0, gt_boxes, gt_cls, gt_rles))
        coco_dts.append(ImageDet(str(sample.image_path), boxes_orig.numpy(), det.scores.numpy(), det.classes.numpy(),
                                 dt_rles))
    if cfg.dsb:
        index_map = polygons_to_index_map(polys, (h0, w0))[0] if polys else np.zeros((h0, w0), np.int32)
        dsb_gt.append(index_map.astype(np.int32))
        keep = det.scores >= cfg.dsb_conf
        final = Detections(det.boxes[keep], det.scores[keep], det.classes[keep], det.coeffs[keep])
        dsb_pred.append(assemble(protos, final, t)[0].astype(np.int32))
