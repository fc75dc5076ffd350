"""The console script's quick exit (`asfyolo_rt.cli.main.console`): after a predict run whose outputs are all
written, the process ends without the interpreter's teardown (no atexit callbacks run); every other ending
(an error, --help, a non-daemon thread still running, a tracer) is the ordinary one. Real subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

# atexit callbacks run in the ordinary exit only: TEARDOWN marks it. With argv[1] == "thread", a non-daemon
# thread starts when the command says it is finished; it must be waited for, as Python waits for it.
_RUN = """
import atexit, sys, threading, time
atexit.register(lambda: print("TEARDOWN", flush=True))
import asfyolo_rt.cli.main as cli
if sys.argv[1] == "thread":
    said = cli.finished
    def finished():
        threading.Thread(target=lambda: (time.sleep(0.3), print("THREAD DONE", flush=True))).start()
        said()
    cli.finished = finished
    import asfyolo_rt.cli.predict as predict
    predict.finished = finished
if sys.argv[1] == "trace":  # a debugger's or coverage's hook: they write at the ordinary exit
    sys.settrace(lambda *a: None)
sys.argv = ["asfyolo-rt", *sys.argv[2:]]
cli.console()
"""


def _console(tmp_path: Path, *args: str, mode: str = "-") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _RUN, mode, *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)


def _image(tmp_path: Path) -> Path:
    import cv2

    img = np.zeros((128, 128, 3), np.uint8)
    for x, y in ((30, 30), (90, 40), (50, 95), (100, 100)):
        cv2.circle(img, (x, y), 9, (210, 210, 210), -1)
    path = tmp_path / "cells.png"
    cv2.imwrite(str(path), img)
    return path


def test_a_finished_predict_skips_the_teardown_with_its_outputs_whole(tmp_path: Path) -> None:
    import tifffile

    out = tmp_path / "res"
    run = _console(tmp_path, "predict", str(_image(tmp_path)), "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "TEARDOWN" not in run.stdout, "the quick exit did not happen"
    assert "1 images," in run.stdout + run.stderr  # the last line was flushed before the exit
    rows = (out / "cells.csv").read_text().splitlines()
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 2 and int(summary[1].split(",")[summary[0].split(",").index("cells")]) == len(rows) - 1
    labels = tifffile.imread(out / "labels" / "cells.tif")
    assert labels.shape == (128, 128) and int(labels.max()) == len(rows) - 1 > 0
    assert (out / "predictions.coco.json").read_text().endswith("}")
    assert not [p for p in out.rglob(".*")]  # no temporary file left


def test_a_thread_still_running_is_waited_for(tmp_path: Path) -> None:
    run = _console(tmp_path, "predict", str(_image(tmp_path)), "--out", str(tmp_path / "res"), mode="thread")
    assert run.returncode == 0, run.stderr
    assert "THREAD DONE" in run.stdout and "TEARDOWN" in run.stdout


def test_a_tracer_gets_the_ordinary_exit(tmp_path: Path) -> None:
    run = _console(tmp_path, "predict", str(_image(tmp_path)), "--out", str(tmp_path / "res"), mode="trace")
    assert run.returncode == 0, run.stderr
    assert "TEARDOWN" in run.stdout


def test_errors_and_help_take_the_ordinary_exit(tmp_path: Path) -> None:
    bad = _console(tmp_path, "predict", str(tmp_path / "missing.tif"))
    assert bad.returncode == 1 and "TEARDOWN" in bad.stdout
    assert "does not exist" in bad.stderr
    helped = _console(tmp_path, "predict", "--help")
    assert helped.returncode == 0 and "TEARDOWN" in helped.stdout
