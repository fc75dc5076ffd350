"""Protocols "official" / "official-val" (eval/official.py, eval/official_gt.py)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from asfyolo_rt.data.dataset import DatasetSplit, Sample, load_split
from asfyolo_rt.data.letterbox import letterbox, rect_shape
from asfyolo_rt.eval.official import (
    OfficialAccumulator,
    apply_protocol,
    official_ap_per_class,
    official_match,
)
from asfyolo_rt.eval.official_gt import official_letterbox, official_targets, overlap_index_map
from asfyolo_rt.eval.validate import ValConfig, gt_instances, gt_masks_proto, validate
from asfyolo_rt.infer.backends import TorchBackend


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models run faster on one thread than on two contended ones; restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


RECTS = [(8, 8, 40, 24), (48, 16, 96, 72), (64, 60, 80, 124), (10, 90, 30, 110), (100, 100, 120, 116)]


def _sample(polys_px: list[np.ndarray], shape: tuple[int, int]) -> Sample:
    h0, w0 = shape
    return Sample(Path("x.png"), None, np.zeros(len(polys_px), np.int64),
                  [(p / np.array([w0, h0])).astype(np.float32) for p in polys_px])


def _rect(x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)


def test_odd_padding_pads_whole_pixels_but_shifts_labels_by_half() -> None:
    img = np.full((64, 61, 3), 200, np.uint8)  # long side 64 = img_size: no resize
    shape = rect_shape(64, 61, 64)
    assert shape == (96, 96)  # 35 columns of padding: 17.5 per side
    out, pl = official_letterbox(img, shape, 64)
    assert pl.border == (17, 16) and pl.pad == (17.5, 16.0) and pl.odd_padding
    assert out[20, 16, 0] == 114 and out[20, 17, 0] == 200  # the image starts at column 17 ...
    assert out[20, 77, 0] == 200 and out[20, 78, 0] == 114  # ... and 18 columns pad the right
    sample = _sample([_rect(0, 0, 61, 64)], (64, 61))
    gt = official_targets(sample, pl, (24, 24), overlap=True, mask_ratio=4)
    # ... but the label's left edge (x = 0) lands at 17.5: half a pixel right of the image's edge
    assert gt.polygons[0][0].tolist() == [17.5, 16.0]
    assert gt.boxes_net[0].tolist() == pytest.approx([17.5, 16.0, 78.5, 80.0])
    # boxes go back by the same float half-pad: the GT box is the whole image again
    assert gt.boxes_orig[0].tolist() == pytest.approx([0.0, 0.0, 61.0, 64.0])
    # our exact letterbox puts the labels where the pixels are
    _, t = letterbox(img, shape, size=64)
    assert t.pad == (17.0, 16.0)


def test_resize_truncates_the_short_side() -> None:
    img = np.zeros((100, 61, 3), np.uint8)  # 61 * 0.64 = 39.04
    _, pl = official_letterbox(img, rect_shape(100, 61, 64), 64)
    _, t = letterbox(img, rect_shape(100, 61, 64), size=64)
    assert pl.resized == (64, 39) and pl.pad == (12.5, 16.0)  # into 64 x 96: 25 columns to pad
    assert t.pad == (12.0, 16.0)  # ours rounds the short side up to 40: 24 columns


def test_overlap_map_order_and_painting() -> None:
    big, small, empty = _rect(8, 8, 72, 72), _rect(24, 24, 40, 40), _rect(100, 100, 100.5, 100.5)
    index_map, order = overlap_index_map([small, big, empty], (128, 128), 4)
    assert order.tolist() == [2, 1, 0]  # zero area first (uint64 negation), then larger before smaller
    assert index_map[8, 8] == 3  # the small one, painted last, wins where they overlap
    assert index_map[4, 4] == 2 and index_map[30, 30] == 0
    sample = _sample([small, big], (128, 128))
    _, pl = official_letterbox(np.zeros((128, 128, 3), np.uint8), (128, 128), 128)
    ov = official_targets(sample, pl, (32, 32), overlap=True, mask_ratio=4)
    full = official_targets(sample, pl, (32, 32), overlap=False, mask_ratio=1)
    assert ov.boxes_net[0, 0] == 8.0  # labels re-ordered like the map: the big one first
    assert full.boxes_net[0, 0] == 24.0  # official-val keeps the file order
    assert not ov.masks[0, 8, 8] and bool(full.masks[1, 8, 8])  # only without overlap the big one keeps its hole


def test_matching_takes_a_gt_for_its_earliest_prediction_and_float32_thresholds() -> None:
    iou = torch.tensor([[0.5, 0.9]], dtype=torch.float32)  # one GT, two predictions
    c = official_match(np.zeros(2, np.int64), np.zeros(1, np.int64), iou)
    assert c[:, 0].tolist() == [True, False]  # the first prediction keeps it at IoU 0.5 ...
    assert c[:, 8].tolist() == [False, True]  # ... the second at 0.9 (the first no longer qualifies)
    eps = torch.tensor([[np.float32(0.55) - np.float32(1e-8)]], dtype=torch.float32)
    assert official_match(np.zeros(1, np.int64), np.zeros(1, np.int64), eps)[0, 1]  # float32 0.55 == IoU


def test_official_ap_is_the_101_point_trapezoid() -> None:
    tp = np.array([[1], [0], [1]], bool).repeat(10, 1)
    res = official_ap_per_class(tp, np.array([0.9, 0.8, 0.7], np.float32), np.zeros(3, np.int64), np.zeros(2, np.int64))
    x = np.linspace(0, 1, 101)
    expect = np.trapezoid(np.interp(x, [0, 0.5, 0.5, 1.0, 1.0], [1, 1, 2 / 3, 2 / 3, 0]), x)
    assert res.ap[0, 0] == pytest.approx(expect, abs=1e-12) and 0.82 < expect < 0.84


def test_no_mask_true_positive_means_all_zero() -> None:
    acc = OfficialAccumulator()
    gt_masks = torch.zeros((1, 8, 8), dtype=torch.bool)
    gt_masks[0, :4, :4] = True
    pred_masks = torch.zeros((1, 8, 8), dtype=torch.bool)
    pred_masks[0, 4:, 4:] = True
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    acc.update(box, torch.tensor([0.9]), torch.tensor([0]), pred_masks, box, np.zeros(1, np.int64), gt_masks)
    assert acc.compute().box_map50 == 0.0  # the box is perfect, but the official code checks mask TPs


def test_official_val_settings_are_applied() -> None:
    cfg = apply_protocol(ValConfig(protocol="official-val", conf=0.3, iou=0.9, batch_size=16, coco=True))
    assert (cfg.conf, cfg.iou, cfg.max_det, cfg.batch_size, cfg.coco) == (0.01, 0.45, 300, 1, False)
    cfg = apply_protocol(ValConfig(protocol="official", conf=0.3, iou=0.9, batch_size=4))
    assert (cfg.conf, cfg.iou, cfg.max_det, cfg.batch_size) == (0.001, 0.6, 300, 16)


@pytest.fixture(scope="module")
def rect_split(tmp_path_factory: pytest.TempPathFactory) -> DatasetSplit:
    """Three 128 x 128 images of rectangles whose masks rasterise identically both ways."""
    root = tmp_path_factory.mktemp("rects")
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        img = rng.integers(0, 60, (128, 128, 3), dtype=np.uint8)
        lines = []
        for x1, y1, x2, y2 in RECTS[i:] + RECTS[:i][:1]:
            img[y1:y2, x1:x2] = 230 - 30 * i
            p = _rect(x1, y1, x2, y2) / 128
            lines.append("0 " + " ".join(f"{v:.6f}" for v in p.reshape(-1)))
        cv2.imwrite(str(root / "images" / "val" / f"{i}.png"), img)
        (root / "labels" / "val" / f"{i}.txt").write_text("\n".join(lines) + "\n")
    return load_split(root, "val")


@pytest.fixture(scope="module")
def random_backend() -> TorchBackend:
    from testing_models import input_dependent_n_model

    return TorchBackend(input_dependent_n_model())


def test_official_equals_fit_without_odd_padding(rect_split: DatasetSplit, random_backend: TorchBackend) -> None:
    for s in rect_split.samples:  # the premise: same placement, same GT masks
        shape = rect_shape(128, 128, 128)
        img = np.zeros((128, 128, 3), np.uint8)
        _, t = letterbox(img, shape, size=128)
        _, pl = official_letterbox(img, shape, 128)
        assert not pl.odd_padding
        polys, _, _ = gt_instances(s, (128, 128))
        fit_masks = gt_masks_proto(polys, t, (40, 40))
        off = official_targets(s, pl, (40, 40), overlap=True, mask_ratio=4)
        assert sorted(m.numpy().tobytes() for m in fit_masks) == sorted(m.numpy().tobytes() for m in off.masks)
    fit = validate(random_backend, rect_split, ValConfig(img_size=128, protocol="fit")).metrics
    official = validate(random_backend, rect_split, ValConfig(img_size=128, protocol="official")).metrics
    assert fit.n_instances == official.n_instances == 14
    assert 0.0 < official.box_map50 < 0.995 and 0.0 < official.mask_map50  # a non-trivial case
    for k in ("box_map50", "box_map", "mask_map50", "mask_map", "box_p", "box_r", "mask_p", "mask_r"):
        assert getattr(official, k) == pytest.approx(getattr(fit, k), abs=1e-6), k


def test_official_val_runs_one_image_per_batch(rect_split: DatasetSplit, random_backend: TorchBackend) -> None:
    seen: list[int] = []

    class Spy:
        name, precision, input_shape, max_batch = "spy", "fp32", None, None

        def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            seen.append(int(x.shape[0]))
            return random_backend(x)

    res = validate(Spy(), rect_split, ValConfig(img_size=128, protocol="official-val"))  # type: ignore[arg-type]
    assert seen == [1, 1, 1] and res.config.conf == 0.01 and res.config.iou == 0.45
    seen.clear()
    validate(Spy(), rect_split, ValConfig(img_size=128, protocol="official"))  # type: ignore[arg-type]
    assert seen == [3]


@pytest.mark.parametrize("protocol", ["official", "official-val"])
def test_cli_names_the_protocol(cli, rect_split: DatasetSplit, protocol: str) -> None:
    r = cli("val", "--data", str(rect_split.root), "--protocol", protocol, "--img-size", "128", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["protocol"] == protocol and out["config"]["protocol"] == protocol
    assert out["config"]["conf"] == (0.001 if protocol == "official" else 0.01)
    assert "coco" not in out
    r = cli("val", "--data", str(rect_split.root), "--protocol", protocol, "--img-size", "128")
    assert r.exit_code == 0, r.output
    assert protocol in r.stdout and "rect batches of" in r.stdout.replace("\n", " ")


def test_cli_help_documents_the_default(cli) -> None:
    r = cli("val", "--help")
    assert "official-val" in r.stdout and "Default fit" in r.stdout.replace("\n", " ")
