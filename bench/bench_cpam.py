"""Benchmark fused CPAM: torch reference, torch.compile(reference), Triton.

Sizes: (1, 256, 80, 80) (l model at 640) and (1, 64, 40, 40) (n model at 320), float32 and float16.
GB/s counts the unavoidable traffic, read T + read S + write V (3 maps); the Triton kernels move
5 maps (T and S are read twice) plus O(C * (H + W)) statistics.

On CPU only the reference is timed: Triton runs there only in its interpreter, whose timings mean
nothing, and torch.compile is left to the GPU runs.

    python bench/bench_cpam.py                 # GPU: all providers; CPU: reference only
    python bench/bench_cpam.py --iters 5 --warmup 1 --out bench/results/cpam.csv
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, append_rows, env_row, setup, timeit, try_compile
from asfyolo_rt.kernels.cpam import cpam, cpam_reference

SIZES = [(1, 256, 80, 80), (1, 64, 40, 40)]


def _inputs(shape: tuple[int, int, int, int], dtype: torch.dtype, device: torch.device):
    g = torch.Generator().manual_seed(0)
    c = shape[1]
    rc = max(1, c // 16)
    k = int(abs((math.log2(c) + 1) / 2))
    k = k if k % 2 else k + 1
    t = torch.randn(shape, generator=g).to(device, dtype)
    s = torch.randn(shape, generator=g).to(device, dtype)
    params = [torch.randn(k, generator=g), torch.randn(rc, c, generator=g) / c**0.5, torch.randn(rc, generator=g),
              torch.randn(c, rc, generator=g) / rc**0.5, torch.randn(c, rc, generator=g) / rc**0.5]
    return t, s, [p.to(device) for p in params]


def main(argv: list[str] | None = None) -> int:
    args, device = setup(__doc__.splitlines()[0], RESULTS / "cpam.csv", argv)
    env = env_row(device)
    rows = []
    for shape in SIZES:
        for dtype in (torch.float32, torch.float16):
            t, s, p = _inputs(shape, dtype, device)
            providers = {"torch": lambda t=t, s=s, p=p: cpam_reference(t, s, *p)}
            notes = {}
            if device.type == "cuda":
                compiled, why = try_compile(cpam_reference)
                if compiled is not None:
                    providers["torch.compile"] = lambda t=t, s=s, p=p, f=compiled: f(t, s, *p)
                else:
                    notes["torch.compile"] = why
                providers["triton"] = lambda t=t, s=s, p=p: cpam(t, s, *p, impl="triton")
            nbytes = 3 * t.numel() * t.element_size()
            base = None
            for name, fn in providers.items():
                try:
                    stats = timeit(fn, iters=args.iters, warmup=args.warmup, device=device)
                except Exception as exc:  # noqa: BLE001 (e.g. torch.compile failing at its first call)
                    print(f"{name} {shape} {dtype}: failed: {exc}"[:300], file=sys.stderr)
                    continue
                base = stats["median_ms"] if name == "torch" else base
                row = dict(env, bench="cpam", provider=name, case="x".join(map(str, shape)),
                           dtype=str(dtype).replace("torch.", ""), bytes=nbytes, iters=args.iters,
                           gbps=nbytes / (stats["median_ms"] * 1e-3) / 1e9,
                           speedup_vs_torch=(base / stats["median_ms"]) if base else float("nan"),
                           note=notes.get(name, ""), **stats)
                rows.append(row)
                print(f"{name:14s} {row['case']:14s} {row['dtype']:8s} median {stats['median_ms']:8.3f} ms "
                      f"[p20 {stats['p20_ms']:.3f}, p80 {stats['p80_ms']:.3f}]  {row['gbps']:7.2f} GB/s  "
                      f"x{row['speedup_vs_torch']:.2f}")
    append_rows(args.out, rows)
    print(f"appended {len(rows)} rows to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
