"""The public Python API against the CLI, and a stream of frames against one call per frame.

1. Label maps: `Segmenter(model).segment(frame)` vs `asfyolo-rt predict frame --model model` (the real CLI in
   a subprocess) on a 2048 x 2048 uint16 DSB2018 frame (`asfyolo-rt data frame`), for the shipped PyTorch
   model and, with --bundle, its `model.onnx` and `model.int8-openvino.xml`: identical arrays or not.
2. Throughput: `segment_many` over N val images vs N calls of `segment` (same Segmenter, alternated
   repeats, median), with the machine's CPU model and ISA flags in the row.

    python bench/segmenter_check.py --data ../shared/datasets/DSB2018 --bundle /work/runs/demo-bundle \
        --json-out bench/results/segmenter_check.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

CLI = [sys.executable, "-m", "asfyolo_rt"]


def predict_labels(image: Path, model: str, cwd: Path) -> np.ndarray:
    cmd = [*CLI, "predict", str(image), "--model", model, "--no-overlays", "--no-coco", "--json"]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"predict failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    return tifffile.imread(cwd / json.loads(proc.stdout)["out"] / "labels" / f"{image.stem}.tif")


def machine() -> dict[str, object]:
    import os
    import platform

    from asfyolo_rt.infer.openvino import cpu_flags, cpu_isa

    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")) or f in ("fma", "f16c"))
    return {"cpu": model, "cores": os.cpu_count(), "isa": cpu_isa(), "flags": flags,
            "load_1min": round(os.getloadavg()[0], 2)}


def main() -> None:
    from asfyolo_rt import Segmenter, __version__

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/DSB2018"))
    ap.add_argument("--bundle", type=Path, help="export bundle: also check model.onnx and model.int8-openvino.xml")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--images", type=int, default=16, help="val images for the segment_many row")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", default="dsb2018", help="model of the throughput row")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    data = args.data.resolve()
    out: dict[str, object] = {"asfyolo_rt": __version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "machine": machine(),
                              "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                                    text=True, check=False).stdout.strip()}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        frame = cwd / "frame.tif"
        subprocess.run([*CLI, "data", "frame", str(data), "--size", str(args.size), "--out", str(frame)], check=True,
                       capture_output=True)
        models = ["dsb2018"]
        if args.bundle:
            models += [str((args.bundle / n).resolve()) for n in ("model.onnx", "model.int8-openvino.xml")]
        rows = []
        pixels = tifffile.imread(frame)
        for m in models:
            ref = predict_labels(frame, m, cwd)
            cells = Segmenter(m).segment(pixels)
            same = bool(np.array_equal(cells.labels, ref.astype(np.int32)))
            rows.append({"model": Path(m).name, "cells": len(cells), "identical": same,
                         "differing_pixels": int((cells.labels != ref).sum())})
            print(f"{Path(m).name}: {len(cells)} cells, label map identical to predict's: {same}", flush=True)
        out["frame"] = {"size": args.size, "rows": rows}

    files = sorted((data / "images" / "val").glob("*.png"))[: args.images]
    seg = Segmenter(args.model)
    from asfyolo_rt.data.io import read_image

    images = [read_image(f) for f in files]
    list(seg.segment_many(images[:2]))  # warm-up
    one, many = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        a = [len(seg.segment(f)) for f in files]
        one.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = [len(c) for c in seg.segment_many(files)]
        many.append(time.perf_counter() - t0)
        assert a == b, "segment_many gave other cells than segment"
    row = {"model": args.model, "images": len(files), "repeats": args.repeats, "workers": seg.stream_workers(),
           "segment_s": round(statistics.median(one), 3), "segment_many_s": round(statistics.median(many), 3),
           "speedup": round(statistics.median(one) / statistics.median(many), 3), "all_segment_s": one,
           "all_segment_many_s": many, "cells": sum(a)}
    out["stream"] = row
    print(f"{len(files)} val images, {args.model}: segment x{len(files)} {row['segment_s']} s, segment_many "
          f"{row['segment_many_s']} s ({row['speedup']}x; {out['machine']})")
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
