"""Headless validation plots: PR / F1 / P / R curves and GT-vs-prediction mosaics.

Curves use matplotlib's object API with the Agg canvas (no pyplot global state, no display);
mosaics are drawn with OpenCV. Files are written atomically (temporary file + rename).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from asfyolo_rt.atomic import atomic_target
from asfyolo_rt.errors import AsfYoloError, DataError
from asfyolo_rt.eval.metrics import APResult, box_filter

_GT_COLOUR = (0, 220, 0)  # RGB green
_PRED_COLOUR = (255, 40, 40)  # RGB red
_MARK_COLOUR = (255, 230, 0)  # RGB yellow: instances where the two sides disagree
_TILE = 640  # px, longest side of one mosaic tile
_MAX_CLASS_LINES = 20  # above this, only the class mean is drawn


def _save_figure(fig: Any, path: Path) -> Path:
    with atomic_target(path) as tmp:
        fig.savefig(tmp, dpi=200, format="png")
    return path


def _new_axes() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 6), tight_layout=True)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _class_label(c: int, names: Mapping[int, str] | None) -> str:
    return names.get(int(c), str(c)) if names else str(c)


def plot_curves(
    result: APResult,
    out_dir: str | Path,
    prefix: str = "box",
    names: Mapping[int, str] | None = None,
) -> list[Path]:
    """Write ``{prefix}_PR_curve.png``, ``{prefix}_F1_curve.png``, ``{prefix}_P_curve.png`` and
    ``{prefix}_R_curve.png`` into out_dir; returns their paths.

    result: an APResult (box or mask) from :func:`asfyolo_rt.eval.metrics.ap_per_class`;
    names: optional class index → name.
    """
    out_dir = Path(out_dir)
    k = result.classes.shape[0]
    per_class = 0 < k <= _MAX_CLASS_LINES
    paths = []

    fig, ax = _new_axes()
    if per_class:
        for i, c in enumerate(result.classes):
            ax.plot(result.px, result.pr_curve[i], linewidth=1,
                    label=f"{_class_label(c, names)} {result.ap[i, 0]:.3f}")
    mean_pr = result.pr_curve.mean(0) if k else np.zeros_like(result.px)
    ax.plot(result.px, mean_pr, linewidth=3, color="blue", label=f"all classes {result.map50:.3f} mAP@0.5")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01), title=f"{prefix} precision-recall")
    ax.legend(loc="lower left")
    paths.append(_save_figure(fig, out_dir / f"{prefix}_PR_curve.png"))

    for curve, name, ylabel in ((result.f1_curve, "F1", "F1"), (result.p_curve, "P", "Precision"),
                                (result.r_curve, "R", "Recall")):
        fig, ax = _new_axes()
        if per_class:
            for i, c in enumerate(result.classes):
                ax.plot(result.px, curve[i], linewidth=1, label=_class_label(c, names))
        mean = box_filter(curve.mean(0)) if k else np.zeros_like(result.px)
        best = int(mean.argmax())
        ax.plot(result.px, mean, linewidth=3, color="blue",
                label=f"all classes {mean[best]:.2f} at {result.px[best]:.3f}")
        ax.set(xlabel="Confidence", ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.01), title=f"{prefix} {ylabel}-confidence")
        ax.legend(loc="lower left")
        paths.append(_save_figure(fig, out_dir / f"{prefix}_{name}_curve.png"))
    return paths


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _draw_instances(canvas: np.ndarray, boxes: Any, masks: Any, colour: tuple[int, int, int], thick: int) -> None:
    if masks is not None and not isinstance(masks, (list, tuple)):
        stack = _np(masks).astype(np.uint8)
        for m in stack:
            contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(canvas, contours, -1, colour, thick)
        return
    for x1, y1, x2, y2 in _np(boxes).reshape(-1, 4):
        cv2.rectangle(canvas, (round(float(x1)), round(float(y1))), (round(float(x2)), round(float(y2))), colour, thick)


def plot_val_mosaic(
    images: Sequence[Any],
    gts: Sequence[Any],
    dets: Sequence[Any],
    path: str | Path,
    max_images: int = 16,
    min_score: float = 0.25,
    legend: tuple[str, str] = ("GT", "pred"),
    highlights: Sequence[Any] | None = None,
) -> Path:
    """Grid of images with GT outlines (green) and prediction outlines (red).

    legend: what green and red stand for, written on every tile (parity: "reference", "candidate").
    highlights: per image, (k, 4) xyxy boxes to outline thickly in yellow (e.g. instances the two sides
    disagree on), labelled "disagree" in the legend.

    images: (H, W, 3) uint8 RGB arrays; gts: objects with ``boxes`` (m, 4) xyxy and optional
    ``masks`` (m, H, W) bool in that image's pixels (e.g. :class:`asfyolo_rt.eval.coco.ImageGT`);
    dets: objects with ``boxes``, ``scores`` and optional ``masks`` (e.g. ImageDet), drawn when
    score >= min_score. Masks are outlined by their contours, otherwise boxes are drawn.
    Writes an image (format from the suffix, e.g. .jpg/.png) and returns its path.
    """
    if not (len(images) == len(gts) == len(dets)):
        raise DataError(f"plot_val_mosaic got {len(images)} images, {len(gts)} GT and {len(dets)} detections")
    n = min(len(images), max_images)
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    mosaic = np.full((rows * _TILE, cols * _TILE, 3), 255, dtype=np.uint8)
    for i in range(n):
        img = np.ascontiguousarray(_np(images[i]).astype(np.uint8))
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        h, w = img.shape[:2]
        scale = _TILE / max(h, w)
        thick = max(1, round(1.5 / scale))
        canvas = img.copy()
        _draw_instances(canvas, gts[i].boxes, getattr(gts[i], "masks", None), _GT_COLOUR, thick)
        keep = _np(dets[i].scores).reshape(-1) >= min_score
        det_masks = getattr(dets[i], "masks", None)
        if det_masks is not None and not isinstance(det_masks, (list, tuple)):
            det_masks = _np(det_masks)[keep]
        _draw_instances(canvas, _np(dets[i].boxes).reshape(-1, 4)[keep], det_masks, _PRED_COLOUR, thick)
        if highlights is not None:
            for x1, y1, x2, y2 in _np(highlights[i]).reshape(-1, 4):
                pad = 2 * thick
                cv2.rectangle(canvas, (round(float(x1)) - pad, round(float(y1)) - pad),
                              (round(float(x2)) + pad, round(float(y2)) + pad), _MARK_COLOUR, 2 * thick)
        tile = cv2.resize(canvas, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        r, c = divmod(i, cols)
        mosaic[r * _TILE : r * _TILE + tile.shape[0], c * _TILE : c * _TILE + tile.shape[1]] = tile
        x = c * _TILE + 5
        entries = [(legend[0], _GT_COLOUR), (legend[1], _PRED_COLOUR)]
        if highlights is not None:
            entries.append(("disagree", _MARK_COLOUR))
        for text, colour in [*entries, (str(getattr(gts[i], "image_id", i))[:40], (255, 255, 255))]:
            cv2.putText(mosaic, text, (x, r * _TILE + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2)
            x += cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2)[0][0] + 12
    path = Path(path)
    with atomic_target(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(mosaic, cv2.COLOR_RGB2BGR)):
            raise AsfYoloError(f"OpenCV could not write {path}", hint="use a .png or .jpg file name")
    return path
