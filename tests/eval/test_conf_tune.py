"""Tuning predict's confidence threshold: one pass read at every threshold equals a run at each, the curve's
counts are predict's, and the tuned value is what predict, exports and the CLI then use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.datasets

N_IMAGES = 3


@pytest.fixture(scope="module")
def shipped():
    from asfyolo_rt.runtime.info import read_model_info
    from asfyolo_rt.runtime.registry import load_backend
    from asfyolo_rt.weights_registry import default_weights

    return load_backend(default_weights()), read_model_info(default_weights())


@pytest.fixture(scope="module")
def val_split(datasets_root):
    from asfyolo_rt.data.dataset import load_split

    return load_split(datasets_root / "DSB2018", "val")


def _runner(backend, rec, conf):
    from asfyolo_rt.runtime.stages import Geometry, PostConfig, Runner

    return Runner(backend, Geometry("native", model_scale=rec.model_scale), PostConfig(conf=conf),
                  max_object_px=rec.overlap_object_px)


def test_one_low_threshold_pass_read_at_a_higher_threshold_is_a_run_at_it(shipped, val_split):
    """The premise of f1_vs_conf: NMS keeps the same boxes above c whichever lower threshold it began at."""
    from asfyolo_rt.data.io import read_image

    backend, rec = shipped
    sample = max(val_split.samples[:20], key=len)  # the densest of the first images
    img = read_image(sample.image_path)
    low = _runner(backend, rec, 0.05)(img)
    for c in (0.25, 0.5):
        direct, lab_direct = _runner(backend, rec, c)(img).final_labels()
        read, lab_read = low.select(torch.nonzero(low.scores >= c).reshape(-1)).final_labels()
        assert len(direct) > 10
        assert torch.equal(direct.scores, read.scores) and torch.equal(direct.boxes, read.boxes)
        np.testing.assert_array_equal(lab_direct, lab_read)


def test_curve_counts_are_predicts_label_images(shipped, val_split):
    from dataclasses import replace

    from asfyolo_rt.data.io import read_image
    from asfyolo_rt.data.masks import polygons_to_index_map
    from asfyolo_rt.eval.conf_tune import f1_vs_conf
    from asfyolo_rt.eval.dsb import instance_f1
    from asfyolo_rt.infer.sources import Frame
    from asfyolo_rt.runtime.pipeline import PredictConfig, predict

    backend, rec = shipped
    samples = sorted(val_split.samples, key=lambda s: s.image_path.name)[:N_IMAGES]
    split = replace(val_split, samples=samples)
    curve = f1_vs_conf(backend, split, model_scale=rec.model_scale, max_object_px=rec.overlap_object_px,
                       confs=(0.1, 0.25, 0.6))
    n_gt = sum(len(s) for s in samples)
    assert curve.confs == [0.1, 0.25, 0.6] and curve.n_images == N_IMAGES
    assert all(t + n == n_gt for t, n in zip(curve.tp, curve.fn))  # every GT nucleus is a TP or a FN
    assert curve.fp[0] >= curve.fp[1] >= curve.fp[2] and curve.tp[0] >= curve.tp[2]
    tp = fp = fn = 0  # predict itself at 0.25, scored image by image
    for s in samples:
        img = read_image(s.image_path)
        h, w = img.shape[:2]
        gt = polygons_to_index_map([p * np.array([w, h], np.float32) for p in s.polygons], (h, w))[0]
        res = next(predict(backend, [Frame(name="x", source=s.image_path, image=img)],
                           PredictConfig(model_scale=rec.model_scale, max_object_px=rec.overlap_object_px, conf=0.25)))
        f = instance_f1(gt, res.label_map)
        tp, fp, fn = tp + f.tp, fp + f.fp, fn + f.fn
    assert (curve.tp[1], curve.fp[1], curve.fn[1]) == (tp, fp, fn)
    assert curve.best == curve.confs[int(np.argmax(curve.f1))]
    assert curve.to_dict()["best"]["f1"] == round(max(curve.f1), 4)


def test_tune_conf_records_the_best_threshold_and_predict_uses_it(tmp_path: Path, cli, datasets_root) -> None:
    from asfyolo_rt.runtime.info import read_model_info

    data = datasets_root / "DSB2018"
    out, plot = tmp_path / "tuned.safetensors", tmp_path / "f1.png"
    r = cli("weights", "tune-conf", "dsb2018", "--data", data, "--split", "val", "--max-images", 2, "--out", out,
            "--plot", plot, "--json")
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["n_images"] == 2 and len(res["rows"]) == 16
    assert read_model_info(out).conf == res["best_conf"] == max(res["rows"], key=lambda x: x["f1"])["conf"]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    again = cli("weights", "tune-conf", "dsb2018", "--data", data, "--max-images", 1, "--out", out)
    assert again.exit_code == 1 and "already exists" in again.stderr  # never overwritten

    # predict without --conf draws the recorded threshold: a high one gives what --conf gives explicitly
    high = tmp_path / "high.safetensors"
    assert cli("weights", "pack", out, "--out", high, "--conf", 0.7).exit_code == 0
    image = sorted((data / "images" / "val").iterdir())[0]
    counts = {}
    for name, extra in (("recorded", []), ("explicit", ["--conf", 0.7]), ("generic", ["--conf", 0.25])):
        r = cli("predict", image, "--weights", high, "--out", tmp_path / name, "--json", *extra)
        assert r.exit_code == 0, r.stderr
        counts[name] = json.loads(r.stdout)["images"][0]["cells"]
    assert counts["recorded"] == counts["explicit"] < counts["generic"]


def test_tune_conf_bad_input(tmp_path: Path, cli, datasets_root) -> None:
    r = cli("weights", "tune-conf", "dsb2018", "--data", tmp_path / "none", "--out", tmp_path / "x.safetensors")
    assert r.exit_code == 1 and "none" in r.stderr
    r = cli("weights", "pack", "dsb2018", "--out", tmp_path / "y.safetensors", "--conf", 1.5)
    assert r.exit_code == 1 and "--conf 1.5" in r.stderr


def test_tiled_val_reports_the_label_images_f1(shipped, val_split):
    """val --protocol tiled scores its label images (the DSB score's) by instance F1 too: the same counts as
    the conf curve with val's NMS settings."""
    from dataclasses import replace

    from asfyolo_rt.eval.conf_tune import f1_vs_conf
    from asfyolo_rt.eval.validate import ValConfig, validate

    backend, rec = shipped
    split = replace(val_split, samples=sorted(val_split.samples, key=lambda s: s.image_path.name)[:N_IMAGES])
    res = validate(backend, split, ValConfig(protocol="tiled", model_scale=rec.model_scale, coco=False, dsb=True,
                                             dsb_conf=0.3, max_object_px=rec.overlap_object_px))
    curve = f1_vs_conf(backend, split, model_scale=rec.model_scale, max_object_px=rec.overlap_object_px, iou=0.6,
                       max_det=300, confs=(0.3,), img_size=640)  # val's tiles (predict's own tile choice otherwise)
    lf = res.label_f1
    assert lf is not None and lf["conf"] == 0.3 and (lf["tp"], lf["fp"], lf["fn"]) == (curve.tp[0], curve.fp[0],
                                                                                       curve.fn[0])
    assert res.summary()["label_f1"] == lf["f1"] == curve.row(0)["f1"] == round(curve.f1[0], 4) > 0.5
