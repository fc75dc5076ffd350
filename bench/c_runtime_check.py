"""The C runtime (cpp/, OpenVINO on the CPU) against `asfyolo-rt predict --model model.onnx` (ONNX Runtime FP32,
Python) on the same frames, in the same run.

1. Cells (the issue's done-when check): `asfyolo_segment BUNDLE/<model> IMAGE` (the example program, a
   subprocess) vs `asfyolo-rt predict IMAGE --model BUNDLE/<model>` (the CLI, a subprocess), for model.onnx and
   model.int8-openvino.xml: label-map instance F1 (mask IoU > 0.5) and cell counts.
2. Speed: per-frame latency of the C runtime through its C ABI (`asfyolo_rt.native`, ctypes: the label map
   copied out) and of Python (`Segmenter(model.onnx).segment`, what predict runs per frame), alternated call
   by call; p50/p99, megapixels per second, and the C runtime's time outside inference (read + pre-processing +
   post-processing, % of its frame time). Rows: model.onnx (FP32 hint), the INT8 IR, and where the CPU has
   native BF16 model.onnx with the BF16 hint; each with its cells' F1 against Python's FP32 cells.

Frames: the 2048 x 2048 uint16 frame of `asfyolo-rt data frame DSB2018 --size 2048` and the three 1272 x 603
DSB2018 val images.

    python bench/c_runtime_check.py --bundle /work/runs/demo-bundle --frame /work/runs/frame.tif \
        --data ../shared/datasets/DSB2018 --json-out bench/results/c_runtime.json --md-out bench/results/c_runtime.md
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from segmenter_check import machine, predict_labels  # noqa: E402

MODELS = ("model.onnx", "model.int8-openvino.xml")


def tool_labels(tool: Path, model: Path, image: Path, out: Path) -> np.ndarray:
    proc = subprocess.run([str(tool), str(model), str(image), str(out)], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"asfyolo_segment failed on {image}:\n{proc.stderr[-2000:]}")
    return tifffile.imread(out)


def f1_counts(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    from asfyolo_rt.eval.dsb import instance_f1

    r = instance_f1(a.astype(np.int32), b.astype(np.int32))
    return {"f1": round(r.f1, 5), "cells_python": r.tp + r.fn, "cells_c": r.tp + r.fp}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def markdown(result: dict[str, object]) -> str:
    """The result as the short report bench/results/c_runtime.md."""
    m = result["machine"]
    assert isinstance(m, dict)
    rows = result["rows"]
    assert isinstance(rows, list)
    out = ["# C runtime vs `asfyolo-rt predict` (CPU)", "",
           "Written by `python bench/c_runtime_check.py --bundle /work/runs/demo-bundle --frame /work/runs/frame.tif "
           "--data ../shared/datasets/DSB2018 --json-out bench/results/c_runtime.json --md-out bench/results/c_runtime.md`.",
           "", f"Machine: {m['cpu']}, {m['cores']} cores, ISA {m['isa']} (flags {', '.join(m['flags'])}); 1-min load "
           f"{m['load_1min']} at the end of the run (a machine shared with other jobs: absolute times are noisy; the "
           "calls alternate, so the comparison within a row group is fair).", "",
           "## Cells: `asfyolo_segment` vs `asfyolo-rt predict`, same model file", "",
           "| model | image | size | cells (predict) | cells (C) | label F1 |", "| --- | --- | --- | --- | --- | --- |"]
    out += [f"| {r['model']} | {r['image'][:12]} | {r['shape'][1]}x{r['shape'][0]} | {r['cells_python']} | "
            f"{r['cells_c']} | {r['f1']:.4f} |" for r in rows if r["check"] == "cells"]
    out += ["", "## Speed per frame (p50 / p99 of alternated calls after a warm-up)", "",
            "| image | runtime | p50 ms | p99 ms | MP/s | vs Python | C time outside inference | cells | F1 vs Python |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["check"] == "speed":
            o = r.get("outside_inference_pct")
            out.append(f"| {r['image'][:12]} | {r['runtime']} | {r['p50_ms']} | {r['p99_ms']} | {r['mp_per_s']} | "
                       f"{r['speedup_vs_python']}x | {'' if o is None else f'{o} %'} | {r.get('cells', '')} | "
                       f"{r.get('f1_vs_python_fp32', '')} |")
    out += ["", f"Python: {result['python']}. C: {result['c']}; the label map is copied out.",
            "Outside inference: read (16-bit scaling, RGB) + pre-processing (resize to the model scale, tiles) + "
            "post-processing (NMS, masks, merge, paint, the cell table), % of the C runtime's frame time.", ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--frame", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=7, help="timed calls per frame and runtime (after one warm-up)")
    ap.add_argument("--tool", type=Path, default=REPO / "build" / "cpp" / "asfyolo_segment")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--md-out", type=Path)
    args = ap.parse_args()

    from asfyolo_rt import Segmenter
    from asfyolo_rt.data.io import read_image, read_image_raw
    from asfyolo_rt.native import NativeSegmenter, library_path

    vals = sorted(p for p in (args.data / "images" / "val").glob("*.png") if read_image_raw(p).shape[:2] == (603, 1272))
    frames = [args.frame, *vals]
    rows: list[dict[str, object]] = []
    # 1. cells: the example program vs the CLI, per model file
    with tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            for image in frames:
                py = predict_labels(image, str(args.bundle / model), Path(tmp))
                c = tool_labels(args.tool, args.bundle / model, image, Path(tmp) / f"{image.stem}.c.tif")
                rows.append({"check": "cells", "model": model, "image": image.name, "shape": list(py.shape),
                             **f1_counts(py, c)})
                print(json.dumps(rows[-1]), flush=True)
    # 2. speed, alternated call by call
    python = Segmenter(args.bundle / "model.onnx")
    from asfyolo_rt.infer.openvino import has_bf16

    variants = {f"c openvino {m}": (m, None) for m in MODELS}
    if has_bf16():  # the FP32 file with OpenVINO's BF16 hint, where the CPU runs BF16 natively
        variants["c openvino model.onnx bf16"] = ("model.onnx", "bf16")
    native = {name: NativeSegmenter(args.bundle, model_file=m, precision=p) for name, (m, p) in variants.items()}
    speed: list[dict[str, object]] = []
    for image in frames:
        pixels = read_image_raw(image) if image.suffix == ".tif" else read_image(image)
        mp = pixels.shape[0] * pixels.shape[1] / 1e6
        runs: dict[str, list[float]] = {"python onnxruntime fp32": [], **{name: [] for name in native}}
        outside: dict[str, list[float]] = {name: [] for name in native}
        agree: dict[str, dict[str, float]] = {}
        for k in range(args.repeats + 1):
            t0 = time.perf_counter()
            ref = python.segment(pixels).labels
            if k:
                runs["python onnxruntime fp32"].append(1e3 * (time.perf_counter() - t0))
            for name, seg in native.items():
                t0 = time.perf_counter()
                labels, _, timing = seg.segment(pixels)
                wall = 1e3 * (time.perf_counter() - t0)
                if k:
                    runs[name].append(wall)
                    outside[name].append(100 * (timing["total"] - timing["inference"]) / timing["total"])
                else:  # the cells of each variant against Python's FP32 cells
                    agree[name] = f1_counts(ref, labels)
        base = statistics.median(runs["python onnxruntime fp32"])
        for name, ms in runs.items():
            row: dict[str, object] = {"check": "speed", "image": image.name, "runtime": name, "megapixels": round(mp, 3),
                                      "p50_ms": round(pct(ms, 50), 1), "p99_ms": round(pct(ms, 99), 1),
                                      "mp_per_s": round(mp / (pct(ms, 50) / 1e3), 3),
                                      "speedup_vs_python": round(base / pct(ms, 50), 2), "calls": len(ms)}
            if name in outside:
                row["outside_inference_pct"] = round(statistics.median(outside[name]), 1)
                row["f1_vs_python_fp32"] = agree[name]["f1"]
                row["cells"] = agree[name]["cells_c"]
            speed.append(row)
            print(json.dumps(row), flush=True)
    for seg in native.values():
        seg.close()
    result = {"machine": machine(), "library": str(library_path()), "bundle": str(args.bundle),
              "python": "Segmenter(model.onnx) = asfyolo-rt predict --model model.onnx (ONNX Runtime FP32)",
              "c": "asfyolo_rt.native.NativeSegmenter (ctypes over the C ABI), OpenVINO CPU, FP32 hint / INT8 IR",
              "rows": rows + speed}
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    if args.md_out:
        args.md_out.write_text(markdown(result))


if __name__ == "__main__":
    main()
