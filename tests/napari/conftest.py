"""Headless napari: Qt's offscreen platform and an X display for OpenGL (asfyolo_rt.napari.headless).

Where DISPLAY is unset and Xvfb is installed (Debian: xvfb; `make test` installs it), one Xvfb server is
started for the session. Tests that draw ask for `gl_display` (every test with a QApplication does,
through `qapp`) and are skipped, saying why, when no display can be had.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def gl_display() -> str:
    """An X display for OpenGL (the existing one, or a session Xvfb); skips the test without one."""
    from asfyolo_rt.napari.headless import ensure_display

    display = ensure_display()
    if display is None:
        pytest.skip("napari needs OpenGL through an X display: install Xvfb (apt-get install xvfb)")
    return display


@pytest.fixture(scope="session")
def qapp(gl_display, qapp):  # noqa: F811 (pytest-qt's qapp, created only once the display is there)
    """pytest-qt's QApplication, created after `gl_display` set DISPLAY (Qt reads it once, at start)."""
    return qapp
