"""INT8-sensitive layers recorded in a checkpoint (`weights pack --int8-exclude`) stay unquantized in the
TensorRT INT8 file that `export` writes; the CPU flavour is not affected."""

from __future__ import annotations

import json

import onnx

from asfyolo_rt.model.weights import load_checkpoint


def _int8_fed(m: onnx.ModelProto) -> set[str]:
    dq_out = {n.output[0] for n in m.graph.node if n.op_type == "DequantizeLinear"}
    return {n.name for n in m.graph.node if n.op_type != "QuantizeLinear" and any(i in dq_out for i in n.input)}


def test_recorded_int8_exclude_reaches_the_tensorrt_file(cli, n_ckpt, tmp_path):
    packed = tmp_path / "n-excl.safetensors"
    r = cli("weights", "pack", n_ckpt, "--out", packed, "--int8-exclude", "/neck/c3_out_p5/.*")
    assert r.exit_code == 0, r.stderr
    assert load_checkpoint(packed)[1].int8_exclude == ("/neck/c3_out_p5/.*",)
    bad = cli("weights", "pack", n_ckpt, "--out", tmp_path / "x.safetensors", "--int8-exclude", "/neck/(")
    assert bad.exit_code == 1 and "--int8-exclude" in bad.stderr and "Traceback" not in bad.stderr

    out = tmp_path / "bundle"
    r = cli("export", "--weights", packed, "--int8", "--calib-images", "8", "--img-size", "160", "--no-rtx",
            "--out", out)
    assert r.exit_code == 0, r.stderr
    block = lambda names: {n for n in names if n.startswith("/neck/c3_out_p5/")}  # noqa: E731
    trt = _int8_fed(onnx.load(str(out / "model.int8.onnx")))
    cpu = _int8_fed(onnx.load(str(out / "model.int8-cpu.onnx")))
    assert block(cpu), "the CPU flavour still quantizes the block"
    assert not block(trt) and len(trt) > 20  # the TensorRT file keeps it in high precision, the rest INT8
    report = json.loads((out / "export_report.json").read_text())
    assert report["int8"]["recorded_exclude"] == ["/neck/c3_out_p5/.*"]
