"""napari without a screen (tests, screenshots, servers): Qt's offscreen platform plus an X display.

Qt's offscreen platform gets its OpenGL context through GLX, so without an X display napari cannot add
a layer ('QOpenGLWidget is not supported on this platform', then vispy fails reading GL_EXTENSIONS).
`ensure_display` starts one Xvfb server (Debian: xvfb) when DISPLAY is unset; it ends when this process
does. Call it before the QApplication exists (Qt reads DISPLAY once, at start).
"""

from __future__ import annotations

import os
import shutil
import subprocess

_servers: list[subprocess.Popen[bytes]] = []


def _end_with_parent() -> None:
    """In the Xvfb child: SIGTERM once this process has exited, so Qt never loses its display while running."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def ensure_display(size: tuple[int, int] = (1600, 1200), platform: str = "offscreen") -> str | None:
    """Set QT_QPA_PLATFORM (unless set) and make sure DISPLAY names an X server.

    platform: "offscreen" runs widgets and layers, but its canvas draws black (no QOpenGLWidget there);
    "xcb" on the Xvfb display draws the canvas too (Qt's xcb plugin needs Debian's libxcb-icccm4 and
    libxcb-keysyms1).
    Returns the display, or None when there is none and Xvfb is not installed.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", platform)
    if os.environ.get("DISPLAY"):
        return os.environ["DISPLAY"]
    exe = shutil.which("Xvfb")
    if exe is None:
        return None
    read, write = os.pipe()  # Xvfb writes the display number it chose here (-displayfd)
    proc = subprocess.Popen([exe, "-displayfd", str(write), "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten",
                             "tcp"], pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_end_with_parent)
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        return None
    _servers.append(proc)
    os.environ["DISPLAY"] = f":{number}"
    return os.environ["DISPLAY"]
