"""`asfyolo-rt parity` and `asfyolo-rt bench` on a real (small) bundle exported from a random n model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from testing_models import input_dependent_n_model

IMG = 160


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from asfyolo_rt.data.synth import write_synth_dataset

    return write_synth_dataset(tmp_path_factory.mktemp("data"), 6, 4, kind="nuclei", shape=(160, 160), seed=1)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, synth_data: Path) -> Path:
    from typer.testing import CliRunner

    from asfyolo_rt.cli.main import app
    from asfyolo_rt.model.weights import config_of, save_checkpoint

    m = input_dependent_n_model()
    root = tmp_path_factory.mktemp("bundle")
    ckpt = save_checkpoint(m, root / "n.safetensors", config_of(m, img_size=IMG))
    out = root / "bundle"
    r = CliRunner().invoke(app, ["export", "--weights", str(ckpt), "--fp16", "--int8", "--data", str(synth_data),
                                 "--calib-images", "6", "--eval-images", "2", "--out", str(out)])
    assert r.exit_code == 0, r.stdout + r.stderr
    return out


def test_parity_bundle_json(bundle: Path, synth_data: Path, cli) -> None:
    r = cli("parity", bundle, "--data", synth_data, "--images", "3", "--json")
    assert r.exit_code in (0, 1), r.stderr
    rep = json.loads(r.stdout)
    labels = [x["label"] for x in rep["results"]]
    assert labels[0].startswith("torch fp32")
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8-cpu.onnx"):
        assert any(lab.endswith(name) for lab in labels), labels
    ort32 = next(x for x in rep["results"] if x["label"].endswith(" model.onnx"))
    assert abs(ort32["deltas"]["mask_map50"]) <= 0.1 and ort32["passed"]
    assert ort32["raw"]["boxes"]["max_abs"] < 1e-2 and ort32["raw"]["protos"]["cosine"] > 0.9999
    assert ort32["agreement"]["match_rate"] > 0.99
    assert r.exit_code == (0 if rep["passed"] else 1)


def test_parity_fails_with_impossible_gate(bundle: Path, synth_data: Path, cli, tmp_path: Path) -> None:
    r = cli("parity", bundle / "model.onnx", "--weights", next(bundle.parent.glob("*.safetensors")), "--data",
            synth_data, "--images", "2", "--threshold", "fp32=-1000", "--report", tmp_path / "rep", "--no-torch-lowp")
    assert r.exit_code == 1
    assert "FAIL" in r.stdout
    assert (tmp_path / "rep" / "parity.md").read_text().count("**FAIL**") == 1
    assert json.loads((tmp_path / "rep" / "parity.json").read_text())["passed"] is False


def test_bench_rows(bundle: Path, synth_data: Path, cli, tmp_path: Path) -> None:
    out_csv = tmp_path / "rows.csv"
    r = cli("bench", bundle / "model.int8-cpu.onnx", "--iters", "2", "--warmup", "0", "--cells", "20",
            "--data", synth_data, "--csv", out_csv, "--plot", tmp_path / "b.png", "--json")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    assert len(rows) == 1
    row = rows[0]
    assert row["precision"] == "int8-cpu" and row["backend"] == "onnxruntime"
    assert row["cells_per_image"] == 20
    assert row["latency_p50_ms"] <= row["latency_p90_ms"] <= row["latency_p99_ms"]
    assert abs(row["pre_ms"] + row["infer_ms"] + row["post_ms"] - row["latency_p50_ms"]) < 0.5 * row["latency_p50_ms"] + 5
    assert list(csv.DictReader(open(out_csv)))[0]["label"] == row["label"]
    assert (tmp_path / "b.png").stat().st_size > 0
    # a second run appends to the same CSV
    r = cli("bench", "--model", "n", "--backend", "torch", "--img-size", "64", "--iters", "1", "--warmup", "0",
            "--data", synth_data, "--csv", out_csv)
    assert r.exit_code == 0, r.stderr
    assert len(list(csv.DictReader(open(out_csv)))) == 2


def test_parity_tiled_protocol(bundle: Path, synth_data: Path, cli, tmp_path: Path) -> None:
    """The deployment protocol: images at native scale in tiles of the static model's 160 x 160 input."""
    r = cli("parity", bundle / "model.onnx", "--weights", next(bundle.parent.glob("*.safetensors")), "--data",
            synth_data, "--images", "2", "--protocol", "tiled", "--no-torch-lowp", "--json", "--report", tmp_path / "r")
    assert r.exit_code == 0, r.stdout + r.stderr
    rep = json.loads(r.stdout)
    assert rep["protocol"] == "tiled" and rep["input_shape"] == [160, 160]
    ort32 = rep["results"][1]
    assert abs(ort32["deltas"]["mask_map50"]) <= 0.1 and ort32["agreement"]["match_rate"] > 0.99
    assert "native scale in tiles" in (tmp_path / "r" / "parity.md").read_text()


def test_bench_whole_frame_rows(bundle: Path, synth_data: Path, cli, tmp_path: Path) -> None:
    out = tmp_path / "frames.csv"
    r = cli("bench", bundle / "model.onnx", "--frame", "400", "--data", synth_data, "--batch", "1", "--iters", "1",
            "--warmup", "0", "--csv", out, "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    (row,) = json.loads(r.stdout)["rows"]
    assert row["frame"] == "400x400" and row["tile"] == "160x160"
    assert row["tiles"] == 16  # 400 px in 160 tiles, the default overlap 128 capped at half a tile (80): 4 x 4
    assert row["mpix_per_s"] > 0 and row["frame_p50_ms"] > 0
    assert list(csv.DictReader(out.open()))[0]["frame"] == "400x400"
    # per-input rows cannot be appended to a whole-frame CSV
    r = cli("bench", bundle / "model.onnx", "--iters", "1", "--warmup", "0", "--csv", out, "--data", synth_data)
    assert r.exit_code != 0 and "another kind" in r.output


@pytest.mark.slow  # parity over seven backends and an OpenVINO bench: > 20 s on 2 cores (fast checks: tests/infer)
def test_openvino_rows_in_bundle_parity_and_bench(bundle: Path, synth_data: Path, cli) -> None:
    pytest.importorskip("nncf")
    from asfyolo_rt.atomic import file_sha256
    from asfyolo_rt.infer.openvino import cpu_isa, has_bf16
    from asfyolo_rt.onnx_flops import onnx_gflops

    files = json.loads((bundle / "bundle.json").read_text())["files"]
    for name in ("model.int8-openvino.xml", "model.int8-openvino.bin"):
        assert files[name]["sha256"] == file_sha256(bundle / name)
    r = cli("parity", bundle, "--data", synth_data, "--images", "2", "--no-torch-lowp", "--json")
    assert r.exit_code in (0, 1), r.stderr
    rep = json.loads(r.stdout)
    ov = {x["label"]: x for x in rep["results"] if x["name"] == "openvino"}
    isa = f"[{cpu_isa()}]"
    assert f"openvino fp32 {isa} model.onnx" in ov and f"openvino int8 {isa} model.int8-openvino.xml" in ov, list(ov)
    assert (f"openvino bf16 {isa} model.onnx" in ov) == has_bf16()
    assert ov[f"openvino fp32 {isa} model.onnx"]["threshold"] == 0.1
    assert ov[f"openvino int8 {isa} model.int8-openvino.xml"]["threshold"] == 1.0  # the INT8 gate
    assert abs(ov[f"openvino fp32 {isa} model.onnx"]["deltas"]["mask_map50"]) <= 0.1
    r = cli("bench", bundle / "model.onnx", "--backend", "openvino", "--precision", "fp32,bf16,int8", "--iters", "2",
            "--warmup", "0", "--data", synth_data, "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    rows = out["rows"]
    assert [x["precision"] for x in rows] == (["fp32", "bf16", "int8"] if has_bf16() else ["fp32", "int8"])
    assert has_bf16() or "no native BF16" in r.stderr
    gflops = onnx_gflops(bundle / "model.onnx").gflops
    for x in rows:
        assert x["backend"] == "openvino" and x["isa"] == cpu_isa()
        assert x["gflops"] == pytest.approx(gflops, rel=1e-3)
        assert x["achieved_gflops_per_s"] == pytest.approx(gflops * 1e3 / x["infer_ms"], rel=0.02)
        assert x["pct_of_peak"] == pytest.approx(100 * x["achieved_gflops_per_s"] / x["peak_gflops_per_s"], abs=0.1)
        assert isinstance(x["noisy"], bool) and x["cpu_s"] > 0 and x["wall_s"] > 0
    assert out["peak"]["fp32_gflops"] > 0
