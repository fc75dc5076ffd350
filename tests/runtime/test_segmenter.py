"""Segmenter: the public API gives predict's cells, per frame and over a stream; the stages compose by window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from asfyolo_rt.errors import ConfigError


@pytest.fixture(scope="module")
def seg():
    from asfyolo_rt import Segmenter

    return Segmenter("dsb2018")


@pytest.fixture(scope="module")
def frame_file(nuclei_frame, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("frame") / "frame.tif"
    tifffile.imwrite(p, nuclei_frame)
    return p


def _predict_labels(cli, frame_file: Path, out: Path, *args: str) -> np.ndarray:
    r = cli("predict", str(frame_file), "--out", str(out), "--no-overlays", "--no-coco", *args)
    assert r.exit_code == 0, r.stderr
    return tifffile.imread(out / "labels" / "frame.tif")


@pytest.mark.parametrize("which", ["pytorch", "onnx", "openvino"])
def test_segment_gives_predicts_label_image(which, cli, frame_file, shipped_onnx, tmp_path):
    """The same label image as `asfyolo-rt predict` (identical arrays) for the model and its exports."""
    from asfyolo_rt import Segmenter

    if which == "openvino":
        pytest.importorskip("openvino")
    model = {"pytorch": "dsb2018", "onnx": str(shipped_onnx), "openvino": str(shipped_onnx)}[which]
    backend = "openvino" if which == "openvino" else None
    args = ["--model", model] + (["--backend", "openvino", "--precision", "fp32"] if backend else [])  # predict's
    # --backend openvino alone picks the CPU's precision (BF16 here); Segmenter runs FP32 unless told
    expected = _predict_labels(cli, frame_file, tmp_path / "p", *args)
    cells = Segmenter(model, backend=backend).segment(tifffile.imread(frame_file))
    assert len(cells) > 20 and cells.labels.max() == len(cells)
    assert np.array_equal(cells.labels, expected.astype(np.int32))


def test_cells_table_is_measured_on_the_label_image(seg, nuclei_frame):
    cells = seg.segment(nuclei_frame, pixel_size=0.5)
    t = cells.table
    assert list(t["id"]) == list(range(1, len(cells) + 1))
    areas = np.bincount(cells.labels.ravel(), minlength=len(cells) + 1)[1:]
    assert np.array_equal(t["area_px"], areas) and t["area_px"].sum() == (cells.labels > 0).sum()
    k = int(np.argmax(t["area_px"]))
    ys, xs = np.nonzero(cells.labels == k + 1)
    assert t["centroid_x"][k] == pytest.approx(xs.mean() + 0.5) and t["centroid_y"][k] == pytest.approx(ys.mean() + 0.5)
    assert np.all((t["x1"] <= t["centroid_x"]) & (t["centroid_x"] <= t["x2"]))
    df = cells.to_dataframe()
    assert df["area_um2"].iloc[k] == pytest.approx(t["area_px"][k] * 0.25)
    polys = cells.polygons()
    assert len(polys) == len(cells) and polys[k] is not None and polys[k].shape[1] == 2
    assert set(cells.timing_ms) >= {"read", "preprocess", "inference", "postprocess"}


def test_overrides_change_the_run_and_bad_ones_are_refused(nuclei_frame):
    from asfyolo_rt import Segmenter

    strict = Segmenter("dsb2018", conf=0.85)
    assert strict.config.conf == 0.85 and strict.info.default_conf == 0.45
    assert 0 < len(strict.segment(nuclei_frame)) < len(Segmenter("dsb2018").segment(nuclei_frame))
    with pytest.raises(ConfigError, match="unknown setting"):
        Segmenter("dsb2018", confidence=0.3)
    with pytest.raises(ConfigError, match="--iou 5"):
        Segmenter("dsb2018", iou=5)
    with pytest.raises(ConfigError, match="expected"):
        Segmenter("dsb2018").segment(np.zeros((2, 3, 4, 5)))


@pytest.mark.parametrize("workers", [1, 2])
def test_segment_many_keeps_order_and_equals_segment(seg, nuclei_frame, frame_file, workers):
    import torch

    frames = [nuclei_frame, nuclei_frame[:200, :300], str(frame_file), nuclei_frame[::-1].copy()]
    threads = torch.get_num_threads()
    many = list(seg.segment_many(frames, prefetch=2, workers=workers))
    assert torch.get_num_threads() == threads  # the stream's thread split is undone
    one = [seg.segment(f) for f in frames]
    assert [len(c) for c in many] == [len(c) for c in one]
    for a, b in zip(many, one):
        assert np.array_equal(a.labels, b.labels)
    assert "queue" in many[0].timing_ms


@pytest.mark.parametrize("workers", [1, 2])
def test_segment_many_raises_at_the_bad_frame_and_stops_on_break(seg, nuclei_frame, tmp_path, workers):
    got = []
    with pytest.raises(ConfigError, match="missing.tif does not exist"):
        for cells in seg.segment_many([nuclei_frame, tmp_path / "missing.tif", nuclei_frame], workers=workers):
            got.append(len(cells))
    assert len(got) == 1

    import threading

    def endless():
        while True:
            yield nuclei_frame[:128, :128]

    for _ in seg.segment_many(endless(), workers=workers):
        break
    import time

    deadline = time.monotonic() + 10
    while any(t.name.startswith("segment-") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name.startswith("segment-") for t in threading.enumerate())


def test_windows_compose_to_the_whole_frame(nuclei_frame):
    """Stages run on the windows of a partition of an image, merged, give the whole-frame cells: the tile grid
    is the whole image's, windows partition its tiles, each cell comes from the one tile whose core holds it."""
    from asfyolo_rt import Segmenter
    from asfyolo_rt.runtime.stages import merge, paint, scale_image

    seg = Segmenter("dsb2018", img_size=192)  # small tiles: a grid of several on this frame
    frame = seg.frame(nuclei_frame)
    runner = seg._pipe.runner(seg.config.model_scale)
    h, w = frame.image.shape[:2]
    whole = runner.plan((h, w))
    windows = [(0, 0, w // 2, h // 3), (w // 2, 0, w, h // 3), (0, h // 3, w, h)]
    plans = [runner.plan((h, w), window=win) for win in windows]
    assert whole.grid >= 9 and sum(len(p.tiles) for p in plans) == whole.grid
    assert set().union(*(p.tiles for p in plans)) == set(whole.tiles) and all(p.tiles for p in plans)
    scaled = scale_image(frame.image, whole)
    ref, ref_labels = paint(merge(runner.parts(scaled, whole), (h, w), seg.config.iou), seg.config.min_visible)
    parts = [part for p in plans for part in runner.parts(scaled, p)]
    res, labels = paint(merge(parts, (h, w), seg.config.iou), seg.config.min_visible)
    assert len(res) == len(ref) > 20
    assert np.array_equal(labels, ref_labels)
