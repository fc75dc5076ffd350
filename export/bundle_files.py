"""A bundle folder holds one model: which files an export wrote, stale files of earlier exports, checks.

`bundle.json` lists exactly the files one export wrote (name -> sha256) and the model they come from
(`model.weights_sha256`, which every exported ONNX file also carries in its metadata as `weights_sha256`).
An export into a folder that already holds a bundle:

1. `invalidate` removes the old `bundle.json` (and `export_report.json`) before the first file is written,
   so an interrupted export never leaves a sealed bundle that mixes old and new files;
2. `remove_stale` deletes, after the export, every file with a bundle name (`model.*`, `*.engine`, the
   reports, `timing.cache`) that this export did not write, and says which; other files (a user's notes,
   a `parity/` folder) are left alone and not listed;
3. `seal` hashes the written files for `bundle.json`.

Consumers call `verify_bundle_file(path)`: where the folder has a `bundle.json`, a file it does not list, a
file whose sha256 differs from the listed one, or an ONNX file whose recorded source weights differ from
the bundle's model, is refused with one line naming the file. Folders without `bundle.json` (hand-made)
are not checked.
"""

from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path
from typing import Any

from asfyolo_rt.atomic import file_sha256
from asfyolo_rt.errors import ConfigError

BUNDLE_JSON = "bundle.json"
REPORT_JSON = "export_report.json"
# names an export or `asfyolo-rt build` writes into a bundle folder
BUNDLE_PATTERNS = ("model.*", "calibration_report.json", REPORT_JSON, BUNDLE_JSON, "timing.cache",
                   "*.engine", "*.engine.json", "*.plan")
SOURCE_KEY = "weights_sha256"  # ONNX metadata: sha256 of the checkpoint the model was exported from


def is_bundle_name(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in BUNDLE_PATTERNS)


def invalidate(out: Path) -> None:
    """Remove the seal of an earlier export (bundle.json, export_report.json) before writing a new one."""
    for name in (BUNDLE_JSON, REPORT_JSON):
        (Path(out) / name).unlink(missing_ok=True)


def remove_stale(out: Path, written: set[str]) -> list[str]:
    """Delete bundle-named files of `out` that are not in `written`; returns their names (sorted)."""
    stale = sorted(p.name for p in Path(out).iterdir()
                   if p.is_file() and is_bundle_name(p.name) and p.name not in written
                   and p.name not in (BUNDLE_JSON, REPORT_JSON))
    for name in stale:
        (Path(out) / name).unlink()
    return stale


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
