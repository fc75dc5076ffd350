"""`asfyolo-rt watch`: exactly-once segmentation of a folder being written, across a kill -9 and a restart.

The real CLI runs as a subprocess with the shipped DSB2018 model on crops of real DSB2018 frames, while a
writer thread copies them in, some slowly (half, pause, rest; straight into the final name and through a
temporary name). Its outputs are compared with what `asfyolo-rt predict` writes for the same files.
No timing is asserted: every wait polls a condition with a generous deadline.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from asfyolo_rt.runtime.watch import WatchOptions
from asfyolo_rt.runtime.watch_ledger import LEDGER, OutputLock, _Tables, read_ledger

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "asfyolo_rt"]
SETTLE = ["--settle", "0.3", "--poll", "0.1"]
DEADLINE_S = 240  # for any one wait; a busy 2-core machine loads the model in a few seconds


def _crops(datasets_root: Path, n: int) -> dict[str, bytes]:
    """n PNG-encoded 160 x 160 centre crops of DSB2018 validation frames, named f00.png, f01.png, ..."""
    import cv2

    files = sorted((datasets_root / "DSB2018" / "images" / "val").glob("*.png"))
    if len(files) < n:
        pytest.skip(f"needs {n} DSB2018 validation images under {datasets_root}")
    out = {}
    for i, f in enumerate(files[:n]):
        a = cv2.imread(str(f), cv2.IMREAD_COLOR)
        assert a is not None, f
        y, x = max(0, (a.shape[0] - 160) // 2), max(0, (a.shape[1] - 160) // 2)
        ok, buf = cv2.imencode(".png", a[y:y + 160, x:x + 160])
        assert ok
        out[f"f{i:02d}.png"] = buf.tobytes()
    return out


def _write(folder: Path, name: str, data: bytes, how: int) -> None:
    """0: at once; 1: half, pause longer than --settle (only the decode check holds it back), rest;
    2: the same through a temporary name, renamed when complete; 3: half, short pause, rest."""
    target = folder / name
    path = folder / (f".{name}.part" if how == 2 else name)
    with open(path, "wb") as f:
        if how == 0:
            f.write(data)
        else:
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            time.sleep(0.6 if how in (1, 2) else 0.1)
            f.write(data[len(data) // 2:])
    if how == 2:
        os.replace(path, target)


def _writer(folder: Path, items: list[tuple[str, bytes]], start: int) -> threading.Thread:
    def run() -> None:
        for k, (name, data) in enumerate(items):
            _write(folder, name, data, (start + k) % 4)
            time.sleep(0.05)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _ledger_lines(out: Path) -> int:
    try:
        return (out / LEDGER).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _wait(cond, proc: subprocess.Popen, what: str) -> None:  # type: ignore[type-arg]
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the watcher exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() - t0 > DEADLINE_S:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _csv_by_image(path: Path) -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows[r["image"]].append(r)
    return rows


def _kill_and_resume(tmp_path: Path, datasets_root: Path, cli, n: int, first: int, kill_after: int,
                     interrupt: bool = False) -> None:
    import tifffile

    crops = _crops(datasets_root, n)
    items = list(crops.items())
    src, acq, out, ref = (tmp_path / d for d in ("src", "acq", "out", "ref"))
    src.mkdir()
    acq.mkdir()
    for name, data in items:
        (src / name).write_bytes(data)
    r = subprocess.run([*CLI, "predict", str(src), "--out", str(ref), "--no-coco"], cwd=REPO, capture_output=True,
                       text=True, timeout=DEADLINE_S)
    assert r.returncode == 0, r.stderr

    # run 1: files arrive while it runs; killed with SIGKILL once `kill_after` files are in the ledger
    log1 = open(tmp_path / "watch1.log", "w")
    proc = subprocess.Popen([*CLI, "watch", str(acq), "--out", str(out), *SETTLE], cwd=REPO, stdout=log1,
                            stderr=subprocess.STDOUT)
    writer = _writer(acq, items[:first], 0)
    try:
        _wait(lambda: _ledger_lines(out) >= 1, proc, "the first ledger line")
        second = cli("watch", acq, "--out", out)  # a second watcher on the same OUT, while the first runs
        assert second.exit_code == 1
        assert f"is being watched by another process (pid {proc.pid})" in second.stderr
        _wait(lambda: _ledger_lines(out) >= kill_after, proc, f"{kill_after} ledger lines")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        log1.close()
    assert proc.returncode == -signal.SIGKILL
    writer.join(timeout=DEADLINE_S)
    done_before = len(read_ledger(out / LEDGER))
    assert kill_after <= done_before < n
    assert (out / ".watch" / "lock").read_text().split()[0] == str(proc.pid)  # stale: its process is gone

    # run 2: takes the stale lock over, skips what the ledger holds, gets the rest (some still arriving)
    writer = _writer(acq, items[first:], first)
    r = subprocess.run([*CLI, "watch", str(acq), "--out", str(out), *SETTLE, "--idle-exit", "4"], cwd=REPO,
                       capture_output=True, text=True, timeout=DEADLINE_S * 2)
    writer.join(timeout=DEADLINE_S)
    assert r.returncode == 0, (tmp_path / "watch1.log").read_text() + r.stderr
    assert f"{n - done_before} file(s) done in this run" in r.stderr

    records = [json.loads(line) for line in (out / LEDGER).read_text().splitlines()]
    assert len(records) == n
    assert sorted(rec["name"] for rec in records) == sorted(Path(k).stem for k in crops)
    assert {rec["status"] for rec in records} == {"ok"}
    for rec in records:
        assert set(rec) >= {"name", "file", "status", "cells", "queue_ms", "read_ms", "infer_ms", "post_ms",
                            "total_ms", "finished"}
        assert rec["file"] == f"{rec['name']}.png"

    got, want = _csv_by_image(out / "cells.csv"), _csv_by_image(ref / "cells.csv")
    assert sum(map(len, want.values())) > n  # the crops hold cells: the row comparison below means something
    assert got == want  # every frame's rows, exactly once, as predict writes them
    assert {rec["name"]: rec["cells"] for rec in records} == {k: len(want.get(k, [])) for k in want} | {
        rec["name"]: 0 for rec in records if rec["name"] not in want}
    assert _csv_by_image(out / "summary.csv") == _csv_by_image(ref / "summary.csv")
    for name in crops:
        stem = Path(name).stem
        assert np.array_equal(tifffile.imread(out / "labels" / f"{stem}.tif"),
                              tifffile.imread(ref / "labels" / f"{stem}.tif")), stem
        assert (out / "overlays" / f"{stem}.png").is_file()
    assert sorted(p.name for p in (out / "labels").iterdir()) == sorted(f"{Path(k).stem}.tif" for k in crops)
    assert not (out / ".watch" / "lock").exists()
    assert not list((out / ".watch").glob("staging/*"))
    if not interrupt:
        return

    # run 3: nothing left to do; Ctrl-C stops it with exit 130 and a line saying how many files were done
    err = open(tmp_path / "watch3.log", "w+")
    proc = subprocess.Popen([*CLI, "watch", str(acq), "--out", str(out), *SETTLE], cwd=REPO, stderr=err)
    try:
        _wait(lambda: "Ctrl-C to stop" in (tmp_path / "watch3.log").read_text(), proc, "the model to load")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=DEADLINE_S) == 130
    finally:
        proc.kill()
        err.close()
    assert f"interrupted: 0 file(s) done in this run (0 errors), {n} in" in (tmp_path / "watch3.log").read_text()
    assert len(read_ledger(out / LEDGER)) == n


@pytest.mark.datasets
def test_watch_kill_and_resume_exactly_once(tmp_path: Path, datasets_root: Path, cli) -> None:
    _kill_and_resume(tmp_path, datasets_root, cli, n=6, first=4, kill_after=2)


@pytest.mark.slow
@pytest.mark.datasets
def test_watch_kill_and_resume_exactly_once_20_frames(tmp_path: Path, datasets_root: Path, cli) -> None:
    _kill_and_resume(tmp_path, datasets_root, cli, n=20, first=12, kill_after=8, interrupt=True)


def test_incomplete_file_is_given_up_once_and_complete_one_segmented(tmp_path: Path, caplog) -> None:
    """In-process engine: a PNG cut short (never completed) ends as one "error" line after --give-up, a
    complete one as an "ok" line; a second run on the same OUT segments neither again."""
    import cv2

    from asfyolo_rt.runtime.segmenter import Segmenter
    from asfyolo_rt.runtime.watch import watch

    acq = tmp_path / "acq"
    acq.mkdir()
    img = np.zeros((96, 96), np.uint8)
    img[30:50, 40:64] = 200  # one bright nucleus
    data = cv2.imencode(".png", img)[1].tobytes()
    (acq / "complete.png").write_bytes(data)
    (acq / "cut.png").write_bytes(data[: len(data) // 2])
    opts = WatchOptions(acq, tmp_path / "out", settle_s=0.1, poll_s=0.05, give_up_s=0.5, idle_exit_s=0.2)
    seg = Segmenter("dsb2018")
    seen = []
    result = watch(opts, seg, progress=lambda s: seen.append(s.record) if s.record else None)
    assert (result.done, result.errors, result.stopped_by) == (2, 1, "idle")
    records = {r["file"]: r for r in read_ledger(opts.out / LEDGER)}
    assert records["complete.png"]["status"] == "ok" and (opts.out / "labels" / "complete.tif").is_file()
    assert records["cut.png"]["status"] == "error" and "truncated" in records["cut.png"]["error"]
    assert not (opts.out / "labels" / "cut.tif").exists()
    assert any("cut.png: gave up" in m for m in caplog.messages)
    assert [r["file"] for r in seen] == list(records)
    again = watch(opts, seg)
    assert (again.done, again.earlier) == (0, 2)
    assert len(read_ledger(opts.out / LEDGER)) == 2


def test_watch_refuses_an_out_locked_by_a_live_process(tmp_path: Path, cli) -> None:
    (tmp_path / "acq").mkdir()
    lock = tmp_path / "out" / ".watch" / "lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(f"{os.getpid()} {socket.gethostname()}\n")  # this test's process: alive
    r = cli("watch", tmp_path / "acq", "--out", tmp_path / "out")
    assert r.exit_code == 1
    assert f"is being watched by another process (pid {os.getpid()})" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert lock.read_text() == f"{os.getpid()} {socket.gethostname()}\n"  # left alone


def test_lock_of_a_dead_process_is_taken_over_and_released(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / ".watch" / "lock"
    lock.parent.mkdir()
    lock.write_text(f"{dead.pid} {socket.gethostname()}\n")
    with OutputLock(tmp_path):
        assert lock.read_text().split()[0] == str(os.getpid())
    assert not lock.exists()


def test_watch_missing_folder_is_one_line_error(tmp_path: Path, cli) -> None:
    r = cli("watch", tmp_path / "no_such_folder", "--out", tmp_path / "out")
    assert r.exit_code == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no_such_folder" in errors[0] and "does not exist" in errors[0]
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "out").exists()


def test_ledger_torn_last_line_is_dropped_and_tables_cut_to_the_ledger(tmp_path: Path) -> None:
    """What a kill -9 between a file's csv rows and its ledger line (or inside the line) leaves behind."""
    header = b"image,plane,t,z,id,class,score,x1,y1,x2,y2,area_px,centroid_x,centroid_y,equivalent_diameter_px\r\n"
    row_a, row_b = b"a,,,,1,0,0.9,0,0,1,1,1,0.5,0.5,1.128\r\n", b"b,,,,1,0,0.8,0,0,1,1,1,0.5,0.5,1.128\r\n"
    summary = b"image,width,height,cells,mean_area_px,median_area_px,covered_fraction\r\n"
    (tmp_path / "cells.csv").write_bytes(header + row_a + row_b[:20])  # b's rows half appended, no ledger line
    (tmp_path / "summary.csv").write_bytes(summary + b"a,1,1,1,1,1,1.0\r\n")
    line = {"name": "a", "file": "a.png", "status": "ok",
            "csv_bytes": {"cells.csv": len(header + row_a), "summary.csv": len(summary) + 17}}
    (tmp_path / LEDGER).write_bytes(json.dumps(line).encode() + b'\n{"name": "b", "fi')
    records = read_ledger(tmp_path / LEDGER)
    assert [r["name"] for r in records] == ["a"]
    assert (tmp_path / LEDGER).read_bytes().endswith(b"}\n")
    tables = _Tables(tmp_path, records)
    tables.close()
    assert (tmp_path / "cells.csv").read_bytes() == header + row_a
    assert (tmp_path / "summary.csv").read_bytes() == summary + b"a,1,1,1,1,1,1.0\r\n"


@pytest.mark.parametrize("name, taken", [("f01.tif", True), (".f01.tif", False), ("f01.tif.part", False),
                                         ("f01.TMP", False), ("f01.png", False), ("notes.txt", False)])
def test_pattern_and_temporary_names(tmp_path: Path, name: str, taken: bool) -> None:
    assert WatchOptions(tmp_path, tmp_path / "o", pattern="*.tif").takes(name) is taken
