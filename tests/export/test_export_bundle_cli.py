"""`asfyolo-rt export`: the deployment bundle on this CPU machine (the issue's done-when check, small)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from asfyolo_rt.export.graph import head_decode_nodes
from onnx import numpy_helper


def _int8_fed(m: onnx.ModelProto) -> set[str]:
    dq_out = {n.output[0] for n in m.graph.node if n.op_type == "DequantizeLinear"}
    return {n.name for n in m.graph.node if n.op_type != "QuantizeLinear" and any(i in dq_out for i in n.input)}


@pytest.mark.datasets
def test_export_int8_bundle_with_dataset(cli, n_ckpt, datasets_root, tmp_path):
    out = tmp_path / "bundle"
    r = cli("export", "--weights", n_ckpt, "--int8", "--data", datasets_root / "DSB2018", "--calib-images", "8",
            "--img-size", "160", "--eval-images", "2", "--out", out, "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    for name in ("model.onnx", "model.int8.onnx", "model.int8-cpu.onnx", "calibration_report.json",
                 "model.int8.calib.json", "model.int8-cpu.calib.json", "export_report.json", "bundle.json"):
        assert (out / name).is_file(), name

    int8 = onnx.load(str(out / "model.int8.onnx"))
    onnx.checker.check_model(int8, full_check=True)
    inits = {i.name: i for i in int8.graph.initializer}
    qdq = [n for n in int8.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 40
    assert all(not numpy_helper.to_array(inits[n.input[2]]).any() for n in qdq)  # zero-point 0 everywhere
    decode = set(head_decode_nodes(onnx.load(str(out / "model.onnx"))))
    assert decode and not (decode & _int8_fed(int8))  # the head decode is not quantized

    bundle = json.loads((out / "bundle.json").read_text())
    assert bundle == doc["bundle"]
    assert bundle["model"]["img_size"] == [160, 160] and bundle["model"]["variant"] == "n"
    assert len(bundle["files"]["model.int8.onnx"]["sha256"]) == 64
    assert set(bundle["engines"]["commands"]) == {"fp32", "int8"}
    assert "asfyolo-rt build" in bundle["engines"]["commands"]["int8"]

    report = json.loads((out / "export_report.json").read_text())
    assert set(report["parity"]) == {"fp32", "int8", "int8-cpu"}
    assert report["parity"]["fp32"]["worst"]["pred"]["max_abs"] < 1e-2
    acc = report["accuracy"]
    expected = {"pytorch-fp32", "onnxruntime-fp32", "onnxruntime-int8", "onnxruntime-int8-cpu"}
    if (out / "model.int8-openvino.xml").is_file():  # NNCF INT8 IR, written when OpenVINO is installed
        expected.add("openvino-int8")
    assert set(acc["metrics"]) == expected
    assert set(acc["delta_vs_pytorch"]["onnxruntime-int8"]) == {"box_map50", "box_map", "mask_map50", "mask_map"}

    calib = json.loads((out / "calibration_report.json").read_text())
    assert calib["calibration_set"]["n_images"] == 8 and not calib["calibration_set"]["synthetic"]
    assert all("/images/train/" in p for p in calib["calibration_set"]["images"])
    trt = calib["flavours"]["tensorrt"]
    assert trt["zero_points"] == [0] and trt["tensor_ranges"] and trt["method"] == "entropy"
    assert any(v.startswith("head decode") for v in trt["excluded_nodes"].values())
    assert calib["flavours"]["cpu"]["tensor_ranges"]

    # a second export of the same inputs reuses both calibration caches
    r2 = cli("export", "--weights", n_ckpt, "--int8", "--data", datasets_root / "DSB2018", "--calib-images", "8",
             "--img-size", "160", "--eval-images", "1", "--out", out, "--json")
    assert r2.exit_code == 0, r2.stderr
    calib2 = json.loads((out / "calibration_report.json").read_text())
    assert calib2["flavours"]["tensorrt"]["cache_hit"] and calib2["flavours"]["cpu"]["cache_hit"]
    assert calib2["flavours"]["tensorrt"]["tensor_ranges"] == trt["tensor_ranges"]


def test_export_fp16_end2end_synthetic(cli, n_ckpt, tmp_path):
    out = tmp_path / "b"
    r = cli("export", "--weights", n_ckpt, "--fp16", "--int8", "--calib-images", "4", "--img-size", "160",
            "--end2end", "--conf", "0.16", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert "synthetic" in r.stderr and "microscope" in r.stderr  # the calibration warning
    assert "asfyolo-rt build" in r.stdout and "trtexec" in r.stdout  # what to run on the device
    for name in ("model.fp16.onnx", "model.end2end.onnx", "model.fp16.end2end.onnx", "model.int8.end2end.onnx"):
        assert (out / name).is_file(), name
    report = json.loads((out / "export_report.json").read_text())
    assert "FP32" in report["fp16"]["ort_cpu_note"] and report["fp16"]["pytorch_half_estimate"]["errors_vs_fp32"]
    assert report["end2end"]["config"]["conf_threshold"] == 0.16

    import onnxruntime as ort

    s = ort.InferenceSession(str(out / "model.int8.end2end.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)
    outs = dict(zip([o.name for o in s.get_outputs()], s.run(None, {"images": x})))
    assert outs["masks"].shape == (1, 300, 40, 40) and outs["num_dets"].shape == (1,)


def test_export_rejects_inconsistent_options(cli, n_ckpt, tmp_path):
    r = cli("export", "--weights", n_ckpt, "--int8-sensitivity", "--out", tmp_path / "x")
    assert r.exit_code == 1 and "--int8" in r.stderr
    r = cli("export", "--weights", n_ckpt, "--img-size", "100", "--out", tmp_path / "y")
    assert r.exit_code == 1 and "multiple" in r.stderr
