"""The confidence threshold of the label images `predict` writes, chosen on data, not guessed.

`asfyolo-rt predict` writes one label image per input: every detection above `--conf` that stays visible
is a cell. Mean average precision does not depend on that threshold (it integrates over all of them);
the label image does, and so does its instance F1 at IoU 0.5, the number a biologist checks. YOLO's 0.25
is a generic default; the threshold that maximises F1 depends on the model and the data (StarDist tunes
its probability threshold the same way and ships it with the model).

`f1_vs_conf` runs predict's exact pipeline (native-scale tiles, predict's NMS and max-det, stitching,
label images with occluded duplicates dropped) once per image at the lowest threshold of the grid and
reads every higher threshold off that one pass: greedy NMS keeps the same boxes above a threshold
whichever lower threshold it started from, so selecting `score >= c` afterwards is what a run at `c`
draws. Counts are summed over the split (micro F1: every cell weighs the same) and averaged per image.

    asfyolo-rt weights tune-conf dsb2018 --data ../shared/datasets/DSB2018 --split train --out tuned.safetensors
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from asfyolo_rt.data.dataset import DatasetSplit
from asfyolo_rt.data.io import read_image
from asfyolo_rt.eval.dsb import InstanceF1
from asfyolo_rt.infer.backends import Backend

# 0.05 .. 0.80: below 0.05 label images fill with noise, above 0.8 a YOLO model keeps few cells
DEFAULT_GRID = tuple(round(float(c), 2) for c in np.arange(0.05, 0.801, 0.05))


@dataclass
class ConfCurve:
    """Instance F1 at IoU 0.5 of predict's label images for each confidence threshold of `confs`.

    tp/fp/fn: counts summed over the images; image_f1: per-image F1 averaged over images with cells
    (ground truth or predicted); n_images; best: the threshold of the highest micro F1 (the lower one on
    a tie).
    """

    confs: list[float]
    tp: list[int]
    fp: list[int]
    fn: list[int]
    image_f1: list[float]
    n_images: int
    split: str = ""
    per_image: list[dict[str, Any]] = field(default_factory=list)

    def counts(self, i: int) -> InstanceF1:
        """The summed matches at threshold `confs[i]` (precision, recall and F1 as `instance_f1` defines them)."""
        return InstanceF1(tp=self.tp[i], fp=self.fp[i], fn=self.fn[i], threshold=0.5)

    @property
    def f1(self) -> list[float]:
        return [self.counts(i).f1 for i in range(len(self.confs))]

    @property
    def precision(self) -> list[float]:
        return [self.counts(i).precision for i in range(len(self.confs))]

    @property
    def recall(self) -> list[float]:
        return [self.counts(i).recall for i in range(len(self.confs))]

    @property
    def best_index(self) -> int:
        f1 = np.round(np.asarray(self.f1), 6)
        return int(np.argmax(f1))  # first maximum: the lowest threshold among equals

    @property
    def best(self) -> float:
        return self.confs[self.best_index]

    def at(self, conf: float) -> dict[str, float]:
        """The row of threshold `conf` (the nearest grid point)."""
        i = int(np.argmin(np.abs(np.asarray(self.confs) - conf)))
        return self.row(i)

    def row(self, i: int) -> dict[str, float]:
        c = self.counts(i).to_dict()
        return {"conf": self.confs[i], "f1": c["f1"], "precision": c["precision"], "recall": c["recall"],
                "image_f1": round(self.image_f1[i], 4), "tp": c["tp"], "fp": c["fp"], "fn": c["fn"]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConfCurve:
        """Back from `to_dict` (what `weights tune-conf --json` prints)."""
        rows = d["rows"]
        return cls(confs=[r["conf"] for r in rows], tp=[r["tp"] for r in rows], fp=[r["fp"] for r in rows],
                   fn=[r["fn"] for r in rows], image_f1=[r["image_f1"] for r in rows], n_images=d["n_images"],
                   split=d.get("split", ""))

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "n_images": self.n_images, "best_conf": self.best,
                "best": self.row(self.best_index), "rows": [self.row(i) for i in range(len(self.confs))]}


def f1_vs_conf(
    backend: Backend,
    split: DatasetSplit,
    *,
    model_scale: float = 1.0,
    max_object_px: float | None = None,
    img_size: int | None = None,
    tile_overlap: int | None = None,
    batch: int = 1,
    iou: float = 0.45,
    max_det: int = 1000,
    min_visible: float = 0.5,
    confs: Sequence[float] = DEFAULT_GRID,
    max_images: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ConfCurve:
    """Instance F1 of predict's label images on `split` for every threshold of `confs` (see the module doc).

    The defaults are predict's (IoU 0.45, 1000 detections per tile, min-visible 0.5, each image's own tile on a
    dynamic backend: `asfyolo_rt.runtime.tiles.fit_tile`).
    """
    from asfyolo_rt.data.masks import polygons_to_index_map
    from asfyolo_rt.eval.dsb import instance_f1
    from asfyolo_rt.runtime.stages import Geometry, PostConfig, Runner

    grid = sorted({float(c) for c in confs})
    if not grid or grid[0] <= 0 or grid[-1] >= 1:
        raise ValueError(f"confidence grid {confs!r}: expected thresholds in (0, 1)")
    geo = Geometry("native", img_size=None if backend.input_shape else img_size, tile_overlap=tile_overlap,
                   model_scale=model_scale, batch=backend.max_batch or batch)
    runner = Runner(backend, geo, PostConfig(conf=grid[0], iou=iou, max_det=max_det), max_object_px=max_object_px)
    samples = sorted(split.samples[:max_images] if max_images else split.samples, key=lambda s: s.image_path.name)
    k = len(grid)
    tp, fp, fn = np.zeros(k, np.int64), np.zeros(k, np.int64), np.zeros(k, np.int64)
    f1_sum, counted = np.zeros(k), np.zeros(k)
    per_image: list[dict[str, Any]] = []
    for done, sample in enumerate(samples, 1):
        img = read_image(sample.image_path)
        h, w = img.shape[:2]
        polys = [p * np.array([w, h], np.float32) for p in sample.polygons]
        gt = polygons_to_index_map(polys, (h, w))[0] if polys else np.zeros((h, w), np.int32)
        res = runner(img)
        row = []
        for j, c in enumerate(grid):
            sel = torch.nonzero(res.scores >= c).reshape(-1)
            lab = res.select(sel).final_labels(min_visible)[1]
            f = instance_f1(gt, lab)
            tp[j] += f.tp
            fp[j] += f.fp
            fn[j] += f.fn
            if f.tp + f.fp + f.fn:
                f1_sum[j] += f.f1
                counted[j] += 1
            row.append(round(f.f1, 4))
        per_image.append({"image": sample.image_path.name, "gt": len(polys), "f1": row})
        if progress:
            progress(done, len(samples))
    return ConfCurve(confs=grid, tp=tp.tolist(), fp=fp.tolist(), fn=fn.tolist(),
                     image_f1=(f1_sum / np.maximum(counted, 1)).tolist(), n_images=len(samples), split=split.split,
                     per_image=per_image)


def plot_curve(curves: Sequence[ConfCurve], path: Any, *, mark: float | None = None) -> None:
    """F1 / precision / recall against the threshold, one colour per curve; `mark` draws the chosen one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from asfyolo_rt.atomic import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for cv, colour in zip(curves, ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        label = f"{cv.split} ({cv.n_images} images)" if cv.split else f"{cv.n_images} images"
        ax.plot(cv.confs, cv.f1, color=colour, lw=2, label=f"F1, {label}")
        ax.plot(cv.confs, cv.precision, color=colour, lw=1, ls="--", label="precision")
        ax.plot(cv.confs, cv.recall, color=colour, lw=1, ls=":", label="recall")
    if mark is not None:
        ax.axvline(mark, color="k", lw=0.8)
        ax.text(mark, 0.02, f" conf {mark:g}", transform=ax.get_xaxis_transform(), fontsize=8)
    ax.set_xlabel("confidence threshold")
    ax.set_ylabel("instance F1 / precision / recall at mask IoU 0.5")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("label images as predict writes them")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
