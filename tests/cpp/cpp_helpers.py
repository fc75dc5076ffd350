"""Helpers of the C runtime tests (tests/cpp): building with CMake, comparing label maps, running commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "cpp"


def openvino_cmake_dir() -> str:
    import openvino

    return str(Path(openvino.__file__).parent / "cmake")


def cmake_build(build: Path, *configure: str) -> subprocess.CompletedProcess[str]:
    """Configure `build` from cpp/ when it has no build system yet, then build it (a no-op when up to date)."""
    if not (build / "build.ninja").is_file():
        cmd = ["cmake", "-S", str(REPO / "cpp"), "-B", str(build), "-G", "Ninja", *configure]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            pytest.fail(f"cmake configure of {build} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    done = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"cmake --build {build} failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    return done


def label_f1(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int]:
    """(instance F1 at mask IoU 0.5, cells in a, cells in b) of two label maps."""
    from asfyolo_rt.eval.dsb import instance_f1

    r = instance_f1(np.asarray(a).astype(np.int32), np.asarray(b).astype(np.int32))
    return r.f1, r.tp + r.fn, r.tp + r.fp


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)  # type: ignore[call-overload]


PY = sys.executable
