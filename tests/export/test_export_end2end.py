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
        # the raw outputs a host assembles full-resolution masks from: the same rows' coefficients, the protos
        np.testing.assert_allclose(e2e["coeffs"][b, :n], d.coeffs.numpy(), atol=1e-5)
        assert not e2e["coeffs"][b, n:].any()
        np.testing.assert_array_equal(e2e["protos"][b], raw["protos"][b])
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
    assert [o.name for o in m.graph.output] == ["num_dets", "boxes", "scores", "classes", "masks", "label_map",
                                                "coeffs", "protos"]
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
    assert [i.name for i in m.graph.output][4:] == ["masks", "coeffs", "protos"]
    assert node.output[0] in {n.input[0] for n in m.graph.node if n.name == "/post/output/masks"}
    assert not any(n.op_type == "MatMul" and n.name.startswith("/post") for n in m.graph.node)
    onnx.checker.check_model(m)


@pytest.mark.parametrize("kwargs", [{"topk": 6000}, {"max_det": 0}, {"max_det": 900, "topk": 800},
                                    {"conf_threshold": 1.0}, {"masks": "triton"}])
def test_bad_end2end_config(kwargs):
    with pytest.raises(ConfigError):
        End2EndConfig(**kwargs)


# ---------------------------------------------------------------------------------------------------------------
# TensorRT-compatible graphs: no uint8 intermediates, TopK <= 3840, Cluster-NMS from basic ops (TensorRT-RTX)

CLUSTER = End2EndConfig(conf_threshold=0.16, iou_threshold=0.5, max_det=120, topk=800, label_map=True, nms="cluster")


def _uint8_tensors(m: onnx.ModelProto) -> set[str]:
    inferred = onnx.shape_inference.infer_shapes(m)
    infos = list(inferred.graph.value_info) + list(inferred.graph.output)
    return {v.name for v in infos if v.type.tensor_type.elem_type == onnx.TensorProto.UINT8}


@pytest.mark.parametrize("nms", ["onnx", "cluster"])
def test_no_uint8_intermediate_and_topk_within_tensorrt_limit(onnx_static, nms):
    m = build_end2end(onnx.load(str(onnx_static.path)), End2EndConfig(nms=nms, label_map=True))
    assert _uint8_tensors(m) == {"masks"}  # the uint8 cast writes the graph output itself
    assert not any("masks" in n.input for n in m.graph.node)  # and nothing reads it back
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    topk_caps = [int(inits[n.input[1]].max()) for n in m.graph.node if n.op_type == "Min" and n.input[1] in inits
                 and inits[n.input[1]].dtype == np.int64]
    assert topk_caps and max(topk_caps) <= 3840
    ops = {n.op_type for n in m.graph.node}
    assert ("NonMaxSuppression" in ops) == (nms == "onnx")


def test_topk_default_clamp_and_explicit_limit(caplog):
    assert End2EndConfig().topk == 3840
    with caplog.at_level("WARNING"):
        assert End2EndConfig(topk=5000).topk == 3840  # the earlier --topk default: clamped, with a warning
    assert "clamped to 3840" in caplog.text
    with pytest.raises(ConfigError, match="3840"):
        End2EndConfig(topk=4000)  # an explicit K TensorRT cannot build


def test_cluster_nms_matches_python_postprocessing(onnx_static, onnx_dynamic, nuclei_batch, tmp_path):
    art = export_end2end(onnx_static.path, tmp_path / "e2e.rtx.onnx", CLUSTER)
    m = onnx.load(str(art.path))
    assert [o.name for o in m.graph.output] == ["num_dets", "boxes", "scores", "classes", "masks", "label_map",
                                                "coeffs", "protos"]
    assert "NonMaxSuppression" not in {n.op_type for n in m.graph.node}
    assert art.metadata["e2e_nms"] == "cluster" and art.metadata["e2e_nms_iterations"] == "25"
    x = nuclei_batch[:1]
    n = _check_against_python(_run(art.path, x), _run(onnx_static.path, x), CLUSTER)
    assert 0 < n < CLUSTER.max_det
    dyn = export_end2end(onnx_dynamic.path, tmp_path / "dyn.rtx.onnx", CLUSTER)
    x2 = np.ascontiguousarray(nuclei_batch[[1, 0]])
    e2e = _run(dyn.path, x2)
    assert e2e["num_dets"][0] != e2e["num_dets"][1]
    _check_against_python(e2e, _run(onnx_dynamic.path, x2), CLUSTER)


def _candidates_model(nc: int, n: int) -> onnx.ModelProto:
    """A stand-in 'model' whose pred/protos are graph inputs: the post-processing alone, on chosen candidates."""
    from asfyolo_rt.export.onnx_export import set_metadata
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Identity", ["pred_in"], ["pred"]), helper.make_node("Identity", ["protos_in"], ["protos"])],
        "candidates",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 160, 160]),
         helper.make_tensor_value_info("pred_in", TensorProto.FLOAT, [1, n, 5 + nc + 32]),
         helper.make_tensor_value_info("protos_in", TensorProto.FLOAT, [1, 32, 40, 40])],
        [helper.make_tensor_value_info("pred", TensorProto.FLOAT, [1, n, 5 + nc + 32]),
         helper.make_tensor_value_info("protos", TensorProto.FLOAT, [1, 32, 40, 40])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    set_metadata(m, {"nc": str(nc), "nm": "32", "precision": "fp32"})
    return m


def _pred(xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray, nc: int) -> np.ndarray:
    """(1, n, 5 + nc + 32) rows with objectness 1 and the score on the class column."""
    n = len(xyxy)
    p = np.zeros((1, n, 5 + nc + 32), np.float32)
    p[0, :, :2] = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    p[0, :, 2:4] = xyxy[:, 2:] - xyxy[:, :2]
    p[0, :, 4] = 1.0
    p[0, np.arange(n), 5 + classes] = scores
    p[0, :, 5 + nc:] = np.random.default_rng(n).normal(size=(n, 32))
    return p


def _post(tmp_path, pred: np.ndarray, cfg: End2EndConfig, nc: int) -> dict:
    path = tmp_path / f"post-{cfg.nms}-{cfg.nms_iterations}-{cfg.agnostic}-{pred.shape[1]}.onnx"
    if not path.is_file():
        onnx.save(build_end2end(_candidates_model(nc, pred.shape[1]), cfg), str(path))
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"images": np.zeros((1, 3, 160, 160), np.float32), "pred_in": pred,
             "protos_in": np.zeros((1, 32, 40, 40), np.float32)}
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))


def _greedy(pred: np.ndarray, cfg: End2EndConfig):
    return non_max_suppression(torch.from_numpy(pred), conf_threshold=cfg.conf_threshold,
                               iou_threshold=cfg.iou_threshold, max_det=cfg.max_det, max_nms=cfg.topk,
                               agnostic=cfg.agnostic)[0]


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    cases = {}
    # real-looking: 40 cells, 10 jittered duplicates each, 2 classes, scores spread around the threshold
    centers = rng.uniform(20, 140, (40, 2))
    sizes = rng.uniform(6, 20, (40, 1))
    c = np.repeat(centers, 10, 0) + rng.normal(0, 1.5, (400, 2))
    s = np.repeat(sizes, 10, 0) * rng.uniform(0.8, 1.25, (400, 1))
    cases["clustered"] = (np.concatenate([c - s / 2, c + s / 2], 1), rng.uniform(0.05, 0.95, 400),
                          rng.integers(0, 2, 400))
    # identical boxes with identical scores (ties keep the lower index), and one box per class at the same place
    box = np.array([[50, 50, 70, 70]], np.float32)
    cases["ties_and_classes"] = (np.repeat(box, 6, 0), np.array([0.9, 0.9, 0.9, 0.8, 0.8, 0.7]),
                                 np.array([0, 0, 1, 1, 0, 1]))
    # nested boxes and boxes below the score threshold interleaved by score
    nested = np.array([[10, 10, 60, 60], [12, 12, 58, 58], [30, 30, 40, 40], [11, 11, 59, 59], [100, 100, 130, 130]])
    cases["nested_and_low_scores"] = (nested.astype(np.float32), np.array([0.9, 0.1, 0.8, 0.12, 0.5]),
                                      np.zeros(5, np.int64))
    # a suppression chain: each box overlaps the next (IoU 0.54) but not the one after (IoU 0.25)
    x = 3.0 * np.arange(13)
    cases["chain13"] = (np.stack([x, 0 * x + 40, x + 10, 0 * x + 50], 1), np.linspace(0.9, 0.5, 13),
                        np.zeros(13, np.int64))
    return cases


@pytest.mark.parametrize("case", ["clustered", "ties_and_classes", "nested_and_low_scores", "chain13"])
@pytest.mark.parametrize("nms", ["onnx", "cluster"])
def test_nms_flavours_equal_greedy_on_adversarial_candidates(tmp_path, case, nms):
    xyxy, scores, classes = _cases()[case]
    nc = 2
    pred = _pred(xyxy.astype(np.float32), scores.astype(np.float32), classes, nc)
    for agnostic in (False, True):
        cfg = End2EndConfig(conf_threshold=0.2, iou_threshold=0.5, max_det=50, topk=512, nms=nms, agnostic=agnostic)
        out = _post(tmp_path, pred, cfg, nc)
        ref = _greedy(pred, cfg)
        n = int(out["num_dets"][0])
        assert n == len(ref) > 0
        np.testing.assert_allclose(out["boxes"][0, :n], ref.boxes.numpy(), atol=1e-4)
        np.testing.assert_array_equal(out["scores"][0, :n], ref.scores.numpy())
        np.testing.assert_array_equal(out["classes"][0, :n], ref.classes.numpy())
        assert not out["boxes"][0, n:].any() and not out["scores"][0, n:].any()


def test_cluster_nms_iterations_too_few_only_miss_boxes(tmp_path):
    """A 41-box chain needs ~41 iterations: with fewer (odd) the result is a subset of greedy, never a superset."""
    x = 3.0 * np.arange(41)
    xyxy = np.stack([x, 0 * x + 40, x + 10, 0 * x + 50], 1).astype(np.float32)
    pred = _pred(xyxy, np.linspace(0.95, 0.5, 41).astype(np.float32), np.zeros(41, np.int64), 1)
    exact = End2EndConfig(conf_threshold=0.2, iou_threshold=0.5, max_det=60, topk=64, nms="cluster", nms_iterations=41)
    ref = _greedy(pred, exact)
    assert len(ref) == 21  # every other box of the chain
    out = _post(tmp_path, pred, exact, 1)
    assert int(out["num_dets"][0]) == 21
    np.testing.assert_array_equal(out["scores"][0, :21], ref.scores.numpy())
    ref_scores = set(ref.scores.numpy().tolist())
    for t in (1, 25):  # Fast-NMS (1) and the default count: not enough for this chain
        few = _post(tmp_path, pred, End2EndConfig(**{**exact.__dict__, "nms_iterations": t}), 1)
        n = int(few["num_dets"][0])
        assert 0 < n < 21 and set(few["scores"][0, :n].tolist()) <= ref_scores
