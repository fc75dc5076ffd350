"""A C host's signal handler after it switched models: two segmenters opened on the shipped model (each compiles
it for OpenVINO's CPU plugin), freed oldest first, then SIGINT to a handler on the alternate signal stack
(cpp/tests/signal_after_free.c). With one OpenVINO Core per segmenter the second plugin's unload put back the
first one's unmapped signal stack and the signal was a SIGSEGV (exit -11); one process-wide Core keeps it valid."""

from __future__ import annotations

import os

from cpp_helpers import run


def test_sigint_handler_runs_after_segmenters_freed_oldest_first(native_build, shipped_onnx, tmp_path):
    env = {**os.environ, "ASFYOLO_RT_OV_CACHE": "0", "HOME": str(tmp_path)}  # nothing written outside tmp_path
    done = run([native_build / "tests" / "signal_after_free", shipped_onnx], env=env, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    assert "segmenters freed, altstack ok" in done.stdout  # not "altstack unmapped": the crash waiting to happen
    assert "handler ran" in done.stdout
