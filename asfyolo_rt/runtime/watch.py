"""Segment every image a microscope writes into a folder, once it is complete (`asfyolo-rt watch`).

The folder is polled (no inotify: it works the same on network shares). A file is taken once it is
*complete*: its size, mtime and inode have not changed for `settle_s` **and** it decodes (a half-written
PNG/JPEG/TIFF reads as truncated, `asfyolo_rt.data.io` raises DataError: not complete yet, retried later
with back-off; after `give_up_s` without a change it is recorded as an error). Names starting with "." or
ending in .tmp/.part are never taken (a writer's temporary names).

Each file gets predict's outputs in OUT (`PredictionWriter` writes them into a private staging folder,
from where they are renamed into labels/, overlays/, ...), its rows appended to OUT/cells.csv and
OUT/summary.csv, then one JSON line in **OUT/frames.jsonl, the ledger**: a file is done iff its line is
there. The line is written with one `os.write` on an O_APPEND descriptor and fsynced, after everything
else of the file is in place; it records the byte length of cells.csv and summary.csv at that point, so a
restart truncates both to the last line's lengths (rows of a file killed before its ledger line go) and
drops a torn last line. Every output is written atomically and rewritten identically when a file killed
mid-way is segmented again: after `kill -9` anywhere, a restart gives each file's rows exactly once.

One watcher per OUT: OUT/.watch/lock (O_EXCL, holding "pid host"); a lock whose process is gone is taken
over. OUT/watch.json records the model and settings; a restart with other ones is refused.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from asfyolo_rt.atomic import atomic_write_bytes
from asfyolo_rt.errors import AsfYoloError, ConfigError, DataError
from asfyolo_rt.infer.sources import IMAGE_SUFFIXES
from asfyolo_rt.runtime.segmenter import Segmenter
from asfyolo_rt.runtime.watch_ledger import (
    LEDGER,
    STATE_DIR,
    TABLES,
    OutputLock,
    _append,
    _Tables,
    read_ledger,
)

log = logging.getLogger(__name__)

RUN_FILE = "watch.json"
TEMP_SUFFIXES = (".tmp", ".part")
_PREDICT_RESULTS = ("cells.csv", "summary.csv", "labels", "overlays", "predictions.coco.json")
_MAX_BACKOFF_S = 10.0


@dataclass(frozen=True)
class WatchOptions:
    """What to watch, where to write, when a file counts as complete and when to stop.

    pattern: fnmatch pattern of the file names to take (None: every image suffix, any case);
    settle_s: size/mtime unchanged this long before a file is read; give_up_s: a file that still does not
    decode after this long without a change is recorded as an error; max_frames / idle_exit_s: stop after
    this many files of this run / this long with nothing new (None: run until stopped). labels ("tif",
    "png" or ""), overlays, geojson, imagej_rois, channel and max_pixels are predict's output options.
    """

    folder: Path
    out: Path
    pattern: str | None = None
    settle_s: float = 1.0
    poll_s: float = 0.5
    give_up_s: float = 60.0
    max_frames: int | None = None
    idle_exit_s: float | None = None
    labels: str = "tif"
    overlays: bool = True
    geojson: bool = False
    imagej_rois: bool = False
    channel: int | None = None
    max_pixels: int | None = None

    def check(self) -> None:
        """ConfigError naming the option of the first bad value (or the missing folder)."""
        if not self.folder.is_dir():
            what = "is a file" if self.folder.exists() else "does not exist"
            raise ConfigError(f"watch folder {self.folder} {what}", hint="pass the folder the microscope writes into")
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {self.out} is a file", hint="pass a folder for the results")
        if self.out.resolve() == self.folder.resolve():
            raise ConfigError(f"--out {self.out} is the watched folder", hint="write the results to another folder")
        for option, value in (("--settle", self.settle_s), ("--give-up", self.give_up_s),
                              ("--idle-exit", self.idle_exit_s)):
            if value is not None and value < 0:
                raise ConfigError(f"{option} {value}: expected seconds >= 0")
        if self.poll_s <= 0:
            raise ConfigError(f"--poll {self.poll_s}: expected seconds > 0")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--max-frames {self.max_frames}: expected >= 1")
        if self.labels not in ("tif", "png", ""):
            raise ConfigError(f"--labels {self.labels!r}: expected tif, png or none")

    def takes(self, name: str) -> bool:
        """Whether a file name is one to segment (not a temporary name, matching the pattern)."""
        if name.startswith(".") or name.lower().endswith(TEMP_SUFFIXES):
            return False
        if self.pattern is None:
            return name.lower().endswith(tuple(IMAGE_SUFFIXES))
        return fnmatch.fnmatchcase(name, self.pattern)


@dataclass
class WatchStatus:
    """What the progress callback gets: after every file and on every idle poll.

    record: the ledger line of the file just finished (None on a poll); backlog: complete files waiting;
    writing: files seen but not complete yet; fps: files per second over the last ten."""

    done: int = 0  # files of this run (ok + error)
    errors: int = 0
    earlier: int = 0  # files in the ledger from earlier runs
    backlog: int = 0
    writing: int = 0
    fps: float | None = None
    record: dict[str, Any] | None = None


@dataclass
class WatchResult:
    """How a watch ended: stopped_by is "max-frames", "idle" or "stop" (the `stop` event was set)."""

    out: Path
    done: int
    errors: int
    earlier: int
    stopped_by: str


# -------------------------------------------------------------------------------------- completeness
@dataclass
class _Seen:
    sig: tuple[int, int, int]  # size, mtime_ns, inode
    changed: float  # monotonic time of the last change (or first sight)
    complete: float | None = None  # when it was seen stable (queue_ms counts from here)
    retry_at: float = 0.0
    failures: int = 0
    error: str = ""


@dataclass
class _Tracker:
    opts: WatchOptions
    done: set[str]
    seen: dict[str, _Seen] = field(default_factory=dict)

    def scan(self, now: float) -> bool:
        """Stat the folder's candidate files; True when a file appeared or changed."""
        changed, present = False, set()
        try:
            entries = list(os.scandir(self.opts.folder))
        except OSError as exc:
            raise ConfigError(f"watch folder {self.opts.folder} cannot be listed any more ({exc.strerror or exc})",
                              hint="was it removed or unmounted? Restart the watch when it is back") from exc
        for e in entries:
            if e.name in self.done or not self.opts.takes(e.name):
                continue
            try:
                if not e.is_file():
                    continue
                st = e.stat()
            except FileNotFoundError:  # renamed away between listing and stat
                continue
            present.add(e.name)
            sig = (st.st_size, st.st_mtime_ns, st.st_ino)
            s = self.seen.get(e.name)
            if s is None or s.sig != sig:
                self.seen[e.name] = _Seen(sig, now)
                changed = True
            elif s.complete is None and now - s.changed >= self.opts.settle_s:
                s.complete = now
        for name in set(self.seen) - present:
            del self.seen[name]
        return changed

    def ready(self, now: float) -> list[str]:
        """Stable files due for a (new) read, oldest first."""
        due = [(s.sig[1], n) for n, s in self.seen.items() if s.complete is not None and now >= s.retry_at]
        return [n for _, n in sorted(due)]

    def failed(self, name: str, error: str, now: float) -> bool:
        """A read failed (DataError): retry later with back-off; True when it is time to give up."""
        s = self.seen[name]
        s.failures += 1
        s.error = error
        s.retry_at = now + min(_MAX_BACKOFF_S, max(self.opts.settle_s, self.opts.poll_s) * 2 ** (s.failures - 1))
        return now - s.changed >= self.opts.give_up_s


# ---------------------------------------------------------------------------------------- one file
def _segment_file(seg: Segmenter, path: Path, opts: WatchOptions, staging: Path) -> dict[str, Any]:
    """predict's outputs of one file into `staging`; its name, cells, timing and csv rows (header-less)."""
    from asfyolo_rt.data.io import pixel_limit
    from asfyolo_rt.data.stacks import input_stem
    from asfyolo_rt.infer.sources import iter_frames
    from asfyolo_rt.infer.writers import PredictionWriter

    t0 = time.perf_counter()
    with pixel_limit(opts.max_pixels):
        frames = list(iter_frames([path], channel=opts.channel))  # decodes every plane: DataError if cut short
    if not frames:
        raise DataError(f"{path}: holds no image planes")
    timing = {"read": 1e3 * (time.perf_counter() - t0)}
    writer = PredictionWriter(staging, names=seg.names, overlays=opts.overlays, labels=opts.labels, coco=False,
                              geojson=opts.geojson, imagej_rois=opts.imagej_rois)
    cells = 0
    try:
        for r in seg.predict_frames(frames):
            t1 = time.perf_counter()
            writer.write(r)
            timing["write"] = timing.get("write", 0.0) + 1e3 * (time.perf_counter() - t1)
            for k, v in r.timing_ms.items():
                timing[k] = timing.get(k, 0.0) + v
            cells += len(r)
    finally:
        writer.close()
    name = frames[0].name if len(frames) == 1 and frames[0].plane is None else input_stem(path)
    rows = [p.read_bytes().split(b"\n", 1)[1] for p in (staging / t for t in TABLES)]
    return {"name": name, "cells": cells, "timing": timing, "rows": rows}


def _move_outputs(staging: Path, out: Path) -> None:
    """Rename every per-file output from staging into OUT (same filesystem: atomic per file)."""
    for p in sorted(staging.rglob("*")):
        rel = p.relative_to(staging)
        if p.is_dir() or str(rel) in TABLES:
            continue
        with open(p, "rb") as f:
            os.fsync(f.fileno())
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, out / rel)


def _record(name: str, file: str, status: str, cells: int, timing: dict[str, float], queue_ms: float,
            total_ms: float, error: str | None = None) -> dict[str, Any]:
    ms = {k: round(timing.get(src, 0.0), 1) for k, src in (("read_ms", "read"), ("pre_ms", "preprocess"),
                                                           ("infer_ms", "inference"), ("post_ms", "postprocess"),
                                                           ("write_ms", "write"))}
    rec: dict[str, Any] = {"name": name, "file": file, "status": status, "cells": cells,
                           "queue_ms": round(queue_ms, 1), **ms, "total_ms": round(total_ms, 1),
                           "finished": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
    if error is not None:
        rec["error"] = error
    return rec


# -------------------------------------------------------------------------------------------- run
def _check_run_file(out: Path, settings: dict[str, Any], resuming: bool) -> None:
    """Write OUT/watch.json (settings + environment); on a resume, refuse other settings than recorded."""
    from asfyolo_rt.env import environment

    path = out / RUN_FILE
    if resuming and path.exists():
        old = json.loads(path.read_text()).get("settings", {})
        new = json.loads(json.dumps(settings))
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if diff:
            what = "; ".join(f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in diff)
            raise ConfigError(f"--out {out} was started with other settings ({what})",
                              hint="resume with the same model and options, or pass another --out")
        return
    doc = {"settings": settings, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "environment": environment()}
    atomic_write_bytes(path, json.dumps(doc, indent=2, default=str).encode())


def watch(opts: WatchOptions, segmenter: Segmenter | Callable[[], Segmenter], *,
          progress: Callable[[WatchStatus], None] | None = None,
          stop: threading.Event | None = None) -> WatchResult:
    """Segment the files of `opts.folder` as they become complete, until max_frames, idle_exit_s or `stop`.

    segmenter: a Segmenter, or a function making one (called once the lock is held, so that a second
    watcher on the same OUT is refused before loading a model). Resumes an OUT holding a ledger."""
    opts.check()
    out = opts.out
    ledger_path = out / LEDGER
    if not ledger_path.exists() and out.is_dir() and any((out / n).exists() for n in _PREDICT_RESULTS):
        raise ConfigError(f"--out {out} holds results but no {LEDGER}: not a watch output folder",
                          hint="choose another --out, or move the old results away; nothing was overwritten")
    out.mkdir(parents=True, exist_ok=True)
    stop = stop or threading.Event()
    with OutputLock(out):
        staging_root = out / STATE_DIR / "staging"
        shutil.rmtree(staging_root, ignore_errors=True)  # what a killed run left half-made
        seg = segmenter if isinstance(segmenter, Segmenter) else segmenter()
        settings = {"model": str(seg.spec.path), "backend": seg.backend.name, "precision": seg.backend.precision,
                    **asdict(seg.config), "labels": opts.labels, "overlays": opts.overlays,
                    "geojson": opts.geojson, "imagej_rois": opts.imagej_rois, "channel": opts.channel}
        records = read_ledger(ledger_path)
        _check_run_file(out, settings, resuming=ledger_path.exists())
        fd = os.open(ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # before the tables: marks OUT
        try:
            tables = _Tables(out, records)
        except BaseException:
            os.close(fd)
            raise
        try:
            return _loop(seg, opts, records, tables, fd, staging_root, progress, stop)
        finally:
            os.close(fd)
            tables.close()
            shutil.rmtree(staging_root, ignore_errors=True)


def _loop(seg: Segmenter, opts: WatchOptions, records: list[dict[str, Any]], tables: _Tables, fd: int,
          staging_root: Path, progress: Callable[[WatchStatus], None] | None, stop: threading.Event) -> WatchResult:
    names = {r["name"]: r["file"] for r in records if r.get("status") == "ok"}
    tracker = _Tracker(opts, done={r["file"] for r in records})
    status = WatchStatus(earlier=len(tracker.done))
    recent: deque[tuple[float, float]] = deque(maxlen=10)
    last_activity = time.monotonic()

    def finish(rec: dict[str, Any], rows: list[bytes] | None, t_start: float) -> None:
        if rows is not None:
            tables.append(rows)
        rec["csv_bytes"] = dict(zip(TABLES, tables.lengths))
        _append(fd, (json.dumps(rec) + "\n").encode())
        tracker.done.add(rec["file"])
        tracker.seen.pop(rec["file"], None)
        status.done += 1
        status.errors += rec["status"] != "ok"
        recent.append((t_start, time.monotonic()))
        status.fps = len(recent) / max(recent[-1][1] - recent[0][0], 1e-6)
        status.record = rec

    def report(now: float) -> None:
        ready = tracker.ready(now)
        status.backlog = len(ready)
        status.writing = len(tracker.seen) - sum(s.complete is not None for s in tracker.seen.values())
        if progress is not None:
            progress(status)
        status.record = None

    while not stop.is_set():
        now = time.monotonic()
        if tracker.scan(now):
            last_activity = now
        ready = tracker.ready(now)
        if not ready:
            report(now)
            if opts.idle_exit_s is not None and not tracker.seen and now - last_activity >= opts.idle_exit_s:
                return WatchResult(opts.out, status.done, status.errors, status.earlier, "idle")
            stop.wait(opts.poll_s)
            continue
        file = ready[0]
        seen = tracker.seen[file]
        t_start = time.monotonic()
        queue_ms = 1e3 * (t_start - (seen.complete or t_start))
        staging = staging_root / f"{os.getpid()}-{status.done}"
        try:
            try:
                got = _segment_file(seg, opts.folder / file, opts, staging)
            except DataError as exc:  # cut short (still being written) or undecodable
                if not tracker.failed(file, str(exc), time.monotonic()):
                    continue
                log.warning("%s: gave up after %.0f s without a change: %s", file, opts.give_up_s, exc)
                rec = _record(Path(file).stem, file, "error", 0, {}, queue_ms, 0.0, f"incomplete: {exc}")
                finish(rec, None, t_start)
            except AsfYoloError as exc:
                log.warning("%s: %s", file, exc)
                finish(_record(Path(file).stem, file, "error", 0, {}, queue_ms, 0.0, str(exc)), None, t_start)
            else:
                name = got["name"]
                if names.get(name, file) != file:
                    msg = f"another file ({names[name]}) was already segmented as {name!r}; outputs would clash"
                    log.warning("%s: %s", file, msg)
                    finish(_record(name, file, "error", 0, {}, queue_ms, 0.0, msg), None, t_start)
                else:
                    _move_outputs(staging, opts.out)
                    total_ms = 1e3 * (time.monotonic() - t_start)
                    finish(_record(name, file, "ok", got["cells"], got["timing"], queue_ms, total_ms), got["rows"],
                           t_start)
                    names[name] = file
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        last_activity = time.monotonic()
        report(last_activity)
        if opts.max_frames is not None and status.done >= opts.max_frames:
            return WatchResult(opts.out, status.done, status.errors, status.earlier, "max-frames")
    return WatchResult(opts.out, status.done, status.errors, status.earlier, "stop")
