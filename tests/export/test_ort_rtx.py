"""`--backend ort-rtx` (asfyolo_rt.infer.ort_rtx): options, and clear errors where the provider cannot run.

This machine has no GPU and no onnxruntime-ep-nv-tensorrt-rtx: the provider never runs here. The tests check
the options mapping, the not-installed error, and (with a stand-in plugin module that reports no devices,
as the real one does without a GPU) the no-GPU error; nothing silently falls back to the CPU provider.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from asfyolo_rt.errors import ConfigError, EngineBuildError
from asfyolo_rt.infer.ort_rtx import PLUGIN_MODULE, OrtRtxBackend, OrtRtxOptions
from asfyolo_rt.runtime.registry import load_backend


@pytest.fixture()
def model_file(tmp_path) -> Path:
    """A file where an ONNX model would be: the provider checks fail before ONNX Runtime reads it."""
    p = tmp_path / "model.onnx"
    p.write_bytes(b"not read")
    return p


def test_options_map_to_provider_strings(tmp_path):
    assert OrtRtxOptions().provider_options() == {"device_id": "0", "enable_cuda_graph": "0"}
    o = OrtRtxOptions(device_id=1, cache_dir=tmp_path / "cache", cuda_graph=True, max_workspace_bytes=2**30)
    assert o.provider_options() == {"device_id": "1", "enable_cuda_graph": "1",
                                    "nv_runtime_cache_path": str(tmp_path / "cache"),
                                    "nv_max_workspace_size": str(2**30)}
    for bad in ({"device_id": -1}, {"device_id": True}, {"max_workspace_bytes": 0}):
        with pytest.raises(ConfigError, match="ort-rtx"):
            OrtRtxOptions(**bad)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        OrtRtxOptions(cache_dir=tmp_path / "f")


@pytest.mark.skipif(PLUGIN_MODULE in sys.modules or bool(__import__("importlib").util.find_spec(PLUGIN_MODULE)),
                    reason="the TensorRT-RTX provider is installed here")
def test_not_installed_is_one_clear_error(model_file):
    import onnxruntime as ort

    if "NvTensorRTRTXExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has the provider built in")
    with pytest.raises(EngineBuildError, match="TensorRT-RTX execution provider is not installed") as exc:
        load_backend(model_file, ort_rtx=OrtRtxOptions())
    assert "CPUExecutionProvider" in str(exc.value) and "onnxruntime-ep-nv-tensorrt-rtx-cu12" in (exc.value.hint or "")
    assert "RTX GPU" in (exc.value.hint or "")


def test_no_gpu_is_one_clear_error(model_file, monkeypatch, tmp_path):
    """A stand-in plugin: registering works, no device is found (what the real wheel does without a GPU)."""
    import onnxruntime as ort

    registered: list[tuple[str, str]] = []
    fake = types.ModuleType(PLUGIN_MODULE)
    fake.get_ep_name = lambda: "NvTensorRTRTXExecutionProvider"  # type: ignore[attr-defined]
    fake.get_library_path = lambda: str(tmp_path / "libonnxruntime_providers_nv_tensorrt_rtx.so")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, PLUGIN_MODULE, fake)
    monkeypatch.setattr(ort, "register_execution_provider_library", lambda n, p: registered.append((n, p)),
                        raising=False)
    monkeypatch.setattr(ort, "get_ep_devices", lambda: [], raising=False)
    cache = tmp_path / "rtx-cache"
    with pytest.raises(EngineBuildError, match="found no RTX GPU"):
        OrtRtxBackend(model_file, OrtRtxOptions(cache_dir=cache))
    assert registered and registered[0][0] == "NvTensorRTRTXExecutionProvider" and cache.is_dir()

    def broken(n: str, p: str) -> None:
        raise RuntimeError("libcudart.so.12: cannot open shared object file")

    monkeypatch.setattr(ort, "register_execution_provider_library", broken, raising=False)
    with pytest.raises(EngineBuildError, match="cannot load the TensorRT-RTX provider library.*libcudart"):
        OrtRtxBackend(model_file)


def test_bad_inputs(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        OrtRtxBackend(tmp_path / "missing.onnx")
    with pytest.raises(ConfigError, match="expected an OrtRtxOptions"):
        OrtRtxBackend(Path(__file__), {"device_id": 0})  # type: ignore[arg-type]
