"""INT8 quantization: TensorRT Q/DQ rules, CPU flavour, higher-precision decode, caches, node lists."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
from asfyolo_rt.calib.quantize import QuantConfig, exclusions, quantize_ort_cpu, quantize_tensorrt
from asfyolo_rt.export.compare import compare_runners, ort_runner, worst
from asfyolo_rt.export.graph import head_decode_nodes
from onnx import TensorProto, numpy_helper

from asfyolo_rt.errors import CalibrationError, ConfigError


def _qdq(model: onnx.ModelProto):
    inits = {i.name: i for i in model.graph.initializer}
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    return inits, q, dq


def _dq_fed_nodes(model: onnx.ModelProto) -> set[str]:
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return {n.name for n in model.graph.node if n.op_type != "QuantizeLinear" and any(i in dq_out for i in n.input)}


def test_tensorrt_int8_qdq_rules(trt_int8, fp32_onnx):
    m = onnx.load(str(trt_int8.artifact.path))
    onnx.checker.check_model(m, full_check=True)
    inits, q, dq = _qdq(m)
    assert len(q) > 20 and len(dq) >= len(q)
    for node in q + dq:  # symmetric: every zero point (activations and weights) is an int8 zero
        zp = numpy_helper.to_array(inits[node.input[2]])
        assert zp.dtype == np.int8 and not zp.any(), node.name
    weight_dq = [n for n in dq if n.input[0] in inits or any(
        p.output[0] == n.input[0] and p.input[0] in inits for p in q)]
    per_channel = [n for n in weight_dq if numpy_helper.to_array(inits[n.input[1]]).size > 1]
    assert per_channel, "weights must be quantized per output channel"
    assert {p["zero_point"] for p in trt_int8.activation_qparams.values()} == {0}
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert all(o.type.tensor_type.elem_type == TensorProto.FLOAT for o in m.graph.output)
    assert int(max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))) >= 19


def test_head_decode_first_conv_and_proto_stay_unquantized(trt_int8, fp32_onnx):
    fp32 = onnx.load(str(fp32_onnx))
    decode = set(head_decode_nodes(fp32))
    m = onnx.load(str(trt_int8.artifact.path))
    fed = _dq_fed_nodes(m)
    assert decode and not (decode & fed)
    assert "/head/proto/cv3/conv/Conv" not in fed and "/backbone/stem/conv/Conv" not in fed
    assert not any(n.startswith("/head/m/") for n in fed)
    assert any(n.startswith("/backbone/stage2/") for n in fed)  # the body is quantized
    reasons = trt_int8.excluded
    assert all(reasons[d].startswith("head decode") for d in decode)
    # the non-quantized remainder is FP16 (strongly typed TensorRT), the decode FP32
    convs = [i for i in m.graph.initializer if i.name.endswith("proto.cv3.conv.weight")]
    assert convs and convs[0].data_type == TensorProto.FLOAT16


def test_tensorrt_int8_close_to_fp32(trt_int8, fp32_onnx, calib_set):
    w = worst(compare_runners(ort_runner(fp32_onnx), ort_runner(trt_int8.artifact.path), [(1, 160, 160)],
                              images=calib_set.float_images(0, 1)))
    assert 0 < w["pred"]["mean_abs"] < 0.05 and w["protos"]["mean_abs"] < 1e-3


def test_cpu_flavour_uint8_activations(cpu_int8, fp32_onnx, calib_set):
    m = onnx.load(str(cpu_int8.artifact.path))
    onnx.checker.check_model(m, full_check=True)
    inits, q, _ = _qdq(m)
    act = [n for n in q if n.input[0] not in inits]
    act_zp = [numpy_helper.to_array(inits[n.input[2]]) for n in act]
    assert act and all(z.dtype == np.uint8 for z in act_zp) and any(z.any() for z in act_zp)  # asymmetric
    w_dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
            and "weight" in n.input[0]]  # (biases are int32)
    assert w_dq and all(numpy_helper.to_array(inits[n.input[0]]).dtype == np.int8 for n in w_dq)
    assert any(numpy_helper.to_array(inits[n.input[1]]).size > 1 for n in w_dq)  # per-channel
    assert {p.key: p.value for p in m.metadata_props}["precision"] == "int8-cpu"
    fed = _dq_fed_nodes(m)
    assert not (set(head_decode_nodes(onnx.load(str(fp32_onnx)))) & fed)
    w = worst(compare_runners(ort_runner(fp32_onnx), ort_runner(cpu_int8.artifact.path), [(1, 160, 160)],
                              images=calib_set.float_images(0, 1)))
    assert w["pred"]["mean_abs"] < 0.05


def test_cache_reuse_and_mismatch(trt_int8, fp32_onnx, calib_set, tmp_path, caplog):
    cache = trt_int8.cache_path
    assert cache is not None and cache.is_file() and not trt_int8.cache_hit
    hit = quantize_tensorrt(fp32_onnx, tmp_path / "again.onnx", calib_set, cache_path=cache)
    assert hit.cache_hit
    assert hit.activation_qparams == trt_int8.activation_qparams  # cached scales, not a 1-image calibration
    other = type(calib_set)(**{**calib_set.__dict__, "pixels": calib_set.pixels[:5], "entries": calib_set.entries[:5]})
    with pytest.raises(CalibrationError, match="image_list_sha256"):
        quantize_tensorrt(fp32_onnx, tmp_path / "x.onnx", other, QuantConfig(on_cache_mismatch="error"),
                          cache_path=cache)
    with caplog.at_level(logging.WARNING):
        re = quantize_ort_cpu(fp32_onnx, tmp_path / "cpu.onnx", other, cache_path=tmp_path / "cpu.json")
        re2 = quantize_ort_cpu(fp32_onnx, tmp_path / "cpu2.onnx", calib_set, cache_path=tmp_path / "cpu.json")
    assert not re.cache_hit and not re2.cache_hit and "recalibrating" in caplog.text


def test_cpu_cache_hit_reproduces_model(cpu_int8, fp32_onnx, calib_set, tmp_path):
    hit = quantize_ort_cpu(fp32_onnx, tmp_path / "m.onnx", calib_set, cache_path=cpu_int8.cache_path)
    assert hit.cache_hit and hit.activation_qparams == cpu_int8.activation_qparams


def test_exclude_and_include_lists(fp32_onnx):
    m = onnx.load(str(fp32_onnx))
    ex = exclusions(m, QuantConfig(exclude=("/neck/c3_p4/.*",), include=("/head/m/0/Conv",)))
    assert "/neck/c3_p4/cv1/conv/Conv" in ex and ex["/neck/c3_p4/cv1/conv/Conv"] == "user exclude list"
    assert "/head/m/0/Conv" not in ex and "/head/m/1/Conv" in ex
    with pytest.raises(ConfigError, match="matches no node"):
        exclusions(m, QuantConfig(exclude=("/nothing/.*",)))
    with pytest.raises(ConfigError, match="head decode"):
        exclusions(m, QuantConfig(include=("/head/Sigmoid.*",)))
    with pytest.raises(ConfigError, match="calib-method"):
        QuantConfig(method="percentile")


def test_modelopt_patches_are_undone(trt_int8):
    from onnxruntime.quantization import calibrate

    # ModelOpt swaps these process-wide; ONNX Runtime's own quantize_static needs the originals
    assert calibrate.CalibraterBase.select_tensors_to_calibrate.__module__ == calibrate.__name__
    assert calibrate.HistogramCalibrater.collect_data.__module__ == calibrate.__name__
