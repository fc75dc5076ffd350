"""The GPU session's first command: everything about asfyolo-rt that only a CUDA GPU shows, in one run.

A session lent a GPU runs, from the repository root and before anything else:

    bash bench/gpu_check.sh                 # 8 minutes at most; rows land in bench/results/gpu_*.csv

and commits the CSVs it wrote: one per section, rows appended, each row naming the GPU, its capability,
the driver and CUDA versions, the date, the git commit and the SHA-256 of the shipped weights. Images:
DSB2018 val from ../shared/datasets, else from shared/datasets inside the checkout (what travels to a
device machine: copy images/val and labels/val there, 12 MB), else synthetic nuclei. On a machine
without a CUDA GPU it prints one line and exits 2 before doing any work. `--cpu-smoke` runs every
section's code path on the CPU at tiny sizes (rows go to `--out`, never to bench/results; the Triton
kernels run in its interpreter): that is how the logic is tested here (tests/proof/test_gpu_check.py).

Sections (bench/_gpu_sections.py, _gpu_kernels.py, _gpu_ort.py), each time-boxed: when its box runs out it records a `skipped` row with
the reason instead of overrunning, and an error is recorded as a row with status=error and the message
(the other sections' rows are kept: every row is written as soon as it is measured).

  parity   PyTorch CUDA vs CPU on DSB2018 val images (synthetic nuclei without the data): raw-output max
           abs error per output (boxes, scores, coefficients, prototypes) and label-map instance F1 of
           `Segmenter("dsb2018", device="cuda")` against the CPU's, for FP32, FP16 and Triton CPAM.
  kernels  the Triton kernels (CPAM, mask assembly) natively on CUDA vs their PyTorch references: max abs
           error / label-map equality and median time (p20, p80), speed-up vs the reference.
  fps      forward and end-to-end FPS at 640 of the shipped n model and the l model (random weights), FP32/FP16,
           reference and Triton CPAM, batch 1 and 8 (asfyolo_rt.benchmark.bench_backend's timing).
  frame    a 2048 x 2048 frame (`asfyolo-rt data frame` of DSB2018 val, or a synthetic one) through
           `Segmenter("dsb2018", device="cuda")`: time per stage, cells, F1 against the frame's ground
           truth and against the CPU's label map, peak GPU memory.
  ort      ONNX Runtime's CUDA execution provider (if installed; else a row saying why it was skipped):
           raw outputs vs PyTorch, label F1 vs PyTorch CPU, median time per 640 input.

    python bench/gpu_check.py [--sections parity,kernels] [--budget-s 450] [--out DIR] [--data DIR]
    python bench/gpu_check.py --cpu-smoke --out /tmp/gpu-smoke
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import hashlib
import importlib
import importlib.util
import io
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
NO_GPU = "gpu_check: no CUDA GPU (torch.cuda.is_available() is False): run this on a machine lent a GPU"
COMMON = ["section", "status", "mode", "case", "note"]
ENV_COLUMNS = ["gpu", "capability", "gpu_memory_gib", "driver", "cuda", "cudnn", "torch", "triton", "onnxruntime",
               "python", "cpu", "git_sha", "weights_sha256", "run_id", "timestamp"]
# Seconds each section may take on the GPU (the whole run is held to --budget-s); the CPU smoke run gets SMOKE_BOX.
BOXES = {"parity": 70, "kernels": 80, "fps": 90, "frame": 110, "ort": 60}
SMOKE_BOX = 120
# DSB2018 beside the checkout (development machines), else inside it: ../shared does not travel to a device machine,
# a shared/ folder in the checkout does (its val split is 12 MB: mkdir -p shared/datasets/DSB2018/{images,labels} and
# copy images/val and labels/val there).
DATA = [REPO.parent / "shared" / "datasets" / "DSB2018", REPO / "shared" / "datasets" / "DSB2018"]
HARD_GRACE_S = 20  # past its box a section is interrupted (SIGALRM), recorded as an error row


class SectionTimeout(BaseException):
    """Raised by the alarm when a section overruns its box by HARD_GRACE_S (BaseException: never swallowed
    by the library's `except Exception`)."""


@dataclass
class Context:
    """What every section gets: the device, sizes mode, where data and results are, and its time box."""

    device: str  # "cuda" on the GPU, "cpu" in the smoke run
    smoke: bool
    out: Path
    data: Path | None  # DSB2018 (None: synthetic nuclei)
    deadline: float = 0.0  # time.monotonic() when the section's box ends
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gpu_check_")))

    def left(self) -> float:
        return self.deadline - time.monotonic()


# ------------------------------------------------------------------------------------------------ environment
def _quiet(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=REPO)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def git_commit() -> str:
    """Full commit SHA, '-dirty' when tracked files differ from it; 'unknown' outside a git checkout."""
    sha = _quiet(["git", "rev-parse", "HEAD"])
    if not sha:
        return "unknown (no git checkout)"
    return sha + ("-dirty" if _quiet(["git", "status", "--porcelain", "--untracked-files=no"]) else "")


def driver_version() -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:  # noqa: BLE001 (no NVML here: ask nvidia-smi)
        out = _quiet(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
        return out.splitlines()[0] if out else "unknown"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _version(module: str) -> str:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # noqa: BLE001 (absent or broken: the row says so)
        return "none"


def environment(device: str) -> dict[str, Any]:
    """The ENV_COLUMNS of every row."""
    import torch

    from asfyolo_rt.env import cpu_name
    from asfyolo_rt.weights_registry import shipped_weights

    env: dict[str, Any] = {k: "" for k in ENV_COLUMNS}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=torch.cuda.get_device_name(device), capability="sm_{}{}".format(*torch.cuda.get_device_capability(device)),
                   gpu_memory_gib=round(props.total_memory / 2**30, 1), driver=driver_version(), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    else:
        env.update(gpu="none (cpu smoke run)")
    try:
        weights = sha256(shipped_weights("dsb2018"))
    except Exception as exc:  # noqa: BLE001 (recorded, not fatal: the random-weight rows still mean something)
        weights = f"unavailable: {exc}"
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    env.update(torch=torch.__version__, triton=_version("triton"), onnxruntime=_version("onnxruntime"),
               python=platform.python_version(), cpu=f"{cpu_name()} ({os.cpu_count()} cores)", git_sha=git_commit(),
               weights_sha256=weights, run_id=now, timestamp=now)
    return env


# ------------------------------------------------------------------------------------------------ result files
class Rows:
    """Rows of one section, appended to <out>/gpu_<section>.csv one at a time (atomic rewrite of a small file)."""

    def __init__(self, out: Path, section: str, columns: list[str], env: dict[str, Any], mode: str) -> None:
        self.columns = COMMON + [c for c in columns if c not in COMMON] + ENV_COLUMNS
        self.env, self.section, self.mode = env, section, mode
        self.path = out / f"gpu_{section}.csv"
        if self.path.exists():
            with open(self.path, newline="") as f:
                if next(csv.reader(f), []) != self.columns:  # rows of an older layout stay where they are
                    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
                    self.path = out / f"gpu_{section}.{stamp}.csv"
        self.rows: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        from asfyolo_rt.atomic import atomic_write_bytes

        unknown = set(row) - set(self.columns)
        if unknown:  # a section's row must match its declared columns: a silent drop would lose a measurement
            raise ValueError(f"section {self.section}: row keys {sorted(unknown)} not in its columns")
        full = {**self.env, "section": self.section, "status": "ok", "mode": self.mode,
                "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **row}
        self.rows.append(full)
        old = self.path.read_text() if self.path.exists() else ""
        f = io.StringIO(newline="")
        f.write(old)
        w = csv.DictWriter(f, fieldnames=self.columns)
        if not old:
            w.writeheader()
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in full.items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, f.getvalue().encode())
        return full


# ------------------------------------------------------------------------------------------------ running
@dataclass
class Outcome:
    section: str
    status: str
    rows: int
    seconds: float
    summary: str
    path: Path | None


def _alarm(signum: int, frame: Any) -> None:
    raise SectionTimeout


def run_section(name: str, ctx: Context, env: dict[str, Any], box_s: float) -> Outcome:
    """Run one section's row generator inside its time box; its error becomes a row, never an exception."""
    import _gpu_sections as sections

    columns, fn = sections.SECTIONS[name]
    rows = Rows(ctx.out, name, columns, env, "cpu-smoke" if ctx.smoke else "gpu")
    t0 = time.monotonic()
    ctx.deadline = t0 + box_s
    status, summary = "ok", ""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, box_s + HARD_GRACE_S)
    try:
        gen: Iterator[dict[str, Any]] = fn(ctx)
        while True:
            try:
                row = next(gen)
            except StopIteration as stop:
                summary = stop.value or ""
                break
            rows.add(row)
            if row.get("status") == "skipped" and status == "ok":
                status = "partial"
    except SectionTimeout:
        status, summary = "error", f"overran its {box_s:.0f} s box by {HARD_GRACE_S} s and was stopped"
        rows.add({"status": "error", "case": "time box", "note": summary})
    except Exception as exc:  # noqa: BLE001 (one section's failure must not lose the others' rows)
        status = "error"
        summary = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
        tb = traceback.format_exc().strip().splitlines()
        where = next((ln.strip() for ln in reversed(tb) if ln.strip().startswith("File ")), "")
        rows.add({"status": "error", "case": "exception", "note": f"{summary} [{where}]"[:600]})
        print(f"gpu_check: section {name} failed:\n" + "\n".join(tb[-12:]), file=sys.stderr)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    errors = [r for r in rows.rows if r["status"] == "error"]
    if errors and status != "error":  # steps that failed inside a section that went on
        status = "error"
        summary = f"{len(errors)} step(s) failed, first {errors[0]['case']}: {errors[0]['note']}"[:250] + (
            f"; {summary}" if summary else "")
    elif rows.rows and all(r["status"] == "skipped" for r in rows.rows):
        status = "skipped"
    return Outcome(name, status, len(rows.rows), time.monotonic() - t0, summary, rows.path if rows.rows else None)


def print_table(outcomes: list[Outcome]) -> None:
    print("\n| section | status | rows | s | summary |\n| --- | --- | ---: | ---: | --- |")
    for o in outcomes:
        print(f"| {o.section} | {o.status} | {o.rows} | {o.seconds:.1f} | {o.summary} |")
    files = sorted({str(o.path) for o in outcomes if o.path})
    print("\nrows appended to: " + (", ".join(files) if files else "(none)"))


# ------------------------------------------------------------------------------------------------ entry point
def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", "--dry-run", dest="smoke", action="store_true",
                    help="run every section's code path on the CPU at tiny sizes (no timing claims; rows go to --out)")
    ap.add_argument("--out", type=Path, help="folder of the gpu_*.csv files (default bench/results; a new temporary "
                    "folder with --cpu-smoke, which never writes into bench/results)")
    ap.add_argument("--data", type=Path, help="DSB2018 dataset folder (its val split is used). Default: the first of "
                    f"{', '.join(str(p.relative_to(REPO.parent)) for p in DATA)} that exists, else synthetic nuclei")
    ap.add_argument("--sections", default=",".join(BOXES), help=f"comma list of {', '.join(BOXES)}")
    ap.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget of the whole run")
    return ap.parse_args(argv)


def preflight(smoke: bool) -> tuple[str | None, str]:
    """(None, device) when the run can start, else (the one line to print, "")."""
    if importlib.util.find_spec("torch") is None:
        return f"gpu_check: torch is not importable by {sys.executable}: run `make venv` (needs the network) or use a " \
               "python whose torch sees the GPU (bench/gpu_check.sh picks one)", ""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 (e.g. a CUDA build whose libraries are missing: say it in one line)
        return f"gpu_check: import torch failed with {sys.executable}: {type(exc).__name__}: {exc}".replace("\n", " "), ""
    if smoke:
        return None, "cpu"
    if not torch.cuda.is_available():
        extra = ""
        if torch.version.cuda is None:
            gpus = _quiet(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
            extra = f" [torch {torch.__version__} at {sys.executable} is a CPU-only build" + (
                f"; nvidia-smi sees {gpus.splitlines()[0]}: use a python with a CUDA build of torch]" if gpus else "]")
        return NO_GPU + extra, ""
    return None, "cuda"


def missing_modules() -> list[str]:
    need = ["numpy", "cv2", "yaml", "safetensors", "tifffile", "triton", "onnx", "onnxruntime", "onnxscript", "onnxsim",
            "typer"]
    return [m for m in need if importlib.util.find_spec(m) is None]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.smoke:  # kernels through Triton's interpreter on CPU tensors; must be set before Triton is imported
        os.environ.setdefault("TRITON_INTERPRET", "1")
    line, device = preflight(args.smoke)
    if line:
        print(line, file=sys.stderr)
        return 2 if line.startswith(NO_GPU) else 3
    t_start = time.monotonic()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _gpu_sections as sections

    sections.make_importable(REPO)
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [n for n in names if n not in BOXES]
    if unknown:
        print(f"gpu_check: --sections {','.join(unknown)}: expected some of {','.join(BOXES)}", file=sys.stderr)
        return 3
    out = args.out or (Path(tempfile.mkdtemp(prefix="gpu_check_smoke_")) if args.smoke else RESULTS)
    if args.smoke and out.resolve() == RESULTS.resolve():
        print("gpu_check: --cpu-smoke never writes into bench/results: give another --out", file=sys.stderr)
        return 3
    out.mkdir(parents=True, exist_ok=True)
    data = next((p for p in ([args.data] if args.data else DATA) if (p / "images" / "val").is_dir()), None)
    if args.data and data is None:
        print(f"gpu_check: --data {args.data}: no images/val folder in it", file=sys.stderr)
        return 3
    env = environment(device)
    missing = missing_modules()
    gpu = f"{env['gpu']} {env['capability']} driver {env['driver']} CUDA {env['cuda']}" if device != "cpu" else env["gpu"]
    print(f"gpu_check: {gpu} | torch {env['torch']} "
          f"triton {env['triton']} onnxruntime {env['onnxruntime']} | commit {env['git_sha']} | weights "
          f"{env['weights_sha256'][:12]} | data {data or 'synthetic nuclei'} | python {sys.executable}"
          + (f" | missing (no network to install them): {', '.join(missing)}" if missing else ""), file=sys.stderr)
    ctx = Context(device=device, smoke=args.smoke, out=out, data=data)
    outcomes: list[Outcome] = []

    def _term(signum: int, frame: Any) -> None:  # `timeout` in gpu_check.sh: report what was done
        raise SystemExit(124)

    signal.signal(signal.SIGTERM, _term)
    try:
        for i, name in enumerate(names):
            left = args.budget_s - (time.monotonic() - t_start)
            later = len(names) - i - 1
            box = min(SMOKE_BOX if args.smoke else BOXES[name], left - 10 * later)
            if box < 5:
                rows = Rows(out, name, sections.SECTIONS[name][0], env, "cpu-smoke" if args.smoke else "gpu")
                why = f"the run's {args.budget_s:.0f} s budget was spent before this section"
                rows.add({"status": "skipped", "case": "time box", "note": why})
                outcomes.append(Outcome(name, "skipped", 1, 0.0, why, rows.path))
                continue
            o = run_section(name, ctx, env, box)
            outcomes.append(o)
            print(f"gpu_check: {name}: {o.status} in {o.seconds:.1f} s ({o.rows} rows): {o.summary}", file=sys.stderr)
    finally:
        print_table(outcomes)
        shutil.rmtree(ctx.scratch, ignore_errors=True)
    return 1 if any(o.status == "error" for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
