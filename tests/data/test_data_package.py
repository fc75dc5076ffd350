"""asfyolo_rt.data re-exports its public API lazily: each name is its module's own object, and reading images
(predict's path) loads neither the dataset checker, the converters nor YAML."""

from __future__ import annotations

import importlib
import subprocess
import sys

import asfyolo_rt.data as data


def test_every_public_name_is_its_modules_own_object() -> None:
    assert len(data.__all__) == 45
    for module, names in data._PUBLIC.items():
        mod = importlib.import_module(f"asfyolo_rt.data.{module}")
        for name in names:
            assert getattr(data, name) is getattr(mod, name), name
    assert data.dataset is importlib.import_module("asfyolo_rt.data.dataset")  # submodules as attributes


def test_reading_images_loads_no_dataset_code() -> None:
    code = ("import sys, asfyolo_rt.data.io; "
            "print(sorted(m for m in ('asfyolo_rt.data.check', 'asfyolo_rt.data.dataset', 'asfyolo_rt.data.convert', "
            "'yaml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_16_bit_images_scale_exactly_as_numpy_percentile_and_float_arithmetic_do() -> None:
    """The histogram percentiles and the per-value table of 8/16-bit images give numpy.percentile's (lo, hi) and
    the float formula's pixels, bit for bit (uint16 and int16, skewed and flat, some values absent)."""
    import numpy as np

    from asfyolo_rt.data.io import intensity_range, scale_to_uint8

    rng = np.random.default_rng(7)
    images = [rng.gamma(2.0, 900.0, (700, 650)).clip(0, 65535).astype(np.uint16),
              rng.integers(-3000, 3000, (600, 601)).astype(np.int16),
              (rng.integers(0, 40, (640, 640)) * 1000).astype(np.uint16)]
    for a in images:
        lo, hi = intensity_range(a)
        assert (lo, hi) == tuple(float(v) for v in np.percentile(a, [0.1, 99.9]))
        f = (a.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
        expected = np.clip(np.nan_to_num(f, nan=0.0) + 0.5, 0, 255).astype(np.uint8)
        assert np.array_equal(scale_to_uint8(a, lo, hi), expected)
