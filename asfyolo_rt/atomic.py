"""File primitives: atomic writes (temporary file in the target folder, fsync, usual permissions, rename)
and content hashes.

Every output that takes long to make (checkpoints, ONNX files, engines, calibration caches, reports)
goes through here, so an interrupted run never leaves a truncated file behind a valid name.
Imports only the standard library (the TensorRT runner uses it on machines without torch).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _usual_mode() -> int:
    """rw-r--r-- for the usual umask 022: what open() would give, not mkstemp's 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """OSError of the block re-raised naming `path` (not the temporary file): what the user asked to write."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None or exc.filename == str(path):
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc  # same subclass (errno -> PermissionError ...)


def _make_parent(path: Path) -> None:
    """path's folder, made if missing; a file in the way is NotADirectoryError (mkdir says 'File exists')."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), exc.filename) from exc


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically; the file gets rw-r--r-- (minus the umask), not mkstemp's 0600.

    An OSError (read-only file system, no space left, permission denied) names `path`, and leaves no
    temporary file behind."""
    path = Path(path)
    with _naming(path):
        _make_parent(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, _usual_mode())
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary file name beside `path`, for writers that need a file name (matplotlib, OpenCV).

    The name keeps `path`'s suffix (OpenCV picks the format from it). When the block ends normally the
    file is synced, given rw-r--r-- (minus the umask) and renamed to `path`; otherwise it is removed.
    """
    path = Path(path)
    with _naming(path):
        _make_parent(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
    try:
        yield Path(tmp)
        with _naming(path):
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, _usual_mode())
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (ONNX and engine fingerprints), read in 1 MiB chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
