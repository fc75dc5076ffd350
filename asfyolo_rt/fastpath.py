"""The fastest CPU path for a checkpoint, made once per weights and machine and cached (`predict`'s default).

A checkpoint run by PyTorch on a CPU is the slowest way this project has to segment a frame. When
`asfyolo-rt predict` is given a checkpoint (or nothing: the shipped model) on the CPU without
``--backend``, it runs instead the fastest exported path this machine offers, made the first time:

1. the weights are exported to an FP32 ONNX file with dynamic H and W (traced at `FAST_TILE`), so that each
   frame runs in its own tile shape (`asfyolo_rt.runtime.tiles.fit_tile`: the fewest network pixels;
   OpenVINO compiles each shape once and caches it on disk);
2. each candidate runtime this machine has is checked against PyTorch on a synthetic nuclei frame
   (label-map instance F1 >= `PARITY_GATE`, equal cell counts within 2 %) and timed on the same frame
   through the whole pipeline (tiling, pipelined inference, stitching): OpenVINO INT8 where the CPU has INT8
   dot products (VNNI/AMX), NNCF is installed and the model finds the check frame's cells (see below),
   OpenVINO BF16 where the CPU has native BF16 (``avx512_bf16``/``amx_bf16``), OpenVINO FP32, ONNX Runtime
   FP32;
3. the fastest that passes is recorded in ``choice.json`` beside the ONNX file.

INT8 needs calibration images and a checkpoint comes without any: the INT8 candidate is calibrated
(`asfyolo_rt.calib.openvino_int8`, NNCF) on `CALIB_TILES` synthetic fluorescent-nuclei tiles at the model's
scale, made by the generator of the check frame, so it is offered only to a model that finds those nuclei
(PyTorch finds >= `INT8_MIN_CELLS` cells on the check frame: a nuclear-stain model; a brightfield one is
not calibrated on images unlike its own). A bundle's ``model.int8-openvino.xml`` (``asfyolo-rt export
--int8 --data ...``) is calibrated on real images.

The cache key is the weights' SHA-256, this asfyolo-rt version, the CPU's matrix ISA and the OpenVINO, ONNX
Runtime and NNCF versions: other weights, another machine or an upgrade make a new entry; a second run reads
it in milliseconds. Folder: ``$ASFYOLO_RT_CACHE/fast``, else ``$XDG_CACHE_HOME`` (or ``~/.cache``)
``/asfyolo-rt/fast``. ``ASFYOLO_RT_FAST=0`` (or ``--backend torch``) runs the checkpoint itself.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt.atomic import atomic_target, atomic_write_bytes, file_sha256
from asfyolo_rt.errors import AsfYoloError, ConfigError

FAST_ENV = "ASFYOLO_RT_FAST"
FAST_TILE = 640
PARITY_GATE = 0.98  # label-map instance F1 vs PyTorch on the check frame
CALIB_TILES = 64  # synthetic calibration tiles of the INT8 candidate (NNCF: ~20 s on 2 cores)
CHECK_SIDE, CHECK_CELLS = 960, 360  # the check frame: 4 tiles at the shipped model's scale, as many as 2 requests
INT8_MIN_CELLS = CHECK_CELLS // 2  # cells PyTorch must find on the check frame for the INT8 candidate
CHOICE_FORMAT = 2  # 2: the INT8 candidate, `FastChoice.onnx`
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")


@dataclass(frozen=True)
class Candidate:
    runtime: str  # registry runtime
    precision: str

    @property
    def label(self) -> str:
        return f"{'OpenVINO' if self.runtime == 'openvino' else 'ONNX Runtime'} {self.precision.upper()}"


@dataclass
class FastChoice:
    """What `fast_choice` made and measured (``choice.json``)."""

    model: str  # the file the chosen runtime runs: the dynamic ONNX, or the INT8 IR made from it
    runtime: str
    precision: str
    tile: int
    key: str
    weights: str
    weights_sha256: str
    isa: str
    measured: list[dict[str, Any]] = field(default_factory=list)  # every candidate: ms per frame, F1, counts
    made_s: float = 0.0
    onnx: str = ""  # the dynamic-shape FP32 ONNX export (every candidate but INT8 runs it)
    format: int = CHOICE_FORMAT

    @property
    def label(self) -> str:
        return Candidate(self.runtime, self.precision).label

    def describe(self) -> str:
        """One line for predict: which path, how much faster than the others, where it is cached."""
        rows = {(m["runtime"], m["precision"]): m for m in self.measured}
        me = rows.get((self.runtime, self.precision), {})
        others = [f"{Candidate(m['runtime'], m['precision']).label} {m['ms']:.0f} ms"
                  for m in self.measured if m is not me and m.get("ms") is not None]
        vs = f"; {', '.join(others)}" if others else ""
        return (f"fast CPU path: {self.label} of {Path(self.weights).name} ({self.isa}; check frame "
                f"{me.get('ms', float('nan')):.0f} ms{vs}; F1 vs PyTorch {me.get('f1', float('nan')):.3f}), cached in "
                f"{Path(self.model).parent} -- --backend torch runs the checkpoint itself")


def enabled() -> bool:
    return os.environ.get(FAST_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def applies(path: Path, *, backend: str | None, device: str, precision: str | None, scale: str) -> bool:
    """Whether predict takes the fast path: a checkpoint, on the CPU, no runtime or precision asked for (None),
    native-scale tiles (a static tile), and not switched off by ``ASFYOLO_RT_FAST=0``."""
    return (enabled() and backend is None and device == "cpu" and precision is None and scale == "native"
            and path.suffix.lower() in CHECKPOINT_SUFFIXES)


def cache_root() -> Path:
    from asfyolo_rt.env import user_cache_dir

    return user_cache_dir("fast")


def candidates() -> list[Candidate]:
    """The runtimes this machine has, fastest first where known (every one is measured anyway)."""
    from asfyolo_rt.calib.openvino_int8 import openvino_available
    from asfyolo_rt.infer.openvino import has_bf16, has_int8_dot

    out: list[Candidate] = []
    try:
        import openvino  # noqa: F401

        if has_int8_dot() and openvino_available():
            out.append(Candidate("openvino", "int8"))
        if has_bf16():
            out.append(Candidate("openvino", "bf16"))
        out.append(Candidate("openvino", "fp32"))
    except ImportError:
        pass
    try:
        import onnxruntime  # noqa: F401

        out.append(Candidate("onnxruntime", "fp32"))
    except ImportError:
        pass
    return out


def cache_key(weights: Path, sha: str) -> str:
    from asfyolo_rt import __version__
    from asfyolo_rt.infer.openvino import cpu_isa

    parts = [sha[:16], f"v{__version__}", cpu_isa(), f"ov{(_dist_version('openvino') or '-').split('-')[0]}",
             f"ort{_dist_version('onnxruntime') or '-'}", f"nncf{_dist_version('nncf') or '-'}", "dyn"]
    return "-".join(p.replace("/", "_").replace(" ", "") for p in parts)


@cache
def _dist_version(name: str) -> str | None:
    """An installed distribution's version from its metadata (importing OpenVINO or ONNX Runtime to ask costs
    more than a cached prediction's start-up): the `NAME-VERSION.dist-info` folder beside the package where
    there is one (1 ms), else importlib.metadata (~28 ms here: it reads every distribution on the path)."""
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec

    spec = find_spec(name)
    if spec is None:
        return None
    for where in spec.submodule_search_locations or ():
        found = sorted(Path(where).parent.glob(f"{name}-*.dist-info"))
        if len(found) == 1:
            return found[0].name[len(name) + 1 : -len(".dist-info")]
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def check_frame() -> np.ndarray:
    """The parity and timing frame: 960 x 960 uint16 synthetic nuclei. Several tiles, so that a runtime is
    timed as a frame uses it (a single tile leaves OpenVINO's second infer request, and core, idle and would
    favour a runtime that splits one call over the cores)."""
    from asfyolo_rt.data.synth import make_nuclei

    img, _ = make_nuclei(7, shape=(CHECK_SIDE, CHECK_SIDE), n_cells=(CHECK_CELLS, CHECK_CELLS), bit_depth=16)
    return np.asarray(img)


def fast_choice(weights: str | Path, *, log: Callable[[str], None] | None = None) -> FastChoice:
    """The cached fast path of `weights` (a checkpoint), made now if this machine has none (module docstring).

    ConfigError when no candidate passes the parity gate (predict then says to use --backend torch)."""
    from asfyolo_rt.weights_registry import resolve_weights

    path = resolve_weights(str(weights), option="--weights")
    sha = _sha256(path)
    folder = cache_root() / cache_key(path, sha)
    choice_file = folder / "choice.json"
    got = _read_choice(choice_file)
    if got is not None:
        return got
    from asfyolo_rt.export.bundle_files import bundle_lock

    folder.mkdir(parents=True, exist_ok=True)
    with bundle_lock(folder, "predict", "make the fast path in"):
        got = _read_choice(choice_file)  # made by another process while this one waited
        if got is not None:
            return got
        choice = _make(path, sha, folder, log or (lambda s: None))
        atomic_write_bytes(choice_file, (json.dumps(asdict(choice), indent=2) + "\n").encode())
        return choice


def cached(weights: str | Path) -> FastChoice | None:
    """The fast path of `weights` where this machine has made it already, else None (nothing is made)."""
    from asfyolo_rt.weights_registry import resolve_weights

    path = resolve_weights(str(weights), option="--weights")
    return _read_choice(cache_root() / cache_key(path, _sha256(path)) / "choice.json")


def _sha256(path: Path) -> str:
    """The weights' SHA-256, computed once per process and file version (predict asks `cached`, then `fast_choice`)."""
    st = path.stat()
    return _sha256_of(str(path.resolve()), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=16)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    return file_sha256(Path(path))


def tile_model(weights: str | Path, tile: int) -> Path:
    """The weights exported at another static tile side (bench's tile-size rows), cached beside the fast path's
    model as ``model.t<tile>.onnx``."""
    from dataclasses import replace

    from asfyolo_rt.export.onnx_export import export_onnx, load_weights
    from asfyolo_rt.weights_registry import resolve_weights

    path = resolve_weights(str(weights), option="--weights")
    folder = Path(fast_choice(path).model).parent
    out = folder / f"model.t{tile}.onnx"
    if not out.is_file():
        model, cfg = load_weights(path)
        with atomic_target(out) as tmp:
            export_onnx(model, tmp, replace(cfg, img_size=tile), img_size=tile,
                        extra_metadata={"weights_sha256": file_sha256(path)})
    return out


def _read_choice(path: Path) -> FastChoice | None:
    """A complete, readable choice whose model file exists; None otherwise (remade)."""
    try:
        d = json.loads(path.read_text())
        choice = FastChoice(**d)
    except (OSError, ValueError, TypeError):
        return None
    model = Path(choice.model)
    needed = [model, Path(choice.onnx)] + ([model.with_suffix(".bin")] if model.suffix == ".xml" else [])
    if choice.format != CHOICE_FORMAT or not all(p.is_file() for p in needed):
        return None
    return choice


def _make(path: Path, sha: str, folder: Path, log: Callable[[str], None]) -> FastChoice:
    from dataclasses import replace

    from asfyolo_rt.export.onnx_export import export_onnx, load_weights
    from asfyolo_rt.infer.openvino import cpu_isa, error_line

    t0 = time.perf_counter()
    log(f"making the fast CPU path of {path.name} once for this machine ({cpu_isa()}): ONNX export, "
        "parity and speed of each runtime (one to two minutes)")
    model, cfg = load_weights(path)
    onnx_path = folder / "model.onnx"
    with atomic_target(onnx_path) as tmp:
        export_onnx(model, tmp, replace(cfg, img_size=FAST_TILE), img_size=FAST_TILE, dynamic_size=True,
                    extra_metadata={"weights_sha256": sha})
    frame = check_frame()
    ref = _segment(str(path), None, "fp32", frame)
    measured: list[dict[str, Any]] = []
    files: dict[Candidate, Path] = {}
    for cand in candidates():
        row: dict[str, Any] = {"runtime": cand.runtime, "precision": cand.precision}
        try:
            files[cand] = _int8_model(onnx_path, cfg, ref) if cand.precision == "int8" else onnx_path
            labels, ms = _timed(str(files[cand]), cand, frame)
        except Exception as exc:  # this candidate is not possible here (its reason recorded); the others are
            if not isinstance(exc, AsfYoloError) and cand.precision != "int8":
                raise  # a bug; the INT8 candidate's NNCF may fail in ways of its own, and is optional
            row["error"] = str(exc) if isinstance(exc, AsfYoloError) else f"{type(exc).__name__}: {error_line(exc)}"
            measured.append(row)
            log(f"  {cand.label}: not made ({row['error']})")
            continue
        f1, n, n_ref = _f1(ref, labels)
        row.update(ms=round(ms, 1), f1=round(f1, 4), cells=n, cells_torch=n_ref,
                   passed=bool(f1 >= PARITY_GATE and abs(n - n_ref) <= max(1, 0.02 * n_ref)))
        measured.append(row)
        log(f"  {cand.label}: {ms:.0f} ms per check frame, F1 vs PyTorch {f1:.3f}"
            + ("" if row["passed"] else " (fails the parity gate)"))
    ok = [m for m in measured if m.get("passed")]
    if not ok:
        raise ConfigError(f"no exported runtime of {path.name} matches PyTorch on this machine "
                          f"({'; '.join(_why(m) for m in measured) or 'no OpenVINO or ONNX Runtime installed'})",
                          hint="run it with --backend torch")
    best = min(ok, key=lambda m: m["ms"])
    model_file = files[Candidate(best["runtime"], best["precision"])]
    for other in set(files.values()) - {model_file, onnx_path}:  # an INT8 IR not chosen: not kept
        other.unlink(missing_ok=True)
        other.with_suffix(".bin").unlink(missing_ok=True)
    return FastChoice(model=str(model_file), runtime=best["runtime"], precision=best["precision"], tile=FAST_TILE,
                      key=folder.name, weights=str(path), weights_sha256=sha, isa=cpu_isa(), measured=measured,
                      made_s=round(time.perf_counter() - t0, 1), onnx=str(onnx_path))


def _int8_model(onnx_path: Path, cfg: Any, ref: np.ndarray) -> Path:
    """The INT8 candidate: ``model.int8-openvino.xml`` beside `onnx_path`, calibrated on synthetic nuclei tiles
    at the model's scale (module docstring); ConfigError (the candidate is skipped) for a model that does not
    find the check frame's nuclei."""
    from asfyolo_rt.calib.dataset import build_calibration_set
    from asfyolo_rt.calib.openvino_int8 import quantize_openvino

    found = len(np.unique(ref)) - 1
    if found < INT8_MIN_CELLS:
        raise ConfigError(f"not calibrated: PyTorch finds {found} of the check frame's synthetic nuclei "
                          f"(< {INT8_MIN_CELLS}), so they are not this model's kind of image")
    target = onnx_path.with_name("model.int8-openvino.xml")
    quiet = logging.getLogger("asfyolo_rt.calib.dataset")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its "no calibration data given ... pass --data" is export's advice, not ours
    try:
        calib = build_calibration_set(None, (FAST_TILE, FAST_TILE), n=CALIB_TILES,
                                      tile_scale=float(cfg.model_scale or 1.0))
    finally:
        quiet.setLevel(level)
    quantize_openvino(onnx_path, target, calib)
    return target


def _why(m: dict[str, Any]) -> str:
    label = Candidate(m["runtime"], m["precision"]).label
    return f"{label}: {m['error']}" if "error" in m else f"{label}: F1 {m.get('f1')}"


def _segment(model: str, runtime: str | None, precision: str, frame: np.ndarray) -> np.ndarray:
    from asfyolo_rt.runtime.segmenter import Segmenter

    return Segmenter(model, backend=runtime, precision=precision).segment(frame).labels


def _timed(model: str, cand: Candidate, frame: np.ndarray, repeats: int = 3) -> tuple[np.ndarray, float]:
    """The candidate's label map of `frame` and its best of `repeats` wall times (ms), after a warm-up."""
    from asfyolo_rt.runtime.segmenter import Segmenter

    seg = Segmenter(model, backend=cand.runtime, precision=cand.precision)
    labels = seg.segment(frame).labels
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        seg.segment(frame)
        best = min(best, time.perf_counter() - t)
    return labels, 1e3 * best


def _f1(ref: np.ndarray, got: np.ndarray, threshold: float = 0.5) -> tuple[float, int, int]:
    """Label-map instance F1 (pairs with mask IoU > threshold) and the two cell counts."""
    from asfyolo_rt.eval.dsb import instance_f1

    r = instance_f1(ref, got, threshold)
    return r.f1, int(r.tp + r.fp), int(r.tp + r.fn)
