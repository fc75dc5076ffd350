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


def window_histogram(window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values ascending, counts) of an integer window (every channel counted, as percentiles are joint)."""
    a = window.ravel()
    if a.size == 0:
        return np.zeros(0, a.dtype), np.zeros(0, np.int64)
    if a.dtype.itemsize <= 2:
        base = int(np.iinfo(a.dtype).min)
        counts = np.bincount((a.astype(np.int64) - base) if base else a, minlength=1)
        nz = np.nonzero(counts)[0]
        return (nz + base).astype(a.dtype), counts[nz].astype(np.int64)
    values, counts = np.unique(a, return_counts=True)
    return values, counts.astype(np.int64)


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


def percentiles_from_hist(values: np.ndarray, counts: np.ndarray, qs: tuple[float, float]) -> tuple[float, float]:
    """`numpy.percentile(a, qs)` (method "linear") of the array whose histogram is (values, counts), computed
    with numpy's own operations in its own order so that the result is identical, not just close."""
    n = int(counts.sum())
    if n == 0:
        return 0.0, 1.0
    q = np.true_divide(np.asarray(qs, np.float64), 100)
    virtual = (n - 1) * q
    prev = np.floor(virtual)
    nxt = prev + 1
    above = virtual >= n - 1
    prev_i = np.where(above, n - 1, prev).astype(np.int64)
    next_i = np.where(above, n - 1, nxt).astype(np.int64)
    gamma = virtual - np.where(above, -1.0, prev)  # numpy's gamma (unused where above: both values equal)
    cum = np.cumsum(counts)
    a = values[np.searchsorted(cum, prev_i, side="right")]
    b = values[np.searchsorted(cum, next_i, side="right")]
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5, casting="unsafe")
    return float(out[0]), float(out[1])


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
