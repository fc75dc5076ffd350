"""Session fixtures for the export tests: a random-weight n model and its ONNX exports at 160 px."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from testing_models import input_dependent_n_model

IMG = 160


@pytest.fixture(scope="session")
def n_model():
    return input_dependent_n_model()


@pytest.fixture(scope="session")
def n_config(n_model):
    from asfyolo_rt.model.weights import config_of

    return config_of(n_model, img_size=IMG, names={0: "cell"})


@pytest.fixture(scope="session")
def n_ckpt(n_model, n_config, tmp_path_factory) -> Path:
    from asfyolo_rt.model.weights import save_checkpoint

    return save_checkpoint(n_model, tmp_path_factory.mktemp("ckpt") / "n.safetensors", n_config)


@pytest.fixture(scope="session")
def onnx_static(n_model, n_config, tmp_path_factory):
    """Dynamo export, static 1x3x160x160."""
    from asfyolo_rt.export.onnx_export import export_onnx

    return export_onnx(n_model, tmp_path_factory.mktemp("static") / "model.onnx", n_config, img_size=IMG)


@pytest.fixture(scope="session")
def onnx_dynamic(n_model, n_config, tmp_path_factory):
    """Dynamo export with dynamic batch and size, traced at 160."""
    from asfyolo_rt.export.onnx_export import export_onnx

    return export_onnx(n_model, tmp_path_factory.mktemp("dynamic") / "model.onnx", n_config, img_size=IMG,
                       dynamic_batch=True, dynamic_size=True)


@pytest.fixture(scope="session")
def nuclei_batch() -> np.ndarray:
    """(2, 3, 160, 160) float32 in [0, 1]: synthetic nuclei letterboxed by the project's preprocess."""
    from asfyolo_rt.data.io import to_uint8_rgb
    from asfyolo_rt.data.letterbox import preprocess
    from asfyolo_rt.data.synth import make_nuclei

    imgs = [to_uint8_rgb(make_nuclei(s, (200, 256))[0]) for s in (1, 2)]
    return preprocess(imgs, IMG)[0].numpy()


@pytest.fixture()
def fast_export(onnx_static, monkeypatch):
    """export_bundle(BundleOptions(out=..., weights=..., rtx=False, **kw)) with the FP32 ONNX export replaced by a
    copy of `onnx_static` (160 px): the bundle logic without the exporter's time."""
    import onnx
    from asfyolo_rt.export import onnx_export

    from asfyolo_rt.bundle import BundleOptions, export_bundle

    def fake_export(model, path, config, *, extra_metadata=None, **kw):
        m = onnx.load(str(onnx_static.path))
        onnx_export.set_metadata(m, {**onnx_export.get_metadata(m), **(extra_metadata or {})})
        onnx.save(m, str(path))
        return onnx_export.OnnxArtifact(path=Path(path), sha256=onnx_export.file_sha256(path), precision="fp32",
                                        input_shape=(1, 3, IMG, IMG), opset=18)

    monkeypatch.setattr(onnx_export, "export_onnx", fake_export)
    return lambda out, weights, rtx=False, **kw: export_bundle(BundleOptions(out=out, weights=weights, rtx=rtx, **kw))
