"""Converters: DSB2018 Kaggle layout, instance label images, YOLO <-> COCO."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from asfyolo_rt.data.convert import coco_to_yolo, convert_dsb2018, convert_instance_masks, yolo_to_coco
from asfyolo_rt.data.dataset import load_split
from asfyolo_rt.data.io import read_image_raw, write_image
from asfyolo_rt.data.masks import polygons_to_masks
from asfyolo_rt.data.rle import rle_encode
from asfyolo_rt.data.synth import make_nuclei, write_synth_dataset
from asfyolo_rt.errors import DataError


def _masks_of(sample, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    return polygons_to_masks([p * [w, h] for p in sample.polygons], shape)


def make_kaggle_dsb(root: Path) -> dict[str, np.ndarray]:
    """Two Kaggle-style samples (RGBA image, one binary PNG per nucleus) + a 1-pixel mask to drop."""
    labels = {}
    for i, name in enumerate(["aaa111", "bbb222"]):
        img, label = make_nuclei(i, shape=(64, 80), n_cells=(6, 6))
        rgba = np.dstack([img, img, img, np.full_like(img, 255)])
        write_image(root / name / "images" / f"{name}.png", rgba)
        for k in range(1, label.max() + 1):
            write_image(root / name / "masks" / f"m{k:03d}.png", ((label == k) * 255).astype(np.uint8))
        labels[name] = label
    dot = np.zeros((64, 80), np.uint8)
    dot[3, 3] = 255
    write_image(root / "bbb222" / "masks" / "zzz_dot.png", dot)
    return labels


def test_convert_dsb2018_kaggle_layout(tmp_path: Path) -> None:
    labels = make_kaggle_dsb(tmp_path / "kaggle")
    report = convert_dsb2018(tmp_path / "kaggle", tmp_path / "out", val_ids={"bbb222"}, rgb8=True)
    assert report.n_images == 2 and report.n_instances == sum(int(v.max()) for v in labels.values())
    assert [(p.path.name, p.severity) for p in report.problems] == [("zzz_dot.png", "warning")]
    assert "fewer than 3" in report.problems[0].message
    train, val = load_split(tmp_path / "out", "train"), load_split(tmp_path / "out", "val")
    assert [s.image_path.name for s in train.samples] == ["aaa111.png"]
    assert [s.image_path.name for s in val.samples] == ["bbb222.png"]
    assert read_image_raw(val.samples[0].image_path).shape == (64, 80, 3)  # rgb8: alpha dropped
    masks = _masks_of(train.samples[0], (64, 80))
    for k in range(1, labels["aaa111"].max() + 1):  # masks sorted by file name = label order
        np.testing.assert_array_equal(masks[k - 1] > 0, labels["aaa111"] == k)
    with pytest.raises(DataError, match="stage1_train layout"):
        convert_dsb2018(tmp_path / "out", tmp_path / "x")


@pytest.mark.parametrize("fmt", [".tif", ".png"])
def test_convert_instance_label_images(tmp_path: Path, fmt: str) -> None:
    img, label = make_nuclei(11, shape=(48, 64), n_cells=(8, 8))
    label16 = label.astype(np.uint16) * 300  # ids need not be consecutive, and exceed 255
    label16[0:2, 0:2] = 7  # a tiny extra instance (4 px) still yields a polygon
    label16[40, 60] = 9  # a 1-pixel instance is dropped and reported
    write_image(tmp_path / "imgs" / "s1.png", img)
    if fmt == ".tif":
        (tmp_path / "masks").mkdir()
        tifffile.imwrite(tmp_path / "masks" / "s1_masks.tif", label16)
    else:
        write_image(tmp_path / "masks" / "s1_masks.png", label16)
    write_image(tmp_path / "imgs" / "s2.png", img)  # no label image: reported, skipped
    report = convert_instance_masks(tmp_path / "imgs", tmp_path / "masks", tmp_path / "out", split="val",
                                    mask_suffix="_masks")
    assert report.n_images == 1 and report.n_instances == label.max() + 1
    assert sorted(p.path.name for p in report.problems) == ["s1_masks" + fmt, "s2.png"]
    sample = load_split(tmp_path / "out", "val").samples[0]
    masks = _masks_of(sample, (48, 64))
    assert masks[0][0:2, 0:2].all() and masks[0].sum() == 4  # label 7 comes first
    for k in range(1, label.max() + 1):
        np.testing.assert_array_equal(masks[k] > 0, label == k)


def test_instance_labels_reject_rgb_label_images(tmp_path: Path) -> None:
    write_image(tmp_path / "imgs" / "a.png", np.zeros((8, 8), np.uint8))
    write_image(tmp_path / "masks" / "a.png", np.zeros((8, 8, 3), np.uint8))
    report = convert_instance_masks(tmp_path / "imgs", tmp_path / "masks", tmp_path / "out")
    assert report.n_images == 0 and "single-channel integer" in report.problems[0].message


def test_yolo_coco_round_trip(tmp_path: Path) -> None:
    root = write_synth_dataset(tmp_path / "syn", 0, 2, shape=(64, 96), seed=2)
    report = yolo_to_coco(root, "val", tmp_path / "val.json")
    doc = json.loads((tmp_path / "val.json").read_text())
    assert report.n_images == 2 and len(doc["annotations"]) == report.n_instances > 0
    assert doc["categories"] == [{"id": 1, "name": "cell"}]
    assert doc["images"][0]["file_name"] == "images/val/nuclei_val_00000.png"
    assert (doc["images"][0]["width"], doc["images"][0]["height"]) == (96, 64)
    ann = doc["annotations"][0]
    xs, ys = ann["segmentation"][0][0::2], ann["segmentation"][0][1::2]
    assert ann["bbox"] == pytest.approx([min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], abs=1e-3)
    assert ann["category_id"] == 1 and ann["iscrowd"] == 0
    coco_api = pytest.importorskip("faster_coco_eval")
    api = coco_api.COCO(str(tmp_path / "val.json"))
    assert len(api.getAnnIds()) == report.n_instances
    back = coco_to_yolo(tmp_path / "val.json", root, tmp_path / "back", split="val")
    assert (back.n_images, back.n_instances, back.problems) == (2, report.n_instances, [])
    a, b = load_split(root, "val"), load_split(tmp_path / "back", "val")
    for sa, sb in zip(a.samples, b.samples):
        assert sa.image_path.name == sb.image_path.name
        assert sa.image_path.read_bytes() == sb.image_path.read_bytes()
        for pa, pb in zip(sa.polygons, sb.polygons, strict=True):
            np.testing.assert_allclose(pa, pb, atol=2e-5)


def test_coco_rle_crowd_multipart_and_categories(tmp_path: Path) -> None:
    write_image(tmp_path / "imgs" / "x.png", np.zeros((40, 50), np.uint8))
    mask = np.zeros((40, 50), np.uint8)
    cv2.circle(mask, (20, 15), 6, 1, -1)
    rle = rle_encode(mask)
    doc = {
        "images": [{"id": 5, "file_name": "sub/x.png", "width": 50, "height": 40},
                   {"id": 6, "file_name": "missing.png", "width": 50, "height": 40}],
        "categories": [{"id": 7, "name": "nucleus"}, {"id": 3, "name": "cyto"}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 7, "segmentation": rle, "iscrowd": 0},
            {"id": 2, "image_id": 5, "category_id": 3, "iscrowd": 0,
             "segmentation": [[0, 0, 4, 0, 4, 4], [10, 10, 30, 10, 30, 30, 10, 30]]},
            {"id": 3, "image_id": 5, "category_id": 7, "segmentation": rle_encode(mask, compressed=False),
             "iscrowd": 1},
        ],
    }
    (tmp_path / "c.json").write_text(json.dumps(doc))
    report = coco_to_yolo(tmp_path / "c.json", tmp_path / "imgs", tmp_path / "out")
    assert (report.n_images, report.n_instances) == (1, 2)
    messages = sorted(p.message for p in report.problems)
    assert any("crowd" in m for m in messages) and any("2 polygons; kept the largest" in m for m in messages)
    assert any(p.severity == "error" and "missing.png" in str(p.path) for p in report.problems)
    split = load_split(tmp_path / "out", "train")
    assert split.names == {0: "cyto", 1: "nucleus"}  # sorted category ids 3, 7 -> classes 0, 1
    s = split.samples[0]
    np.testing.assert_array_equal(s.classes, [1, 0])
    np.testing.assert_array_equal(_masks_of(s, (40, 50))[0], mask)  # RLE -> polygon -> same pixels
    np.testing.assert_allclose(s.polygons[1] * [50, 40], [[10, 10], [30, 10], [30, 30], [10, 30]], atol=1e-4)


def test_coco_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"images": []}')
    with pytest.raises(DataError, match="bad.json.*COCO"):
        coco_to_yolo(tmp_path / "bad.json", tmp_path, tmp_path / "o")


@pytest.mark.datasets
def test_dsb2018_val_to_coco(datasets_root: Path, tmp_path: Path) -> None:
    report = yolo_to_coco(datasets_root / "DSB2018", "val", tmp_path / "dsb_val.json")
    assert (report.n_images, report.n_instances) == (134, 5684)
