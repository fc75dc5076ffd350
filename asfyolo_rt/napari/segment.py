"""Segment an image layer's data (2-D, or every plane of a z-stack / time-lapse) with one `Segmenter`.

Qt-free, so the widget's worker thread, `asfyolo-rt view --run` and the tests share it. Every plane goes
through `asfyolo_rt.Segmenter.segment` (native-scale tiles or the whole-image letterbox, duplicates covered
by better cells dropped, cells measured on the label image), the pipeline of `asfyolo-rt predict`. Planes are converted to the model's input like image files are
(`asfyolo_rt.data.io.to_uint8_rgb`: each plane's 0.1..99.9 percentiles to 0..255).

A stack's label ids run on from plane to plane, so every cell of the stack has its own id and one
features table describes all of them (column `plane` gives the flat plane index).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt.errors import ConfigError, DataError
from asfyolo_rt.runtime.segmenter import Segmenter


@dataclass(frozen=True)
class ModelSettings:
    """What the widget (or `view --weights`) asks for. model: a shipped name (dsb2018, bcc) or a file
    (.safetensors / .pt checkpoint, exported .onnx of any precision, TensorRT .engine/.plan)."""

    model: str = "dsb2018"
    conf: float | None = None  # None: the model's tuned threshold (`weights tune-conf`), else 0.25
    iou: float = 0.45
    scale: str = "native"  # native: the image at its own pixel scale, tiled; fit: resized whole
    device: str = "cpu"
    min_visible: float = 0.5
    max_det: int = 1000


def load_segmenter(settings: ModelSettings, cache: dict[tuple[str, str], Any] | None = None) -> Segmenter:
    """The `Segmenter` for `settings`: the model's recorded geometry and tuned confidence unless the widget
    sets them (the pipeline of `asfyolo-rt predict`).

    cache: (path, device) -> Segmenter, so re-running with other thresholds does not reload the model.
    """
    from asfyolo_rt.weights_registry import resolve_weights

    if settings.conf is not None and not 0.0 <= settings.conf < 1.0:
        raise ConfigError(f"confidence {settings.conf}: expected a threshold in [0, 1)")
    if not 0.0 < settings.iou <= 1.0:
        raise ConfigError(f"IoU {settings.iou}: expected a threshold in (0, 1]")
    path = resolve_weights(settings.model)
    key = (str(Path(path).resolve()), settings.device)
    base = cache.get(key) if cache is not None else None
    if base is None:
        base = Segmenter(path, device=settings.device)
        if cache is not None:
            cache[key] = base
    return base.with_settings(conf=settings.conf, iou=settings.iou, scale=settings.scale, max_det=settings.max_det,
                              min_visible=settings.min_visible)


def plane_shape(shape: tuple[int, ...], rgb: bool) -> tuple[tuple[int, ...], tuple[int, int]]:
    """(leading stack dims, (H, W)) of an image layer's data shape; rgb: the last axis holds colours."""
    spatial = shape[:-1] if rgb else shape
    if len(spatial) < 2:
        raise DataError(f"image layer of shape {shape}: expected at least 2 spatial dimensions (H, W)")
    if len(spatial) > 4:
        raise DataError(f"image layer of shape {shape}: expected a 2-D image or a 3-D/4-D stack (T, Z, H, W)",
                        hint="split channels into separate layers (napari: Split Stack) and run on the nuclear one")
    return tuple(int(n) for n in spatial[:-2]), (int(spatial[-2]), int(spatial[-1]))


@dataclass
class Segmentation:
    """The result for one layer. labels: lead + (H, W) int32, ids unique across the stack (0 = background).

    features: columns for napari's Labels.features ('index' = label id, plane, score, class, area_px,
    centroid_y, centroid_x, equivalent_diameter_px). boxes: (n, 4) x1 y1 x2 y2 per cell (image pixels),
    plane_of: (n,) flat plane index of every cell. counts: cells per plane.
    """

    labels: np.ndarray
    features: dict[str, np.ndarray]
    boxes: np.ndarray
    counts: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.features["index"].shape[0])


FEATURE_COLUMNS = ("index", "plane", "score", "class", "area_px", "centroid_y", "centroid_x",
                   "equivalent_diameter_px")


def iter_segment(data: Any, rgb: bool, seg: Segmenter) -> Iterator[tuple[int, int, Segmentation | None]]:
    """Segment plane after plane; yields (done, total, None) after each plane and finally the result.

    A generator, so the widget's worker can report progress and be stopped between planes.
    """
    lead, (h, w) = plane_shape(tuple(np.shape(data)), rgb)
    n_planes = int(np.prod(lead)) if lead else 1
    labels = np.zeros((*lead, h, w), np.int32)
    flat = labels.reshape(n_planes, h, w)
    cols: dict[str, list[np.ndarray]] = {c: [] for c in FEATURE_COLUMNS}
    boxes: list[np.ndarray] = []
    counts: list[int] = []
    next_id = 0
    for k in range(n_planes):
        index = np.unravel_index(k, lead) if lead else ()
        plane = np.asarray(data[tuple(int(i) for i in index)])
        cells = seg.segment(_to_model_input(plane))
        lm, t = cells.labels, cells.table
        n = len(cells)
        flat[k] = np.where(lm > 0, lm + next_id, 0)
        cols["index"].append(np.arange(1, n + 1, dtype=np.int64) + next_id)
        cols["plane"].append(np.full(n, k, np.int64))
        cols["score"].append(t["score"].astype(np.float64).round(5))
        cols["class"].append(t["class"].astype(np.int64))
        cols["area_px"].append(t["area_px"].astype(np.int64))
        cols["centroid_y"].append(t["centroid_y"].round(2))
        cols["centroid_x"].append(t["centroid_x"].round(2))
        cols["equivalent_diameter_px"].append(t["equivalent_diameter_px"].round(3))
        boxes.append(cells.boxes.astype(np.float64).reshape(-1, 4))
        counts.append(n)
        next_id += n
        yield k + 1, n_planes, None
    features = {c: np.concatenate(v) for c, v in cols.items()}
    yield n_planes, n_planes, Segmentation(labels, features, np.concatenate(boxes), counts)


def segment(data: Any, rgb: bool, seg: Segmenter, *, progress: Callable[[int, int], None] | None = None
            ) -> Segmentation:
    """`iter_segment` run to the end."""
    result = None
    for done, total, result in iter_segment(data, rgb, seg):
        if progress and result is None:
            progress(done, total)
    assert result is not None
    return result


def _to_model_input(plane: np.ndarray) -> np.ndarray:
    from asfyolo_rt.data.io import to_uint8_rgb

    return to_uint8_rgb(plane)
