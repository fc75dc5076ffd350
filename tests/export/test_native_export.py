"""Native-scale checkpoints export at the tile size inference uses, so a static engine tiles a frame exactly
as PyTorch does by default (the same tiles give the same label map)."""

from __future__ import annotations

import json
from dataclasses import replace

import onnx


def _input_hw(path):
    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value for d in dims[2:]]


def test_native_checkpoint_exports_at_the_default_tile(n_model, n_config, tmp_path):
    from asfyolo_rt.bundle import BundleOptions, export_bundle
    from asfyolo_rt.model.weights import save_checkpoint
    from asfyolo_rt.runtime.info import read_model_info
    from asfyolo_rt.runtime.stages import DEFAULT_TILE

    native = save_checkpoint(n_model, tmp_path / "native.safetensors",
                             replace(n_config, train_scale="native", model_scale=1.0, max_object_px=40.0,
                                     predict_conf=0.45))
    export_bundle(BundleOptions(out=tmp_path / "b", weights=native, rtx=False))
    assert _input_hw(tmp_path / "b" / "model.onnx") == [DEFAULT_TILE, DEFAULT_TILE]  # not the 160 training windows
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["model"]["img_size"] == [DEFAULT_TILE] * 2
    rec = read_model_info(tmp_path / "b" / "model.onnx")
    assert (rec.train_scale, rec.train_img_size, rec.max_object_px) == ("native", 160, 40.0)
    assert rec.default_conf == 0.45  # the tuned threshold travels with the exported file


def test_fit_checkpoint_exports_at_its_training_size(n_ckpt, tmp_path):
    from asfyolo_rt.bundle import BundleOptions, export_bundle

    export_bundle(BundleOptions(out=tmp_path / "b", weights=n_ckpt, rtx=False))
    assert _input_hw(tmp_path / "b" / "model.onnx") == [160, 160]
