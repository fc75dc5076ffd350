"""The large-image targets of issue 26, measured on generated DSB2018 mosaics (never asserted in tests).

For each size (default 20000; 40000 with --sizes 20000 40000): write the mosaic (`asfyolo_rt.data.mosaic`,
uint16 OME-Zarr with ground truth) unless it exists, then segment it with the shipped model (default weights,
on the runtime `asfyolo-rt predict` picks for them: `asfyolo_rt.fastpath`) by block:

* ``serial``: this process, the backend on 1 thread (one worker with one thread);
* ``local:2``: a Dask LocalCluster of 2 worker processes with 1 thread each (``--cluster local:2``);

and reports per run: MP/s, peak memory (VmHWM from /proc/<pid>/status) of every worker process and of the
driver, instance F1 at IoU 0.5 against the ground truth (streamed by chunk: matched pixel counts per
(truth, prediction) pair), whether the two runs' label images are equal up to ids, and the seam check: pairs of
different predicted cells facing each other across a line that overlap one ground-truth nucleus (a split or a
duplicate), counted on the block seams and on as many lines half-way between them (no seam) for comparison.

Rows go to bench/results/large_check.json and .md, each naming the CPU (model and ISA flags).

    python bench/large_check.py ../shared/datasets/DSB2018 --work /tmp/large --sizes 20000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_NOTE = "2-core machine shared with two other agents' builds and tests: speeds are lower bounds"


def cpu() -> dict[str, Any]:
    info = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8") if f in flags]
    return {"model": model, "isa": isa, "cores": os.cpu_count()}


def vm_hwm_mb(pid: int | None = None) -> float:
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    kb = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM:"))
    return round(kb / 1024, 1)


def stream_pairs(gt: Any, pred: Any, chunk: int = 2048) -> dict[str, Any]:
    """Instance F1 at IoU > 0.5 from per-chunk pair counts (exact: nuclei across chunks are summed)."""
    keys, ga, pa = [], [], []
    h, w = gt.shape
    for y in range(0, h, chunk):
        for x in range(0, w, chunk):
            g = np.asarray(gt[y:y + chunk, x:x + chunk]).astype(np.int64).ravel()
            p = np.asarray(pred[y:y + chunk, x:x + chunk]).astype(np.int64).ravel()
            both = (g > 0) & (p > 0)
            keys.append(np.unique(g[both] << 32 | p[both], return_counts=True))
            ga.append(np.unique(g[g > 0], return_counts=True))
            pa.append(np.unique(p[p > 0], return_counts=True))

    def total(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        v = np.concatenate([a for a, _ in parts])
        c = np.concatenate([b for _, b in parts])
        u, inv = np.unique(v, return_inverse=True)
        return u, np.bincount(inv, weights=c)

    k, inter = total(keys)
    gu, gc = total(ga)
    pu, pc = total(pa)
    gi, pi = k >> 32, k & 0xFFFFFFFF
    iou = inter / (gc[np.searchsorted(gu, gi)] + pc[np.searchsorted(pu, pi)] - inter)
    tp = int((iou > 0.5).sum())
    fp, fn = len(pu) - tp, len(gu) - tp
    return {"tp": tp, "fp": fp, "fn": fn, "f1": round(2 * tp / max(2 * tp + fp + fn, 1), 4), "truth": len(gu),
            "cells": len(pu)}


def across(gt: Any, pred: Any, lines: list[int], axis: int, length: int) -> int:
    """Pairs of different predicted cells facing each other across the given lines (between pixel line-1 and
    line) where both mostly cover the same ground-truth nucleus: a cell split or found twice."""
    bad = 0
    for ln in lines:
        sl = (slice(ln - 1, ln + 1), slice(0, length)) if axis == 0 else (slice(0, length), slice(ln - 1, ln + 1))
        p = np.asarray(pred[sl]).astype(np.int64)
        g = np.asarray(gt[sl]).astype(np.int64)
        if axis == 1:
            p, g = p.T, g.T
        a, b = p[0], p[1]
        m = (a > 0) & (b > 0) & (a != b) & (g[0] > 0) & (g[0] == g[1])
        bad += len(np.unique(a[m] << 32 | b[m]))
    return bad


def seam_check(gt: Any, pred: Any, block: int) -> dict[str, int]:
    h, w = gt.shape
    seams_y, seams_x = list(range(block, h, block)), list(range(block, w, block))
    mid_y, mid_x = [s - block // 2 for s in seams_y], [s - block // 2 for s in seams_x]
    return {"seam_lines": len(seams_y) + len(seams_x),
            "split_pairs_at_block_seams": across(gt, pred, seams_y, 0, w) + across(gt, pred, seams_x, 1, h),
            "split_pairs_at_mid_block_lines": across(gt, pred, mid_y, 0, w) + across(gt, pred, mid_x, 1, h)}


def same_up_to_ids(a: Any, b: Any, chunk: int = 4096) -> bool:
    """Label images equal up to a permutation of ids (checked chunk by chunk, pairs merged over chunks)."""
    pairs = []
    h, w = a.shape
    for y in range(0, h, chunk):
        for x in range(0, w, chunk):
            u, v = np.asarray(a[y:y + chunk, x:x + chunk]), np.asarray(b[y:y + chunk, x:x + chunk])
            if not np.array_equal(u == 0, v == 0):
                return False
            pairs.append(np.unique(u.astype(np.int64) << 32 | v.astype(np.int64)))
    p = np.unique(np.concatenate(pairs))
    p = p[p >> 32 > 0]
    return len(np.unique(p >> 32)) == len(p) == len(np.unique(p & 0xFFFFFFFF))


def run(image: Path, out: Path, model: Any, *, workers: int, block: int) -> dict[str, Any]:
    from asfyolo_rt.large.api import segment_large
    from asfyolo_rt.large.engine import start_cluster

    client = start_cluster(f"local:{workers}") if workers > 1 else None
    t0 = time.perf_counter()
    try:
        res = segment_large(image, out, client.client if client else None, model=model.model, backend=model.runtime,
                            precision=model.precision, threads=1, block=block)
        seconds = time.perf_counter() - t0
        peaks = (sorted(client.client.run(vm_hwm_mb).values()) if client else [vm_hwm_mb()])
    finally:
        if client:
            client.close()
    mp = res.shape[0] * res.shape[1] / 1e6
    return {"run": f"local:{workers}" if client else "serial", "workers": workers, "threads_per_worker": 1,
            "seconds": round(seconds, 1), "mp_per_s": round(mp / seconds, 3), "cells": res.cells,
            "peak_mb_per_worker": peaks, "driver_peak_mb": vm_hwm_mb(), "steps_s": {k: round(v, 1) for k, v in
                                                                                    res.seconds.items()},
            "labels": str(res.labels)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="DSB2018 folder")
    ap.add_argument("--work", type=Path, default=Path("/tmp/large_check"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[20000])
    ap.add_argument("--block", type=int, default=4096)
    ap.add_argument("--runs", nargs="+", default=["serial", "local:2"])
    args = ap.parse_args()
    import zarr

    from asfyolo_rt import fastpath
    from asfyolo_rt.data.dataset import load_split
    from asfyolo_rt.data.mosaic import write_mosaic
    from asfyolo_rt.weights_registry import default_weights

    model = fastpath.fast_choice(default_weights())  # what `asfyolo-rt predict` runs the default weights on
    old = RESULTS / "large_check.json"
    rows: list[dict[str, Any]] = json.loads(old.read_text()) if old.is_file() else []  # other sizes' rows kept
    machine = {**cpu(), "note": SHARED_NOTE, "python": platform.python_version(),
               "runtime": f"default weights via {model.runtime} {model.precision} ({Path(model.model).name})"}
    for size in args.sizes:
        image = args.work / f"mosaic{size}.ome.zarr"
        if not image.exists():
            t0 = time.perf_counter()
            m = write_mosaic(load_split(args.data, "val", on_problem="warn"), image, (size, size))
            print(f"mosaic {size}: {m.nuclei} nuclei in {time.perf_counter() - t0:.0f} s", flush=True)
        gt = zarr.open_array(str(image / "labels" / "ground_truth" / "0"), mode="r")
        rows = [r for r in rows if r["size"] != size]
        done: list[dict[str, Any]] = []
        for r in args.runs:
            workers = 1 if r == "serial" else int(r.split(":")[1])
            row = run(image, args.work / f"out{size}_{r.replace(':', '')}", model, workers=workers, block=args.block)
            pred = zarr.open_array(row["labels"], mode="r")
            row.update(size=size, block=args.block, f1=stream_pairs(gt, pred), seams=seam_check(gt, pred, args.block),
                       cpu=machine)
            if done and done[0]["run"] == "serial":
                row["identical_to_serial_up_to_ids"] = same_up_to_ids(zarr.open_array(done[0]["labels"], mode="r"),
                                                                      pred)
                row["speedup_vs_serial"] = round(row["mp_per_s"] / done[0]["mp_per_s"], 2)
            print(json.dumps(row), flush=True)
            done.append(row)
            rows.append(row)
            write(rows)


def write(rows: list[dict[str, Any]]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "large_check.json").write_text(json.dumps(rows, indent=1))
    lines = ["# Large-image check (issue 26)", "", f"CPU: {rows[0]['cpu']['model']} ({rows[0]['cpu']['cores']} cores; "
             f"ISA {', '.join(rows[0]['cpu']['isa'])}). {SHARED_NOTE}. Model: {rows[0]['cpu']['runtime']}.", "",
             "Reproduce: `python bench/large_check.py ../shared/datasets/DSB2018 --sizes 20000` (and `--sizes 40000 "
             "--runs local:2`). Peak memory: VmHWM of each worker process; the serial run's worker is the bench "
             "process itself (which also wrote the mosaic). Split pairs: different cells facing each other across a "
             "line over one ground-truth nucleus, on the block seams vs as many lines half-way between them.", "",
             "| size | run | MP/s | x serial | peak MB per worker | driver MB | cells | F1 | split pairs at seams / "
             "mid-block lines | identical | CPU |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['run']} | {r['mp_per_s']} | {r.get('speedup_vs_serial', '')} | "
                     f"{', '.join(map(str, r['peak_mb_per_worker']))} | {r['driver_peak_mb']} | {r['cells']} | "
                     f"{r['f1']['f1']} | {r['seams']['split_pairs_at_block_seams']} / "
                     f"{r['seams']['split_pairs_at_mid_block_lines']} | {r.get('identical_to_serial_up_to_ids', '')} | "
                     f"{r['cpu']['model']} {'+'.join(r['cpu']['isa'])} |")
    (RESULTS / "large_check.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
