"""The PyTorch-free stages (`asfyolo_rt.runtime.lean`) give the cells of the PyTorch stages, and dynamic-shape
models get each image's own tile (`asfyolo_rt.runtime.tiles.fit_tile`)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from asfyolo_rt.runtime.tiles import MAX_FIT_TILE, MIN_FIT_TILE, TILE_COST_PX, fit_side, fit_tile, plan_image


def _frame(nuclei_frame: np.ndarray) -> np.ndarray:
    """576 x 768: nuclei in a 2 x 2 mosaic and a dark band with nothing in it (empty tiles)."""
    big = np.tile(nuclei_frame, (2, 2))
    band = np.full((big.shape[0], 256), 100, np.uint16) + np.random.default_rng(0).integers(0, 8, (big.shape[0], 256),
                                                                                             dtype=np.uint16)
    return np.concatenate([big, band], axis=1)


def _both(model, frame, monkeypatch, **kw):
    from asfyolo_rt import Segmenter

    monkeypatch.setenv("ASFYOLO_RT_LEAN", "1")
    lean = Segmenter(model, **kw)
    monkeypatch.setenv("ASFYOLO_RT_LEAN", "0")
    ref = Segmenter(model, **kw)
    assert lean.lean and not ref.lean
    return lean, lean.segment(frame), ref, ref.segment(frame)


@pytest.mark.parametrize("backend", [None, "openvino"])
@pytest.mark.parametrize("big_cells", [False, True])
def test_lean_stages_give_the_pytorch_stages_cells(backend, big_cells, shipped_onnx, nuclei_frame, monkeypatch):
    """Same label image, boxes, scores, classes and cell table, with tiles skipped as empty and (nuclei 3x as
    large, no overlap asked for) cells cut by their tile's edge rescued in tiles centred on them."""
    import cv2

    if backend == "openvino":
        pytest.importorskip("openvino")
    frame = _frame(cv2.resize(nuclei_frame, None, fx=3, fy=3) if big_cells else nuclei_frame)
    lean, a, _, b = _both(shipped_onnx, frame, monkeypatch, backend=backend, tile_overlap=0 if big_cells else None)
    runner = lean._pipe.lean_runner(lean.config.model_scale)
    assert runner.skipped >= 2, "the empty band's tiles were run"
    if big_cells:
        assert runner.rescued >= 5, "no cut cell was rescued: the test does not cover stage 5c"
    assert len(a) > (30 if big_cells else 80)
    assert np.array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.table, b.table)


def test_lean_stages_on_a_dynamic_model_take_the_images_own_tile(dynamic_onnx, nuclei_frame, monkeypatch):
    """A dynamic-shape model without --img-size runs the tiles of `fit_tile` (not 640), OpenVINO compiling that
    shape; both stages agree."""
    pytest.importorskip("openvino")
    frame = np.tile(nuclei_frame, (3, 4))  # 864 x 1024 -> 1296 x 1536 network px
    lean, a, _, b = _both(dynamic_onnx, frame, monkeypatch, backend="openvino")
    th, tw = fit_tile(1296, 1536, lean._pipe.lean_runner(1.5).tiler.overlap)
    assert (th, tw) != (640, 640)
    plan = lean._pipe.lean_runner(1.5).plan(frame.shape)
    assert {(t.h, t.w) for t in plan.tiles} == {(th, tw)} and a.tiles == len(plan.tiles)
    assert (th, tw) in lean.backend._pools  # compiled for that shape
    assert np.array_equal(a.labels, b.labels) and len(a) > 300


def test_warm_compiles_the_frames_tile_shape_before_the_frame_and_changes_no_cell(dynamic_onnx, nuclei_frame):
    """`Segmenter.warm(shape)` compiles, on a thread, the one tile shape a frame of that size runs; a dynamic model
    compiles nothing before; the frame then adds no shape and its cells are a cold segmenter's."""
    pytest.importorskip("openvino")
    from asfyolo_rt.runtime.segmenter import Segmenter

    frame = np.tile(nuclei_frame, (3, 4))
    warm = Segmenter(dynamic_onnx, backend="openvino")
    assert warm.backend._pools == {}
    thread = warm.warm(frame.shape)
    assert thread is not None
    thread.join()
    hw = fit_tile(1296, 1536, warm.tiler.overlap)
    assert list(warm.backend._pools) == [hw]
    a = warm.segment(frame)
    assert list(warm.backend._pools) == [hw]
    b = Segmenter(dynamic_onnx, backend="openvino").segment(frame)
    assert np.array_equal(a.labels, b.labels) and len(a) > 300


@pytest.mark.parametrize("length", [50, 640, 905, 1024, 1025, 1908, 3072, 4096, 9999])
@pytest.mark.parametrize("overlap", [0, 112, 208])
def test_fit_side_runs_the_fewest_pixels_that_keep_the_overlap(length, overlap):
    side, n = fit_side(length, overlap)
    assert side % 32 == 0 and side <= max(MAX_FIT_TILE, math.ceil(length / 32) * 32)
    if n == 1:
        assert side >= length and length <= MAX_FIT_TILE
        return
    assert n * side - (n - 1) * overlap >= length  # covered, neighbours sharing >= overlap
    cost = n * side + n * TILE_COST_PX / MAX_FIT_TILE
    for m in range(2, 200):  # no other count / side in range does better
        s = max(32, math.ceil((length + (m - 1) * overlap) / m / 32) * 32)
        if MIN_FIT_TILE <= s <= MAX_FIT_TILE and s >= 2 * overlap + 32:
            assert m * s + m * TILE_COST_PX / MAX_FIT_TILE >= cost
    # the plan uses that tile and still shares >= overlap between neighbours
    plan = plan_image((length, 100), model_scale=1.0, tile_hw=None, overlap=overlap, static=False)
    ys = sorted({t.y0 for t in plan.tiles})
    assert len(ys) == n and all(ys[i] + side - ys[i + 1] >= overlap for i in range(n - 1))


def test_a_3072_px_frame_runs_a_fifth_fewer_network_pixels():
    th, tw = fit_tile(3072, 3072, 112)
    assert (th, tw) == (864, 864)
    adaptive = plan_image((2048, 2048), model_scale=1.5, tile_hw=None, overlap=112, static=False)
    fixed = plan_image((2048, 2048), model_scale=1.5, tile_hw=(640, 640), overlap=112, static=False)
    px = [sum(t.h * t.w for t in p.tiles) for p in (adaptive, fixed)]
    assert px[0] <= 0.82 * px[1]


def test_onnx_prediction_imports_no_torch(shipped_onnx, nuclei_frame, tmp_path):
    """Segmenter on an exported model, through the lean stages, and the cells table: no PyTorch imported, and
    none needed (an `import torch` anywhere on the way would fail: the module is blocked)."""
    np.save(tmp_path / "frame.npy", nuclei_frame)
    code = (
        "import sys, numpy as np\n"
        "sys.modules['torch'] = None  # import torch raises ImportError from here on\n"
        "from asfyolo_rt import Segmenter\n"
        f"seg = Segmenter({str(shipped_onnx)!r})\n"
        f"cells = seg.segment(np.load({str(tmp_path / 'frame.npy')!r}))\n"
        "assert seg.lean and len(cells) > 20, len(cells)\n"
        "bad = sorted(m for m in sys.modules if m.startswith('torch.') or m == 'onnx')\n"
        "print('torch' if bad else 'clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("clean")


@pytest.mark.parametrize("where", ["user model", "user model, cache forced", "asfyolo-rt's own export"])
def test_openvino_keeps_compiled_shapes_of_its_own_models_on_disk(where, dynamic_onnx, nuclei_frame, monkeypatch,
                                                                  tmp_path):
    """The compiled tile shapes of a model in the user cache folder (the fast path's exports) are written there,
    and a second backend (a second process's) loads them, with the same cells and no new blob; a model the user
    names leaves nothing there unless ASFYOLO_RT_OV_CACHE=1; nothing is ever written beside a model."""
    import shutil

    pytest.importorskip("openvino")
    from asfyolo_rt import Segmenter

    cache = tmp_path / "cache"
    monkeypatch.setenv("ASFYOLO_RT_CACHE", str(cache))
    monkeypatch.setenv("ASFYOLO_RT_OV_CACHE", "1" if where == "user model, cache forced" else "")
    model = dynamic_onnx
    if where == "asfyolo-rt's own export":
        model = cache / "fast" / "key" / "model.onnx"
        model.parent.mkdir(parents=True)
        shutil.copy(dynamic_onnx, model)
    beside = sorted(model.parent.iterdir())
    first = Segmenter(model, backend="openvino").segment(nuclei_frame).labels
    blobs = sorted((cache / "openvino").glob("*.blob"))
    assert sorted(model.parent.iterdir()) == beside  # nothing written beside the model
    if where == "user model":
        assert not (cache / "openvino").exists()
        return
    assert blobs  # the frame's tile shape
    second = Segmenter(model, backend="openvino").segment(nuclei_frame).labels
    assert sorted((cache / "openvino").glob("*.blob")) == blobs and np.array_equal(first, second)


def test_only_backends_that_take_any_shape_get_each_images_own_tile(dynamic_onnx):
    """Where a new shape costs a build or a tuning (TensorRT, CUDA, RTX) the dynamic model keeps 640 tiles."""
    from asfyolo_rt.runtime.registry import BackendSpec
    from asfyolo_rt.runtime.tiles import Geometry, Tiler

    geo = Geometry("native", model_scale=1.5)
    own = Tiler(None, None, geo, per_image=True).plan((2048, 2048))
    fixed = Tiler(None, None, geo, per_image=False).plan((2048, 2048))
    assert {(t.h, t.w) for t in own.tiles} == {(864, 864)} and {(t.h, t.w) for t in fixed.tiles} == {(640, 640)}
    assert BackendSpec(str(dynamic_onnx), runtime="onnxruntime").open().per_image_tiles  # the CPU provider
    assert Tiler(None, None, Geometry("native", img_size=640, model_scale=1.5)).plan((2048, 2048)).tiles[0].h == 640


def test_the_compiled_model_cache_keeps_the_newest(tmp_path):
    import os

    from asfyolo_rt.infer.openvino import prune_cache

    for i in range(6):
        (tmp_path / f"m{i}.blob").write_bytes(b"x")
        os.utime(tmp_path / f"m{i}.blob", (1000 + i, 1000 + i))
    (tmp_path / "other.txt").write_text("kept")
    assert prune_cache(tmp_path, keep=4) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m2.blob", "m3.blob", "m4.blob", "m5.blob", "other.txt"]


def test_openvino_keeps_at_most_eight_compiled_shapes(dynamic_onnx):
    """Ten tile shapes: the oldest are dropped (MAX_SHAPES) and compiled again when they come back, same outputs."""
    pytest.importorskip("openvino")
    from asfyolo_rt.infer.openvino import MAX_SHAPES, OpenVinoBackend

    be = OpenVinoBackend(dynamic_onnx)
    x = np.random.default_rng(1).random((1, 3, 64, 96), dtype=np.float32)
    first = be.run_numpy(x)[0]
    for k in range(10):
        be.run_numpy(np.zeros((1, 3, 64 + 32 * (k + 1), 96), np.float32))
    assert len(be._pools) == MAX_SHAPES and (64, 96) not in be._pools
    np.testing.assert_array_equal(be.run_numpy(x)[0], first)
