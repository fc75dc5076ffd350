"""bench/gpu_check.sh, the GPU session's first command: without a GPU it refuses in one line; its --cpu-smoke
run takes every section's code path on the CPU at tiny sizes (Triton in its interpreter) and writes rows
whose values a broken implementation would get wrong (CPU-vs-CPU parity exactly 0 / F1 1.0, reference vs
reference exactly equal, the interpreted kernels equal to their references)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.sh"
NO_GPU = "gpu_check: no CUDA GPU (torch.cuda.is_available() is False): run this on a machine lent a GPU"
ENV_COLUMNS = ["gpu", "torch", "triton", "git_sha", "weights_sha256", "run_id", "timestamp"]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _results() -> set[str]:
    return {p.name for p in (REPO / "bench" / "results").glob("gpu_*")}


def _run(*args: str, python: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "TRITON_INTERPRET")}
    if python:
        env["PYTHON"] = python
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=REPO / "tests")  # the script finds the repository root itself


def _rows(out: Path, section: str) -> list[dict[str, str]]:
    path = out / f"gpu_{section}.csv"
    assert path.is_file(), f"no {path.name} in {sorted(p.name for p in out.iterdir())}"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows, f"{path.name} has no rows"
    assert all(r["section"] == section and r["mode"] == "cpu-smoke" for r in rows)
    assert all(r[c] for r in rows for c in ENV_COLUMNS), "every row names the machine, versions, commit and weights"
    assert len({r["weights_sha256"] for r in rows}) == 1 and len(rows[0]["weights_sha256"]) == 64
    return rows


@pytest.mark.skipif(_cuda(), reason="on a GPU machine the script runs the real check")
def test_without_a_gpu_one_line_and_exit_2() -> None:
    before = _results()
    r = _run(timeout=60)
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 2, out
    assert len(out.splitlines()) == 1 and out.startswith(NO_GPU), out
    assert "Traceback" not in out
    assert _results() == before  # no work done, nothing written


def _check_parity(out: Path) -> None:
    rows = _rows(out, "parity")
    images = [r for r in rows if r["case"] == "image"]
    assert len(images) == 2 and [r["case"] for r in rows].count("all") == 1
    for r in rows:  # the same model on the same device: bit-identical raw outputs and label maps
        assert r["status"] == "ok", r
        for k in ("boxes", "scores", "coeffs", "protos"):
            assert float(r[f"{k}_max_abs"]) == 0.0, (k, r)
        assert float(r["label_f1"]) == 1.0 and r["raw_within_tolerance"] == "True"
    assert all(int(r["labels_differing_px"]) == 0 and int(r["cells_cpu"]) == int(r["cells_candidate"]) > 0
               for r in images)


def _check_kernels(out: Path) -> None:
    rows = _rows(out, "kernels")
    assert all(r["status"] == "ok" for r in rows), rows
    by = {(r["kernel"], r["shape"], r["provider"]): r for r in rows}
    assert {k[0] for k in by} == {"cpam", "mask_assembly"}
    refs = [r for r in rows if r["provider"] == "torch"]
    tri = [r for r in rows if r["provider"].startswith("triton")]
    assert len(refs) == len(tri) == 3  # cpam + mask assembly label map and packed masks
    for r in refs:  # the reference against itself: exactly equal
        assert r["equal"] == "True" and float(r["speedup_vs_torch"]) == 1.0, r
        assert float(r["max_abs"] or 0) == 0.0 and int(r["mismatched"] or 0) == 0
    for r in tri:  # Triton (interpreted here) against the reference
        assert r["provider"] == "triton (interpreter)"
        if r["kernel"] == "cpam":
            assert 0.0 <= float(r["max_abs"]) < 1e-5, r
        else:
            assert int(r["mismatched"]) == 0 and r["equal"] == "True", r


def _check_fps(out: Path) -> None:
    rows = _rows(out, "fps")
    assert {r["variant"]: r["weights"] for r in rows} == {"n": "shipped dsb2018", "l": "random (seed 0)"}
    assert len(rows) == 2
    for r in rows:
        assert r["status"] == "ok" and r["img_size"] == "64x64" and r["batch"] == "1"
        assert float(r["infer_fps"]) > 0 and float(r["fps"]) > 0 and float(r["latency_p50_ms"]) > 0
        assert float(r["forward_fps"]) == pytest.approx(1e3 / float(r["forward_ms"]), rel=1e-3)
        assert float(r["forward_p20_ms"]) <= float(r["forward_ms"]) <= float(r["forward_p80_ms"])


def _check_frame(out: Path) -> None:
    rows = _rows(out, "frame")
    by = {r["case"]: r for r in rows}
    run, ref = by["cpu fp32 cpam=torch"], by["cpu fp32 reference"]
    for r in (run, ref):
        assert r["frame"] == "256x256" and int(r["gt_instances"]) > 0 and int(r["cells"]) > 0
        assert 0.5 < float(r["f1"]) <= 1.0  # the shipped model finds the frame's nuclei
        assert float(r["total_ms"]) >= float(r["inference_ms"]) > 0
    assert run["cells"] == ref["cells"] and run["f1"] == ref["f1"]
    assert float(by["cpu fp32 cpam=torch vs cpu fp32"]["f1_vs_cpu"]) == 1.0


def test_cpu_smoke_parity_and_kernels(tmp_path: Path) -> None:
    """The two correctness sections (~10 s); the slow test below runs all five."""
    before = _results()
    r = _run("--cpu-smoke", "--sections", "parity,kernels", "--out", str(tmp_path), python=sys.executable)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    table = [ln for ln in r.stdout.splitlines() if ln.startswith("| ") and "section" not in ln and "---" not in ln]
    assert [(ln.split("|")[1].strip(), ln.split("|")[2].strip()) for ln in table] == [("parity", "ok"), ("kernels", "ok")]
    _check_parity(tmp_path)
    _check_kernels(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_kernels.csv", "gpu_parity.csv"]
    assert _results() == before  # a smoke run never writes into bench/results


@pytest.mark.slow
def test_cpu_smoke_all_sections(tmp_path: Path) -> None:
    """Every section, ONNX export for the ort section included: well under a minute on the 2-core machine."""
    before = _results()
    t0 = time.monotonic()
    r = _run("--cpu-smoke", "--out", str(tmp_path), python=sys.executable)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert time.monotonic() - t0 < 120  # generous: the machine may be shared
    _check_parity(tmp_path)
    _check_kernels(tmp_path)
    _check_fps(tmp_path)
    _check_frame(tmp_path)
    rows = _rows(tmp_path, "ort")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        skip = next(r for r in rows if r["case"] == "CUDAExecutionProvider")
        assert skip["status"] == "skipped" and "no CUDAExecutionProvider" in skip["note"]
    ran = next(r for r in rows if r["status"] == "ok")
    assert ran["provider"] == ran["providers_used"] == "CPUExecutionProvider"
    assert ran["raw_within_tolerance"] == "True" and float(ran["boxes_max_abs"]) < 1e-2
    assert float(ran["label_f1_min"]) >= 0.99
    assert _results() == before


# ------------------------------------------------------------------------------------------ the runner itself
@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """gpu_check's run_section with fake sections (in-process; nothing heavy is imported)."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import _gpu_sections
    import gpu_check

    ctx = gpu_check.Context(device="cpu", smoke=True, out=tmp_path, data=None, scratch=tmp_path)
    env = {c: "x" for c in gpu_check.ENV_COLUMNS}

    def run(name: str, fn, box_s: float = 30.0):
        monkeypatch.setitem(_gpu_sections.SECTIONS, name, (["value"], fn))
        return gpu_check.run_section(name, ctx, env, box_s)

    return run, gpu_check, monkeypatch


def test_an_error_becomes_a_row_and_keeps_the_rows_before_it(runner, tmp_path: Path) -> None:
    run, _, _ = runner

    def broken(ctx):
        yield {"case": "first", "value": 1}
        raise RuntimeError("the second step broke")

    def fine(ctx):
        yield {"case": "only", "value": 2}
        return "all good"

    bad, good = run("parity", broken), run("fps", fine)
    assert (bad.status, bad.rows) == ("error", 2) and "RuntimeError: the second step broke" in bad.summary
    assert (good.status, good.rows, good.summary) == ("ok", 1, "all good")
    with open(tmp_path / "gpu_parity.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["case"], r["status"], r["value"]) for r in rows] == [("first", "ok", "1"), ("exception", "error", "")]
    assert "the second step broke" in rows[1]["note"]


def test_a_section_past_its_box_is_stopped_and_recorded(runner) -> None:
    run, gpu_check, monkeypatch = runner
    monkeypatch.setattr(gpu_check, "HARD_GRACE_S", 0.2)

    def endless(ctx):
        yield {"case": "started", "value": 0}
        while True:
            time.sleep(0.01)

    t0 = time.monotonic()
    o = run("frame", endless, box_s=0.1)
    assert time.monotonic() - t0 < 5
    assert o.status == "error" and o.rows == 2 and "overran" in o.summary


def test_a_row_with_undeclared_columns_is_an_error_not_a_silent_drop(runner) -> None:
    run, _, _ = runner

    def wrong(ctx):
        yield {"case": "x", "not_a_column": 1}

    o = run("kernels", wrong)
    assert o.status == "error" and "not_a_column" in o.summary


def test_a_failed_step_marks_the_section_and_the_rest_still_runs(runner) -> None:
    run, _, _ = runner

    def one_step_fails(ctx):
        yield {"status": "error", "case": "fp16", "note": "CompilationError: no"}
        yield {"case": "fp32", "value": 3}
        return "fp32 ran"

    o = run("fps", one_step_fails)
    assert (o.status, o.rows) == ("error", 2)
    assert o.summary.startswith("1 step(s) failed, first fp16: CompilationError") and o.summary.endswith("fp32 ran")
