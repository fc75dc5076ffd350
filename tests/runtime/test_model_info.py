"""ModelInfo: one reader for every artifact, a versioned JSON contract validated on read."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.runtime.info import SCHEMA_FILE, ModelInfo, overlap_for, read_model_info


def _validate(doc: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, json.loads(SCHEMA_FILE.read_text()))


def test_shipped_model_info_carries_its_training_geometry():
    info = read_model_info("dsb2018")
    assert info.format == "checkpoint" and info.train_scale == "native"
    assert info.model_scale == 1.5 and info.max_object_px == 207.0
    assert info.object_px_p99 == 108.0  # the 99th percentile of the training nuclei (the largest: 207)
    assert info.tile_overlap == 112 == overlap_for(108.0)  # a multiple of 16 above it; cut cells are rescued
    assert info.default_conf == 0.45 and info.conf == 0.45  # tuned on the train split (weights tune-conf)
    assert info.input_shape is None and info.batch is None  # PyTorch takes any multiple of 32
    bcc = read_model_info("bcc")
    assert (bcc.train_scale, bcc.model_scale, bcc.default_conf) == ("fit", 1.0, 0.25)


def test_json_round_trip_is_exact_and_matches_the_schema():
    info = read_model_info("dsb2018")
    doc = json.loads(info.to_json())
    assert doc["schema"] == "asfyolo-rt/model-info" and doc["schema_version"] == "1.1"
    _validate(doc)
    assert ModelInfo.from_json(info.to_json()) == info


def test_unknown_major_version_is_refused_and_a_newer_minor_is_read():
    doc = json.loads(read_model_info("dsb2018").to_json())
    with pytest.raises(ConfigError, match=r"schema version 2\.0 is not readable.*reads 1\.x"):
        ModelInfo.from_dict({**doc, "schema_version": "2.0"}, "m.json")
    with pytest.raises(ConfigError, match="schema version"):
        ModelInfo.from_dict({k: v for k, v in doc.items() if k != "schema_version"}, "m.json")
    newer = ModelInfo.from_dict({**doc, "schema_version": "1.7", "something_new": {"a": 1}}, "m.json")
    assert newer.model_scale == 1.5 and newer.schema_version == "1.7"


@pytest.mark.parametrize("change, what", [
    ({"model_scale": 0}, "model_scale"), ({"input_shape": [100, 640]}, "input_shape"), ({"conf": 1.5}, "conf"),
    ({"precision": "int4"}, "precision"), ({"names": {}}, "class names"), ({"iou": "high"}, "malformed"),
])
def test_malformed_fields_name_the_file_and_field(change, what):
    doc = {**json.loads(read_model_info("dsb2018").to_json()), **change}
    with pytest.raises(ConfigError, match=what) as e:
        ModelInfo.from_dict(doc, "bundle/model.json")
    assert "bundle/model.json" in str(e.value)


def test_exported_onnx_bundle_and_sidecar_give_the_checkpoints_geometry(tmp_path, shipped_onnx):
    """ONNX metadata (model_info key), a bundle's model.json and an engine sidecar read back to the
    checkpoint's geometry; the file's own facts (format, static input, precision) come from the file."""
    import shutil

    from asfyolo_rt.infer.sidecar import EngineSidecar, write_sidecar
    from asfyolo_rt.runtime.info import write_model_info

    ckpt = read_model_info("dsb2018")
    onnx = shutil.copy(shipped_onnx, tmp_path / "model.onnx")
    info = read_model_info(onnx)
    assert (info.format, info.input_shape, info.batch, info.precision) == ("onnx", (320, 320), 1, "fp32")
    assert info.geometry() == ckpt.geometry()
    _validate(json.loads(info.to_json()))

    write_model_info(tmp_path / "model.json", replace(info, conf=0.3))
    assert read_model_info(tmp_path).conf == 0.3  # a bundle folder: its model.json
    (tmp_path / "model.json").unlink()
    assert read_model_info(tmp_path) == info  # no model.json: its model.onnx

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    write_sidecar(engine, EngineSidecar(engine="model.engine", precision="fp16", onnx="model.onnx", onnx_sha256="0",
                                        tensorrt_version="1.7", compute_capability="",
                                        inputs={"images": {"shape": [2, 3, 320, 320]}},
                                        model_info=json.loads(info.to_json())))
    eng = read_model_info(engine)
    assert (eng.format, eng.precision, eng.input_shape, eng.batch) == ("tensorrt", "fp16", (320, 320), 2)
    assert eng.geometry() == ckpt.geometry()


def test_unreadable_sources_are_one_clear_error(tmp_path):
    from asfyolo_rt.errors import AsfYoloError

    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(AsfYoloError, match="m.onnx"):
        read_model_info(bad)
    with pytest.raises(AsfYoloError, match="does not exist"):
        read_model_info(tmp_path / "missing.safetensors")
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match="don't know how to read"):
        read_model_info(tmp_path / "x.bin")
    (tmp_path / "m.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_model_info(tmp_path / "m.json")


def test_package_exports_and_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, asfyolo_rt, asfyolo_rt.runtime\n"
            "assert 'torch' not in sys.modules, 'import asfyolo_rt pulled torch'\n"
            "from asfyolo_rt import Segmenter, Cells, ModelInfo\n"
            "assert Segmenter.__module__ == 'asfyolo_rt.runtime.segmenter' and ModelInfo.__name__ == 'ModelInfo'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stderr


@pytest.mark.datasets
def test_pack_records_the_size_distribution_and_the_overlap_follows_it(cli, datasets_root, tmp_path):
    """`weights pack --data` records the 99th percentile of the training nuclei (DSB2018 train at the model's
    x1.5: 108 px; the largest is 207 px), and the default tile overlap becomes 112 instead of 208."""
    out = tmp_path / "m.safetensors"
    r = cli("weights", "pack", "dsb2018", "--data", str(datasets_root / "DSB2018"), "--out", str(out))
    assert r.exit_code == 0, r.stderr
    info = read_model_info(out)
    assert (info.max_object_px, info.object_px_p99) == (207.0, 108.0)
    assert info.overlap_object_px == 108.0 and info.tile_overlap == 112 == overlap_for(108.0)
    _validate(json.loads(info.to_json()))
    assert read_model_info("dsb2018").tile_overlap == 112  # the shipped file was packed this way
