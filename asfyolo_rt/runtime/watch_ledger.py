"""The exactly-once state of `asfyolo-rt watch` (`asfyolo_rt.runtime.watch`): the output lock, the ledger
OUT/frames.jsonl (one fsynced O_APPEND line per finished file; a torn last line is cut off) and the tables
cells.csv / summary.csv, truncated on restart to the byte lengths the last ledger line recorded."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from asfyolo_rt.atomic import atomic_write_bytes
from asfyolo_rt.errors import ConfigError

log = logging.getLogger(__name__)

LEDGER = "frames.jsonl"
STATE_DIR = ".watch"  # lock and staging folders
TABLES = ("cells.csv", "summary.csv")


# --------------------------------------------------------------------------------------------- lock
class OutputLock:
    """OUT/.watch/lock created with O_EXCL, holding "pid host"; a lock of a dead process here is taken over."""

    def __init__(self, out: Path) -> None:
        self.path = out / STATE_DIR / "lock"
        self.mine = f"{os.getpid()} {socket.gethostname()}\n"

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            os.write(fd, self.mine.encode())
            os.close(fd)
            return self
        raise ConfigError(f"could not take the lock {self.path}", hint="another watcher is starting on this folder")

    def _take_over_if_stale(self) -> None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        pid_text, _, host = text.strip().partition(" ")
        out = self.path.parent.parent
        if not pid_text.isdigit() or (host and host != socket.gethostname()):
            raise ConfigError(f"--out {out} is locked by {text.strip() or 'an unreadable lock'} ({self.path})",
                              hint=f"if no watcher runs on it any more, delete {self.path}")
        pid = int(pid_text)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.warning("taking over the lock of watcher pid %d, which is gone (%s)", pid, self.path)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        except PermissionError:
            pass  # alive, another user's
        raise ConfigError(f"--out {out} is being watched by another process (pid {pid})",
                          hint="stop that watcher first, or pass another --out")

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            if self.path.read_text() == self.mine:
                self.path.unlink()


# ------------------------------------------------------------------------------------------- ledger
def read_ledger(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a ledger; a torn last line (no newline: killed mid-write) is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        log.warning("%s: dropping a torn last line of %d bytes (a run was killed while writing it)",
                    path, len(data) - end)
        with open(path, "r+b") as f:
            f.truncate(end)
            os.fsync(f.fileno())
    records = []
    for i, line in enumerate(data[:end].splitlines(), 1):
        try:
            records.append(json.loads(line))
        except ValueError as exc:
            raise ConfigError(f"{path} line {i} is not JSON ({exc})",
                              hint="the ledger was edited; repair or remove that line") from exc
    return records


def _append(fd: int, data: bytes) -> None:
    """One os.write of the whole buffer on an O_APPEND descriptor, then fsync."""
    view = memoryview(data)
    while view:  # a regular file takes it in one write; the loop only guards against a short write
        view = view[os.write(fd, view):]
    os.fsync(fd)


class _Tables:
    """OUT/cells.csv and OUT/summary.csv, appended per file; `lengths` is what the ledger records."""

    def __init__(self, out: Path, records: list[dict[str, Any]]) -> None:
        from asfyolo_rt.infer.writers import CELL_FIELDS, SUMMARY_FIELDS

        self.paths = [out / name for name in TABLES]
        recorded = records[-1].get("csv_bytes") if records else None
        if records and not isinstance(recorded, dict):
            raise ConfigError(f"the last line of {out / LEDGER} has no csv_bytes",
                              hint="the ledger was edited; restore it, or start a new --out")
        if recorded is None:  # nothing done yet: the headers predict writes (rows of a killed first file go)
            for p, names in zip(self.paths, (CELL_FIELDS, SUMMARY_FIELDS)):
                buf = io.StringIO(newline="")
                csv.DictWriter(buf, names).writeheader()
                atomic_write_bytes(p, buf.getvalue().encode())
            self.lengths = [p.stat().st_size for p in self.paths]
        else:
            self.lengths = [int(recorded[p.name]) for p in self.paths]
            for p, n in zip(self.paths, self.lengths):
                size = p.stat().st_size if p.exists() else -1
                if size < n:
                    raise ConfigError(f"{p} has {max(size, 0)} bytes; the ledger {out / LEDGER} recorded {n}",
                                      hint="the table was edited or removed: restore it, or start a new --out")
                if size > n:  # rows of a file killed before its ledger line
                    with open(p, "r+b") as f:
                        f.truncate(n)
                        os.fsync(f.fileno())
        self.fds = [os.open(p, os.O_WRONLY | os.O_APPEND) for p in self.paths]

    def append(self, rows: list[bytes]) -> None:
        for i, data in enumerate(rows):
            _append(self.fds[i], data)
            self.lengths[i] += len(data)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
