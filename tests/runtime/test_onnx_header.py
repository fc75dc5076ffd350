"""`asfyolo_rt.infer.onnx_header` reads what ModelInfo needs from an ONNX file as the `onnx` package does, and
refuses what is not one."""

from __future__ import annotations

import pytest

from asfyolo_rt.infer.onnx_header import ProtoError, read_onnx_header


def _via_onnx(path):
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    inp = [i for i in m.graph.input if i.name not in inits][0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    return {p.key: p.value for p in m.metadata_props}, dims, [o.name for o in m.graph.output]


@pytest.mark.parametrize("fixture", ["shipped_onnx", "dynamic_onnx"])
def test_header_equals_the_onnx_packages_reading(fixture, request):
    path = request.getfixturevalue(fixture)
    head = read_onnx_header(path)
    meta, dims, outputs = _via_onnx(path)
    assert head.metadata == meta and "model_info" in meta
    assert head.input_dims == dims and head.outputs == outputs == ["pred", "protos"]
    assert (dims[2] is None) == (fixture == "dynamic_onnx")


def test_an_initializer_listed_as_input_is_skipped(tmp_path):
    """Old IR versions list weights among the graph inputs: the first real input is the image."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((3,), np.float32), name="w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["w", "x"], ["pred"])], "g",
        [helper.make_tensor_value_info("w", TensorProto.FLOAT, [3]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", 64])],
        [helper.make_tensor_value_info("pred", TensorProto.FLOAT, [1, 3, "h", 64])], initializer=[w])
    model = helper.make_model(graph)
    helper.set_model_props(model, {"nc": "1"})
    onnx.save(model, tmp_path / "m.onnx")
    head = read_onnx_header(tmp_path / "m.onnx")
    assert head.input_dims == [1, 3, None, 64] and head.metadata == {"nc": "1"} and head.outputs == ["pred"]


@pytest.mark.parametrize("data", [b"", b"not an onnx model at all\n" * 10, b"\x08\x07\x3a\xff\xff\xff\xff\x0f"])
def test_what_is_not_onnx_is_refused(data, tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(data)
    with pytest.raises(ProtoError):
        read_onnx_header(p)
