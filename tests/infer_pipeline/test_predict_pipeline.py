"""predict: label image, CSV, overlay and COCO JSON at original resolution (16-bit TIFF input)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from asfyolo_rt.data.rle import rle_decode, rle_encode
from asfyolo_rt.infer.writers import cell_rows, window_rle
from asfyolo_rt.model import build_model
from asfyolo_rt.model.weights import config_of, save_checkpoint


@pytest.mark.parametrize("x0,y0,h,w", [(0, 0, 3, 4), (5, 2, 4, 3), (7, 6, 4, 3), (2, 3, 0, 0)])
def test_window_rle_equals_full_rle(x0: int, y0: int, h: int, w: int) -> None:
    rng = np.random.default_rng(0)
    local = (rng.random((h, w)) > 0.5).astype(np.uint8)
    full = np.zeros((10, 10), np.uint8)
    full[y0 : y0 + h, x0 : x0 + w] = local
    rle = window_rle(local, x0, y0, 10, 10)
    assert rle == rle_encode(full)
    assert np.array_equal(rle_decode(rle), full)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    m = build_model("n")
    with torch.no_grad():  # make every anchor a confident detection so that outputs are non-trivial
        for conv in m.head.m:
            conv.bias.view(3, -1)[:, 4] += 8
    path = tmp_path_factory.mktemp("w") / "n.safetensors"
    return save_checkpoint(m, path, config_of(m, img_size=128))


def test_predict_16bit_tiff_writes_outputs(tmp_path: Path, checkpoint: Path, cli) -> None:
    from asfyolo_rt.data.synth import make_nuclei

    img, _ = make_nuclei(3, shape=(150, 130), bit_depth=16)
    img = img if img.ndim == 2 else img[..., 0]
    assert img.dtype == np.uint16
    src = tmp_path / "nuclei16.tif"
    tifffile.imwrite(src, img)
    out = tmp_path / "out"
    r = cli("predict", src, "--weights", checkpoint, "--out", out, "--conf", "0.1", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout)["images"][0]
    labels = tifffile.imread(out / "labels" / "nuclei16.tif")
    assert labels.shape == (150, 130) and labels.dtype == np.uint16  # original resolution, 16-bit labels
    assert summary["cells"] > 0
    assert labels.max() <= summary["cells"]
    rows = list(csv.DictReader(open(out / "cells.csv")))
    assert len(rows) == summary["cells"]
    # areas in the CSV are the label image's pixel counts
    counts = np.bincount(labels.ravel(), minlength=len(rows) + 1)
    assert [int(r["area_px"]) for r in rows] == counts[1:].tolist()
    overlay = (out / "overlays" / "nuclei16.png")
    assert overlay.stat().st_size > 0
    coco = json.loads((out / "predictions.coco.json").read_text())
    assert len(coco["annotations"]) == summary["cells"]
    # each COCO mask, restricted to pixels the label map assigns to it, covers exactly those pixels
    for i, ann in enumerate(coco["annotations"][:20]):
        m = rle_decode(ann["segmentation"]).astype(bool)
        assert m.shape == (150, 130)
        assert m[labels == i + 1].all()


def test_predict_bad_source(tmp_path: Path, checkpoint: Path, cli) -> None:
    r = cli("predict", tmp_path / "missing.png", "--weights", checkpoint)
    assert r.exit_code == 1
    assert "does not exist" in r.stderr


def test_cell_rows_measure_label_map() -> None:
    from asfyolo_rt.data.letterbox import LetterboxTransform
    from asfyolo_rt.infer.predict import ImageResult
    from asfyolo_rt.infer.sources import Frame

    lm = np.zeros((6, 8), np.int32)
    lm[1:3, 1:4] = 1  # 6 px, centroid (2.5 + 0.5 px-centre, 1.5 + 0.5) -> x 3.0? pixel centres x=1.5..3.5 -> 2.5
    lm[4:6, 6:8] = 2  # 4 px
    res = ImageResult(Frame("a", Path("a.png"), np.zeros((6, 8, 3), np.uint8)), LetterboxTransform(1, (0, 0), (6, 8), (32, 32)),
                      np.array([[1, 1, 4, 3], [6, 4, 8, 6]], np.float32), np.array([0.9, 0.8]), np.array([0, 0]), lm, None)
    rows = cell_rows(res)
    assert [r["area_px"] for r in rows] == [6, 4]
    assert (rows[0]["centroid_x"], rows[0]["centroid_y"]) == (2.5, 2.0)
    assert rows[1]["equivalent_diameter_px"] == round(2 * (4 / np.pi) ** 0.5, 3)
