"""FP16 ONNX: float16 graph, float32 I/O, explicit FP32 islands, strict typing, PyTorch half estimate."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from asfyolo_rt.export.compare import compare_runners, ort_runner, worst
from asfyolo_rt.export.fp16 import Fp16Rules, check_types, convert_fp16, torch_half_estimate
from asfyolo_rt.export.graph import head_decode_nodes
from onnx import TensorProto


@pytest.fixture(scope="module")
def fp16_result(onnx_static, nuclei_batch, tmp_path_factory):
    return convert_fp16(onnx_static.path, tmp_path_factory.mktemp("fp16") / "model.fp16.onnx",
                        sample_batches=[nuclei_batch])


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    return {v.name: v.type.tensor_type.elem_type
            for v in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)}


def test_fp16_graph_typing(fp16_result, onnx_static):
    m = onnx.load(str(fp16_result.artifact.path))
    check_types(m, "fp16")  # strict type inference: what TensorRT 11's parser enforces
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert [o.type.tensor_type.elem_type for o in m.graph.output] == [TensorProto.FLOAT, TensorProto.FLOAT]
    conv_weights = [i for i in m.graph.initializer if i.name.endswith("conv.weight")]
    assert conv_weights and all(i.data_type == TensorProto.FLOAT16 for i in conv_weights)
    inits = {i.name: i for i in m.graph.initializer}
    for n in m.graph.node:  # Resize's scales must stay float32 (onnxconverter-common converts them)
        if n.op_type == "Resize" and len(n.input) > 2 and n.input[2]:
            assert inits[n.input[2]].data_type == TensorProto.FLOAT
    assert {p.key: p.value for p in m.metadata_props}["precision"] == "fp16"


def test_head_decode_kept_in_fp32(fp16_result, onnx_static):
    decode = head_decode_nodes(onnx.load(str(onnx_static.path)))
    assert len(decode) > 20 and any("Sigmoid" in d for d in decode)
    assert all(fp16_result.kept_fp32[d].startswith("head decode") for d in decode)
    m = onnx.load(str(fp16_result.artifact.path))
    types = _types(m)
    by_name = {n.name: n for n in m.graph.node}
    for d in decode:
        if by_name[d].op_type in ("Sigmoid", "Mul", "Add", "Pow"):
            assert types[by_name[d].output[0]] == TensorProto.FLOAT, d
    convs = [n for n in m.graph.node if n.op_type == "Conv" and n.name.startswith("/backbone")]
    assert convs and all(types[c.output[0]] == TensorProto.FLOAT16 for c in convs)


def test_fp16_runs_in_onnxruntime_close_to_fp32(fp16_result, onnx_static, nuclei_batch):
    rows = compare_runners(ort_runner(onnx_static.path), ort_runner(fp16_result.artifact.path), [(1, 160, 160)],
                           images=nuclei_batch)
    w = worst(rows)
    assert 0 < w["pred"]["max_abs"] < 0.5  # FP16 weights change the numbers, a little (pixels up to ~400)
    assert w["protos"]["max_abs"] < 1e-3


def test_range_rule_keeps_large_values_in_fp32(onnx_static, nuclei_batch, tmp_path):
    res = convert_fp16(onnx_static.path, tmp_path / "m.onnx", rules=Fp16Rules(range_limit=2.0),
                       sample_batches=[nuclei_batch])
    ranged = [n for n, why in res.kept_fp32.items() if "exceed the FP16 range limit" in why]
    assert ranged and not any(n.startswith("/post") for n in ranged)
    assert res.to_dict()["kept_fp32_by_reason"]


def test_unknown_extra_node_is_an_error(onnx_static, tmp_path):
    from asfyolo_rt.errors import ExportError

    with pytest.raises(ExportError, match="not a node"):
        convert_fp16(onnx_static.path, tmp_path / "m.onnx", rules=Fp16Rules(extra_fp32_nodes=("/nope",)))


def test_torch_half_estimate(n_model, nuclei_batch):
    est = torch_half_estimate(n_model, nuclei_batch[:1])
    assert set(est) == {"fp16", "bf16"}
    assert 0 < est["fp16"]["pred"]["max_abs"] < est["bf16"]["pred"]["max_abs"]  # bf16 has 3 fewer mantissa bits
    assert np.isfinite(est["fp16"]["protos"]["mean_abs"])
