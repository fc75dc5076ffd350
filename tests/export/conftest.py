"""Session fixtures for the export tests: a random-weight n model and its ONNX exports at 160 px."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

IMG = 160


def input_dependent_n_model():
    """A random n model whose outputs depend on the image (a fresh YOLOv5 init is dominated by its priors).

    BatchNorm running variances 0.3 keep activations from shrinking through the depth; the head's prediction
    and prototype weights are scaled up and the objectness/class biases set so that confidences spread over
    ~0.05-0.17 with tens of boxes per image above 0.16.
    """
    from asfyolo_rt.model import build_model

    torch.manual_seed(0)
    m = build_model("n", 1).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                mod.running_var.fill_(0.3)
        for conv in m.head.m:
            w = conv.weight.view(3, -1, conv.weight.shape[1])  # (anchors, 5 + nc + 32, c_in)
            w[:, 4:6].mul_(100.0)  # objectness and class logits: input-dependent
            w[:, 6:].mul_(3.0)  # mask coefficients
            b = conv.bias.view(3, -1)
            b[:, 4] = -3.0
            b[:, 5] = 3.0
        m.head.proto.cv3.conv.weight.mul_(30.0)
    return m


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
