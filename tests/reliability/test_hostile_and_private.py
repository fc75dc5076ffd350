"""Issue 27 items 6 and 10 and the `bench` notes: zip bombs refused in bounded memory, no telemetry written into
HOME, and bench on a bundle folder with its export cache outside the working directory.

The subprocess tests run the installed `asfyolo-rt` with HOME pointing at an empty folder (XDG_CACHE_HOME unset)
and list whatever appeared there on failure. Peak memory is read with resource.getrusage in the child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PY = sys.executable
CLI = str(Path(sys.executable).with_name("asfyolo-rt"))


def zip_bomb(path: Path, gib: float) -> Path:
    """A torch-checkpoint-shaped zip whose `archive/data.pkl` deflates `gib` GiB of zeros to ~1/1000."""
    chunk = bytes(16 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("archive/version", "3\n")
        zf.writestr("archive/byteorder", "little")
        with zf.open("archive/data.pkl", "w", force_zip64=True) as f:
            for _ in range(round(gib * 64)):
                f.write(chunk)
    return path


def _run_read_official(path: Path, extra_env: dict[str, str] | None = None) -> dict:
    """read_official(path) in a child process: its error (message, hint) and its peak RSS in MiB."""
    code = (
        "import json, resource, sys\n"
        "from asfyolo_rt.errors import CheckpointError\n"
        "from asfyolo_rt.model.weights import read_official\n"
        "err = hint = None\n"
        "try:\n"
        "    read_official(sys.argv[1])\n"
        "except CheckpointError as exc:\n"
        "    err, hint = str(exc), exc.hint\n"
        # VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec (a big pytest process)
        "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')]\n"
        "peak = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps({'error': err, 'hint': hint, 'peak_mib': peak}))\n"
    )
    env = {**os.environ, **(extra_env or {})}
    r = subprocess.run([PY, "-c", code, str(path)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ item 6: zip bombs
def test_zip_bomb_checkpoint_is_refused_before_decompressing(tmp_path: Path) -> None:
    """Before: 0.75 GiB inflated into memory twice (about 1.9 GiB peak) before the pickle failed; now refused from
    the central directory, naming the file and the limit, with the child's peak far below the inflated size."""
    bomb = zip_bomb(tmp_path / "best.pt", 0.75)
    assert bomb.stat().st_size < 8 << 20
    out = _run_read_official(bomb)
    assert out["error"] is not None and str(bomb) in out["error"]
    assert "inflate to 768.0 MiB" in out["error"] and "the limit is 64.0 MiB" in out["error"], out["error"]
    assert "ASFYOLO_RT_MAX_UNZIPPED_GIB" in out["hint"]
    assert out["peak_mib"] < 1024, out  # torch alone is ~250 MiB; the bomb inflated is 768 MiB (x2 in torch.load)


def test_weights_import_cli_refuses_a_zip_bomb_in_one_line(tmp_path: Path) -> None:
    bomb = zip_bomb(tmp_path / "best.pt", 0.25)
    r = subprocess.run([CLI, "weights", "import", str(bomb), "--out", str(tmp_path / "x.safetensors")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "zip bomb" in r.stderr and "limit" in r.stderr
    assert not (tmp_path / "x.safetensors").exists()


def _ratio_zip(path: Path, zeros_mib: int = 40, stored_mib: int = 16) -> Path:
    """Total within the size limit (stored random data makes the file big), one entry deflated ~1000:1."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("archive/data/0"), os.urandom(stored_mib << 20))  # stored, ratio 1
        zf.writestr("archive/data.pkl", bytes(zeros_mib << 20), compress_type=zipfile.ZIP_DEFLATED)
    return path


def test_entry_ratio_limit_and_the_explicit_allowance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from asfyolo_rt.archive import check_zip_sizes
    from asfyolo_rt.errors import CheckpointError

    z = _ratio_zip(tmp_path / "ratio.pt")
    with pytest.raises(CheckpointError, match=r"archive/data\.pkl inflates \d+:1 .*the limit is 200:1") as ei:
        check_zip_sizes(z)
    assert str(z) in str(ei.value)
    check_zip_sizes(z, max_unzipped_bytes=64 << 20)  # the caller vouches for the file: passes
    monkeypatch.setenv("ASFYOLO_RT_MAX_UNZIPPED_GIB", "0.1")
    check_zip_sizes(z)  # the same from the environment (the command line's way)
    monkeypatch.setenv("ASFYOLO_RT_MAX_UNZIPPED_GIB", "0.01")  # below this file's 56 MiB: the limits still apply
    with pytest.raises(CheckpointError, match="200:1"):
        check_zip_sizes(z)
    monkeypatch.setenv("ASFYOLO_RT_MAX_UNZIPPED_GIB", "lots")
    with pytest.raises(CheckpointError, match="ASFYOLO_RT_MAX_UNZIPPED_GIB='lots'"):
        check_zip_sizes(z)


def test_genuine_torch_checkpoints_and_non_zip_files_pass(tmp_path: Path) -> None:
    """torch.save stores records uncompressed: total = file size, ratio 1, whatever the size; zeros included."""
    import torch

    from asfyolo_rt.archive import check_zip_sizes

    p = tmp_path / "last.pt"
    torch.save({"model": {"w": torch.zeros(20 << 20), "b": torch.randn(1000)}}, p)  # 80 MiB of zeros, stored
    assert p.stat().st_size > 64 << 20
    check_zip_sizes(p)
    (tmp_path / "legacy.pt").write_bytes(b"\x80\x02}q\x00.")  # a plain pickle (torch's legacy format)
    check_zip_sizes(tmp_path / "legacy.pt")


# ------------------------------------------------------------------------------------------ item 10: telemetry
@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding model.onnx: the shipped model exported at 160 px (a bundle as bench and parity take it)."""
    from asfyolo_rt.export.onnx_export import export_onnx, load_weights

    from asfyolo_rt.weights_registry import default_weights

    out = tmp_path_factory.mktemp("bundle")
    model, cfg = load_weights(default_weights())
    export_onnx(model, out / "model.onnx", cfg, img_size=160)
    return out


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import cv2

    from asfyolo_rt.data.synth import make_nuclei

    p = tmp_path_factory.mktemp("img") / "nuclei.png"
    cv2.imwrite(str(p), make_nuclei(0, shape=(200, 240))[0])
    return p


def _run_with_empty_home(tmp_path: Path, *args: str, env: dict[str, str] | None = None
                         ) -> subprocess.CompletedProcess[str]:
    """Run `asfyolo-rt ARGS` in tmp_path/work with HOME = an empty tmp_path/home; assert HOME is still empty."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    child_env = {k: v for k, v in os.environ.items()
                 if k not in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "ORT_DISABLE_TELEMETRY")}
    child_env.update({"HOME": str(home), **(env or {})})
    r = subprocess.run([CLI, *args], capture_output=True, text=True, env=child_env, cwd=work, timeout=300)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert written == [], f"written into HOME: {written}"
    return r


def test_predict_with_onnxruntime_writes_nothing_into_home(tmp_path: Path, bundle: Path, image: Path) -> None:
    """Before: ~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db}."""
    _run_with_empty_home(tmp_path, "predict", str(image), "--model", str(bundle / "model.onnx"),
                         "--out", str(tmp_path / "out"))
    assert (tmp_path / "out" / "cells.csv").is_file()


def test_predict_with_openvino_writes_nothing_into_home(tmp_path: Path, bundle: Path, image: Path) -> None:
    """Before: ~/intel/openvino_ga_cid and ~/intel/stats (OpenVINO's Google Analytics client id)."""
    pytest.importorskip("openvino")
    _run_with_empty_home(tmp_path, "predict", str(image), "--model", str(bundle / "model.onnx"),
                         "--backend", "openvino", "--out", str(tmp_path / "out"))
    assert (tmp_path / "out" / "cells.csv").is_file()


def test_export_and_build_write_nothing_into_home(tmp_path: Path) -> None:
    """export (ONNX Runtime parity checks) and an ahead-of-time TensorRT-RTX build, with HOME empty."""
    out = tmp_path / "b"
    _run_with_empty_home(tmp_path, "export", "--img-size", "96", "--no-rtx", "--out", str(out))
    assert (out / "bundle.json").is_file()
    from asfyolo_rt.infer.trt_api import rtx_available

    if not rtx_available():
        return
    (tmp_path / "home").rmdir()
    (tmp_path / "work").rmdir()
    _run_with_empty_home(tmp_path, "build", str(out), "--runtime", "rtx", "--precision", "fp32")
    assert list(out.glob("*.engine"))


def test_bench_help_writes_nothing_into_home(tmp_path: Path) -> None:
    r = _run_with_empty_home(tmp_path, "bench", "--help")
    assert "bundle" in r.stdout


# ------------------------------------------------------------------------------------------ bench notes
@pytest.mark.slow  # ~25 s: exports the shipped model once into the cache and times two models
def test_bench_takes_a_bundle_folder_and_caches_outside_the_working_directory(tmp_path: Path, bundle: Path) -> None:
    """Before: `bench BUNDLE_DIR` -> "official checkpoint BUNDLE_DIR does not exist", and the ONNX files it
    exported for a checkpoint went to ./runs/bench/cache. Now the bundle's model.onnx is timed, and the export
    cache is $XDG_CACHE_HOME/asfyolo-rt/bench (HOME stays empty: no telemetry either)."""
    xdg = tmp_path / "xdg"
    r = _run_with_empty_home(tmp_path, "bench", str(bundle), "dsb2018", "--backend", "onnxruntime", "--img-size",
                             "160", "--iters", "1", "--warmup", "0", "--no-peak", "--json",
                             env={"XDG_CACHE_HOME": str(xdg)})
    out = json.loads(r.stdout)
    labels = [row["label"] for row in out["rows"]]
    assert f"{bundle.name}/model.onnx [onnxruntime fp32]" in labels, labels
    assert any(lab.startswith("asfyolo-n-dsb2018 [onnxruntime fp32]") for lab in labels), labels
    assert all(row["img_size"] == "160x160" for row in out["rows"])
    assert not (tmp_path / "work" / "runs").exists()
    assert list(xdg.glob("asfyolo-rt/bench/asfyolo-n-dsb2018-160-*/model.onnx")), sorted(xdg.rglob("*"))


def test_bench_default_input_is_predicts_tile_for_native_models() -> None:
    """Before: the shipped native-scale DSB2018 model was timed at its 320 training size while predict runs 640
    tiles at x1.5; now the default per-input row is one predict tile, and says so."""
    from asfyolo_rt.cli.bench import _input_size
    from asfyolo_rt.model.weights import ModelConfig
    from asfyolo_rt.runtime.info import read_model_info

    info = read_model_info("dsb2018")
    native = ModelConfig(variant="n", img_size=info.train_img_size or 320, train_scale=info.train_scale,
                         model_scale=info.model_scale)
    assert native.train_scale == "native" and native.img_size == 320
    size, desc = _input_size(native, None, whole=False)
    assert size == 640 and "predict tile" in desc and "x1.5" in desc
    assert _input_size(native, 416, whole=False)[0] == 416  # --img-size wins
    fit = ModelConfig(variant="n", img_size=512, train_scale="fit")
    assert _input_size(fit, None, whole=False) == (512, "512x512: the training size (fit model, as predict --scale fit)")


def test_bench_cache_dir_follows_the_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from asfyolo_rt.cli.bench import bench_cache_dir

    monkeypatch.delenv("ASFYOLO_RT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert bench_cache_dir() == tmp_path / "x" / "asfyolo-rt" / "bench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert bench_cache_dir() == tmp_path / "h" / ".cache" / "asfyolo-rt" / "bench"
    monkeypatch.setenv("ASFYOLO_RT_CACHE", str(tmp_path / "c"))
    assert bench_cache_dir() == tmp_path / "c" / "bench"
