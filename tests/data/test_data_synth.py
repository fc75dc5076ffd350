"""Synthetic cell images: determinism, exact ground truth, looks, and the written dataset."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from asfyolo_rt.data.check import check_dataset
from asfyolo_rt.data.dataset import load_split
from asfyolo_rt.data.io import read_image, read_image_raw, to_uint8_rgb
from asfyolo_rt.data.masks import polygons_to_masks
from asfyolo_rt.data.synth import make_nuclei, make_tissue, write_synth_dataset
from asfyolo_rt.errors import DataError


def _check_label_map(label: np.ndarray) -> int:
    assert label.dtype == np.int32
    n = int(label.max())
    np.testing.assert_array_equal(np.unique(label), np.arange(n + 1))  # consecutive ids, background 0
    for k in range(1, n + 1):
        m = (label == k).astype(np.uint8)
        assert m.sum() >= 12
        assert cv2.connectedComponents(m, connectivity=8)[0] == 2, f"instance {k} is in pieces"
    return n


@pytest.mark.parametrize("make", [make_nuclei, make_tissue])
def test_deterministic_by_seed(make) -> None:
    a_img, a_lab = make(7)
    b_img, b_lab = make(7)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, make(8)[0])


def test_nuclei_look_and_ground_truth() -> None:
    img, label = make_nuclei(3, shape=(128, 160), n_cells=(15, 15))
    assert img.shape == (128, 160) and img.dtype == np.uint8
    n = _check_label_map(label)
    assert 8 <= n <= 15  # overlap rejection and tiny pieces may remove a few
    inside, outside = img[label > 0].astype(float), img[label == 0].astype(float)
    assert inside.mean() > 4 * outside.mean() and outside.mean() < 25  # bright nuclei, dark background
    ring = cv2.dilate((label > 0).astype(np.uint8), np.ones((7, 7), np.uint8)) == 0
    assert img[ring].std() > 0.5  # noise present even far from the nuclei


def test_nuclei_16bit() -> None:
    img, label = make_nuclei(3, bit_depth=16)
    assert img.dtype == np.uint16 and 1000 < img.max() < 8000 and img.min() >= 0
    out = to_uint8_rgb(img)
    assert out[..., 0][label > 0].mean() > 100 and out.max() == 255
    with pytest.raises(DataError, match="bit_depth"):
        make_nuclei(0, bit_depth=12)


def test_tissue_look() -> None:
    img, label = make_tissue(5)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    _check_label_map(label)
    nuc, bg = img[label > 0].astype(float).mean(0), img[label == 0].astype(float).mean(0)
    assert nuc.sum() < 0.6 * bg.sum()  # dark nuclei
    assert nuc[2] > nuc[1] and bg[0] > bg[1]  # purple nuclei (B > G), pink background (R > G)


def test_zero_cells_and_bad_arguments(tmp_path: Path) -> None:
    _, label = make_nuclei(0, n_cells=0)
    assert label.max() == 0
    with pytest.raises(DataError, match="n_cells"):
        make_nuclei(0, n_cells=(5, 2))
    with pytest.raises(DataError, match="shape"):
        make_tissue(0, shape=(8, 8))
    with pytest.raises(DataError, match="kind"):
        write_synth_dataset(tmp_path, 1, 1, kind="phase")  # type: ignore[arg-type]


def test_written_dataset_matches_label_maps(tmp_path: Path) -> None:
    root = write_synth_dataset(tmp_path / "syn", 3, 2, kind="nuclei", shape=(96, 128), seed=4)
    assert root == tmp_path / "syn" and (root / "data.yaml").is_file()
    train, val = load_split(root, "train"), load_split(root / "data.yaml", "val")
    assert (len(train), len(val)) == (3, 2) and train.problems == []
    # regenerate image 1 of train from its derived seed and compare with the file and the labels
    child = int(np.random.SeedSequence([4, 0, 1]).generate_state(1)[0])
    img, label = make_nuclei(child, (96, 128))
    sample = train.samples[1]
    np.testing.assert_array_equal(read_image_raw(sample.image_path), img)
    assert len(sample) == label.max()
    masks = polygons_to_masks([p * [128, 96] for p in sample.polygons], (96, 128))
    for k in range(1, label.max() + 1):  # instance k of the label map <-> polygon k - 1, pixel-exact
        np.testing.assert_array_equal(masks[k - 1] > 0, label == k)
    assert check_dataset(root).ok


def test_written_tissue_dataset_is_deterministic(tmp_path: Path) -> None:
    a = write_synth_dataset(tmp_path / "a", 2, 1, kind="tissue", shape=(64, 64), seed=1)
    b = write_synth_dataset(tmp_path / "b", 2, 1, kind="tissue", shape=(64, 64), seed=1)
    for rel in ("images/train/tissue_train_00001.png", "labels/val/tissue_val_00000.txt"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert read_image(a / "images/val/tissue_val_00000.png").shape == (64, 64, 3)
