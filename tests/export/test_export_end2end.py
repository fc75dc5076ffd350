"""End-to-end ONNX (top-k + NMS + masks) against the Python post-processing."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from asfyolo_rt.export.end2end import End2EndConfig, build_end2end, export_end2end

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.infer.masks import process_masks_proto
from asfyolo_rt.infer.nms import non_max_suppression

CFG = End2EndConfig(conf_threshold=0.16, iou_threshold=0.5, max_det=120, topk=800, label_map=True)


def _run(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, {"images": x})))


def _check_against_python(e2e: dict, raw: dict, cfg: End2EndConfig) -> int:
    dets = non_max_suppression(torch.from_numpy(raw["pred"]), conf_threshold=cfg.conf_threshold,
                               iou_threshold=cfg.iou_threshold, max_det=cfg.max_det, max_nms=cfg.topk)
    total = 0
    for b, d in enumerate(dets):
        n = int(e2e["num_dets"][b])
        assert n == len(d)
        total += n
        np.testing.assert_allclose(e2e["boxes"][b, :n], d.boxes.numpy(), atol=1e-4)
        np.testing.assert_allclose(e2e["scores"][b, :n], d.scores.numpy(), atol=1e-6)
        np.testing.assert_array_equal(e2e["classes"][b, :n], d.classes.numpy())
        assert not e2e["boxes"][b, n:].any() and not e2e["masks"][b, n:].any()  # zero padding
        ref = process_masks_proto(torch.from_numpy(raw["protos"][b]), d.coeffs, d.boxes, (160, 160)).numpy()
        got = e2e["masks"][b, :n].astype(bool)
        inter, union = (ref & got).sum((1, 2)), (ref | got).sum((1, 2))
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        assert iou.min() >= 0.99
        assert ref.any(axis=(1, 2)).sum() > 0  # the comparison is not vacuous
        # label map: 1 + first (highest-scoring) detection covering the pixel
        expect = np.zeros(ref.shape[1:], np.int32)
        for i in range(n - 1, -1, -1):
            expect[got[i]] = i + 1
        np.testing.assert_array_equal(e2e["label_map"][b], expect)
    return total


def test_end2end_static_matches_python_postprocessing(onnx_static, nuclei_batch, tmp_path):
    art = export_end2end(onnx_static.path, tmp_path / "e2e.onnx", CFG)
    m = onnx.load(str(art.path))
    assert [o.name for o in m.graph.output] == ["num_dets", "boxes", "scores", "classes", "masks", "label_map"]
    assert {"TopK", "NonMaxSuppression", "ScatterND", "MatMul"} <= {n.op_type for n in m.graph.node}
    x = nuclei_batch[:1]
    e2e = _run(art.path, x)
    assert e2e["masks"].shape == (1, CFG.max_det, 40, 40) and e2e["masks"].dtype == np.uint8
    assert e2e["num_dets"].dtype == np.int32 and e2e["classes"].dtype == np.int32
    n = _check_against_python(e2e, _run(onnx_static.path, x), CFG)
    assert 0 < n < CFG.max_det  # some detections, and max_det does not truncate


def test_end2end_dynamic_batch(onnx_dynamic, nuclei_batch, tmp_path):
    art = export_end2end(onnx_dynamic.path, tmp_path / "e2e.onnx", CFG)
    x = np.ascontiguousarray(nuclei_batch[[1, 0]])  # two different images
    e2e = _run(art.path, x)
    assert e2e["num_dets"].shape == (2,) and e2e["num_dets"][0] != 0
    assert e2e["num_dets"][0] != e2e["num_dets"][1]  # the two images really differ
    _check_against_python(e2e, _run(onnx_dynamic.path, x), CFG)


def test_class_agnostic_and_max_det_truncation(onnx_static, nuclei_batch, tmp_path):
    cfg = End2EndConfig(conf_threshold=0.12, iou_threshold=0.5, max_det=5, topk=500, agnostic=True)
    e2e = _run(export_end2end(onnx_static.path, tmp_path / "e.onnx", cfg).path, nuclei_batch[:1])
    assert e2e["num_dets"][0] == 5
    dets = non_max_suppression(torch.from_numpy(_run(onnx_static.path, nuclei_batch[:1])["pred"]),
                               conf_threshold=0.12, iou_threshold=0.5, max_det=5, max_nms=500, agnostic=True)
    np.testing.assert_allclose(e2e["scores"][0], dets[0].scores.numpy(), atol=1e-6)


def test_plugin_node_structure(onnx_static):
    m = build_end2end(onnx.load(str(onnx_static.path)), End2EndConfig(masks="plugin", mask_threshold=0.5))
    nodes = [n for n in m.graph.node if n.domain == "asfyolo_rt"]
    assert len(nodes) == 1
    node = nodes[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert node.op_type == "mask_assembly"
    assert attrs["plugin_namespace"] == b"asfyolo_rt" and attrs["aot"] == 1
    assert attrs["mask_threshold"] == pytest.approx(0.5) and attrs["nm"] == 32
    assert [i.name for i in m.graph.output][-1] == "masks"
    assert node.output[0] in {n.input[0] for n in m.graph.node if n.name == "/post/output/masks"}
    assert not any(n.op_type == "MatMul" and n.name.startswith("/post") for n in m.graph.node)
    onnx.checker.check_model(m)


@pytest.mark.parametrize("kwargs", [{"topk": 6000}, {"max_det": 0}, {"max_det": 900, "topk": 800},
                                    {"conf_threshold": 1.0}, {"masks": "triton"}])
def test_bad_end2end_config(kwargs):
    with pytest.raises(ConfigError):
        End2EndConfig(**kwargs)
