"""Intensity scaling of an image read by window, without holding it whole.

`asfyolo_rt.data.io.to_uint8_rgb` maps a non-uint8 image linearly from its own 0.1 and 99.9 percentiles
(`intensity_range`) to 0..255 (`scale_to_uint8`, elementwise). For an image read by window the range must be
the whole image's:

* integer images: a histogram per window (`window_histogram`: counts per value), summed over windows (a
  reduction that a Dask task per block computes), gives the exact order statistics, and `percentiles_from_hist`
  interpolates them as `numpy.percentile` does, bit for bit: the same (lo, hi), hence the same pixels, as
  reading the image whole;
* float images: the percentiles of the smallest pyramid level that holds at least `MIN_STAT_PIXELS` pixels
  (the whole image where it has no such level): an estimate, recorded as such (`IntensityRange.method`);
* uint8 images pass through, as in `to_uint8_rgb`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from asfyolo_rt.data.io import percentiles_from_hist, window_histogram  # noqa: F401  (re-exported)
from asfyolo_rt.large.readers import LargeImage

MIN_STAT_PIXELS = 4_000_000  # a float image's statistics level holds at least this many pixels (2000 x 2000)


@dataclass(frozen=True)
class IntensityRange:
    """lo, hi: the intensities mapped to 0 and 255; method: "uint8" (no scaling), "histogram" (exact),
    "level <k>" (a float image's percentiles from pyramid level k)."""

    lo: float
    hi: float
    method: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def merge_histograms(parts: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The sum of (values, counts) histograms."""
    vals, cnts = [], []
    for v, c in parts:
        vals.append(v)
        cnts.append(c)
    if not vals:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    v = np.concatenate(vals)
    c = np.concatenate(cnts)
    uniq, inv = np.unique(v, return_inverse=True)
    return uniq, np.bincount(inv, weights=c, minlength=uniq.size).astype(np.int64)


def float_range(image: LargeImage, low: float, high: float) -> IntensityRange:
    """A float image's percentiles from its smallest level of >= MIN_STAT_PIXELS pixels (else level 0)."""
    from asfyolo_rt.data.io import intensity_range

    level = image.level
    for k in range(len(image.levels) - 1, image.level - 1, -1):
        h, w = image.levels[k]
        if h * w >= MIN_STAT_PIXELS:
            level = k
            break
    view = image.at_level(level)
    lo, hi = intensity_range(view.read(0, view.shape[0], 0, view.shape[1]), low=low, high=high)
    return IntensityRange(lo, hi, f"level {level}")
