"""Export writes only what it owns, locks its folder, and an unfinished export is not used silently (issue 27
items 3 and 8).

Before the change: an export into a folder of the user's `model.py` / `model.yaml` deleted both (its clean-up
matched `model.*`); two exports into one folder deleted each other's files (no lock); a folder whose export
was killed before `bundle.json` was used by predict and build without a word. The exports run with the FP32
exporter replaced by a copy of the session's 160 px ONNX export (the bundle bookkeeping is under test).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from asfyolo_rt.export.bundle_files import KNOWN_NAMES, LOCK_NAME, bundle_lock

from asfyolo_rt.errors import ConfigError

USER_FILES = {"model.py": "import torch\n", "model.yaml": "nc: 1\n", "notes.txt": "mine\n"}


@pytest.fixture()
def export(fast_export, n_ckpt):
    """export(out, **BundleOptions) with the FP32 ONNX export replaced by a copy of `onnx_static`."""
    return lambda out, **kw: fast_export(out, n_ckpt, **kw)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _files(folder: Path) -> set[str]:
    return json.loads((folder / "bundle.json").read_text())["files"].keys()


# ------------------------------------------------------------------------------------------ ownership
def test_export_refuses_a_folder_of_user_files_and_with_the_option_keeps_them(export, cli, n_ckpt, tmp_path):
    out = tmp_path / "work"
    out.mkdir()
    for name, text in USER_FILES.items():
        (out / name).write_text(text)
    with pytest.raises(ConfigError, match=r"not an export bundle .* model\.py, model\.yaml, notes\.txt") as e:
        export(out)
    assert "--force" in (e.value.hint or "")
    assert _snapshot(out) == {n: t.encode() for n, t in USER_FILES.items()}  # nothing written, nothing deleted
    r = cli("export", "--weights", n_ckpt, "--img-size", "64", "--out", out)  # the CLI: one line, exit 1
    assert r.exit_code == 1 and "not an export bundle" in r.stderr and "Traceback" not in r.stderr
    assert _snapshot(out) == {n: t.encode() for n, t in USER_FILES.items()}

    r = cli("export", "--weights", n_ckpt, "--img-size", "160", "--no-rtx", "--out", out, "--force")
    assert r.exit_code == 0, r.stderr  # the CLI's --force is the option
    assert {n: (out / n).read_text() for n in USER_FILES} == USER_FILES

    res = export(out, allow_foreign=True)
    assert {n: (out / n).read_text() for n in USER_FILES} == USER_FILES  # the old clean-up deleted model.py/.yaml
    assert set(_files(out)) == {"model.onnx", "model.json", "export_report.json"}
    assert not [w for w in res.warnings if "model.py" in w or "model.yaml" in w]
    assert not (out / LOCK_NAME).exists()


def test_export_accepts_an_interrupted_export_and_new_or_empty_folders(export, tmp_path):
    (tmp_path / "empty").mkdir()
    export(tmp_path / "empty")
    export(tmp_path / "new" / "deeper")
    out = tmp_path / "killed"  # an export killed after its FP16 model: own names, a temp file, its dead lock
    out.mkdir()
    for name in ("model.onnx", "model.json", "model.fp16.onnx", ".model.fp16.onnx.ab12_x9z.tmp"):
        (out / name).write_bytes(b"partial")
    (out / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    res = export(out)
    assert {p.name for p in out.iterdir()} == {"model.onnx", "model.json", "export_report.json", "bundle.json"}
    assert any("model.fp16.onnx" in w for w in res.warnings)


def test_reexport_removes_only_the_earlier_bundles_files(export, tmp_path):
    from asfyolo_rt.atomic import file_sha256

    out = tmp_path / "B"
    export(out)
    doc = json.loads((out / "bundle.json").read_text())
    earlier = {"model.int8.onnx": b"int8", "labels.txt": b"written by that export",  # listed: removed
               "readme.md": b"listed, then edited by the user"}                     # changed since: kept
    for name, data in earlier.items():
        (out / name).write_bytes(data)
        doc["files"][name] = {"path": name, "sha256": file_sha256(out / name)}
    (out / "readme.md").write_bytes(b"my edit")
    (out / "bundle.json").write_text(json.dumps(doc))
    for name, text in USER_FILES.items():  # never listed: a bundle folder's other files are left alone
        (out / name).write_text(text)
    (out / "model.old.onnx").write_bytes(b"mine")  # matched the old `model.*` pattern
    res = export(out)
    assert not (out / "model.int8.onnx").exists() and not (out / "labels.txt").exists()
    assert (out / "readme.md").read_bytes() == b"my edit" and (out / "model.old.onnx").read_bytes() == b"mine"
    assert {n: (out / n).read_text() for n in USER_FILES} == USER_FILES
    assert [w for w in res.warnings if w.startswith("removed")] == [
        f"removed 2 file(s) of an earlier export into {out} that this export did not write: labels.txt, "
        "model.int8.onnx"]
    assert set(_files(out)) == {"model.onnx", "model.json", "export_report.json"}


def test_known_names_are_an_exact_list():
    assert {"model.onnx", "model.int8-cpu.onnx", "model.fp16.end2end.rtx.onnx", "model.int8.dla1.engine",
            "model.fp16.rtx.engine.json", "model.end2end.rtx.engine", "model.int8-openvino.bin",
            "model.int8-cpu.calib.json", "timing.cache", "bundle.json"} <= KNOWN_NAMES
    assert not {"model.py", "model.yaml", "model.txt", "model.old.onnx", "notes.txt", LOCK_NAME} & KNOWN_NAMES


def test_bundle_json_is_written_last(export, tmp_path, monkeypatch):
    import asfyolo_rt.bundle as bundle_mod

    seen: list[tuple[str, set[str]]] = []
    write = bundle_mod._write_json

    def spy(path: Path, obj: object) -> None:
        seen.append((Path(path).name, {p.name for p in Path(path).parent.iterdir()}))
        write(path, obj)

    monkeypatch.setattr(bundle_mod, "_write_json", spy)
    out = tmp_path / "B"
    export(out)
    name, before = seen[-1]
    assert name == "bundle.json"
    assert before - {LOCK_NAME} == {p.name for p in out.iterdir()} - {"bundle.json"}  # nothing after the seal
    assert LOCK_NAME in before and not (out / LOCK_NAME).exists()  # held during the export, released after


# ------------------------------------------------------------------------------------------- the lock
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_lock(folder: Path, pid: int) -> str:
    text = json.dumps({"pid": pid, "host": socket.gethostname(), "command": "export",
                       "started": "2026-01-01T00:00:00+0000"})
    (folder / LOCK_NAME).write_text(text)
    return text


def test_a_live_lock_refuses_export_and_build(export, cli, tmp_path):
    from asfyolo_rt.export.engine.build import BuildConfig
    from asfyolo_rt.export.engine.bundle_build import build_from_bundle

    out = tmp_path / "B"
    export(out)
    text = _write_lock(out, os.getpid())  # another export (this live process, not this thread's lock)
    before = _snapshot(out)
    said = rf"cannot export into {re.escape(str(out))}: `asfyolo-rt export` \(pid {os.getpid()} on "
    with pytest.raises(ConfigError, match=said):
        export(out)
    with pytest.raises(ConfigError, match=r"cannot build an engine in .* is writing it"):
        build_from_bundle(out, BuildConfig(precision="fp32", runtime="rtx"))
    r = cli("build", out, "--runtime", "rtx")
    assert r.exit_code == 1 and "is writing it" in r.stderr and "Traceback" not in r.stderr
    assert _snapshot(out) == before and (out / LOCK_NAME).read_text() == text  # nothing touched


def test_a_stale_lock_is_taken_over_and_the_lock_is_released_on_error(export, tmp_path, caplog, monkeypatch):
    out = tmp_path / "B"
    out.mkdir()
    _write_lock(out, _dead_pid())
    with caplog.at_level(logging.WARNING, logger="asfyolo_rt.export.bundle_files"):
        export(out)
    assert "taking over the lock" in caplog.text and not (out / LOCK_NAME).exists()

    from asfyolo_rt.export import onnx_export

    def fail(*a, **kw):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(onnx_export, "export_onnx", fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        export(out)
    assert not (out / LOCK_NAME).exists()
    with pytest.raises(RuntimeError):
        export(tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()  # a failed export into a new folder leaves no empty folder


def test_the_lock_is_reentrant_for_its_thread_only(tmp_path):
    import threading

    with bundle_lock(tmp_path, "export") as outer:
        with bundle_lock(tmp_path, "build") as inner:  # an export building its TensorRT-RTX engines
            assert (outer, inner) == (False, True)
        assert (tmp_path / LOCK_NAME).exists()
        errors: list[Exception] = []

        def other() -> None:
            try:
                with bundle_lock(tmp_path, "build"):
                    pass
            except ConfigError as exc:
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert len(errors) == 1 and "is writing it" in str(errors[0])
    assert not (tmp_path / LOCK_NAME).exists()


# --------------------------------------------------------------------------- an unfinished export
@pytest.fixture()
def killed(export, tmp_path) -> Path:
    """A bundle whose export stopped before its report and bundle.json: model.onnx and model.json only."""
    out = tmp_path / "killed"
    export(out)
    (out / "bundle.json").unlink()
    (out / "export_report.json").unlink()
    return out


def test_backends_warn_once_on_an_unfinished_export(killed, tmp_path, caplog):
    from asfyolo_rt.runtime.registry import BackendSpec, load_backend

    with caplog.at_level(logging.WARNING):
        with bundle_lock(killed, "export"):  # the export's own accuracy check opens its files before the seal
            load_backend(killed / "model.onnx")
        assert "did not finish" not in caplog.text
        BackendSpec(str(killed / "model.onnx")).open()
        load_backend(killed / "model.onnx")  # predict's path: warned once per folder
    said = [r.getMessage() for r in caplog.records if "did not finish" in r.getMessage()]
    assert len(said) == 1 and str(killed) in said[0] and "asfyolo-rt export" in said[0]

    mine = tmp_path / "mine"  # a hand-made folder: the user's ONNX and the engine build wrote beside it
    mine.mkdir()
    shutil.copy(killed / "model.onnx", mine / "model.onnx")
    (mine / "model.engine").write_bytes(b"plan")
    (mine / "model.engine.json").write_text("{}")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        BackendSpec(str(mine / "model.onnx")).open()
    assert "did not finish" not in caplog.text


def test_build_refuses_an_unfinished_export(killed, cli):
    from asfyolo_rt.export.engine.build import BuildConfig
    from asfyolo_rt.export.engine.bundle_build import build_from_bundle

    for source in (killed, killed / "model.onnx"):
        with pytest.raises(ConfigError, match="export that did not finish") as e:
            build_from_bundle(source, BuildConfig(precision="fp32", runtime="rtx"))
        assert f"asfyolo-rt export --out {killed}" in (e.value.hint or "")
    r = cli("build", killed, "--runtime", "rtx")
    assert r.exit_code == 1 and "did not finish" in r.stderr and "Traceback" not in r.stderr
    assert not list(killed.glob("*.engine")) and not (killed / LOCK_NAME).exists()
