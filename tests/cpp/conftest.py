"""C runtime fixtures: the built library (build/cpp, brought up to date here), the shipped model as a small
static ONNX and a synthetic 16-bit nuclei frame (the same as tests/runtime's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cpp_helpers import BUILD, cmake_build, openvino_cmake_dir

TILE = 320  # the exported model's static tile (network px)


@pytest.fixture(scope="session")
def native_build() -> Path:
    """build/cpp (what `make cpp` makes), built or brought up to date."""
    cmake_build(BUILD, "-DCMAKE_BUILD_TYPE=Release", f"-DOpenVINO_DIR={openvino_cmake_dir()}")
    return BUILD


@pytest.fixture(scope="session")
def native_lib(native_build: Path) -> Path:
    from asfyolo_rt.native import load_library

    lib = native_build / "libasfyolo.so"
    load_library(lib)
    return lib


@pytest.fixture(scope="session")
def shipped_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model as a static 1x3x320x320 ONNX file with its metadata (model_info included)."""
    from dataclasses import replace

    from asfyolo_rt.export.onnx_export import export_onnx, load_weights

    from asfyolo_rt.weights_registry import default_weights

    model, cfg = load_weights(default_weights())
    out = tmp_path_factory.mktemp("shipped") / "model.onnx"
    return export_onnx(model, out, replace(cfg, img_size=TILE), img_size=TILE).path


@pytest.fixture(scope="session")
def dynamic_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model as an ONNX file of any batch and any input size (a multiple of 32)."""
    from asfyolo_rt.export.onnx_export import export_onnx, load_weights

    from asfyolo_rt.weights_registry import default_weights

    model, cfg = load_weights(default_weights())
    out = tmp_path_factory.mktemp("dynamic") / "model.onnx"
    return export_onnx(model, out, cfg, img_size=TILE, dynamic_batch=True, dynamic_size=True).path


@pytest.fixture(scope="session")
def nuclei_frame() -> np.ndarray:
    """A 288 x 256 uint16 synthetic fluorescence frame (2 x 2 static 320 tiles at the model scale 1.5)."""
    from asfyolo_rt.data.synth import make_nuclei

    img, _ = make_nuclei(11, shape=(288, 256), n_cells=(40, 40))
    a = np.asarray(img)
    a = a if a.ndim == 2 else a[..., 0]
    return (a.astype(np.float32) / max(float(a.max()), 1.0) * 4000 + 100).astype(np.uint16)
