"""Fingerprinted INT8 calibration caches.

A cache holds the activation quantization parameters one calibration produced, plus the fingerprint of
everything they depend on: the FP32 ONNX file's SHA-256, the pre-processing description, the hash of the
ordered image list and the images' bytes, the calibration method, the flavour ("tensorrt" symmetric int8,
"cpu" asymmetric uint8) and the quantizer's name and version.

A cache is reused only when every fingerprint field matches. On a mismatch `load_cache` either returns
None after a warning naming the fields that differ (the caller recalibrates, `on_mismatch="recalibrate"`)
or raises CalibrationError (`on_mismatch="error"`). It never reuses a stale cache silently. Caches are
JSON, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from asfyolo_rt.errors import CalibrationError
from asfyolo_rt.model.weights import atomic_write_bytes

log = logging.getLogger(__name__)

FORMAT = "asfyolo-rt-calib/1"
OnMismatch = Literal["recalibrate", "error"]


@dataclass(frozen=True)
class Fingerprint:
    onnx_sha256: str
    preprocess: dict[str, Any]
    image_list_sha256: str
    n_images: int
    method: str
    flavour: str
    quantizer: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def differences(self, other: dict[str, Any]) -> list[str]:
        mine = self.to_dict()
        return sorted(k for k in set(mine) | set(other) if mine.get(k) != other.get(k))


@dataclass
class CacheEntry:
    path: Path
    fingerprint: Fingerprint
    payload: dict[str, Any]  # flavour-specific: {"scales": {tensor: scale}} or {"tensors_data": {...}}


def quantizer_version(name: str) -> str:
    import importlib.metadata as md

    dist = {"modelopt": "nvidia-modelopt", "onnxruntime": "onnxruntime"}.get(name, name)
    try:
        return f"{name} {md.version(dist)}"
    except md.PackageNotFoundError:
        return f"{name} (not installed)"


def load_cache(path: str | Path, fingerprint: Fingerprint, *, on_mismatch: OnMismatch = "recalibrate") -> CacheEntry | None:
    """The cache at `path` if its fingerprint equals `fingerprint`; None if absent (or mismatched and
    on_mismatch == "recalibrate"); CalibrationError if mismatched and on_mismatch == "error"."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT!r}")
        stored = doc["fingerprint"]
        payload = doc["payload"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        msg = f"calibration cache {path} is unreadable ({exc})"
        if on_mismatch == "error":
            raise CalibrationError(msg, hint="delete the file to recalibrate") from exc
        log.warning("%s; recalibrating", msg)
        return None
    diff = fingerprint.differences(stored)
    if diff:
        msg = f"calibration cache {path} was made for different inputs (differs in: {', '.join(diff)})"
        if on_mismatch == "error":
            raise CalibrationError(msg, hint="delete the cache or run with recalibration allowed")
        log.warning("%s; recalibrating", msg)
        return None
    return CacheEntry(path, fingerprint, payload)


def save_cache(path: str | Path, fingerprint: Fingerprint, payload: dict[str, Any]) -> Path:
    """Write a cache atomically; returns its path."""
    path = Path(path)
    doc = {"format": FORMAT, "key": fingerprint.key(), "fingerprint": fingerprint.to_dict(), "payload": payload}
    atomic_write_bytes(path, json.dumps(doc, indent=1, sort_keys=True, default=_json_default).encode())
    from asfyolo_rt.export.onnx_export import publish

    publish(path)
    return path


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
