"""Per-cell measurements of an instance label image, as `asfyolo-rt predict` writes them to cells.csv.

One pass over the label image with scipy.ndimage (no per-cell frame-sized masks). Conventions are those
of `asfyolo_rt.infer.writers.cell_rows`: areas in pixels, centroids in pixel-centre coordinates of the
original image (pixel (0, 0) covers [0, 1) x [0, 1), its centre is 0.5), equivalent diameter
2 * sqrt(area / pi); boxes x1 y1 x2 y2 enclose the cell's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asfyolo_rt.errors import DataError


def equivalent_diameter(area_px: np.ndarray) -> np.ndarray:
    """Diameter of the circle of the same area (px): 2 * sqrt(area / pi)."""
    return 2.0 * np.sqrt(np.asarray(area_px, np.float64) / np.pi)


@dataclass(frozen=True)
class CellTable:
    """One entry per label id present in the image, ascending ids; every array has length n."""

    ids: np.ndarray  # (n,) int64
    area_px: np.ndarray  # (n,) int64
    centroid_y: np.ndarray  # (n,) float64, pixel-centre convention (+0.5)
    centroid_x: np.ndarray
    box: np.ndarray  # (n, 4) float64 x1 y1 x2 y2 (pixel edges)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def equivalent_diameter_px(self) -> np.ndarray:
        return equivalent_diameter(self.area_px)


def measure_labels(labels: np.ndarray) -> CellTable:
    """Measure every cell of a 2-D (H, W) label image (0 = background, any positive integer id)."""
    from scipy import ndimage

    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise DataError(f"measure_labels expects a 2-D label image, got shape {lab.shape}")
    ids = np.unique(lab)
    ids = ids[ids > 0].astype(np.int64)
    if ids.size == 0:
        z = np.zeros(0)
        return CellTable(ids, ids.copy(), z, z.copy(), np.zeros((0, 4)))
    area = np.bincount(lab.ravel().astype(np.int64), minlength=int(ids.max()) + 1)[ids].astype(np.int64)
    cy, cx = np.asarray(ndimage.center_of_mass(lab > 0, lab, ids), np.float64).reshape(-1, 2).T
    slices = ndimage.find_objects(lab.astype(np.int64, copy=False), max_label=int(ids.max()))
    box = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in (slices[i - 1] for i in ids)],
                   np.float64)
    return CellTable(ids, area, cy + 0.5, cx + 0.5, box)
