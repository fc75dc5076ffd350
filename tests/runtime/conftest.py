"""Runtime-layer fixtures: the shipped DSB2018 model exported to a small static ONNX, and a nuclei frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TILE = 320  # the exported model's static tile (network px); the shipped model runs at 1.5 network px per image px


@pytest.fixture(scope="session")
def shipped_onnx(tmp_path_factory) -> Path:
    """The shipped model as a static 1x3x320x320 ONNX file with its metadata (model_info included)."""
    from dataclasses import replace

    from asfyolo_rt.export.onnx_export import export_onnx, load_weights

    from asfyolo_rt.weights_registry import default_weights

    model, cfg = load_weights(default_weights())
    out = tmp_path_factory.mktemp("shipped") / "model.onnx"
    return export_onnx(model, out, replace(cfg, img_size=TILE), img_size=TILE).path


@pytest.fixture(scope="session")
def nuclei_frame() -> np.ndarray:
    """A 288 x 256 uint16 synthetic fluorescence frame (a camera's dtype; 2 x 2 static 320 tiles at the model
    scale 1.5)."""
    from asfyolo_rt.data.synth import make_nuclei

    img, _ = make_nuclei(11, shape=(288, 256), n_cells=(40, 40))
    a = np.asarray(img)
    a = a if a.ndim == 2 else a[..., 0]
    return (a.astype(np.float32) / max(float(a.max()), 1.0) * 4000 + 100).astype(np.uint16)


@pytest.fixture(scope="session")
def dynamic_onnx(tmp_path_factory) -> Path:
    """The shipped model as an ONNX file with dynamic H and W (traced at 320): each image gets its own tile."""
    from dataclasses import replace

    from asfyolo_rt.export.onnx_export import export_onnx, load_weights

    from asfyolo_rt.weights_registry import default_weights

    model, cfg = load_weights(default_weights())
    out = tmp_path_factory.mktemp("dynamic") / "model.onnx"
    return export_onnx(model, out, replace(cfg, img_size=TILE), img_size=TILE, dynamic_size=True).path
