"""Fingerprinted calibration caches: reuse only on an exact match."""

from __future__ import annotations

import logging

import pytest
from asfyolo_rt.calib.cache import Fingerprint, load_cache, save_cache

from asfyolo_rt.errors import CalibrationError

FP = Fingerprint(onnx_sha256="a" * 64, preprocess={"shape": [160, 160]}, image_list_sha256="b" * 64, n_images=6,
                 method="entropy", flavour="tensorrt", quantizer="modelopt 0.47.0")


def test_roundtrip(tmp_path):
    path = save_cache(tmp_path / "c.json", FP, {"scales": {"x": 0.5}})
    entry = load_cache(path, FP)
    assert entry is not None and entry.payload == {"scales": {"x": 0.5}}
    assert load_cache(tmp_path / "missing.json", FP) is None


@pytest.mark.parametrize("field, value", [("onnx_sha256", "c" * 64), ("image_list_sha256", "d" * 64),
                                          ("preprocess", {"shape": [320, 320]}), ("method", "max")])
def test_mismatch_recalibrates_or_errors(tmp_path, caplog, field, value):
    path = save_cache(tmp_path / "c.json", FP, {"scales": {}})
    other = Fingerprint(**{**FP.to_dict(), field: value})
    with caplog.at_level(logging.WARNING):
        assert load_cache(path, other) is None
    assert field in caplog.text and "recalibrating" in caplog.text
    with pytest.raises(CalibrationError, match=field):
        load_cache(path, other, on_mismatch="error")


def test_corrupt_cache(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    assert load_cache(bad, FP) is None
    with pytest.raises(CalibrationError, match="unreadable"):
        load_cache(bad, FP, on_mismatch="error")
