"""Benchmark pre-processing: a 1272 x 603 RGB image (DSB2018's largest shape) to a 320 x 320 network input.

Cases (median / p20 / p80 ms, one image, batch 1):
- preprocess: `asfyolo_rt.data.letterbox.preprocess(..., interpolation="linear")` end to end, what
  `predict --scale fit` and `bench` run (INTER_LINEAR resize on uint8 like the official prediction
  letterbox, pad, one pass to the normalised float CHW tensor);
- preprocess_area: the same with validation's INTER_AREA shrink (`val --protocol fit/official`);
- resize_area: cv2.INTER_AREA 1272x603 -> 320x152 alone (the shrink filter of the official validation);
- resize_linear: cv2.INTER_LINEAR, same sizes (the official prediction letterbox's filter);
- to_tensor: the uint8 HWC -> float CHW / 255 pass alone at 320 x 320 (`geometry._to_tensor`, the
  native-scale tile path, which never resizes);
- reference_tensor: the previous chain (np.stack, permute, .float(), div_, contiguous) at 320 x 320.
"note" carries the load average and the noisy verdict (asfyolo_rt.bench_machine).

    python bench/bench_preprocess.py --iters 200 --warmup 20
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, append_rows, env_row, setup, timeit

from asfyolo_rt.bench_machine import LoadProbe, busy_before, cores, load_average, noise_verdict
from asfyolo_rt.data.letterbox import preprocess
from asfyolo_rt.runtime.stages import preprocess as _to_tensor


def main(argv: list[str] | None = None) -> None:
    args, _ = setup(__doc__.splitlines()[0], RESULTS / "preprocess.csv", argv)
    device = torch.device("cpu")
    img = np.random.default_rng(0).integers(0, 256, (603, 1272, 3), dtype=np.uint8)
    tile = np.ascontiguousarray(img[:320, :320])
    cases = {
        "preprocess": lambda: preprocess([img], 320, interpolation="linear"),
        "preprocess_area": lambda: preprocess([img], 320),
        "resize_area": lambda: cv2.resize(img, (320, 152), interpolation=cv2.INTER_AREA),
        "resize_linear": lambda: cv2.resize(img, (320, 152), interpolation=cv2.INTER_LINEAR),
        "to_tensor": lambda: _to_tensor([tile]),
        "reference_tensor": lambda: torch.from_numpy(np.stack([tile])).permute(0, 3, 1, 2).float().div_(255.0)
        .contiguous(),
    }
    before, others_before = load_average(), busy_before()
    rows = []
    for name, fn in cases.items():
        with LoadProbe() as p:
            t = timeit(fn, iters=args.iters, warmup=args.warmup, device=device)
        noisy, why = noise_verdict(others_before, p.sample.others_cores, cores(), [t["p20_ms"], t["median_ms"], t["p80_ms"]])
        rows.append({"bench": "preprocess", "provider": "cpu", "case": f"{name} 1272x603->320", "dtype": "uint8->fp32",
                     **t, "iters": args.iters, **env_row(device),
                     "note": f"load {before:.2f}/{p.sample.load_during:.2f}; {'noisy: ' + why if noisy else 'quiet'}"})
        print(f"{name:18s} {t['median_ms']:8.3f} ms  (p20 {t['p20_ms']:.3f}, p80 {t['p80_ms']:.3f})"
              f"{'  NOISY: ' + why if noisy else ''}")
    append_rows(args.out, rows)


if __name__ == "__main__":
    main()
