"""The C runtime gives the Python pipeline's cells (ARCHITECTURE.md "The C runtime"): the same model file, the
same frame, label-map instance F1 >= 0.999 and equal cell counts. Python runs the ONNX file in ONNX Runtime,
the C runtime in OpenVINO: equal cells across two runtimes and two implementations of the stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cpp_helpers import label_f1

DEMO_BUNDLE = Path("/work/runs/demo-bundle")
DSB_VAL_1272 = "images/val/cb4df20a83b2f38b394c67f1d9d4aef29f9794d5345da3576318374ec3a11490.png"


def _both(model: Path, image: np.ndarray, python_kw: dict | None = None,
          **native_kw: object) -> tuple[object, tuple[np.ndarray, np.ndarray, dict]]:
    from asfyolo_rt import Segmenter
    from asfyolo_rt.native import NativeSegmenter

    cells = Segmenter(model, **(python_kw or {})).segment(image)
    with NativeSegmenter(model, **native_kw) as seg:
        return cells, seg.segment(image)


def test_synthetic_frame_same_cells(native_lib, shipped_onnx, nuclei_frame):
    """A 16-bit synthetic frame (percentile scaling, 2 x 2 tiles at model scale 1.5, ownership, rescue, NMS)."""
    cells, (labels, table, timing) = _both(shipped_onnx, nuclei_frame)
    f1, n_py, n_c = label_f1(cells.labels, labels)
    assert n_py > 20 and n_c == n_py
    assert f1 >= 0.999
    assert labels.dtype == np.uint32 and labels.shape == nuclei_frame.shape
    # the cell table is measured on the label map like predict's cells.csv
    assert int(table["area_px"].sum()) == int((labels > 0).sum())
    assert np.array_equal(np.sort(table["area_px"]), np.sort(cells.table["area_px"]))
    assert table["id"].tolist() == list(range(1, n_c + 1))
    assert timing["tiles"] == cells.tiles and timing["inference"] > 0


def test_dynamic_model_same_cells(native_lib, dynamic_onnx, nuclei_frame):
    """A model of any input size: 192-px tiles (smaller where the image is), two tiles per inference call, the
    OpenVINO CPU plugin running the dynamic shapes as they come."""
    cells, (labels, _, timing) = _both(dynamic_onnx, nuclei_frame, {"img_size": 192, "batch": 2},
                                       tile_size=192, batch=2)
    f1, n_py, n_c = label_f1(cells.labels, labels)
    assert n_py > 20 and n_c == n_py and f1 >= 0.999
    assert timing["tiles"] == cells.tiles > 4


def test_synthetic_frames_fit_tiles_same_cells(native_lib, dynamic_onnx):
    """A dynamic model and no tile size: each frame gets its own tile shape (fit_tile; the OpenVINO backend
    compiles the model once per shape) in both runtimes. A 480 x 480 frame (one 736 x 736 tile at the model
    scale 1.5) and a 1100 x 1500 one (several tiles of neither 640 nor the export's 320)."""
    from asfyolo_rt import Segmenter
    from asfyolo_rt.data.synth import make_nuclei
    from asfyolo_rt.native import NativeSegmenter
    from asfyolo_rt.runtime.tiles import plan_image

    small, _ = make_nuclei(7, shape=(480, 480), n_cells=(90, 90), bit_depth=16)
    big, _ = make_nuclei(5, shape=(1100, 1500), n_cells=(400, 400), bit_depth=16)
    python = Segmenter(dynamic_onnx, backend="openvino")
    with NativeSegmenter(dynamic_onnx) as seg:
        settings = json.loads(seg.info)
        for frame in (np.asarray(small), np.asarray(big)):
            plan = plan_image(frame.shape, model_scale=settings["model_scale"], tile_hw=None,
                              overlap=settings["tile_overlap"], static=False)
            cells = python.segment(frame)
            labels, _, timing = seg.segment(frame)
            f1, n_py, n_c = label_f1(cells.labels, labels)
            assert n_py > 50 and n_c == n_py and f1 >= 0.999
            assert timing["tiles"] == cells.tiles == len(plan.tiles)
    assert len(plan.tiles) > 1 and (plan.tiles[0].h, plan.tiles[0].w) not in ((640, 640), (320, 320))


def test_many_frame_sizes_keep_a_bounded_set_of_compiled_shapes(native_lib, dynamic_onnx, nuclei_frame):
    """Ten frame sizes through one segmenter (a tile shape each: more than the 8 kept compiled, so the first is
    compiled again when it comes back) give the cells a fresh segmenter gives."""
    from asfyolo_rt.native import NativeSegmenter
    from asfyolo_rt.runtime.tiles import fit_tile

    tall = np.tile(nuclei_frame, (2, 1))
    frames = [np.ascontiguousarray(tall[: 160 + 22 * k, :200]) for k in range(10)]  # +33 network px each
    assert len({fit_tile(round(f.shape[0] * 1.5), round(f.shape[1] * 1.5), 112) for f in frames}) == 10
    with NativeSegmenter(dynamic_onnx) as seg:
        first = [seg.segment(f)[0] for f in frames]
        again = seg.segment(frames[0])[0]
    with NativeSegmenter(dynamic_onnx) as fresh:
        assert np.array_equal(fresh.segment(frames[0])[0], first[0])
    assert np.array_equal(again, first[0]) and first[0].max() > 10


def test_same_cells_from_every_pixel_format(native_lib, shipped_onnx):
    """GRAY8, RGB8 and a padded-stride view of the same picture give the same label map."""
    from asfyolo_rt.native import NativeSegmenter

    rng = np.random.default_rng(3)
    grey = (rng.random((200, 260)) * 40).astype(np.uint8)
    for y, x in rng.integers(20, 180, (25, 2)):
        yy, xx = np.ogrid[:200, :260]
        grey[(yy - y) ** 2 + (xx - x) ** 2 < 60] = 220
    padded = np.zeros((200, 300, 3), np.uint8)
    padded[:, :260] = grey[..., None]
    with NativeSegmenter(shipped_onnx, threads=2) as seg:
        a, ta, _ = seg.segment(grey)
        b, tb, _ = seg.segment(np.repeat(grey[..., None], 3, axis=2))
        c, tc, _ = seg.segment(padded[:, :260])  # rows 900 bytes apart, 780 read
    assert len(ta) > 5
    assert np.array_equal(a, b) and np.array_equal(a, c)


@pytest.mark.datasets
def test_dsb_val_image_same_cells(native_lib, shipped_onnx, datasets_root):
    """One 1272 x 603 RGB DSB2018 val image (8 tiles of 320 at scale 1.5: cells cut by tile edges rescued)."""
    from asfyolo_rt.data.io import read_image

    image = read_image(datasets_root / "DSB2018" / DSB_VAL_1272)
    cells, (labels, _, _) = _both(shipped_onnx, image)
    f1, n_py, n_c = label_f1(cells.labels, labels)
    assert n_py > 100 and n_c == n_py and f1 >= 0.999


@pytest.mark.slow
@pytest.mark.skipif(not (DEMO_BUNDLE / "model.onnx").is_file(), reason="needs the `make demo` bundle")
@pytest.mark.parametrize("model", ["model.onnx", "model.int8-openvino.xml"])
def test_2048_frame_same_cells_as_predict(native_lib, model, tmp_path):
    """The done-when check: a 2048 x 2048 16-bit frame of DSB2018 val nuclei, the `make demo` bundle's FP32
    ONNX and INT8 IR (49 tiles of 640 at scale 1.5)."""
    frame = Path("/work/runs/frame.tif")
    if not frame.is_file():
        pytest.skip("needs /work/runs/frame.tif (asfyolo-rt data frame ... --size 2048)")
    from asfyolo_rt.data.io import read_image_raw

    cells, (labels, _, _) = _both(DEMO_BUNDLE / model, read_image_raw(frame))
    f1, n_py, n_c = label_f1(cells.labels, labels)
    assert n_py > 1000 and n_c == n_py and f1 >= 0.999


@pytest.mark.slow
def test_2048_frame_fit_tiles_same_cells(native_lib, dynamic_onnx):
    """The 2048 x 2048 frame with a dynamic model and no tile size: 16 tiles of 864 x 864 at scale 1.5 (not 36
    of 640) in both runtimes, the same cells."""
    frame = Path("/work/runs/frame.tif")
    if not frame.is_file():
        pytest.skip("needs /work/runs/frame.tif (asfyolo-rt data frame ... --size 2048)")
    from asfyolo_rt.data.io import read_image_raw

    cells, (labels, _, timing) = _both(dynamic_onnx, read_image_raw(frame), {"backend": "openvino"})
    f1, n_py, n_c = label_f1(cells.labels, labels)
    assert n_py > 1000 and n_c == n_py and f1 >= 0.999
    assert timing["tiles"] == cells.tiles == 16
