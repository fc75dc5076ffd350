"""Shared benchmark helpers: timing (median, p20, p80), the environment row, CSV appending.

Timings on CUDA use CUDA events around each call (after warm-up); on CPU, time.perf_counter.
Every CSV row carries the device name, library versions and the git SHA, so numbers from different
machines can live in one file and never be confused.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from asfyolo_rt.atomic import atomic_write_bytes

RESULTS = Path(__file__).resolve().parent / "results"

CSV_FIELDS = [
    "bench", "provider", "case", "dtype", "median_ms", "p20_ms", "p80_ms", "gbps", "speedup_vs_torch", "bytes",
    "iters", "device", "torch", "triton", "python", "threads", "git_sha", "timestamp", "note",
]


def timeit(fn: Callable[[], Any], *, iters: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Run fn `warmup` times, then time `iters` calls. Returns median/p20/p80 in milliseconds."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(times, n=5, method="inclusive") if len(times) > 1 else [times[0]] * 4
    return {"median_ms": statistics.median(times), "p20_ms": q[0], "p80_ms": q[3]}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        from asfyolo_rt.env import cpu_name

        return f"CPU {cpu_name()}"
    except Exception:  # noqa: BLE001 (env.py is optional here; fall back to platform)
        return f"CPU {platform.processor() or platform.machine()}"


def _git_sha() -> str:
    try:
        from asfyolo_rt.env import git_sha

        return git_sha() or "unknown"
    except Exception:  # noqa: BLE001 (no git, no checkout: the row still gets written)
        return "unknown"


def env_row(device: torch.device) -> dict[str, Any]:
    """The columns every CSV row carries: device, versions, git SHA, time."""
    try:
        import triton

        triton_version = triton.__version__
    except Exception:  # noqa: BLE001 (triton absent or broken on this platform)
        triton_version = "none"
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "git_sha": _git_sha(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows to a CSV (header written once); the file is replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else ""
    f = io.StringIO(newline="")
    f.write(old)
    writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
    if not old:
        writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_bytes(path, f.getvalue().encode())  # mode 0644, like every other output


def try_compile(fn: Callable[..., Any]) -> tuple[Callable[..., Any] | None, str]:
    """torch.compile(fn) or (None, reason) when compilation is unavailable here."""
    try:
        return torch.compile(fn, dynamic=False), ""
    except Exception as exc:  # noqa: BLE001 (e.g. no C++ compiler, unsupported platform)
        return None, f"torch.compile unavailable: {type(exc).__name__}: {exc}"[:200]


def setup(description: str, default_out: Path, argv: list[str] | None = None) -> tuple[Any, torch.device]:
    """The options every kernel benchmark takes (--iters, --warmup, --threads, --out) and its device.

    On CPU only the torch reference is timed: Triton would run in its interpreter, whose timings mean nothing.
    """
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--out", type=Path, default=default_out)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        print("CPU: only the torch reference is timed (Triton would run in its interpreter, whose timings "
              "mean nothing).", file=sys.stderr)
    return args, device
