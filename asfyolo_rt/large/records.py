"""Completion records of a run, kept inside its output so that a killed run resumes.

Layout under the output image (``<name>.ome.zarr/.asfyolo/``): ``run.json`` (what the run is: input, level,
model and its SHA-256, settings, block and chunk sides; and the intensity range once measured),
``blocks/b<k>.npz`` (block k's detections), ``counts/r<k>.npz`` (region k's visible pixels per cell),
``paint/r<k>.npz`` (region k's cell statistics, written after its label chunks), ``outlines/b<k>.json``
(the GeoJSON features of block k's cells). Every record is written
atomically (temporary file + rename): it exists whole or not at all, and its existing means that the step
it records is finished. A re-run with the same `run.json` skips what is recorded; another one is refused.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt.atomic import atomic_write_bytes
from asfyolo_rt.errors import ConfigError

RECORDS = ".asfyolo"


def block_file(work: Path, k: int) -> Path:
    return work / "blocks" / f"b{k:06d}.npz"


def count_file(work: Path, k: int) -> Path:
    return work / "counts" / f"r{k:06d}.npz"


def paint_file(work: Path, k: int) -> Path:
    return work / "paint" / f"r{k:06d}.npz"


def outline_file(work: Path, k: int) -> Path:
    return work / "outlines" / f"b{k:06d}.json"


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Arrays to `path`, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as allow_pickle
    atomic_write_bytes(path, buf.getvalue())


def read_npz(path: Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in (keys or tuple(z.files))}


def done(paths: list[Path]) -> set[int]:
    """Indices k of the records among `paths` that exist."""
    return {k for k, p in enumerate(paths) if p.is_file()}


def check_run(work: Path, identity: dict[str, Any], where: str) -> dict[str, Any] | None:
    """The recorded run.json when it describes the same run (resume), None when there is none (fresh run).
    A run.json of another run (other model, option or input) is refused: its records must not be mixed."""
    path = work / "run.json"
    if not path.is_file():
        return None
    recorded = json.loads(path.read_text())
    old = recorded.get("identity", {})
    if old != identity:
        keys = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        raise ConfigError(f"{where} holds an unfinished or finished run with other {', '.join(keys)}; refusing "
                          "to mix them", hint="re-run with the same arguments to resume, or choose another --out")
    return dict(recorded)


def write_run(work: Path, identity: dict[str, Any], **extra: Any) -> None:
    atomic_write_bytes(work / "run.json", json.dumps({"identity": identity, **extra}, indent=1, default=str).encode())
