"""A bundle is one model (issue 12 items 1, 2, 7): re-exports never mix models, consumers refuse foreign files,
options and weights are checked before any file is written, --json is strict JSON.

Fast tests run `export_bundle` with the FP32 exporter replaced by a copy of the session's 160 px ONNX export
(the bundle bookkeeping is under test, not torch.onnx); the CLI re-export of the issue (INT8 of one model,
then another model into the same folder, 64 px, synthetic calibration) takes ~40 s here and is marked slow.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
import torch
from asfyolo_rt.export.bundle_files import json_safe, non_finite_paths, verify_bundle_file

from asfyolo_rt.errors import CheckpointError, ConfigError
from asfyolo_rt.infer.trt_api import rtx_available

IMG = "64"


def _strict(text: str) -> dict:
    """json.loads that fails on NaN / Infinity (what a strict reader such as jq or JavaScript does)."""
    def bad(c: str) -> None:
        raise AssertionError(f"bare {c} in JSON output")

    return json.loads(text, parse_constant=bad)


@pytest.fixture()
def quick_export(fast_export):
    """export_bundle(out, weights) with the FP32 ONNX export replaced by a copy of `onnx_static` (160 px)."""
    return fast_export


def test_export_into_an_old_bundle_seals_only_its_own_files(quick_export, n_ckpt, tmp_path):
    """The old bundle code sealed every file of the folder (BCC's INT8 files under the DSB2018 model's name)."""
    from asfyolo_rt.atomic import file_sha256

    out = tmp_path / "B"
    out.mkdir()
    stale = ["model.int8.onnx", "model.int8-cpu.onnx", "model.int8.calib.json", "calibration_report.json",
             "model.int8.rtx.engine", "model.int8.rtx.engine.json", "model.fp16.end2end.rtx.onnx", "timing.cache"]
    for name in stale:
        (out / name).write_bytes(b"from the other model")
    (out / "bundle.json").write_text(json.dumps({"files": {n: {"path": n} for n in stale}}))
    (out / "notes.txt").write_text("mine")
    res = quick_export(out, n_ckpt)
    bundle = _strict((out / "bundle.json").read_text())
    assert set(bundle["files"]) == {"model.onnx", "model.json", "export_report.json"}
    assert bundle["files"]["model.onnx"]["sha256"] == file_sha256(out / "model.onnx")
    assert bundle["model"]["weights_sha256"] == file_sha256(n_ckpt)
    assert not [n for n in stale if (out / n).exists()] and (out / "notes.txt").read_text() == "mine"
    assert any(w.startswith("removed 8 file(s) of an earlier export") and "model.int8.onnx" in w
               for w in res.warnings)
    assert res.warnings == _strict((out / "export_report.json").read_text())["warnings"]
    meta = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert meta["weights_sha256"] == file_sha256(n_ckpt)  # the ONNX records its source
    verify_bundle_file(out / "model.onnx")


def test_consumers_refuse_files_bundle_json_does_not_vouch_for(quick_export, n_ckpt, cli, tmp_path):
    from asfyolo_rt.export.onnx_export import get_metadata, set_metadata

    from asfyolo_rt.atomic import file_sha256

    b = tmp_path / "B"
    quick_export(b, n_ckpt)
    verify_bundle_file(b / "model.onnx")  # listed, same bytes, same source: accepted
    shutil.copy(b / "model.onnx", b / "model.int8.onnx")  # a file copied in after the export
    with pytest.raises(ConfigError, match="model.int8.onnx is not part of the bundle"):
        verify_bundle_file(b / "model.int8.onnx")
    r = cli("build", b, "--precision", "int8", "--runtime", "rtx")
    if rtx_available():  # (without TensorRT-RTX the build stops earlier, saying so)
        assert r.exit_code == 1 and "is not part of the bundle" in r.stderr and "Traceback" not in r.stderr

    good = (b / "model.onnx").read_bytes()
    (b / "model.onnx").write_bytes(good + b"\0")  # bytes changed after the export
    with pytest.raises(ConfigError, match="changed after the export"):
        verify_bundle_file(b / "model.onnx")

    # listed with the right sha256 (a bundle.json sealed by the old code) but exported from other weights
    m = onnx.load_from_string(good)
    set_metadata(m, {**get_metadata(m), "weights_sha256": "0" * 64})
    onnx.save(m, str(b / "model.onnx"))
    doc = json.loads((b / "bundle.json").read_text())
    doc["files"]["model.onnx"]["sha256"] = file_sha256(b / "model.onnx")
    (b / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="exported from other weights"):
        verify_bundle_file(b / "model.onnx")
    if rtx_available():
        r = cli("build", b, "--precision", "fp32", "--runtime", "rtx")
        assert r.exit_code == 1 and "other weights" in r.stderr
        assert not list(b.glob("*.engine"))
    (b / "bundle.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        verify_bundle_file(b / "model.onnx")
    (b / "bundle.json").unlink()
    verify_bundle_file(b / "model.onnx")  # hand-made folders (no bundle.json) are not checked


@pytest.mark.skipif(not rtx_available(), reason="needs TensorRT-RTX (pip install 'asfyolo-rt[rtx]')")
def test_bundle_json_lists_the_rtx_engines_export_builds(quick_export, n_ckpt, tmp_path):
    out = tmp_path / "r"
    res = quick_export(out, n_ckpt, rtx=True)
    files = set(_strict((out / "bundle.json").read_text())["files"])
    assert {"model.rtx.engine", "model.rtx.engine.json"} <= files  # the old code wrote bundle.json before them
    assert files == {p.name for p in out.iterdir()} - {"bundle.json"}
    assert res.bundle["rtx_engines"]["model.rtx.engine"]["sidecar"] == "model.rtx.engine.json"
    verify_bundle_file(out / "model.rtx.engine")


def test_few_images_warning():
    from asfyolo_rt.calib.dataset import MIN_ADVISED_IMAGES, few_images_warning

    w = few_images_warning(3, "/data/DSB2018")
    assert w and "only 3 images from /data/DSB2018" in w and f"--calib-images {MIN_ADVISED_IMAGES}" in w
    assert "only 1 image (synthetic)" in (few_images_warning(1, None) or "")
    assert few_images_warning(MIN_ADVISED_IMAGES, None) is None


@pytest.fixture(scope="module")
def other_ckpt(n_config, tmp_path_factory) -> Path:
    """A checkpoint of the same architecture with other weights (the "BCC model" of the issue)."""
    from testing_models import input_dependent_n_model

    from asfyolo_rt.model.weights import save_checkpoint

    m = input_dependent_n_model()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(0.9)
    return save_checkpoint(m, tmp_path_factory.mktemp("other") / "other.safetensors", n_config)


@pytest.fixture(scope="module")
def mixed(n_ckpt, other_ckpt, tmp_path_factory):
    """`export --int8 --weights A --out B` (3 calibration images), then `export --weights OTHER --out B`."""
    from typer.testing import CliRunner

    from asfyolo_rt.cli.main import app

    def cli(*args: object):
        return CliRunner().invoke(app, [str(a) for a in args])

    out = tmp_path_factory.mktemp("mixed") / "B"
    first = cli("export", "--weights", n_ckpt, "--int8", "--calib-images", "3", "--img-size", IMG, "--no-rtx",
                "--out", out, "--json")
    assert first.exit_code == 0, first.stderr
    first_bundle = json.loads((out / "bundle.json").read_text())
    (out / "notes.txt").write_text("mine")  # not a bundle file: left alone, not listed
    second = cli("export", "--weights", other_ckpt, "--img-size", IMG, "--no-rtx", "--out", out, "--json")
    assert second.exit_code == 0, second.stderr
    return out, first, first_bundle, second


@pytest.mark.slow
def test_cli_reexport_of_other_weights_lists_and_keeps_only_its_own_files(mixed, other_ckpt):
    from asfyolo_rt.atomic import file_sha256

    out, _, first_bundle, second = mixed
    assert {"model.int8.onnx", "model.int8-cpu.onnx", "model.int8.calib.json"} <= set(first_bundle["files"])
    bundle = json.loads((out / "bundle.json").read_text())
    assert set(bundle["files"]) == {"model.onnx", "model.json", "export_report.json"}  # the old code also sealed BCC's INT8
    assert bundle["model"]["weights_sha256"] == file_sha256(other_ckpt)
    for name in ("model.int8.onnx", "model.int8-cpu.onnx", "model.int8.calib.json", "model.int8-cpu.calib.json",
                 "calibration_report.json"):
        assert not (out / name).exists(), name
    assert (out / "notes.txt").read_text() == "mine"
    said = " ".join(second.stderr.split())  # the console wraps long lines
    assert "removed 7 file(s) of an earlier export" in said and "model.int8.onnx" in said  # INT8 x3 + IR + reports
    meta = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert meta["weights_sha256"] == bundle["model"]["weights_sha256"]  # the ONNX records its source


@pytest.mark.slow
def test_cli_few_calibration_images_warn_and_json_is_strict(mixed):
    _, first, _, second = mixed
    doc = _strict(first.stdout)
    _strict(second.stdout)
    assert "only 3 images" in first.stderr  # on stderr ...
    assert any("only 3 images" in w for w in doc["report"]["warnings"])  # ... and in the export report
    out = mixed[0]
    report = _strict((out / "export_report.json").read_text())
    assert report["weights_sha256"] == _strict((out / "bundle.json").read_text())["model"]["weights_sha256"]


@pytest.mark.parametrize("n", ["0", "-2"])
def test_calib_images_below_one_is_refused_before_any_work(cli, n_ckpt, tmp_path, n):
    out = tmp_path / "new"
    r = cli("export", "--weights", n_ckpt, "--int8", "--calib-images", n, "--img-size", IMG, "--out", out)
    assert r.exit_code == 1 and f"--calib-images {n}" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()  # no half bundle
    old = tmp_path / "old"
    old.mkdir()
    (old / "bundle.json").write_text("{}")
    r = cli("export", "--weights", n_ckpt, "--int8", "--calib-images", n, "--out", old)
    assert r.exit_code == 1 and (old / "bundle.json").read_text() == "{}"  # an earlier bundle is untouched


def test_non_finite_weights_are_refused_at_load_and_export(cli, n_model, n_config, tmp_path):
    import copy

    from asfyolo_rt.bundle import check_finite_model
    from asfyolo_rt.model.weights import read_checkpoint, save_checkpoint

    m = copy.deepcopy(n_model)
    with torch.no_grad():
        m.head.m[0].weight.fill_(float("nan"))
        m.head.m[1].bias[0] = float("inf")
    ckpt = save_checkpoint(m, tmp_path / "nan.safetensors", n_config)
    with pytest.raises(CheckpointError, match=r"nan.safetensors: tensor 'head.m.0.weight' has \d+ of \d+ values NaN"):
        read_checkpoint(ckpt)
    r = cli("export", "--weights", ckpt, "--img-size", IMG, "--out", tmp_path / "b", "--json")
    assert r.exit_code == 1 and "head.m.0.weight" in r.stderr and "1 more" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "b").exists() and "NaN" not in r.stdout
    with pytest.raises(CheckpointError, match="cannot export: .*official.pt"):  # official .pt files: same check
        check_finite_model(m, Path("official.pt"))


def test_json_safe_and_non_finite_paths():
    import numpy as np

    obj = {"a": [1.0, float("nan"), {"b": float("-inf")}], "c": np.float32("nan"), "d": "NaN", "e": 2}
    assert json_safe(obj) == {"a": [1.0, None, {"b": None}], "c": None, "d": "NaN", "e": 2}
    assert non_finite_paths(obj) == ["a[1]", "a[2].b"]  # (numpy scalars are not floats: json_safe handles them)
    json.dumps(json_safe(obj), allow_nan=False)


@pytest.mark.slow
@pytest.mark.skipif(not rtx_available(), reason="needs TensorRT-RTX (pip install 'asfyolo-rt[rtx]')")
def test_cli_bundle_json_lists_the_rtx_engines_export_builds(cli, n_ckpt, tmp_path):
    out = tmp_path / "r"
    r = cli("export", "--weights", n_ckpt, "--img-size", IMG, "--rtx", "--out", out, "--json")
    assert r.exit_code == 0, r.stderr
    files = set(json.loads((out / "bundle.json").read_text())["files"])
    assert {"model.rtx.engine", "model.rtx.engine.json"} <= files  # the old code wrote bundle.json before them
    assert files == {p.name for p in out.iterdir()} - {"bundle.json"}
    assert _strict(r.stdout)["bundle"]["rtx_engines"]["model.rtx.engine"]["sidecar"] == "model.rtx.engine.json"
