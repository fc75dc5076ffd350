"""A bundle folder holds one model: which files an export owns, the folder lock, stale files, checks.

`bundle.json` lists exactly the files one export wrote (name -> sha256) and the model they come from
(`model.weights_sha256`, which every exported ONNX file also carries in its metadata as `weights_sha256`).

Ownership: an export owns (may replace or delete), in its `--out` folder, only

* the files the earlier export's `bundle.json` lists (the exact names; a listed file whose sha256 no longer
  matches has been changed by someone else since and is kept), and
* `KNOWN_NAMES`: the exact file names this exporter and `build` write (every ONNX flavour, engines and
  sidecars, OpenVINO IR, reports, caches, `model.json`, `bundle.json`) -- a list, not a pattern.

Any other file (a user's `model.py`, `model.yaml`, notes, a `parity/` folder) is never deleted, overwritten or
listed. `check_out_folder` refuses a non-empty `--out` that is not a bundle (no readable `bundle.json`) and
holds anything but known names, the lock and atomic-write leftovers of known names (an interrupted export),
unless told otherwise (`BundleOptions.allow_foreign`, `--force`); the foreign files are then kept.

An export into a folder:

1. `bundle_lock` holds `.asfyolo-rt.lock` (created with O_EXCL: pid, host, command) for the whole export, so
   a second export or a build into the folder is refused with one line; a lock whose process is gone (same
   host, dead pid) is taken over; the lock is removed at the end, also on error;
2. `previous_files` reads the old `bundle.json`'s list and `invalidate` removes it (and `export_report.json`)
   before the first file is written, so an interrupted export never leaves a sealed bundle that mixes old
   and new files;
3. `remove_stale` deletes, after the export, the owned files (above) that this export did not write, and says
   which;
4. `seal` hashes the written files for `bundle.json`, which is written last.

Consumers call `verify_bundle_file(path)`: where the folder has a `bundle.json`, a file it does not list, a
file whose sha256 differs from the listed one, or an ONNX file whose recorded source weights differ from
the bundle's model, is refused with one line naming the file. Folders without `bundle.json` are not checked,
except that a folder holding export records but no `bundle.json` is an export that did not finish
(`asfyolo_rt.infer.bundle_check`): backends warn, `build` refuses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from asfyolo_rt.atomic import file_sha256
from asfyolo_rt.errors import ConfigError
from asfyolo_rt.infer.bundle_check import BUNDLE_JSON, EXPORT_RECORDS, rerun_hint, unfinished_export, writing

REPORT_JSON = "export_report.json"
LOCK_NAME = ".asfyolo-rt.lock"
SOURCE_KEY = "weights_sha256"  # ONNX metadata: sha256 of the checkpoint the model was exported from

log = logging.getLogger(__name__)


def _known_names() -> frozenset[str]:
    """Every file name export and `asfyolo-rt build` write into a bundle folder (bundle_build.engine_name)."""
    plain = ["model", "model.fp16", "model.int8", "model.int8-cpu"]
    e2e = [f"{s}.end2end" for s in plain[:3]]
    rtx_e2e = [f"{s}.rtx" for s in e2e]  # Cluster-NMS end-to-end models for TensorRT-RTX
    onnx = [f"{s}.onnx" for s in plain + e2e + rtx_e2e]
    engines = [f"{s}{tail}.engine" for s in plain + e2e for tail in ("", ".dla0", ".dla1", ".rtx")]
    engines += [f"{s}.engine" for s in rtx_e2e]  # model.end2end.rtx.engine (= model.end2end + .rtx)
    return frozenset([*onnx, *engines, *(f"{e}.json" for e in engines), "model.int8-openvino.xml",
                      "model.int8-openvino.bin", *EXPORT_RECORDS, "timing.cache", BUNDLE_JSON])


KNOWN_NAMES = _known_names()
# atomic_write_bytes' temporary file of a known name: .<name>.<8 random chars>.tmp
_TEMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def is_known_name(name: str) -> bool:
    return name in KNOWN_NAMES


def _own_leftover(name: str) -> bool:
    m = _TEMP.match(name)
    return m is not None and m.group("name") in KNOWN_NAMES


# ----------------------------------------------------------------------------------------- the folder
def check_out_folder(out: Path, *, allow_foreign: bool = False) -> list[str]:
    """ConfigError when `out` is a non-empty folder that is not a bundle (module docstring); else the names of
    its files this export does not own (kept, never listed), sorted."""
    out = Path(out)
    if not out.is_dir():
        return []
    try:
        bundle = read_bundle(out) is not None
    except ConfigError:  # an unreadable bundle.json: judged by the other files
        bundle = False
    foreign = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir()
                     if not (p.is_file() and (is_known_name(p.name) or _own_leftover(p.name)))
                     and p.name != LOCK_NAME)
    if foreign and not bundle and not allow_foreign:
        shown = ", ".join(foreign[:5]) + (f" (+{len(foreign) - 5} more)" if len(foreign) > 5 else "")
        raise ConfigError(f"--out {out} is not an export bundle (no {BUNDLE_JSON}) and holds {len(foreign)} "
                          f"file(s) export does not write: {shown}; nothing was written",
                          hint="pass a new or empty folder, or --force to export into it anyway (those files "
                               "are kept; only the names export writes are replaced)")
    return foreign


def previous_files(out: Path) -> dict[str, str | None]:
    """The earlier export's files by its bundle.json: name -> recorded sha256 (plain names only); {} if none."""
    try:
        doc = read_bundle(out)
    except ConfigError:
        return {}
    if doc is None:
        return {}
    return {n: (e.get("sha256") if isinstance(e, dict) else None) for n, e in doc["files"].items()
            if isinstance(n, str) and n not in ("", ".", "..") and "/" not in n and "\\" not in n}


def invalidate(out: Path) -> None:
    """Remove the seal of an earlier export (bundle.json, export_report.json) before writing a new one."""
    for name in (BUNDLE_JSON, REPORT_JSON):
        (Path(out) / name).unlink(missing_ok=True)


def remove_stale(out: Path, written: set[str], previous: dict[str, str | None] | None = None) -> list[str]:
    """Delete the files of `out` this export owns but did not write (module docstring); their names, sorted.

    previous: `previous_files(out)` read before `invalidate`. Known names, the listed files whose sha256 still
    matches the recorded one, and atomic-write leftovers of known names are removed; nothing else.
    """
    out = Path(out)
    previous = previous or {}
    stale = []
    for p in sorted(out.iterdir()):
        name = p.name
        if not p.is_file() or name in written or name in (BUNDLE_JSON, REPORT_JSON, LOCK_NAME):
            continue
        if is_known_name(name) or _own_leftover(name):
            stale.append(name)
        elif name in previous:
            want = previous[name]
            if want is not None and file_sha256(p) == want:
                stale.append(name)
            else:
                log.info("kept %s: the earlier bundle.json lists it, but it changed since that export", p)
    for name in stale:
        (out / name).unlink(missing_ok=True)
    return stale


# ------------------------------------------------------------------------------------------- the lock
_held: dict[str, list[Any]] = {}  # lock path -> [thread ident, depth, token]: re-entry by the holding thread
_held_guard = threading.Lock()


def _read_lock(path: Path) -> tuple[bytes, dict[str, Any] | None]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return b"", None
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw, None
    return raw, doc if isinstance(doc, dict) else None


def _holder_alive(path: Path, holder: dict[str, Any] | None) -> bool:
    """Whether the lock's process may still run: a dead pid on this host is stale; another host's is not
    judged (alive); an unreadable lock is fresh for 60 s (its writer may be between create and write)."""
    if holder is None:
        try:
            return time.time() - path.stat().st_mtime < 60
        except FileNotFoundError:
            return False
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _take_over(path: Path, raw: bytes) -> None:
    """Remove the stale lock whose content is `raw`; a lock that changed meanwhile (taken by another process
    first) is put back. The rename makes the take-over atomic between processes that find the same lock."""
    aside = path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if aside.read_bytes() != raw:
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    aside.unlink()


def _acquire(path: Path, command: str, doing: str) -> str:
    token = secrets.token_hex(8)
    doc = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": token}
    for _ in range(5):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raw, holder = _read_lock(path)
            if _holder_alive(path, holder):
                who = (f"`asfyolo-rt {holder.get('command', '?')}` (pid {holder.get('pid')} on {holder.get('host')}, "
                       f"since {holder.get('started', '?')})" if holder else "another process")
                raise ConfigError(f"cannot {doing} {path.parent}: {who} is writing it (lock {path})",
                                  hint=f"wait until it ends; if no such process runs, delete {path}") from None
            log.warning("taking over the lock %s of a process that no longer runs (%s)", path,
                        f"pid {holder.get('pid')}" if holder else "unreadable lock")
            _take_over(path, raw)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(doc))
            f.flush()
            os.fsync(f.fileno())
        return token
    raise ConfigError(f"cannot {doing} {path.parent}: could not take its lock {path} (other processes keep "
                      "taking it)", hint="try again")


@contextlib.contextmanager
def bundle_lock(folder: Path, command: str, doing: str = "write into") -> Iterator[bool]:
    """Hold `folder`'s lock (`LOCK_NAME`, module docstring) while the block runs; ConfigError (one line naming
    the holder) when another export or build holds it. Yields True when this thread already held it (an
    export building its TensorRT-RTX engines), False when it was taken now.

    command: what holds it ("export", "build"); doing: the refused action for the message ("export into").
    """
    path = Path(folder).resolve() / LOCK_NAME
    key = str(path)
    me = threading.get_ident()
    with _held_guard:
        held = _held.get(key)
        if held is not None and held[0] == me:
            held[1] += 1
    if held is not None and held[0] == me:
        try:
            yield True
        finally:
            with _held_guard:
                held[1] -= 1
        return
    token = _acquire(path, command, doing)
    with _held_guard:
        _held[key] = [me, 1, token]
    try:
        # an export's own files (opened by its accuracy check and TensorRT-RTX builds before the seal) are not an
        # unfinished export to this process; a build's folder stays what it is (build refuses unfinished ones)
        with writing(folder) if command == "export" else contextlib.nullcontext():
            yield False
    finally:
        with _held_guard:
            _held.pop(key, None)
        _raw, holder = _read_lock(path)
        if holder is not None and holder.get("token") == token:
            path.unlink(missing_ok=True)
        else:
            log.warning("the lock %s was taken over by another process during this %s", path, command)


def refuse_unfinished(path: Path, doing: str) -> None:
    """ConfigError when `path` (a folder or a file in one) is an export that did not finish (bundle_check)."""
    why = unfinished_export(path)
    if why is not None:
        folder = path if Path(path).is_dir() else Path(path).parent
        raise ConfigError(f"cannot {doing}: {why}", hint=rerun_hint(folder))


def seal(out: Path, written: set[str]) -> dict[str, dict[str, str]]:
    """bundle.json's `files`: name -> {path, sha256} for each written file that exists."""
    return {n: {"path": n, "sha256": file_sha256(Path(out) / n)} for n in sorted(written) if (Path(out) / n).is_file()}


def read_bundle(folder: Path) -> dict[str, Any] | None:
    """The folder's bundle.json, or None when it has none; ConfigError when it is not a bundle.json."""
    path = Path(folder) / BUNDLE_JSON
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not readable JSON ({type(exc).__name__})",
                          hint="re-export the bundle with `asfyolo-rt export --out DIR`") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        raise ConfigError(f"{path} has no file list", hint="re-export the bundle with `asfyolo-rt export --out DIR`")
    return doc


def onnx_source(path: Path) -> str | None:
    """The `weights_sha256` an ONNX file records, None when it records none or is not ONNX."""
    try:
        import onnx

        m = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX: other checks (sha256, the loaders) name the problem
        return None
    return next((p.value for p in m.metadata_props if p.key == SOURCE_KEY), None)


def verify_bundle_file(path: Path) -> None:
    """Refuse a file of a bundle folder that its bundle.json does not vouch for (module docstring)."""
    path = Path(path)
    doc = read_bundle(path.parent)
    if doc is None:
        return
    hint = f"re-export the bundle (asfyolo-rt export --out {path.parent}) or pass the file itself from elsewhere"
    entry = doc["files"].get(path.name)
    if entry is None:
        raise ConfigError(f"{path} is not part of the bundle: {path.parent / BUNDLE_JSON} does not list it "
                          "(left by another export or copied in?)", hint=hint)
    have = file_sha256(path)
    if have != entry.get("sha256"):
        raise ConfigError(f"{path} changed after the export: sha256 {have[:12]}…, bundle.json lists "
                          f"{str(entry.get('sha256'))[:12]}…", hint=hint)
    want = (doc.get("model") or {}).get("weights_sha256")
    if path.suffix == ".onnx" and want:
        src = onnx_source(path)
        if src is not None and src != want:
            raise ConfigError(f"{path} was exported from other weights (sha256 {src[:12]}…) than the bundle's model "
                              f"({want[:12]}…)", hint=hint)


def json_safe(obj: Any) -> Any:
    """`obj` with every non-finite float (NaN, ±Infinity) replaced by None: valid JSON for any reader."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():  # numpy scalars
        return json_safe(obj.item())
    return obj


def non_finite_paths(obj: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the non-finite floats in a JSON-like object ('parity.fp16.worst.pred.max_abs')."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [prefix]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in non_finite_paths(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in non_finite_paths(v, f"{prefix}[{i}]")]
    return []
