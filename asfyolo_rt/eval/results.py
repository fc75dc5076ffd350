"""What every validation protocol shares: its config, its result, and the step that completes a result.

:mod:`.validate` (protocols "fit" and "tiled") and :mod:`.official` (protocols "official" and
"official-val") both build a :class:`ValResult` from a :class:`ValConfig` and hand it to
:func:`finish_result` for the cross-checks, kept predictions and plots. Both import this module; it
imports neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from asfyolo_rt.eval.metrics import SegMetrics

Progress = Callable[[int, int], None]  # progress(images_done, images_total)
# fit: exact geometry, whole images (default); tiled: deployment; official / official-val: eval/official.py
PROTOCOLS = ("fit", "tiled", "official", "official-val")


@dataclass(frozen=True)
class ValConfig:
    img_size: int = 640  # long side of every image after resizing (official: 640)
    batch_size: int = 16  # official training-time validation: 2 x training batch
    conf: float = 0.001
    iou: float = 0.6
    max_det: int = 300
    soft_nms: bool = False  # Gaussian soft-NMS as the paper describes (§6.1); the official code uses hard NMS
    coco: bool = False  # COCO-style cross-check on full-resolution masks (faster-coco-eval)
    dsb: bool = False  # DSB2018 per-image score on full-resolution label maps (detections >= dsb_conf)
    max_images: int | None = None  # evaluate only the first N images (in file order)
    coco_max_dets: int = 1000
    dsb_conf: float = 0.25  # the DSB score judges final label images: detections below this are not drawn
    fixed_shape: tuple[int, int] | None = None  # letterbox every image into this (H, W) (parity across backends)
    protocol: str = "fit"  # one of PROTOCOLS: "fit" (whole-image letterbox, exact geometry), "tiled" (native
    # scale, tiles, full-res masks), "official" / "official-val" (the official code's numbers, eval/official.py)
    model_scale: float = 1.0  # "tiled": network pixels per image pixel
    tile_overlap: int | None = None  # "tiled": overlap of neighbouring tiles (default: from the checkpoint)
    max_object_px: float | None = None  # "tiled": the checkpoint's largest training object (default overlap)
    min_visible: float = 0.5  # "tiled" DSB score: label images as predict writes them (occluded duplicates dropped)


@dataclass
class ValResult:
    metrics: SegMetrics
    config: ValConfig
    speed_ms: dict[str, float]  # per image: preprocess, inference, postprocess
    coco: dict[str, Any] | None = None
    dsb: float | None = None
    dsb_per_image: list[float] | None = None
    # instance F1 at mask IoU 0.5 of the same label images (counts summed over images): what predict draws
    label_f1: dict[str, float] | None = None
    backend: dict[str, Any] = field(default_factory=dict)
    n_images: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metrics": self.metrics.to_dict(),
            "config": asdict(self.config),
            "speed_ms": self.speed_ms,
            "backend": self.backend,
            "n_images": self.n_images,
        }
        if self.coco is not None:
            out["coco"] = self.coco
        if self.dsb is not None:
            out["dsb_score"] = self.dsb
        if self.label_f1 is not None:
            out["label_f1"] = self.label_f1
        return out

    def summary(self) -> dict[str, float]:
        """The headline numbers (fractions in [0, 1])."""
        m = self.metrics
        out = {
            "box_map50": m.box_map50, "box_map": m.box_map, "mask_map50": m.mask_map50, "mask_map": m.mask_map,
            "box_p": m.box_p, "box_r": m.box_r, "mask_p": m.mask_p, "mask_r": m.mask_r,
        }
        if self.coco is not None:
            for task in ("bbox", "segm"):
                if task in self.coco:
                    out[f"coco_{task}_ap"] = self.coco[task].get("AP")
                    out[f"coco_{task}_ap50"] = self.coco[task].get("AP50")
        if self.dsb is not None:
            out["dsb_score"] = self.dsb
        if self.label_f1 is not None:
            out["label_f1"] = self.label_f1["f1"]
        return out


@dataclass
class DetView:
    """One image's detections or ground truth as the metrics and the validation mosaic read them.

    boxes: (n, 4) float32 xyxy in original pixels; scores: (n,) float32 in [0, 1] (1 for ground
    truth); classes: (n,) integer class ids.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor


def finish_result(result: ValResult, cfg: ValConfig, coco_gts: list, coco_dts: list, dsb_gt: list, dsb_pred: list,
                  kept: list | None, plots_dir: str | Path | None, mosaic_payload: list) -> ValResult:
    """The cross-checks, kept predictions and plots shared by every protocol; returns `result`, completed.

    coco_gts / coco_dts: per-image :class:`asfyolo_rt.eval.coco.ImageGT` / ``ImageDet`` (read when
    cfg.coco); dsb_gt / dsb_pred: per-image (H, W) int32 label images (read when cfg.dsb); kept: the
    per-image predictions to attach as ``result.predictions`` (None: attach nothing); mosaic_payload:
    up to 16 (image, gt DetView, pred DetView) drawn into ``plots_dir`` (None: no plots).
    """
    if cfg.coco:
        from asfyolo_rt.eval.coco import coco_evaluate

        result.coco = coco_evaluate(coco_gts, coco_dts, max_dets=cfg.coco_max_dets)
    if cfg.dsb:
        from asfyolo_rt.eval.dsb import InstanceF1, dsb_score, instance_f1

        d = dsb_score(dsb_gt, dsb_pred)
        result.dsb, result.dsb_per_image = float(d.score), [float(v) for v in d.per_image]
        counts = [instance_f1(g, p) for g, p in zip(dsb_gt, dsb_pred)]
        total = InstanceF1(tp=sum(c.tp for c in counts), fp=sum(c.fp for c in counts), fn=sum(c.fn for c in counts),
                           threshold=0.5)
        result.label_f1 = {"conf": cfg.dsb_conf, **total.to_dict()}
    if kept is not None:
        result.predictions = kept  # type: ignore[attr-defined]
    if plots_dir is not None:
        _plots(Path(plots_dir), result.metrics, mosaic_payload)
    return result


def _plots(out: Path, metrics: SegMetrics, payload: list) -> None:
    from asfyolo_rt.eval import plots

    out.mkdir(parents=True, exist_ok=True)
    plots.plot_curves(metrics.box, out, prefix="box")
    plots.plot_curves(metrics.mask, out, prefix="mask")
    if payload:
        plots.plot_val_mosaic([p[0] for p in payload], [p[1] for p in payload], [p[2] for p in payload],
                              out / "val_mosaic.jpg")
