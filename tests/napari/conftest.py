"""Headless napari: Qt's offscreen platform, and an X display for OpenGL (napari draws with vispy).

Qt's offscreen platform gets its OpenGL context through GLX, so without a display it has none and
napari cannot add a layer. Where DISPLAY is unset and Xvfb is installed (Debian: xvfb; `make test`
installs it), one Xvfb server is started for the session. Tests that draw ask for `gl_display` and are
skipped, saying why, when no display can be had.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_servers: list[subprocess.Popen[bytes]] = []  # the session's Xvfb (ends when this process does)


def _end_with_parent() -> None:
    """In the Xvfb child: SIGTERM when pytest has exited (so Qt never loses its display while running)."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start_xvfb() -> subprocess.Popen[bytes] | None:
    exe = shutil.which("Xvfb")
    if exe is None:
        return None
    read, write = os.pipe()  # Xvfb writes the display number it chose here (-displayfd)
    proc = subprocess.Popen([exe, "-displayfd", str(write), "-screen", "0", "1600x1200x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_end_with_parent)
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        return None
    os.environ["DISPLAY"] = f":{number}"
    return proc


@pytest.fixture(scope="session")
def gl_display() -> Iterator[str]:
    """An X display for OpenGL (the existing one, or a session Xvfb); skips the test without one."""
    if not os.environ.get("DISPLAY"):
        proc = _start_xvfb()
        if proc is not None:
            _servers.append(proc)
    if not os.environ.get("DISPLAY"):
        pytest.skip("napari needs OpenGL through an X display: install Xvfb (apt-get install xvfb)")
    yield os.environ["DISPLAY"]


@pytest.fixture(scope="session")
def qapp(gl_display, qapp):  # noqa: F811 (pytest-qt's qapp, created only once the display is there)
    """pytest-qt's QApplication, created after `gl_display` set DISPLAY (Qt reads it once, at start)."""
    return qapp
