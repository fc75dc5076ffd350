"""The kernels section of bench/gpu_check.py: Triton CPAM and mask assembly vs their PyTorch references.

Inputs come from bench/bench_cpam.py (`_inputs`, `SIZES`) and bench/bench_mask_assembly.py (`scene`,
`COUNTS`), timing from bench/_common.py (`timeit`: warm-up, CUDA events, median / p20 / p80). Per case:

  CPAM: max |V - V_ref| where V_ref is the FP32 reference on the same (upcast) inputs, for the reference in
        the case's dtype ("torch") and for Triton; median time and speed-up vs the reference.
  mask assembly: pixels where Triton's label map (or packed masks) differ from the reference's on the same
        inputs, and whether they are equal; median time and speed-up.

The smoke run (CPU) uses tiny sizes and runs Triton in its interpreter (gpu_check.py sets TRITON_INTERPRET=1
first); where Triton cannot run at all the row is `skipped` with the reason.
"""

from __future__ import annotations

import time
from typing import Any

from _gpu_common import Section

KERNEL_COLUMNS = ["kernel", "shape", "dtype", "provider", "max_abs", "mismatched", "equal", "median_ms", "p20_ms",
                  "p80_ms", "speedup_vs_torch", "iters"]


def _triton_note() -> str:
    """'' natively on CUDA; 'interpreter' when TRITON_INTERPRET made the kernels interpreted."""
    try:
        from asfyolo_rt.kernels.cpam import _triton

        return "interpreter" if _triton.INTERPRETED else ""
    except ImportError as exc:
        return f"unavailable: {exc}"


def _timed(fn: Any, ctx: Any) -> dict[str, float]:
    import torch
    from _common import timeit

    return timeit(fn, iters=1 if ctx.smoke else 50, warmup=0 if ctx.smoke else 10, device=torch.device(ctx.device))


def kernels(ctx: Any) -> Section:
    import torch
    from asfyolo_rt.kernels.cpam import cpam, cpam_reference
    from asfyolo_rt.kernels.mask_assembly import mask_assembly
    from bench_cpam import SIZES, _inputs
    from bench_mask_assembly import COUNTS, scene

    from asfyolo_rt.errors import KernelUnavailableError

    dev = torch.device(ctx.device)
    note = _triton_note()
    if note.startswith("unavailable"):
        yield {"status": "skipped", "case": "triton", "note": note}
        return f"skipped: Triton {note}"
    provider = "triton" + (f" ({note})" if note else "")
    dtypes = (torch.float32,) if ctx.smoke else (torch.float32, torch.float16)
    cpam_sizes = [(1, 16, 9, 7)] if ctx.smoke else SIZES
    worst_cpam, ma_mismatch, speedups = 0.0, 0, []
    for shape in cpam_sizes:
        for dtype in dtypes:
            dname = str(dtype).replace("torch.", "")
            case = f"cpam {'x'.join(map(str, shape))} {dname}"
            if ctx.left() < 5:
                yield {"status": "skipped", "case": case, "note": f"time box: {ctx.left():.0f} s left"}
                continue
            t, s, p = _inputs(shape, dtype, dev)
            spec = cpam_reference(t.float(), s.float(), *p)
            base = None
            for name, impl in (("torch", "torch"), (provider, "triton")):
                fn = (lambda impl=impl, t=t, s=s, p=p: cpam(t, s, *p, impl=impl))
                try:
                    err = (fn().float() - spec).abs().max().item()
                    stats = _timed(fn, ctx)
                except KernelUnavailableError as exc:
                    yield {"status": "skipped", "case": case, "kernel": "cpam", "provider": name, "note": str(exc)}
                    continue
                except Exception as exc:  # noqa: BLE001 (e.g. a kernel that does not compile: the rest still runs)
                    yield _failed(case, "cpam", name, exc)
                    continue
                base = stats["median_ms"] if impl == "torch" else base
                speed = base / stats["median_ms"] if base else float("nan")
                if impl == "triton":
                    worst_cpam = max(worst_cpam, err)
                    speedups.append(speed)
                yield {"case": case, "kernel": "cpam", "shape": "x".join(map(str, shape)), "dtype": dname,
                       "provider": name, "max_abs": err, "equal": err == 0.0, **stats, "speedup_vs_torch": speed,
                       "iters": 1 if ctx.smoke else 50, "note": "max_abs vs the fp32 reference on the same inputs"}
    counts = [5] if ctx.smoke else COUNTS
    for dtype in dtypes:
        dname = str(dtype).replace("torch.", "")
        for n in counts:
            protos, coeffs, boxes, batch, scores = scene(n, dev, dtype)
            for output in ("label_map", "masks"):
                case = f"mask_assembly N={n} {output} 640x640 {dname}"
                if ctx.left() < 5:
                    yield {"status": "skipped", "case": case, "note": f"time box: {ctx.left():.0f} s left"}
                    continue
                args = (protos, coeffs, boxes, batch, scores, (640, 640))
                ref = _flat(mask_assembly(*args, output=output, impl="torch"))
                base = None
                for name, impl in (("torch", "torch"), (provider, "triton")):
                    fn = (lambda impl=impl, o=output, a=args: mask_assembly(*a, output=o, impl=impl))
                    t0 = time.perf_counter()
                    try:
                        got = _flat(fn())
                        bad = int((got != ref).sum()) if got.shape == ref.shape else -1
                        stats = _timed(fn, ctx)
                    except KernelUnavailableError as exc:
                        yield {"status": "skipped", "case": case, "kernel": "mask_assembly", "provider": name,
                               "note": str(exc)}
                        continue
                    except Exception as exc:  # noqa: BLE001 (as above)
                        yield _failed(case, "mask_assembly", name, exc)
                        continue
                    base = stats["median_ms"] if impl == "torch" else base
                    speed = base / stats["median_ms"] if base else float("nan")
                    if impl == "triton":
                        ma_mismatch = max(ma_mismatch, bad) if bad >= 0 else bad
                        speedups.append(speed)
                    yield {"case": case, "kernel": "mask_assembly", "shape": f"N={n} {output} 640x640", "dtype": dname,
                           "provider": name, "mismatched": bad, "equal": bad == 0, **stats, "speedup_vs_torch": speed,
                           "iters": 1 if ctx.smoke else 50,
                           "note": f"vs the reference on the same inputs ({'pixels' if output == 'label_map' else 'mask bytes'}"
                                   f"; -1 = different sizes); first call {1e3 * (time.perf_counter() - t0):.0f} ms"}
    sp = f", Triton speed-up {min(speedups):.2f}x..{max(speedups):.2f}x" if speedups and not ctx.smoke else ""
    return f"CPAM max|err| {worst_cpam:.2g}; mask assembly worst mismatch {ma_mismatch} px{sp}"


def _failed(case: str, kernel: str, provider: str, exc: BaseException) -> dict[str, Any]:
    return {"status": "error", "case": case, "kernel": kernel, "provider": provider,
            "note": f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500]}


def _flat(out: Any) -> Any:
    """A label map as is; packed masks as their data bytes followed by windows and offsets."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    return torch.cat([out.data.to(torch.int64), out.windows.reshape(-1).to(torch.int64), out.offsets.to(torch.int64)])
