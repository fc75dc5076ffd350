"""End-to-end ONNX through the tiled path: tile batches through the e2e model (its own NMS), stitching outside."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from asfyolo_rt.export.end2end import End2EndConfig, export_end2end

from asfyolo_rt.data.io import to_uint8_rgb
from asfyolo_rt.data.synth import make_nuclei
from asfyolo_rt.errors import ConfigError
from asfyolo_rt.infer.backends import OrtBackend, load_backend
from asfyolo_rt.infer.end2end import OrtEnd2EndBackend
from asfyolo_rt.infer.geometry import Geometry, PostConfig, Runner

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
