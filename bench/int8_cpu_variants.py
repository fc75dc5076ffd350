"""Why the ONNX Runtime CPU INT8 file is (or is not) faster: three quantization recipes of one FP32 ONNX.

Each recipe is the shipped `calib.quantize.quantize_ort_cpu` (QDQ U8S8, same calibration images, same
FP32 exclusions) with ONNX Runtime's `op_types_to_quantize` narrowed:
- shipped: every op ONNX Runtime can quantize (the SiLUs become QLinearSigmoid + QLinearMul pairs);
- no_silu: Conv, Concat, MaxPool, Resize, Add, Split, Slice (SiLU stays FP32 between DQ and Q);
- conv_only: Conv only.
Then FP32 and the three INT8 files run alternately in one process (batch 1, 2 threads, medians), so the
ratios are fair even on a busy machine; each row carries the load before and during and a noisy verdict.

    python bench/int8_cpu_variants.py --onnx BUNDLE/model.onnx --data ../shared/datasets/DSB2018 \
        --tile-scale 1.5 --calib-images 24 --iters 10
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, append_rows, env_row

VARIANTS: dict[str, list[str] | None] = {
    "shipped": None,
    "no_silu": ["Conv", "Concat", "MaxPool", "Resize", "Add", "Split", "Slice"],
    "conv_only": ["Conv"],
}


def quantize(src: Path, dst: Path, calib: object, ops: list[str] | None) -> None:
    import onnxruntime.quantization as oq
    from asfyolo_rt.calib.quantize import quantize_ort_cpu

    original = oq.quantize_static
    if ops is not None:
        def narrowed(*a: object, **k: object) -> object:
            k["op_types_to_quantize"] = ops
            return original(*a, **k)
        oq.quantize_static = narrowed  # quantize_ort_cpu imports it from the module at call time
    try:
        quantize_ort_cpu(src, dst, calib)  # type: ignore[arg-type]
    finally:
        oq.quantize_static = original


def main(argv: list[str] | None = None) -> None:
    import onnx
    import onnxruntime as ort
    import torch
    from asfyolo_rt.calib.dataset import build_calibration_set

    from asfyolo_rt.bench_machine import LoadProbe, busy_before, cores, load_average, noise_verdict

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", type=Path, required=True, help="static FP32 model.onnx")
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/DSB2018"))
    ap.add_argument("--tile-scale", type=float, default=None, help="native-scale calibration windows (model scale)")
    ap.add_argument("--calib-images", type=int, default=24)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--out", type=Path, default=RESULTS / "int8_cpu_variants.csv")
    args = ap.parse_args(argv)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    probe_sess = ort.InferenceSession(str(args.onnx), so, providers=["CPUExecutionProvider"])
    hw = tuple(probe_sess.get_inputs()[0].shape[2:])
    if not all(isinstance(d, int) for d in hw):
        raise SystemExit(f"error: --onnx {args.onnx}: expected a static input shape, got {hw}")
    calib = build_calibration_set(args.data, hw, n=args.calib_images, seed=0, tile_scale=args.tile_scale)
    files = {"fp32": args.onnx}
    with tempfile.TemporaryDirectory(prefix="int8-variants-") as tmp:
        for name, ops in VARIANTS.items():
            dst = Path(tmp) / f"{name}.onnx"
            quantize(args.onnx, dst, calib, ops)
            files[name] = dst
        sessions = {k: ort.InferenceSession(str(v), so, providers=["CPUExecutionProvider"]) for k, v in files.items()}
        counts = {k: collections.Counter(n.op_type for n in onnx.load(str(v)).graph.node) for k, v in files.items()}
        x = calib.float_images(0, 1)
        for s in sessions.values():
            s.run(None, {s.get_inputs()[0].name: x})
        times: dict[str, list[float]] = collections.defaultdict(list)
        before, others_before = load_average(), busy_before()
        with LoadProbe() as probe:
            for _ in range(args.iters):
                for k, s in sessions.items():  # alternate: every file sees the same machine state
                    t0 = time.perf_counter()
                    s.run(None, {s.get_inputs()[0].name: x})
                    times[k].append((time.perf_counter() - t0) * 1e3)
    fp32 = float(np.median(times["fp32"]))
    rows = []
    for k, t in times.items():
        med = float(np.median(t))
        p20, p80 = (float(v) for v in np.percentile(t, [20, 80]))
        noisy, why = noise_verdict(others_before, probe.sample.others_cores, cores(), [p20, med, p80])
        c = counts[k]
        rows.append({"bench": "int8_cpu_variants", "provider": "onnxruntime-cpu", "case": f"{k} {hw[0]}x{hw[1]}",
                     "dtype": "fp32" if k == "fp32" else "int8", "median_ms": med, "p20_ms": p20, "p80_ms": p80,
                     "speedup_vs_torch": fp32 / med, "iters": args.iters, **env_row(torch.device("cpu")),
                     "note": f"speed-up vs FP32 ONNX (not torch); Q {c['QuantizeLinear']} DQ {c['DequantizeLinear']}; "
                             f"load {before:.2f}/{probe.sample.load_during:.2f}; "
                             f"{'noisy: ' + why if noisy else 'quiet'}"})
        print(f"{k:10s} {med:8.1f} ms  x{fp32 / med:.2f} vs FP32  (Q {c['QuantizeLinear']}, DQ {c['DequantizeLinear']})"
              f"{'  NOISY: ' + why if noisy else ''}")
    append_rows(args.out, rows)


if __name__ == "__main__":
    main()
