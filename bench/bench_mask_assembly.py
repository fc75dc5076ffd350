"""Benchmark mask assembly: torch reference (the CPU post-processing path), torch.compile, Triton.

Scene: one 640 x 640 image, prototypes (1, 32, 160, 160), N in {10, 100, 300, 1000} cell-sized
boxes drawn like DSB2018 at 640: box side = 26 px * exp(z * 1.14) for z < 0 and exp(z * 0.68) for
z >= 0, z ~ N(0, 1) (median 26, 5th percentile ~4, 95th ~80 px). Outputs: label map and packed masks.

GB/s counts: the prototypes read once, the coefficients and boxes, and the output written (label
map: B * H * W * 4 bytes; packed masks: one byte per box-window pixel). "Mpix/s" in the note is
box-window pixels per second.

On CPU only the reference is timed: Triton runs there only in its interpreter, whose timings mean
nothing, and torch.compile is left to the GPU runs (the reference has data-dependent shapes).

    python bench/bench_mask_assembly.py --iters 5 --warmup 1
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, append_rows, env_row, setup, timeit, try_compile
from asfyolo_rt.kernels.mask_assembly import box_windows, mask_assembly

COUNTS = [10, 100, 300, 1000]
SIZE = (640, 640)


def scene(n: int, device: torch.device, dtype: torch.dtype = torch.float32, seed: int = 0):
    """Prototypes, coefficients, DSB2018-like boxes, batch index and scores for one 640 x 640 image."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(1, 32, SIZE[0] // 4, SIZE[1] // 4, generator=g)
    coeffs = torch.randn(n, 32, generator=g) * 0.5
    z = torch.randn(n, 2, generator=g)
    side = 26.0 * torch.exp(torch.where(z < 0, z * 1.14, z * 0.68))
    centre = torch.rand(n, 2, generator=g) * torch.tensor([SIZE[1], SIZE[0]])
    boxes = torch.cat([centre - side / 2, centre + side / 2], dim=1)
    batch = torch.zeros(n, dtype=torch.long)
    scores = torch.rand(n, generator=g)
    return (protos.to(device, dtype), coeffs.to(device), boxes.to(device), batch.to(device), scores.to(device))


def main(argv: list[str] | None = None) -> int:
    args, device = setup(__doc__.splitlines()[0], RESULTS / "mask_assembly.csv", argv)
    env = env_row(device)
    rows = []
    dtypes = (torch.float32, torch.float16) if device.type == "cuda" else (torch.float32,)
    for dtype in dtypes:
        for n in COUNTS:
            protos, coeffs, boxes, batch, scores = scene(n, device, dtype)
            win = box_windows(boxes, SIZE).long()
            pixels = int((win[:, 2] * win[:, 3]).sum())
            for output in ("label_map", "masks"):
                out_bytes = SIZE[0] * SIZE[1] * 4 if output == "label_map" else pixels
                nbytes = protos.numel() * protos.element_size() + n * (32 + 4 + 2) * 4 + out_bytes
                args_ = (protos, coeffs, boxes, batch, scores, SIZE)
                providers = {"torch": lambda a=args_, o=output: mask_assembly(*a, output=o, impl="torch")}
                if device.type == "cuda":
                    compiled, _ = try_compile(lambda *a, o=output: mask_assembly(*a, output=o, impl="torch"))
                    if compiled is not None:
                        providers["torch.compile"] = lambda a=args_, f=compiled: f(*a)
                    providers["triton"] = lambda a=args_, o=output: mask_assembly(*a, output=o, impl="triton")
                base = None
                for name, fn in providers.items():
                    try:
                        stats = timeit(fn, iters=args.iters, warmup=args.warmup, device=device)
                    except Exception as exc:  # noqa: BLE001 (torch.compile may fail on data-dependent shapes)
                        print(f"{name} N={n} {output}: failed: {type(exc).__name__}: {exc}"[:300], file=sys.stderr)
                        continue
                    base = stats["median_ms"] if name == "torch" else base
                    row = dict(env, bench="mask_assembly", provider=name, case=f"N={n} {output} 640x640",
                               dtype=str(dtype).replace("torch.", ""), bytes=nbytes, iters=args.iters,
                               gbps=nbytes / (stats["median_ms"] * 1e-3) / 1e9,
                               speedup_vs_torch=(base / stats["median_ms"]) if base else float("nan"),
                               note=f"{pixels} window px, {pixels / (stats['median_ms'] * 1e3):.1f} Mpix/s", **stats)
                    rows.append(row)
                    print(f"{name:14s} {row['case']:28s} {row['dtype']:8s} median {stats['median_ms']:8.3f} ms "
                          f"[p20 {stats['p20_ms']:.3f}, p80 {stats['p80_ms']:.3f}]  {row['gbps']:7.2f} GB/s  "
                          f"x{row['speedup_vs_torch']:.2f}  ({row['note']})")
    append_rows(args.out, rows)
    print(f"appended {len(rows)} rows to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
