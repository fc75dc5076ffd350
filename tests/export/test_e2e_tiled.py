"""End-to-end ONNX through the tiled path: tile batches through the e2e model (its own NMS), stitching outside."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from asfyolo_rt.export.end2end import End2EndConfig, export_end2end

from asfyolo_rt.data.io import to_uint8_rgb
from asfyolo_rt.data.synth import make_nuclei
from asfyolo_rt.errors import ConfigError
from asfyolo_rt.infer.backends import OrtBackend
from asfyolo_rt.infer.end2end import OrtEnd2EndBackend
from asfyolo_rt.runtime.registry import load_backend
from asfyolo_rt.runtime.stages import Geometry, PostConfig, Runner

CFG = End2EndConfig(conf_threshold=0.16, iou_threshold=0.45, max_det=300, topk=800)
POST = PostConfig(conf=0.16, iou=0.45, max_det=300)


@pytest.fixture(scope="module")
def e2e_path(onnx_static, tmp_path_factory):
    return export_end2end(onnx_static.path, tmp_path_factory.mktemp("e2e") / "model.end2end.onnx", CFG).path


@pytest.mark.parametrize("scale", ["native", "fit"])
def test_end2end_model_gives_the_plain_models_label_map(onnx_static, e2e_path, scale):
    """A 300 x 420 frame (12 tiles of 160 at native scale, one letterbox at fit) through the static e2e ONNX and
    through the plain ONNX with the same NMS settings: the same cells, boxes and full-resolution label map."""
    frame = to_uint8_rgb(make_nuclei(7, (300, 420))[0])
    e2e = load_backend(e2e_path)
    assert isinstance(e2e, OrtEnd2EndBackend) and e2e.input_shape == (160, 160)
    geo = Geometry(scale=scale, tile_overlap=48)
    plain = Runner(OrtBackend(onnx_static.path), geo, POST)(frame)
    got = Runner(e2e, geo, POST)(frame)
    assert got.tiles == plain.tiles == (12 if scale == "native" else 1)  # native: 3 x 4 tiles, stride 112
    assert len(plain) > 5  # the random-weight model finds something: the comparison is not vacuous
    assert len(got) == len(plain)
    np.testing.assert_allclose(got.boxes.numpy(), plain.boxes.numpy(), atol=1e-3)
    np.testing.assert_array_equal(got.label_map(), plain.label_map())


def test_end2end_mismatch_is_said_and_stricter_conf_applies(e2e_path, caplog):
    frame = to_uint8_rgb(make_nuclei(7, (300, 420))[0])
    e2e = load_backend(e2e_path)
    with caplog.at_level(logging.WARNING):
        Runner(e2e, Geometry(tile_overlap=48), PostConfig(conf=0.16, iou=0.6, max_det=1000))
    assert "IoU 0.6" in caplog.text and "max-det 1000" in caplog.text and "--end2end" in caplog.text
    loose = Runner(e2e, Geometry(tile_overlap=48), POST)(frame)
    strict = Runner(e2e, Geometry(tile_overlap=48), PostConfig(conf=0.3, iou=0.45, max_det=300))(frame)
    assert len(strict) < len(loose) and bool((strict.scores > 0.3).all())
    with pytest.raises(ConfigError, match="end-to-end"):
        e2e(np.zeros((1, 3, 160, 160), np.float32))  # raw predictions are not what it gives


def test_end2end_engine_backend_reads_its_rows_like_the_onnx_one(e2e_path):
    """TensorRTEnd2EndBackend's own code (thresholds from the sidecar, rows to detections, the Runner's e2e
    path) with the engine's execution replaced by ONNX Runtime on the same graph: no TensorRT runtime runs
    here (engines build with TensorRT-RTX but need a GPU to execute), so this checks everything but the
    kernels, against the end-to-end ONNX backend."""
    from asfyolo_rt.infer.e2e_rows import ROW_OUTPUTS
    from asfyolo_rt.infer.tensorrt import TensorRTEnd2EndBackend

    onnx_e2e = load_backend(e2e_path)
    eng = object.__new__(TensorRTEnd2EndBackend)
    eng.path, eng.input_shape, eng.max_batch = e2e_path.with_suffix(".engine"), (160, 160), 1
    eng.names, eng.nc, eng.precision, eng.name = {0: "cell"}, 1, "fp32", "tensorrt"
    sess = onnx_e2e.session
    eng.run_named = lambda x: dict(zip(ROW_OUTPUTS, sess.run(list(ROW_OUTPUTS), {onnx_e2e.input_name: x})))
    eng.set_thresholds({"conf_threshold": "0.16", "iou_threshold": "0.45", "max_det": "300"})  # sidecar keys
    assert (eng.conf, eng.iou, eng.max_det) == (0.16, 0.45, 300) and eng.mismatch(0.16, 0.45, 300) is None
    frame = to_uint8_rgb(make_nuclei(7, (300, 420))[0])
    want = Runner(onnx_e2e, Geometry(tile_overlap=48), POST)(frame)
    got = Runner(eng, Geometry(tile_overlap=48), POST)(frame)
    assert len(want) > 5 and got.tiles == want.tiles == 12
    np.testing.assert_array_equal(got.label_map(), want.label_map())
    with pytest.raises(ConfigError, match="end-to-end engine"):
        eng(np.zeros((1, 3, 160, 160), np.float32))
