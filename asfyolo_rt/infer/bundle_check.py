"""Did the export that wrote a model's folder finish? (torch-free, standard library only)

`asfyolo-rt export` writes `bundle.json` last, as the seal of the bundle. A folder is an *unfinished export*
when it has no `bundle.json` and holds at least one of the records only `export` writes
(`EXPORT_RECORDS`: `model.json`, written right after `model.onnx`; `export_report.json`;
`calibration_report.json`; the INT8 calibration caches), other than the model file itself.

The rule deliberately ignores model files: a hand-made folder holding a user's `model.onnx` (and the
engines `asfyolo-rt build` writes beside it) is not an export and is used without a word. An export
killed before it wrote `model.json` leaves only `model.onnx`, which cannot be told apart from such a
folder; every later stage of an export is covered.

A folder this process is exporting into (`writing`, entered by `export.bundle_files.bundle_lock`) is not
unfinished: the export's own accuracy check and TensorRT-RTX builds open its files before the seal.

Consumers: the backend registry (`runtime.registry.BackendSpec.open`: predict, val, parity, Segmenter)
warns once per folder (`warn_if_unfinished`); `asfyolo-rt build` refuses (`export.engine.bundle_build`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

BUNDLE_JSON = "bundle.json"
# files only `asfyolo-rt export` writes into a bundle folder (never `build`, never a user by hand)
EXPORT_RECORDS = ("model.json", "export_report.json", "calibration_report.json", "model.int8.calib.json",
                  "model.int8-cpu.calib.json")

log = logging.getLogger(__name__)
_warned: set[str] = set()
_warned_guard = threading.Lock()
_writing: set[str] = set()  # folders an export or build of this process is writing (resolved paths)


@contextlib.contextmanager
def writing(folder: str | Path) -> Iterator[None]:
    """Mark `folder` as being written by this process while the block runs (see the module docstring)."""
    key = str(Path(folder).resolve())
    with _warned_guard:
        _writing.add(key)
    try:
        yield
    finally:
        with _warned_guard:
            _writing.discard(key)


def unfinished_export(path: str | Path) -> str | None:
    """Why the folder of model file `path` (or the folder `path`) is an unfinished export, else None."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if (folder / BUNDLE_JSON).exists() or str(folder.resolve()) in _writing:
        return None
    found = [n for n in EXPORT_RECORDS if n != path.name and (folder / n).is_file()]
    if not found:
        return None
    return (f"{folder} holds files of an export that did not finish ({', '.join(found)} but no {BUNDLE_JSON}, "
            f"which export writes last): its files may be missing, partial or from an earlier export")


def rerun_hint(folder: str | Path) -> str:
    return f"re-run `asfyolo-rt export --out {folder}` (with the options of the first export)"


def warn_if_unfinished(path: str | Path) -> bool:
    """logging.warning (once per folder and process) when `path` lives in an unfinished export; True then."""
    why = unfinished_export(path)
    if why is None:
        return False
    folder = Path(path).parent if not Path(path).is_dir() else Path(path)
    key = str(folder.resolve())
    with _warned_guard:
        first = key not in _warned
        _warned.add(key)
    if first:
        log.warning("%s; %s", why, rerun_hint(folder))
    return True
