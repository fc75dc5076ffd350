"""Engine code without TensorRT: sidecar JSON, clear errors, commands; TensorRT/GPU tests auto-skip here."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from asfyolo_rt.export.engine.build import (
    BuildConfig,
    ShapeProfile,
    build_engine,
    default_profile,
    trtexec_command,
)

from asfyolo_rt.errors import ConfigError, EngineBuildError
from asfyolo_rt.infer.sidecar import EngineSidecar, read_sidecar, sidecar_path, write_sidecar


def _sidecar(**kw) -> EngineSidecar:
    base = {"engine": "model.int8.engine", "precision": "int8", "onnx": "model.int8.onnx", "onnx_sha256": "ab" * 32,
            "tensorrt_version": "10.3.0", "compute_capability": "8.7", "device": "Orin", "names": {"0": "cell"},
            "nc": 1, "img_size": [640, 640], "thresholds": {"conf_threshold": "0.25"}}
    base.update(kw)
    return EngineSidecar(**base)


def test_sidecar_roundtrip(tmp_path):
    engine = tmp_path / "model.int8.engine"
    path = write_sidecar(engine, _sidecar())
    assert path == sidecar_path(engine) and path.name == "model.int8.engine.json"
    back = read_sidecar(engine)
    assert back == _sidecar() and back.format == "asfyolo-rt-engine/3" and back.runtime == "TensorRT"
    assert json.loads(path.read_text())["compute_capability"] == "8.7"


def test_sidecar_format_1_still_reads(tmp_path):
    engine = tmp_path / "model.int8.engine"
    doc = _sidecar().to_dict()
    for key in ("runtime", "targets", "layers"):  # format 1 had none of these
        del doc[key]
    sidecar_path(engine).write_text(json.dumps({**doc, "format": "asfyolo-rt-engine/1"}))
    back = read_sidecar(engine)
    assert back.runtime == "TensorRT" and back.targets == [] and back.layers == {} and back.precision == "int8"
    sidecar_path(engine).write_text(json.dumps({**doc, "runtime": "onnxruntime"}))
    with pytest.raises(EngineBuildError, match="runtime"):
        read_sidecar(engine)


def test_sidecar_errors(tmp_path):
    engine = tmp_path / "m.engine"
    with pytest.raises(EngineBuildError, match="does not exist"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({**_sidecar().to_dict(), "extra": 1}))
    with pytest.raises(EngineBuildError, match="unknown keys"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({**_sidecar().to_dict(), "precision": "int4"}))
    with pytest.raises(EngineBuildError, match="precision"):
        read_sidecar(engine)
    with pytest.raises(EngineBuildError):
        write_sidecar(engine, _sidecar(precision="int8-cpu"))


def _no_tensorrt(monkeypatch):
    """Neither flavour importable, even where installed (import X -> ImportError)."""
    for name in ("tensorrt", "tensorrt_rtx", "tensorrt_rtx_bindings"):
        monkeypatch.setitem(sys.modules, name, None)


def test_build_without_tensorrt_says_what_to_run(onnx_static, monkeypatch, tmp_path):
    _no_tensorrt(monkeypatch)
    with pytest.raises(EngineBuildError, match="TensorRT is not installed") as info:
        build_engine(onnx_static.path, tmp_path / "m.engine", BuildConfig(precision="fp32"))
    assert "asfyolo-rt build" in (info.value.hint or "") and "--precision fp32" in (info.value.hint or "")
    assert "asfyolo-rt[rtx]" in (info.value.hint or "")  # names the pip extra that builds here
    assert not (tmp_path / "m.engine").exists()
    with pytest.raises(EngineBuildError, match="TensorRT-RTX is not installed") as info:
        build_engine(onnx_static.path, tmp_path / "m.engine", BuildConfig(precision="fp32", runtime="rtx"))
    assert "pip install 'asfyolo-rt[rtx]'" in (info.value.hint or "")
    with pytest.raises(EngineBuildError, match="TensorRT is not installed") as info:
        build_engine(onnx_static.path, tmp_path / "m.engine", BuildConfig(precision="fp32", runtime="trt"))
    assert "asfyolo-rt[trt]" in (info.value.hint or "")
    with pytest.raises(ConfigError, match="--runtime"):
        build_engine(onnx_static.path, tmp_path / "m.engine", BuildConfig(precision="fp32", runtime="tensorrt"))


def test_build_refuses_non_onnx_and_cpu_int8(onnx_static, tmp_path):
    """Refused before TensorRT is even imported: the checks hold with or without it."""
    junk = tmp_path / "model.onnx"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(EngineBuildError, match="is not an ONNX model"):
        build_engine(junk, tmp_path / "m.engine", BuildConfig(precision="fp32"))
    import onnx
    from asfyolo_rt.export.onnx_export import get_metadata, set_metadata

    m = onnx.load(str(onnx_static.path))
    set_metadata(m, {**get_metadata(m), "precision": "int8-cpu"})
    cpu = tmp_path / "model.int8-cpu.onnx"
    onnx.save(m, str(cpu))
    for precision in ("int8", "fp32"):
        with pytest.raises(EngineBuildError, match="ONNX Runtime CPU INT8 model .* not for TensorRT") as info:
            build_engine(cpu, tmp_path / "m.engine", BuildConfig(precision=precision))
        assert "model.int8.onnx" in (info.value.hint or "")
    assert not (tmp_path / "m.engine").exists()


def test_build_refuses_wrong_precision_file(onnx_static, tmp_path):
    with pytest.raises(EngineBuildError, match="fp32 model but --precision is int8"):
        build_engine(onnx_static.path, tmp_path / "m.engine", BuildConfig(precision="int8"))


def test_runner_without_tensorrt(tmp_path, monkeypatch):
    from asfyolo_rt.runtime.registry import load_backend

    _no_tensorrt(monkeypatch)
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(EngineBuildError, match="sidecar|does not exist"):
        load_backend(engine)
    write_sidecar(engine, _sidecar(engine="model.engine"))
    with pytest.raises(EngineBuildError, match="TensorRT is not installed"):
        load_backend(engine)


def test_plugin_module_needs_tensorrt(monkeypatch):
    _no_tensorrt(monkeypatch)
    monkeypatch.delitem(sys.modules, "asfyolo_rt.export.engine.plugin", raising=False)
    with pytest.raises(EngineBuildError, match="TensorRT >= 10.9"):
        import asfyolo_rt.export.engine.plugin  # noqa: F401


def test_cuda_without_cuda_python(monkeypatch):
    from asfyolo_rt.infer import cuda

    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    with pytest.raises(EngineBuildError, match="cuda-python"):
        cuda.device_info()


def test_profiles_and_config():
    assert default_profile([1, 3, 640, 640], [640, 640]) is None
    p = default_profile(["batch", 3, 640, 640], [640, 640], max_batch=4)
    assert p == ShapeProfile((1, 640, 640), (1, 640, 640), (4, 640, 640))
    p = default_profile(["batch", 3, "32*h", "32*w"], [320, 320])
    assert p is not None and p.min == (1, 160, 160) and p.opt == (1, 320, 320) and p.max == (8, 480, 480)
    with pytest.raises(ConfigError):
        ShapeProfile((2, 320, 320), (1, 320, 320), (4, 320, 320))
    with pytest.raises(ConfigError, match="precision"):
        BuildConfig(precision="int4")


def test_trtexec_commands():
    cmd = trtexec_command("model.int8.onnx", "model.int8.engine", precision="int8", dims=["batch", 3, 320, 320],
                          img_size=[320, 320])
    assert "--stronglyTyped" in cmd and "--int8" not in cmd and "--fp16" not in cmd
    assert "--minShapes=images:1x3x320x320" in cmd and "--maxShapes=images:8x3x320x320" in cmd
    dla = trtexec_command("model.int8.onnx", "e", precision="int8", dla_core=0)
    assert "--useDLACore=0" in dla and "--int8" in dla and "--fp16" in dla and "--stronglyTyped" not in dla


def test_cli_build_without_tensorrt(cli, onnx_static, tmp_path, monkeypatch):
    import shutil

    _no_tensorrt(monkeypatch)
    shutil.copy(onnx_static.path, tmp_path / "model.onnx")
    r = cli("build", tmp_path, "--precision", "fp32")
    assert r.exit_code == 1
    assert "TensorRT is not installed" in r.stderr and "asfyolo-rt build" in r.stderr
    r = cli("build", tmp_path / "missing", "--precision", "fp32")
    assert r.exit_code == 1 and "does not exist" in r.stderr
    r = cli("build", tmp_path, "--precision", "fp32", "--runtime", "rtx")
    assert r.exit_code == 1 and "TensorRT-RTX is not installed" in r.stderr
    assert "tensorrt-rtx-cu12-bindings" in r.stderr  # (the CLI's Rich markup currently swallows "[rtx]")


@pytest.mark.trt
@pytest.mark.gpu
def test_engine_build_and_parity(onnx_static, n_model, nuclei_batch, tmp_path):
    import shutil

    from asfyolo_rt.export.compare import compare_runners, torch_runner, worst

    from asfyolo_rt.infer.tensorrt import TensorRTBackend

    shutil.copy(onnx_static.path, tmp_path / "model.onnx")
    art = build_engine(tmp_path / "model.onnx", tmp_path / "model.engine", BuildConfig(precision="fp32"))
    assert read_sidecar(art.engine).precision == "fp32"
    backend = TensorRTBackend(art.engine, cuda_graph=True)

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        pred, protos = backend(x)
        return {"pred": pred.numpy(), "protos": protos.numpy()}

    w = worst(compare_runners(torch_runner(n_model), run, [(1, 160, 160)], images=nuclei_batch))
    assert w["pred"]["max_abs"] < 0.05 and w["protos"]["max_abs"] < 1e-3


def test_engine_runner_imports_without_torch():
    """Running an engine needs TensorRT and cuda-python, not torch (the sidecar and runner modules)."""
    import subprocess

    code = ("import sys; sys.modules['torch'] = None\n"
            "import asfyolo_rt.infer.tensorrt, asfyolo_rt.infer.sidecar\n"
            "assert 'onnx' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
