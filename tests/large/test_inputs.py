"""Readers by window, the level chosen from pixel sizes, exact intensity scaling from a histogram reduce, the
global NMS as a reduction, and the window-invariant resampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from asfyolo_rt.data.io import intensity_range, scale_to_uint8, to_uint8_rgb
from asfyolo_rt.errors import ConfigError
from asfyolo_rt.large.normalise import merge_histograms, percentiles_from_hist, window_histogram
from asfyolo_rt.large.readers import ImageSpec, choose_level


@pytest.mark.parametrize("dtype,lo,hi,n", [
    (np.uint16, 90, 4200, 30_011),      # a camera frame
    (np.uint16, 0, 65535, 7),            # few pixels: the interpolation between order statistics matters
    (np.int16, -3000, 3000, 5_003),
    (np.int32, -2**30, 2**30, 4_001),    # wide range: np.unique instead of bincount
    (np.uint32, 0, 2**32 - 1, 999),
    (np.uint8, 0, 255, 2_000),
])
def test_histogram_percentiles_are_numpys(dtype, lo: int, hi: int, n: int) -> None:
    rng = np.random.default_rng(n)
    a = rng.integers(lo, hi, size=n, endpoint=True).astype(dtype)
    pieces = np.array_split(a, 7)  # windows of one image, reduced
    hist = merge_histograms(window_histogram(p) for p in pieces)
    for qs in [(0.1, 99.9), (0.0, 100.0), (50.0, 37.5), (1e-9, 99.99999)]:
        assert percentiles_from_hist(*hist, qs) == tuple(float(v) for v in np.percentile(a, qs))


def test_window_scaling_equals_whole_image_scaling() -> None:
    """to_uint8_rgb of the whole image == scale_to_uint8 of each window with the histogram's range."""
    rng = np.random.default_rng(1)
    a = (rng.gamma(2.0, 300.0, size=(301, 407)) + 100).astype(np.uint16)
    whole = to_uint8_rgb(a)[..., 0]
    windows = [(0, 150, 0, 200), (150, 301, 0, 200), (0, 301, 200, 407)]
    hist = merge_histograms(window_histogram(a[y0:y1, x0:x1]) for y0, y1, x0, x1 in windows)
    lo, hi = percentiles_from_hist(*hist, (0.1, 99.9))
    assert (lo, hi) == intensity_range(a)
    for y0, y1, x0, x1 in windows:
        assert np.array_equal(scale_to_uint8(a[y0:y1, x0:x1], lo, hi), whole[y0:y1, x0:x1])


def test_resampled_windows_agree_and_match_opencv() -> None:
    import cv2

    from asfyolo_rt.large.resample import resample, source_range

    rng = np.random.default_rng(2)
    a = rng.integers(0, 255, (123, 217), dtype=np.uint8)
    for dst in [(185, 326), (61, 108)]:  # 1.5x up (the shipped model), 0.5x down
        whole = resample(a, (0, 0), a.shape, dst, (0, dst[0], 0, dst[1]))
        y0, y1, x0, x1 = 17, 60, 33, 101
        sy, sx = source_range(a.shape[0], dst[0], y0, y1), source_range(a.shape[1], dst[1], x0, x1)
        part = resample(a[sy[0]:sy[1], sx[0]:sx[1]], (sy[0], sx[0]), a.shape, dst, (y0, y1, x0, x1))
        assert np.array_equal(part, whole[y0:y1, x0:x1])  # the same value whatever window computes a pixel
        mode = cv2.INTER_LINEAR if dst[0] > a.shape[0] else cv2.INTER_AREA
        ref = cv2.resize(a, dst[::-1], interpolation=mode)
        assert np.abs(whole.astype(int) - ref).max() <= 1  # OpenCV's fixed-point weights round differently


def test_global_nms_by_groups_equals_one_nms() -> None:
    from asfyolo_rt.infer.nms import MAX_WH, nms
    from asfyolo_rt.large.reduce import global_nms

    rng = np.random.default_rng(3)
    for n in (1, 2, 500, 3000):
        xy = rng.uniform(0, 3000, (n, 2))
        b = np.concatenate([xy, xy + rng.uniform(4, 80, (n, 2))], 1).astype(np.float32)
        s = rng.uniform(0.2, 1, n).astype(np.float32)
        s[: n // 10] = 0.5  # ties: input order decides
        c = rng.integers(0, 2, n)
        shift = torch.from_numpy(c)[:, None].float() * float(max(MAX_WH, 3101))
        ref = nms(torch.from_numpy(b) + shift, torch.from_numpy(s), 0.45).numpy()
        assert np.array_equal(global_nms(b, s, c, (3100, 3100), 0.45), ref)


def _ngff_v05(path: Path, a: np.ndarray, px: float) -> None:
    """A two-level OME-Zarr v0.5 (zarr format 3, metadata under "ome") of a CYX image."""
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    g.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": [
        {"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"}], "datasets": [
        {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [1, px * 2 ** k, px * 2 ** k]}]}
        for k in range(2)]}]}
    g.create_array("0", data=a, chunks=(1, 64, 64))
    g.create_array("1", data=np.ascontiguousarray(a[:, ::2, ::2]), chunks=(1, 64, 64))


def test_ome_zarr_v05_channel_and_level_from_pixel_size(tmp_path: Path) -> None:
    a = np.random.default_rng(4).integers(0, 4000, (2, 150, 200)).astype(np.uint16)
    _ngff_v05(tmp_path / "x.ome.zarr", a, 0.25)
    with pytest.raises(ConfigError, match="--channel"):
        ImageSpec(tmp_path / "x.ome.zarr").open()
    img = ImageSpec(str(tmp_path / "x.ome.zarr"), channel=1).open()
    assert (img.shape, img.level, img.pixel_size_um) == ((150, 200), 0, 0.25)
    assert np.array_equal(img.read(10, 90, 20, 199), a[1, 10:90, 20:199])
    img = ImageSpec(str(tmp_path / "x.ome.zarr"), channel=1, model_pixel_um=0.6).open()  # 0.5 is nearest 0.6
    assert (img.level, img.shape, img.pixel_size_um) == (1, (75, 100), 0.5)
    assert np.array_equal(img.read(0, 75, 0, 100), a[1, ::2, ::2])
    assert choose_level([0.25, 0.5, 1.0], None, None, "x") == 0  # no model pixel size: never guessed
    assert choose_level([0.25, None], 0.5, None, "x") == 0
    with pytest.raises(ConfigError, match="--level 2"):
        choose_level([0.25, 0.5], None, 2, "x.ome.zarr")


def test_pyramidal_ome_tiff_through_tifffiles_zarr_store(tmp_path: Path) -> None:
    import tifffile

    a = np.random.default_rng(5).integers(0, 4000, (300, 260)).astype(np.uint16)
    with tifffile.TiffWriter(tmp_path / "p.ome.tif", bigtiff=True) as tw:
        tw.write(a, tile=(64, 64), subifds=1, metadata={"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
        tw.write(np.ascontiguousarray(a[::2, ::2]), tile=(64, 64), subfiletype=1)
    img = ImageSpec(str(tmp_path / "p.ome.tif"), model_pixel_um=1.0).open()
    assert (img.kind, img.levels, img.level, img.pixel_size_um) == ("tiff", ((300, 260), (150, 130)), 1, 1.0)
    assert np.array_equal(img.read(3, 140, 5, 120), a[::2, ::2][3:140, 5:120])
    img = ImageSpec(str(tmp_path / "p.ome.tif"), level=0).open()
    assert np.array_equal(img.read(-5, 400, 250, 999), a[:, 250:])  # clipped like numpy slicing
