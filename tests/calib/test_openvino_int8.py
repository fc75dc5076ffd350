"""NNCF INT8 for OpenVINO: model.int8-openvino.xml/.bin from the FP32 ONNX and a calibration set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("nncf")


@pytest.fixture(scope="module")
def ov_int8(fp32_onnx, calib_set, tmp_path_factory):
    from asfyolo_rt.calib.openvino_int8 import quantize_openvino

    return quantize_openvino(fp32_onnx, tmp_path_factory.mktemp("ovint8") / "model.int8-openvino.xml", calib_set)


def test_nncf_writes_an_int8_ir_that_runs_like_the_fp32_model(ov_int8, fp32_onnx, calib_set) -> None:
    from asfyolo_rt.atomic import file_sha256
    from asfyolo_rt.infer.backends import OrtBackend
    from asfyolo_rt.infer.openvino import OpenVinoBackend, model_metadata
    from asfyolo_rt.runtime.info import read_model_info
    from asfyolo_rt.runtime.registry import load_backend

    assert ov_int8.xml.is_file() and ov_int8.bin == ov_int8.xml.with_suffix(".bin") and ov_int8.bin.is_file()
    assert ov_int8.sha256 == {p.name: file_sha256(p) for p in (ov_int8.xml, ov_int8.bin)}
    assert ov_int8.images == len(calib_set) and ov_int8.fake_quantize > 20
    # the head decode and the layers the ONNX flavours keep in FP32 stay unquantized, Conv names mapped to OpenVINO's
    assert any(n.endswith("/WithoutBiases") for n in ov_int8.ignored)
    meta = model_metadata(ov_int8.xml)
    assert (meta["precision"], meta["int8_flavour"], meta["calib_images"]) == ("int8", "openvino", str(len(calib_set)))
    assert read_model_info(ov_int8.xml).geometry() == read_model_info(fp32_onnx).geometry()
    b = load_backend(ov_int8.xml)
    assert isinstance(b, OpenVinoBackend) and b.precision == "int8" and b.input_shape == (160, 160)
    x = torch.from_numpy(calib_set.float_images(0, 1))
    ref, got = OrtBackend(fp32_onnx)(x), b(x)
    for r, g in zip(ref, got):
        assert g.shape == r.shape
        cos = torch.nn.functional.cosine_similarity(g.flatten().double(), r.flatten().double(), dim=0).item()
        assert cos > 0.98
    assert not torch.equal(got[1], ref[1])  # really quantized, not the FP32 graph
    assert np.isfinite(got[0].numpy()).all()


def test_int8_ir_refuses_bf16(ov_int8) -> None:
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.infer.openvino import OpenVinoBackend

    with pytest.raises(ConfigError, match="INT8 model|no native BF16"):  # the check that fires first depends on the CPU
        OpenVinoBackend(ov_int8.xml, precision="bf16")


def test_int8_ir_activations_fuse_into_the_int8_convolutions(ov_int8) -> None:
    # On the graph of Core.read_model (the ONNX frontend's shape arithmetic for each conv bias, SiLU as
    # Sigmoid * x) every activation stayed a kernel of its own around the INT8 convolutions (77 Subgraph and 306
    # Reorder nodes here) and INT8 ran no faster than BF16; convert_model's graph lets the CPU plugin fuse them
    # (14 and 21).
    import collections

    import openvino as ov

    compiled = ov.Core().compile_model(str(ov_int8.xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ops = compiled.get_runtime_model().get_ops()
    kinds = collections.Counter(op.get_rt_info()["layerType"].astype(str) for op in ops)
    convs = [op for op in ops if op.get_rt_info()["layerType"].astype(str) == "Convolution"]
    int8 = [op for op in convs if op.get_rt_info()["runtimePrecision"].astype(str) in ("u8", "i8")]
    assert len(int8) > 0.8 * len(convs), kinds
    assert kinds["Subgraph"] < len(convs) / 3 and kinds["Reorder"] < len(convs) / 2, kinds
