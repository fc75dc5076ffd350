"""Session fixtures for calibration tests: an FP32 ONNX (n model, 160 px) and a small calibration set."""

from __future__ import annotations

import pytest
import torch

IMG = (160, 160)


@pytest.fixture(scope="session")
def fp32_onnx(tmp_path_factory):
    from asfyolo_rt.export.onnx_export import export_onnx

    from asfyolo_rt.model import build_model
    from asfyolo_rt.model.weights import config_of

    torch.manual_seed(0)
    m = build_model("n", 1).eval()
    return export_onnx(m, tmp_path_factory.mktemp("calib-fp32") / "model.onnx", config_of(m, img_size=160),
                       img_size=IMG).path


@pytest.fixture(scope="session")
def calib_set():
    from asfyolo_rt.calib.dataset import build_calibration_set

    return build_calibration_set(None, IMG, n=6, seed=0)


@pytest.fixture(scope="session")
def trt_int8(fp32_onnx, calib_set, tmp_path_factory):
    from asfyolo_rt.calib.quantize import quantize_tensorrt

    out = tmp_path_factory.mktemp("int8")
    return quantize_tensorrt(fp32_onnx, out / "model.int8.onnx", calib_set, cache_path=out / "model.int8.calib.json")


@pytest.fixture(scope="session")
def cpu_int8(fp32_onnx, calib_set, tmp_path_factory):
    from asfyolo_rt.calib.quantize import quantize_ort_cpu

    out = tmp_path_factory.mktemp("int8cpu")
    return quantize_ort_cpu(fp32_onnx, out / "model.int8-cpu.onnx", calib_set,
                            cache_path=out / "model.int8-cpu.calib.json")
