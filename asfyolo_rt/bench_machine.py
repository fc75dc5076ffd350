"""What the machine can do and how busy it was: practical GEMM peaks, load, CPU time, the `noisy` verdict.

- `fp32_peak_gflops()`: a large FP32 GEMM (torch.mm, the threads bench runs with), best of a few runs:
  the practical FP32 peak that achieved model GFLOP/s are compared against.
- `int8_peak_gops()`: a large uint8 x int8 GEMM through ONNX Runtime's MatMulInteger (the kernels its
  INT8 CPU models run on: VNNI where the CPU has it, AVX2 `pmaddubsw` otherwise).
- `LoadProbe`: load average and the CPU time of *other* processes (from /proc/stat minus this
  process's own CPU time) over a measured interval, with this process's CPU time beside wall time.
- `busy_before()`: the cores other processes keep busy over one second, measured just before a command
  times anything. (The 1-minute load average cannot tell other work from this benchmark's own: after
  `bash bench/run_cpu.sh` has exported and calibrated for a minute on both cores, the next command starts
  at load ~1.5 on a machine nothing else uses, so it is recorded, not judged.)
- `noise_verdict(...)`: a row is `noisy` when other processes used more than half the cores in the second
  before the command or during the row, or its repeats disagree by more than 20 %
  ((p90 - p10) / p50 of the per-iteration forward times for per-input rows, whose end-to-end times follow
  the content of the images cycled through; of the frame times for whole frames).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NOISY_SPREAD = 0.20  # (p90 - p10) / p50 above this: repeats disagree
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_average() -> float:
    """1-minute load average (0.0 where the OS has none)."""
    try:
        return float(os.getloadavg()[0])
    except OSError:
        return 0.0


def busy_seconds_of(stat: str, clk_tck: int = _CLK_TCK) -> float:
    """CPU seconds all processes spent busy since boot, from the text of /proc/stat (its first, "cpu" line):
    everything but idle and iowait, and without steal/guest time (not this VM's work)."""
    first = stat.split("\n", 1)[0].split()
    vals = [int(v) for v in first[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    steal_guest = sum(vals[7:]) if len(vals) > 7 else 0  # steal, guest, guest_nice
    return (sum(vals) - idle - steal_guest) / clk_tck


def _busy_seconds() -> float | None:
    """CPU seconds all processes spent busy since boot (/proc/stat), None off Linux."""
    try:
        return busy_seconds_of(Path("/proc/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class LoadSample:
    wall_s: float
    cpu_s: float  # this process (user + system)
    others_cores: float | None  # mean cores used by other processes during the interval
    load_during: float  # 1-minute load average at the end of the interval


class LoadProbe:
    """Measure one interval: `with LoadProbe() as p: ...; p.sample`.

    The clocks are injectable (tests give recorded values): `wall` and `own_cpu` in seconds (this process's
    user + system time), `busy` the machine's busy CPU seconds (None where unknown), `load` the load average.
    """

    def __init__(self, *, wall: Callable[[], float] = time.perf_counter,
                 own_cpu: Callable[[], float] = time.process_time,
                 busy: Callable[[], float | None] = _busy_seconds, load: Callable[[], float] = load_average) -> None:
        self._wall, self._own_cpu, self._busy, self._load = wall, own_cpu, busy, load

    def __enter__(self) -> LoadProbe:
        self._t0, self._c0, self._b0 = self._wall(), self._own_cpu(), self._busy()
        return self

    def __exit__(self, *exc: object) -> None:
        wall, cpu, busy = self._wall() - self._t0, self._own_cpu() - self._c0, self._busy()
        self.sample = LoadSample(wall, cpu, cores_used_by_others(busy, self._b0, cpu, wall), self._load())


def cores_used_by_others(busy_end: float | None, busy_start: float | None, own_cpu_s: float, wall_s: float) -> float | None:
    """Mean cores used by other processes over an interval: the machine's busy CPU seconds minus this
    process's own, per wall second (never negative: the counters tick at different rates); None if unknown."""
    if busy_end is None or busy_start is None or wall_s <= 0:
        return None
    return max(0.0, (busy_end - busy_start - own_cpu_s) / wall_s)


def busy_before(window_s: float = 1.0, *, sleep: Callable[[float], object] = time.sleep,
                probe: LoadProbe | None = None) -> float | None:
    """Mean cores used by other processes over `window_s` seconds of this process sleeping (None off Linux).

    Only the window counts: whatever this process did before (which the load average remembers) does not."""
    with (probe or LoadProbe()) as p:
        sleep(window_s)
    return p.sample.others_cores


def spread(times: Sequence[float]) -> float:
    """(p90 - p10) / p50 of per-iteration times: 0 for identical repeats."""
    a = np.asarray(times, dtype=np.float64)
    if a.size < 2:
        return 0.0
    p10, p50, p90 = np.percentile(a, [10, 50, 90])
    return float((p90 - p10) / p50) if p50 > 0 else 0.0


def noise_verdict(others_before: float | None, others_cores: float | None, n_cores: int,
                  times: Sequence[float]) -> tuple[bool, str]:
    """(noisy, reason): see the module docstring; reason is '' for a quiet row. others_before: `busy_before()`."""
    half = n_cores / 2
    reasons = []
    if others_before is not None and others_before > half:
        reasons.append(f"other processes used {others_before:.2f} cores just before the run > {half:g} "
                       f"(half of {n_cores} cores)")
    if others_cores is not None and others_cores > half:
        reasons.append(f"other processes used {others_cores:.2f} cores during the run > {half:g}")
    s = spread(times)
    if s > NOISY_SPREAD:
        reasons.append(f"repeats disagree by {100 * s:.0f} % ((p90-p10)/p50 > {100 * NOISY_SPREAD:.0f} %)")
    return bool(reasons), "; ".join(reasons)


@dataclass(frozen=True)
class Peak:
    fp32_gflops: float
    int8_gops: float | None
    isa: str
    n: int
    bf16_gflops: float | None = None  # CPUs with native BF16 (avx512_bf16 / amx_bf16) only


def fp32_peak_gflops(n: int = 1024, repeats: int = 5, dtype: str = "float32") -> float:
    """Best-of-`repeats` GFLOP/s of an n x n x n GEMM in torch (its current thread count); dtype "bfloat16"
    for the BF16 peak (oneDNN's AVX512-BF16/AMX kernels)."""
    import torch

    dt = getattr(torch, dtype)
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    c = torch.empty(n, n, dtype=dt)
    torch.mm(a, b, out=c)  # warm-up: thread pool, caches
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def int8_peak_gops(n: int = 1024, repeats: int = 5, threads: int | None = None) -> float | None:
    """Best-of-`repeats` GOP/s of an n x n x n uint8 x int8 GEMM (ONNX Runtime MatMulInteger); None on failure."""
    try:
        from asfyolo_rt.privacy import disable_telemetry

        disable_telemetry()
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    g = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "gemm_u8s8",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.INT32, [n, n])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    try:
        sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception:
        return None
    rng = np.random.default_rng(0)
    feed = {"a": rng.integers(0, 255, (n, n), dtype=np.uint8), "b": rng.integers(-127, 127, (n, n), dtype=np.int8)}
    sess.run(None, feed)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, feed)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def measure_peak(threads: int | None = None, n: int = 1024) -> Peak:
    from asfyolo_rt.infer.openvino import cpu_isa, has_bf16

    bf16 = round(fp32_peak_gflops(n, dtype="bfloat16"), 1) if has_bf16() else None
    return Peak(round(fp32_peak_gflops(n), 1), _round(int8_peak_gops(n, threads=threads)), cpu_isa(), n, bf16)


def best_peak(a: Peak, b: Peak) -> Peak:
    """Per precision the higher of two measurements of the same machine (a load that came and went during one
    of them lowers it; nothing raises it above what the machine does)."""
    def hi(x: float | None, y: float | None) -> float | None:
        known = [v for v in (x, y) if v is not None]
        return max(known) if known else None

    return Peak(max(a.fp32_gflops, b.fp32_gflops), hi(a.int8_gops, b.int8_gops), a.isa, a.n,
                hi(a.bf16_gflops, b.bf16_gflops))


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)
