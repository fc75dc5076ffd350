"""FP32 ONNX export: graph contract, metadata, fusion, parity with PyTorch at traced and other sizes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from asfyolo_rt.export.compare import check_sizes, compare_runners, ort_runner, torch_runner, worst

from asfyolo_rt.errors import ConfigError, ExportError


def test_static_export_contract(onnx_static, n_config):
    art = onnx_static
    model = onnx.load(str(art.path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["pred", "protos"]
    assert art.input_shape == (1, 3, 160, 160)
    assert art.exporter == "dynamo" and art.opset >= 18
    # one file: weights inside, no external data written next to it
    assert not list(art.path.parent.glob("*.data")) and all(
        not t.HasField("data_location") or t.data_location == onnx.TensorProto.DEFAULT for t in model.graph.initializer)
    # Conv+BN fused before export; nodes renamed to module paths
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops
    assert "/backbone/stem/conv/Conv" in {n.name for n in model.graph.node}
    assert all(not n.metadata_props for n in model.graph.node)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["names"]) == {"0": "cell"}
    assert meta["nc"] == "1" and meta["precision"] == "fp32"
    assert json.loads(meta["img_size"]) == [160, 160]
    assert json.loads(meta["stride"]) == [8.0, 16.0, 32.0]
    assert json.loads(meta["anchors"]) == [list(a) for a in n_config.anchors]
    assert meta["asfyolo_rt"] and meta["exporter"] == "dynamo"


def test_static_export_matches_pytorch(onnx_static, n_model, nuclei_batch):
    rows = compare_runners(torch_runner(n_model), ort_runner(onnx_static.path), [(1, 160, 160)], images=nuclei_batch)
    w = worst(rows)
    # pred holds pixel coordinates (up to ~400 here); float32 reassociation noise only
    assert w["pred"]["max_abs"] < 1e-3
    assert w["protos"]["max_abs"] < 1e-5


def test_static_export_refuses_other_sizes(onnx_static):
    with pytest.raises(ExportError, match="Expected: 160") as info:
        ort_runner(onnx_static.path)(np.zeros((1, 3, 224, 160), np.float32))
    assert "--dynamic" in (info.value.hint or "")


def test_dynamic_export_correct_away_from_traced_size(onnx_dynamic, n_model):
    """TOOLCHAIN.md: dynamo exports can bake the traced shape silently; check sizes and a batch it never saw."""
    assert onnx_dynamic.input_shape[0] != 1 and not isinstance(onnx_dynamic.input_shape[2], int)
    sizes = check_sizes((160, 160), dynamic_size=True)
    assert len(sizes) == 3 and sizes[0] == (160, 160) and len(set(sizes)) == 3
    shapes = [(1, *sizes[0]), (2, *sizes[1]), (1, *sizes[2])]
    rows = compare_runners(torch_runner(n_model), ort_runner(onnx_dynamic.path), shapes)
    assert {r.shape for r in rows} == set(shapes)
    for r in rows:
        assert r.max_abs < (1e-3 if r.output == "pred" else 1e-5), r


def test_legacy_exporter_and_auto_fallback(n_model, n_config, tmp_path, monkeypatch):
    from asfyolo_rt.export import onnx_export

    legacy = onnx_export.export_onnx(n_model, tmp_path / "legacy.onnx", n_config, img_size=160, exporter="legacy")
    assert legacy.exporter == "legacy" and legacy.opset >= 18

    def broken(*args, **kwargs):
        raise RuntimeError("simulated dynamo failure")

    monkeypatch.setattr(onnx_export, "_export_dynamo", broken)
    auto = onnx_export.export_onnx(n_model, tmp_path / "auto.onnx", n_config, img_size=160)
    assert auto.exporter == "legacy"
    assert any("simulated dynamo failure" in n for n in auto.notes)
    with pytest.raises(ExportError, match="dynamo"):
        onnx_export.export_onnx(n_model, tmp_path / "d.onnx", n_config, img_size=160, exporter="dynamo")


@pytest.mark.parametrize("kwargs, match", [
    ({"img_size": 150}, "multiples of 32"),
    ({"img_size": 160, "opset": 17}, "opset 17"),
    ({"img_size": 160, "exporter": "torchscript"}, "exporter"),
])
def test_bad_export_options(n_model, n_config, tmp_path, kwargs, match):
    from asfyolo_rt.export.onnx_export import export_onnx

    with pytest.raises(ConfigError, match=match):
        export_onnx(n_model, tmp_path / "x.onnx", n_config, **kwargs)


def test_load_weights_ours_and_unknown(n_ckpt, tmp_path):
    from asfyolo_rt.export.onnx_export import load_weights

    from asfyolo_rt.errors import CheckpointError

    model, cfg = load_weights(n_ckpt)
    assert cfg.variant == "n" and cfg.img_size == 160 and not model.training
    bad = tmp_path / "w.bin"
    bad.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unknown checkpoint type"):
        load_weights(bad)
