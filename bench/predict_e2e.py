"""Issue 24's end-to-end check: `asfyolo-rt predict frame.tif` (no options) against the path that was the
fastest when the issue was filed, `asfyolo-rt predict frame.tif --model BUNDLE/model.onnx --tile-overlap 208`,
as whole commands (start-up, model load, reading, segmenting, writing every output), alternated.

Commands, each run in a fresh output folder, `rounds` times in turn (A, B, C, A, B, C, ...) after one
untimed warm-up each (the fast path and OpenVINO's compiled-model cache made):

* A "default": `asfyolo-rt predict FRAME` with this checkout;
* B "onnx-208 (this checkout)": `... --model BUNDLE/model.onnx --tile-overlap 208` with this checkout;
* C "onnx-208 (as filed)": the same command run from a checkout of the commit before the issue's work
  (`--baseline-checkout DIR`, a `git worktree` of it; PYTHONPATH points there, same virtual environment).

Each row: median / min / max wall seconds, peak RSS (GNU time), cells, instance F1 against the frame's
ground truth, and F1 of the label image against C's. The load average before and after is recorded: on a
shared machine the times are upper bounds.

    git worktree add /tmp/asfyolo-base abcd161
    python bench/predict_e2e.py --frame frame.tif --truth frame.labels.tif --bundle runs/demo-bundle \
        --baseline-checkout /tmp/asfyolo-base --json-out bench/results/predict_e2e.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent


def run(cmd: list[str], env: dict[str, str], out: Path, stem: str) -> tuple[np.ndarray, float, float]:
    """Labels, wall seconds, peak RSS MiB of one predict command writing into `out`."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd, "--out", str(out)], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"predict failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    rss = float(m.group(1)) / 1024 if m else float("nan")
    return tifffile.imread(out / "labels" / f"{stem}.tif"), wall, rss


def main() -> None:
    from asfyolo_rt.eval.dsb import instance_f1
    from asfyolo_rt.infer.openvino import cpu_flags, cpu_isa

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frame", type=Path, required=True, help="the frame (e.g. `asfyolo-rt data frame` output)")
    ap.add_argument("--truth", type=Path, help="its ground-truth label image (frame.labels.tif)")
    ap.add_argument("--bundle", type=Path, required=True, help="export bundle holding model.onnx")
    ap.add_argument("--baseline-checkout", type=Path, help="a checkout of the commit before issue 24's work")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    frame, bundle = args.frame.resolve(), args.bundle.resolve()
    if not frame.is_file() or not (bundle / "model.onnx").is_file():
        raise SystemExit(f"--frame {frame} or --bundle {bundle}/model.onnx does not exist")
    exe = [sys.executable, "-m", "asfyolo_rt", "predict", str(frame)]
    onnx208 = [*exe, "--model", str(bundle / "model.onnx"), "--tile-overlap", "208"]
    # PYTHONDONTWRITEBYTECODE dropped: the warm-up writes .pyc files, as pip does on a user's machine (with it,
    # every run compiles the package's modules again: ~0.1 s, more for the baseline's PyTorch imports)
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("PYTHONPATH", "ASFYOLO_RT_FAST", "ASFYOLO_RT_LEAN", "PYTHONDONTWRITEBYTECODE")}
    cases = [("default", exe, base_env), ("onnx-208 (this checkout)", onnx208, base_env)]
    if args.baseline_checkout:
        cases.append(("onnx-208 (as filed)", onnx208,
                      {**base_env, "PYTHONPATH": str(args.baseline_checkout.resolve())}))
    truth = tifffile.imread(args.truth).astype(np.int64) if args.truth else None
    walls: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    rss: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    labels: dict[str, np.ndarray] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        k = 0
        for rnd in range(args.rounds + 1):  # round 0: warm-up, not timed
            for name, cmd, env in cases:
                out = Path(tmp) / f"run{k}"
                k += 1
                lab, wall, mem = run(cmd, env, out, frame.stem)
                shutil.rmtree(out, ignore_errors=True)
                if rnd:
                    walls[name].append(wall)
                    rss[name].append(mem)
                labels[name] = lab
                print(f"round {rnd} {name:<26} {wall:6.2f} s  {int(lab.max())} cells", flush=True)
    load_after = os.getloadavg()
    ref_name = cases[-1][0]
    rows = []
    for name, cmd, _ in cases:
        lab = labels[name]
        row = {"case": name,
               "command": " ".join(["asfyolo-rt", *cmd[3:]]).replace(str(bundle), "BUNDLE").replace(str(frame), frame.name),
               "wall_median_s": round(statistics.median(walls[name]), 2), "wall_min_s": round(min(walls[name]), 2),
               "wall_max_s": round(max(walls[name]), 2), "peak_rss_mib": round(max(rss[name])), "cells": int(lab.max()),
               "f1_vs_truth": round(instance_f1(truth, lab).f1, 4) if truth is not None else None,
               "f1_vs_" + ref_name.split(" ")[0]: round(instance_f1(labels[ref_name], lab).f1, 4)}
        rows.append(row)
    base = next(r for r in rows if r["case"] == ref_name)["wall_median_s"]
    for r in rows:
        r["speedup_vs_" + ref_name] = round(base / r["wall_median_s"], 2)
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    base_sha = None
    if args.baseline_checkout:
        base_sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                  cwd=args.baseline_checkout).stdout.strip()
    from importlib.metadata import version

    doc = {"env": {"git_sha": sha, "baseline_sha": base_sha, "cpus": os.cpu_count(), "isa": cpu_isa(),
                   "versions": {d: version(d) for d in ("openvino", "onnxruntime", "numpy", "typer")},
                   "cpu_flags": sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "fma"))),
                   "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after],
                   "rounds": args.rounds, "frame": frame.name, "date": time.strftime("%Y-%m-%d", time.gmtime()), "frame_shape": list(labels[ref_name].shape)},
           "rows": rows}
    for r in rows:
        print(json.dumps(r))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
