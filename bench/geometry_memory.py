"""Peak memory of the tiling geometry on a huge frame, with a stand-in model.

An 8192 x 8192 frame with 20,000 drawn discs goes through `asfyolo_rt.runtime.stages.Runner` with the
test suite's `OracleBackend` (every bright blob of a tile is one detection: no network cost), 640 tiles,
batch 4, and its full-resolution label map is built. Prints tiles, cells, seconds and peak RSS: the
geometry's own memory (frame, tiles, box-local masks, label map), which a real model adds its weights
and activations of one tile batch to.

    python bench/geometry_memory.py
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "infer"))
from test_geometry import OracleBackend  # noqa: E402

from asfyolo_rt.runtime.stages import Geometry, PostConfig, Runner  # noqa: E402


def main(size: int = 8192, discs: int = 20000) -> None:
    rng = np.random.default_rng(0)
    img = np.zeros((size, size, 3), np.uint8)
    for x, y in rng.integers(20, size - 20, size=(discs, 2)):
        cv2.circle(img, (int(x), int(y)), 9, (220, 220, 220), -1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    res = Runner(OracleBackend(), Geometry("native", tile_overlap=48, batch=4), PostConfig(kernel_impl="torch"))(img)
    res.label_map()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{size}x{size}: {res.tiles} tiles, {len(res)} cells, {time.perf_counter() - t:.0f} s, "
          f"peak RSS {peak:.0f} MiB (frame drawn: {before:.0f} MiB)")


if __name__ == "__main__":
    main()
