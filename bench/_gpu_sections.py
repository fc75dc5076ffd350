"""The sections of bench/gpu_check.py: parity, fps and frame here; kernels in _gpu_kernels.py, ort in _gpu_ort.py,
shared helpers in _gpu_common.py.

Each section is a generator of rows (dicts of its declared columns; `status` "ok" unless said) that
returns a one-line summary. It checks `ctx.left()` before each step and yields a `skipped` row with the
reason when the step would not fit its time box, and a step that fails yields an `error` row while the
others go on. `ctx.smoke`: the same code on the CPU at tiny sizes.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import sys
import time
from typing import Any

import numpy as np
from _gpu_common import Section, failed, images, make_importable, no_time, peak_mb, reset_peak, split_raw
from _gpu_kernels import KERNEL_COLUMNS, kernels
from _gpu_ort import ORT_COLUMNS, ort

__all__ = ["SECTIONS", "make_importable"]


# ------------------------------------------------------------------------------------------------ parity
PARITY_COLUMNS = ["candidate", "image", "image_hw", "raw_input", "boxes_max_abs", "scores_max_abs", "coeffs_max_abs",
                  "protos_max_abs", "raw_within_tolerance", "cells_cpu", "cells_candidate", "label_f1",
                  "labels_differing_px", "seconds"]


def parity(ctx: Any) -> Section:
    """PyTorch on the candidate device vs PyTorch FP32 on the CPU, per image and over all images."""
    import torch

    from asfyolo_rt import Segmenter
    from asfyolo_rt.data.letterbox import preprocess
    from asfyolo_rt.eval.dsb import instance_f1
    from asfyolo_rt.eval.parity import raw_errors

    imgs, source = images(ctx, 2 if ctx.smoke else 16, max_side=256 if ctx.smoke else None)
    size = 64 if ctx.smoke else 640
    candidates = ([("cpu fp32 (smoke: cpu vs cpu)", {"device": "cpu"})] if ctx.smoke else
                  [("cuda fp32", {"device": ctx.device}), ("cuda fp16", {"device": ctx.device, "precision": "fp16"}),
                   ("cuda fp32 triton-cpam", {"device": ctx.device, "kernel_impl": "auto"})])
    ref = Segmenter("dsb2018", device="cpu")
    refs: dict[str, Any] = {}
    summary = []
    for label, kw in candidates:
        try:
            cand = Segmenter("dsb2018", **kw)
        except Exception as exc:  # noqa: BLE001 (recorded; the other candidates still run)
            yield failed(label, exc)
            continue
        worst: dict[str, float] = {}
        f1s, within, done = [], True, 0
        for name, img in imgs:
            skip = no_time(ctx, 8.0 if ctx.smoke else 3.0, f"{label} {name}")
            if skip:
                yield skip
                break
            t0 = time.perf_counter()
            if name not in refs:
                x, _ = preprocess([img], (size, size), interpolation="linear")
                refs[name] = (x, split_raw(*ref.backend(x)), ref.segment(img))
            x, r_raw, r_cells = refs[name]
            try:
                raw = raw_errors(r_raw, split_raw(*cand.backend(x)), cand.backend.precision)
                cells = cand.segment(img)
            except Exception as exc:  # noqa: BLE001 (e.g. a Triton kernel that does not compile here)
                yield failed(f"{label} {name}", exc)
                break
            f1 = instance_f1(r_cells.labels, cells.labels).f1
            f1s.append(f1)
            within = within and all(v["within_tolerance"] for v in raw.values())
            for k, v in raw.items():
                worst[k] = max(worst.get(k, 0.0), v["max_abs"])
            done += 1
            yield {"case": "image", "candidate": label, "image": name, "image_hw": "x".join(map(str, img.shape[:2])),
                   "raw_input": f"{size}x{size}", **{f"{k}_max_abs": v["max_abs"] for k, v in raw.items()},
                   "raw_within_tolerance": all(v["within_tolerance"] for v in raw.values()),
                   "cells_cpu": len(r_cells), "cells_candidate": len(cells), "label_f1": round(f1, 6),
                   "labels_differing_px": int((r_cells.labels != cells.labels).sum()),
                   "seconds": round(time.perf_counter() - t0, 2)}
        if done:
            yield {"case": "all", "candidate": label, "image": f"{done} {source} images", "raw_input": f"{size}x{size}",
                   **{f"{k}_max_abs": v for k, v in worst.items()}, "raw_within_tolerance": within,
                   "label_f1": round(min(f1s), 6), "note": f"label_f1 = min over images, mean {statistics.mean(f1s):.4f}; "
                   "mask assembly: Triton on CUDA, the reference on CPU (PredictConfig.kernel_impl auto)"}
            summary.append(f"{label}: raw max|err| {max(worst.values()):.2g}, label F1 min {min(f1s):.4f} ({done} images)")
        del cand
        if ctx.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return "; ".join(summary) or "no image compared"


# ------------------------------------------------------------------------------------------------ fps
FPS_COLUMNS = ["variant", "weights", "precision", "cpam_impl", "img_size", "batch", "iters", "forward_fps", "forward_ms",
               "forward_p20_ms", "forward_p80_ms", "infer_fps", "fps",
               "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "pre_ms", "infer_ms", "post_ms", "cells_per_image",
               "peak_device_mb"]


def fps(ctx: Any) -> Section:
    """The shipped n model and a random-weight l model through asfyolo_rt.benchmark.bench_backend: forward and
    end-to-end FPS."""
    import torch

    from asfyolo_rt.benchmark import BenchConfig, bench_backend
    from asfyolo_rt.env import environment
    from asfyolo_rt.infer.backends import TorchBackend
    from asfyolo_rt.model.asfyolo import build_model
    from asfyolo_rt.model.weights import load_checkpoint
    from asfyolo_rt.weights_registry import shipped_weights

    imgs = [im for _, im in images(ctx, 2 if ctx.smoke else 16, max_side=256 if ctx.smoke else None)[0]]
    size = 64 if ctx.smoke else 640
    cfg = BenchConfig(img_size=size, batches=(1,) if ctx.smoke else (1, 8), warmup=0 if ctx.smoke else 10,
                      iters=1 if ctx.smoke else 50)
    precisions = ("fp32",) if ctx.smoke else ("fp32", "fp16")
    impls = ("torch",) if ctx.smoke else ("torch", "auto")
    env = environment()
    summary = []
    last_s = 5.0
    for variant in ("n", "l"):
        if variant == "n":  # the shipped model (its detections load the post-processing as deployed)
            base, weights = load_checkpoint(shipped_weights("dsb2018"))[0], "shipped dsb2018"
        else:  # the paper's size, with random weights: the forward pass costs the same
            torch.manual_seed(0)
            base, weights = build_model(variant, 1).eval(), "random (seed 0)"
        for precision in precisions:
            for impl in impls:
                label = f"{variant} {precision} cpam={impl}"
                skip = no_time(ctx, 1.5 * last_s, label)
                if skip:
                    yield skip
                    continue
                t0 = time.perf_counter()
                reset_peak(ctx.device)
                try:
                    backend = TorchBackend(copy.deepcopy(base), device=ctx.device, precision=precision, kernel_impl=impl)
                    timed = bench_backend(f"asfyolo-{variant}", backend, imgs, cfg, device=ctx.device, env=env)
                    fwds = [forward_only(backend, r.batch, size, cfg, ctx.device) for r in timed]
                except Exception as exc:  # noqa: BLE001 (recorded; the other configurations still run)
                    yield failed(label, exc)
                    continue
                for r, fwd in zip(timed, fwds):
                    yield {"case": label, "variant": variant, "weights": weights, "precision": precision,
                           "cpam_impl": impl, "img_size": r.img_size, "batch": r.batch, "iters": r.iters,
                           "infer_fps": r.infer_fps, "fps": r.fps, "latency_p50_ms": r.latency_p50_ms,
                           "latency_p90_ms": r.latency_p90_ms, "latency_p99_ms": r.latency_p99_ms, "pre_ms": r.pre_ms,
                           "infer_ms": r.infer_ms, "post_ms": r.post_ms, "cells_per_image": r.cells_per_image,
                           "peak_device_mb": peak_mb(ctx.device), **fwd,
                           "note": "forward_fps: the model alone on an input already on the device (CUDA events); "
                                   "infer_fps adds the input copy; fps: pre-processing + forward + NMS + masks"}
                    if r.batch == 1:
                        summary.append(f"{variant} {precision}{'' if impl == 'torch' else ' triton-cpam'} "
                                       f"{fwd['forward_fps']:.0f}")
                del backend
                last_s = time.perf_counter() - t0
        if ctx.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return "forward FPS at batch 1: " + ", ".join(summary) if summary else "nothing timed"


def forward_only(backend: Any, batch: int, size: int, cfg: Any, device: str) -> dict[str, float]:
    """Median / p20 / p80 ms of the model's forward pass alone (bench/_common.timeit) and the FPS it gives."""
    import torch
    from _common import timeit

    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device, backend.dtype)
    with torch.inference_mode():
        st = timeit(lambda: backend.model(x), iters=cfg.iters, warmup=cfg.warmup, device=torch.device(device))
    return {"forward_ms": st["median_ms"], "forward_p20_ms": st["p20_ms"], "forward_p80_ms": st["p80_ms"],
            "forward_fps": 1e3 * batch / st["median_ms"]}


# ------------------------------------------------------------------------------------------------ frame
FRAME_COLUMNS = ["source", "frame", "device_run", "precision", "cpam_impl", "iters", "tiles", "cells", "gt_instances",
                 "f1", "precision_", "recall", "f1_vs_cpu", "total_ms", "read_ms", "preprocess_ms", "inference_ms",
                 "postprocess_ms", "peak_device_mb"]


def make_frame(ctx: Any, size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(frame (size, size) uint16, ground-truth labels, source): `asfyolo-rt data frame` on DSB2018 val (its
    TIFF and the <name>.labels.tif it writes beside it), else a grid of 256 px synthetic nuclei images."""
    import tifffile

    if ctx.data is not None:
        from asfyolo_rt.cli.main import app

        out = ctx.scratch / f"frame{size}.tif"
        for p in (out, out.with_name(out.stem + ".labels.tif")):
            p.unlink(missing_ok=True)
        with contextlib.redirect_stdout(sys.stderr):  # the command's "wrote ..." line is a log, not a result
            app(["data", "frame", str(ctx.data), "--size", str(size), "--out", str(out)], standalone_mode=False)
        return tifffile.imread(out), tifffile.imread(out.with_name(out.stem + ".labels.tif")).astype(np.int32), \
            "asfyolo-rt data frame (DSB2018 val)"
    from asfyolo_rt.data.synth import make_nuclei

    k = max(1, size // 256)
    frame = np.zeros((k * 256, k * 256), np.uint16)
    gt = np.zeros(frame.shape, np.int32)
    for i in range(k * k):
        img, lab = make_nuclei(i, shape=(256, 256), bit_depth=16)
        y, x = 256 * (i // k), 256 * (i % k)
        frame[y:y + 256, x:x + 256] = img
        gt[y:y + 256, x:x + 256] = np.where(lab > 0, lab + gt.max(), 0)
    return frame, gt, "synthetic nuclei grid"


def frame(ctx: Any) -> Section:
    """The whole-frame pipeline on the device: per-stage time, F1 vs the ground truth and vs the CPU's labels."""
    from asfyolo_rt import Segmenter
    from asfyolo_rt.eval.dsb import instance_f1

    size = 256 if ctx.smoke else 2048
    img, gt, source = make_frame(ctx, size)
    n_gt = int(len(np.unique(gt)) - 1)
    configs = ([("fp32", "torch")] if ctx.smoke else [("fp32", "torch"), ("fp32", "auto"), ("fp16", "auto")])
    warmup, iters = (0, 1) if ctx.smoke else (1, 3)
    labels: dict[str, np.ndarray] = {}
    summary = []
    common = {"source": source, "frame": f"{img.shape[0]}x{img.shape[1]}", "gt_instances": n_gt}

    def measure(seg: Any, label: str, n_warm: int, n_iter: int) -> dict[str, Any]:
        reset_peak(seg.spec.device)
        for _ in range(n_warm):
            seg.segment(img)
        runs = []
        for _ in range(n_iter):
            t0 = time.perf_counter()
            cells = seg.segment(img)
            runs.append((1e3 * (time.perf_counter() - t0), cells))
        total, cells = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        labels[label] = cells.labels
        f = instance_f1(gt, cells.labels)
        return {**common, "iters": n_iter, "tiles": cells.tiles, "cells": len(cells), "f1": round(f.f1, 4),
                "precision_": round(f.precision, 4), "recall": round(f.recall, 4), "total_ms": round(total, 1),
                **{f"{k}_ms": round(cells.timing_ms.get(k, 0.0), 1) for k in ("read", "preprocess", "inference",
                                                                                "postprocess")},
                "peak_device_mb": peak_mb(seg.spec.device)}

    for precision, impl in configs:
        label = f"{ctx.device} {precision} cpam={impl}"
        skip = no_time(ctx, 20.0, label)
        if skip:
            yield skip
            continue
        try:
            seg = Segmenter("dsb2018", device=ctx.device, precision=precision, kernel_impl=impl)
            row = measure(seg, label, warmup, iters)
        except Exception as exc:  # noqa: BLE001 (recorded; the other configurations still run)
            yield failed(label, exc)
            continue
        summary.append(f"{label}: {row['total_ms']:.0f} ms, F1 {row['f1']:.3f}")
        yield {"case": label, "device_run": ctx.device, "precision": precision, "cpam_impl": impl, **row,
               "note": "total_ms = median of iters; stage times of that run (Cells.timing_ms)"}
    skip = no_time(ctx, 10.0 if ctx.smoke else 60.0, "cpu fp32 reference")
    if skip:
        yield skip
        return "; ".join(summary)
    row = measure(Segmenter("dsb2018", device="cpu"), "cpu", 0, 1)
    yield {"case": "cpu fp32 reference", "device_run": "cpu", "precision": "fp32", "cpam_impl": "torch", **row}
    for label, lab in labels.items():
        if label != "cpu":
            f1 = instance_f1(labels["cpu"], lab).f1
            summary.append(f"{label} vs cpu F1 {f1:.4f}")
            yield {**common, "case": f"{label} vs cpu fp32", "device_run": ctx.device, "f1_vs_cpu": round(f1, 6)}
    return "; ".join(summary)


SECTIONS = {
    "parity": (PARITY_COLUMNS, parity),
    "kernels": (KERNEL_COLUMNS, kernels),
    "fps": (FPS_COLUMNS, fps),
    "frame": (FRAME_COLUMNS, frame),
    "ort": (ORT_COLUMNS, ort),
}
