"""Whole frames as a microscope writes them: instance F1 and peak memory of `asfyolo-rt predict`.

Runs the real CLI (default options: native scale, 640 tiles, the fast CPU path; and --backend torch, the
reference) in a scratch folder on
  * a 2048 x 2048 uint16 frame of DSB2018 val nuclei (`asfyolo-rt data frame`), and
  * every DSB2018 val image of 1272 x 603 (the largest in the split),
and, with --bundle, the same frame through the bundle's static ONNX files (they bring their own tile
shape). Each row: instance F1 at mask IoU 0.5 against the polygons' ground truth, F1 against the
PyTorch label map (for exported models), cells, wall time and peak resident memory (GNU time).

    python bench/frame_f1.py --data ../shared/datasets/DSB2018 --bundle runs/demo-bundle \
        --json-out bench/results/frame_f1.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "asfyolo_rt"]


def run_predict(image: Path, extra: list[str], cwd: Path) -> tuple[np.ndarray, float, float]:
    """Labels, wall seconds, peak RSS MiB of one `asfyolo-rt predict` (its --json names the output folder;
    --json only prints, it changes nothing else). Sets `run_predict.path` to the fast CPU path predict took
    ("" when it ran the given file or PyTorch)."""
    cmd = ["/usr/bin/time", "-v", *CLI, "predict", str(image), *extra, "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"predict failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    took = re.search(r"fast CPU path: (.+?) of ", proc.stderr)
    run_predict.path = took.group(1) if took else ""  # type: ignore[attr-defined]
    out = cwd / json.loads(proc.stdout)["out"]
    labels = tifffile.imread(out / "labels" / f"{image.stem}.tif")
    return labels, wall, rss


def main() -> None:
    from asfyolo_rt.data.dataset import load_split
    from asfyolo_rt.data.io import image_size
    from asfyolo_rt.data.masks import polygons_to_index_map
    from asfyolo_rt.eval.dsb import instance_f1

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/DSB2018"))
    ap.add_argument("--bundle", type=Path, help="export bundle whose model.onnx / model.int8-cpu.onnx to run too")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    data = args.data.resolve()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frame = tmp / f"frame{args.size}.tif"
        subprocess.run([*CLI, "data", "frame", str(data), "--size", str(args.size), "--out", str(frame)], check=True)
        gt = tifffile.imread(frame.with_name(frame.stem + ".labels.tif")).astype(np.int64)
        # PyTorch, the reference; then the default: no option but the input (predict's fast CPU path, made once
        # and cached per weights and machine, asfyolo_rt.fastpath); results in ./runs/predict* of the scratch folder
        ref, wall, rss = run_predict(frame, ["--backend", "torch"], tmp)
        f = instance_f1(gt, ref)
        rows.append({"input": frame.name, "model": "shipped, PyTorch", "options": "--backend torch", "gt_instances": int(len(np.unique(gt)) - 1),
                     "cells": int(ref.max()), **{k: f.to_dict()[k] for k in ("f1", "precision", "recall")},
                     "f1_vs_pytorch": 1.0, "wall_s": round(wall, 1), "peak_rss_mib": round(rss)})
        run_predict(frame, [], tmp)  # makes the fast path once (not timed)
        lab, wall, rss = run_predict(frame, [], tmp)
        f = instance_f1(gt, lab)
        rows.append({"input": frame.name, "model": f"default ({run_predict.path or 'PyTorch'})", "options": "",  # type: ignore[attr-defined]
                     "gt_instances": rows[0]["gt_instances"], "cells": int(lab.max()),
                     **{k: f.to_dict()[k] for k in ("f1", "precision", "recall")},
                     "f1_vs_pytorch": round(instance_f1(ref, lab).f1, 4), "wall_s": round(wall, 1), "peak_rss_mib": round(rss)})
        for name in ("model.onnx", "model.int8-cpu.onnx"):
            if args.bundle is None or not (args.bundle / name).is_file():
                continue
            out = tmp / f"pred-{name}"
            lab, wall, rss = run_predict(frame, ["--model", str((args.bundle / name).resolve()), "--out", str(out)], tmp)
            f = instance_f1(gt, lab)
            rows.append({"input": frame.name, "model": name, "options": f"--model {name}", "gt_instances": rows[0]["gt_instances"],
                         "cells": int(lab.max()), **{k: f.to_dict()[k] for k in ("f1", "precision", "recall")},
                         "f1_vs_pytorch": round(instance_f1(ref, lab).f1, 4), "wall_s": round(wall, 1),
                         "peak_rss_mib": round(rss)})
        split = load_split(data, "val")
        for s in split.samples:
            h, w = image_size(s.image_path)
            if (h, w) != (603, 1272):
                continue
            ref, _, _ = run_predict(s.image_path, ["--backend", "torch"], tmp)
            lab, wall, rss = run_predict(s.image_path, [], tmp)
            g = polygons_to_index_map([p * np.array([w, h], np.float32) for p in s.polygons], (h, w))[0]
            f = instance_f1(g, lab)
            rows.append({"input": s.image_path.name[:12] + "… (1272x603)",
                         "model": f"default ({run_predict.path or 'PyTorch'})", "options": "",  # type: ignore[attr-defined]
                         "gt_instances": len(s), "cells": int(lab.max()),
                         **{k: f.to_dict()[k] for k in ("f1", "precision", "recall")},
                         "f1_vs_pytorch": round(instance_f1(ref, lab).f1, 4),
                         "wall_s": round(wall, 1), "peak_rss_mib": round(rss)})
    env = {"cpu": os.cpu_count(), "python": sys.version.split()[0]}
    try:
        env["git_sha"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                        cwd=HERE).stdout.strip()
    except OSError:
        pass
    for r in rows:
        print(f"{r['input']:<28} {r['model']:<28} F1 {r['f1']:.3f} (P {r['precision']:.3f} R {r['recall']:.3f}) "
              f"vs PyTorch {r['f1_vs_pytorch']:.3f}  cells {r['cells']}/{r['gt_instances']}  {r['wall_s']} s  "
              f"{r['peak_rss_mib']} MiB")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"env": env, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
