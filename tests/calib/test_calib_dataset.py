"""Calibration image sets: stratified seeded sampling, inference pre-processing, fingerprints."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest
from asfyolo_rt.calib.dataset import build_calibration_set, stratified_sample

from asfyolo_rt.errors import CalibrationError


def test_stratified_sample_proportional_and_seeded():
    keys = ["a"] * 80 + ["b"] * 15 + ["c"] * 5
    idx = stratified_sample(keys, 20, seed=0)
    counts = Counter(keys[i] for i in idx)
    assert len(idx) == 20 and len(set(idx)) == 20
    assert counts == {"a": 16, "b": 3, "c": 1}
    assert idx == stratified_sample(keys, 20, seed=0) and idx != stratified_sample(keys, 20, seed=1)
    assert idx == sorted(idx)


def test_stratified_sample_covers_every_stratum():
    keys = ["big"] * 97 + ["rare1", "rare2", "rare3"]
    counts = Counter(keys[i] for i in stratified_sample(keys, 5, seed=3))
    assert counts == {"big": 2, "rare1": 1, "rare2": 1, "rare3": 1}
    assert stratified_sample(keys, 500, seed=0) == list(range(100))


@pytest.fixture
def image_folder(tmp_path):
    from asfyolo_rt.data.io import write_image
    from asfyolo_rt.data.synth import make_nuclei

    for i in range(6):
        shape = (96, 128) if i % 2 else (128, 128)
        sub = tmp_path / ("scope_a" if i < 3 else "scope_b")
        sub.mkdir(exist_ok=True)
        write_image(sub / f"img{i}.png", make_nuclei(i, shape)[0])
    return tmp_path



def test_native_tile_calibration_cuts_windows_inference_would_see(image_folder):
    """Native-scale models are calibrated on tile-sized windows of the images at the model scale, not on
    letterboxed (rescaled) whole images: every window is a crop of the image, padded with 114 where the
    image is smaller than the tile, identical for the same seed."""
    from asfyolo_rt.data.io import read_image

    cs = build_calibration_set(image_folder, (64, 64), n=4, seed=0, tile_scale=1.0)
    assert cs.pixels.shape == (4, 3, 64, 64) and cs.summary()["preprocess"]["model_scale"] == 1.0
    for k, e in enumerate(cs.entries):
        img = read_image(e.id)  # (H, W, 3), >= 96 px: a 64 window fits, no padding
        win = cs.pixels[k].transpose(1, 2, 0)
        hits = [(y, x) for y in range(img.shape[0] - 63) for x in range(img.shape[1] - 63)
                if np.array_equal(img[y : y + 64, x : x + 64], win)]
        assert hits, f"{e.id}: the window is not a crop of the image at its own scale"
    again = build_calibration_set(image_folder, (64, 64), n=4, seed=0, tile_scale=1.0)
    np.testing.assert_array_equal(cs.pixels, again.pixels)
    big = build_calibration_set(image_folder, (160, 160), n=2, seed=0, tile_scale=1.0)
    img = read_image(big.entries[0].id)
    win = big.pixels[0].transpose(1, 2, 0)
    np.testing.assert_array_equal(win[: img.shape[0], : img.shape[1]], img)  # image at the top left...
    assert (win[img.shape[0] :] == 114).all() and (win[:, img.shape[1] :] == 114).all()  # ...padded like edge tiles
    half = build_calibration_set(image_folder, (160, 160), n=2, seed=0, tile_scale=0.5)
    assert (half.pixels[0][:, img.shape[0] // 2 + 1 :] == 114).all()  # the model scale shrinks the image first
    assert cs.summary()["preprocess"] != build_calibration_set(image_folder, (64, 64), n=4, seed=0).summary()["preprocess"]

def test_folder_calibration_set_uses_inference_preprocessing(image_folder):
    from asfyolo_rt.data.io import read_image
    from asfyolo_rt.data.letterbox import preprocess

    cs = build_calibration_set(image_folder, (64, 96), n=4, seed=0)
    assert len(cs) == 4 and cs.pixels.shape == (4, 3, 64, 96) and cs.pixels.dtype == np.uint8
    assert not cs.synthetic and set(cs.strata()) <= {f"scope_{s}:{h}x128" for s in "ab" for h in (96, 128)}
    assert len(cs.strata()) == 4  # 4 strata (2 folders x 2 sizes), 4 images: one each
    first = cs.entries[0]
    expect = preprocess([read_image(first.id)], (64, 96))[0][0].numpy()
    np.testing.assert_array_equal(cs.float_images(0, 1)[0], expect)  # bit-identical to inference input
    summary = cs.summary()
    assert summary["n_images"] == 4 and summary["images"] == [e.id for e in cs.entries]
    assert summary["preprocess"]["function"] == "asfyolo_rt.data.letterbox.preprocess"
    assert summary["split"] is None and summary["folder"] == str(image_folder)  # a plain folder: no split


def test_image_list_hash_tracks_content(image_folder):
    from asfyolo_rt.data.io import write_image

    a = build_calibration_set(image_folder, (64, 64), n=6, seed=0).image_list_sha256()
    assert a == build_calibration_set(image_folder, (64, 64), n=6, seed=0).image_list_sha256()
    write_image(image_folder / "scope_a" / "img0.png", np.zeros((128, 128), np.uint8))
    assert a != build_calibration_set(image_folder, (64, 64), n=6, seed=0).image_list_sha256()


def test_synthetic_set_warns(caplog):
    with caplog.at_level(logging.WARNING):
        cs = build_calibration_set(None, (64, 64), n=3, seed=0)
    assert cs.synthetic and len(cs) == 3 and cs.entries[0].id.startswith("synthetic:nuclei:")
    assert any("synthetic" in r.message and "microscope" in r.message for r in caplog.records)
    assert cs.pixels.std() > 0


def test_bad_sources(tmp_path):
    with pytest.raises(CalibrationError, match="does not exist"):
        build_calibration_set(tmp_path / "nope", (64, 64))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no images"):
        build_calibration_set(tmp_path / "empty", (64, 64))
    with pytest.raises(CalibrationError, match="positive"):
        build_calibration_set(None, (64, 64), n=0)


@pytest.mark.datasets
def test_dataset_calibration_uses_train_split(datasets_root):
    cs = build_calibration_set(datasets_root / "DSB2018", (64, 64), n=8, seed=0)
    assert len(cs) == 8 and all("/images/train/" in e.id for e in cs.entries)
    assert cs.summary()["split"] == "train" and cs.summary()["folder"].endswith("images/train")
    assert len(cs.strata()) >= 3  # DSB2018's train split mixes several image sizes
