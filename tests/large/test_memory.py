"""Peak memory of a block-route run does not grow with the image: the same blocks over 4x the pixels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import nuclei_image

RUN = """
import sys
from pathlib import Path
from asfyolo_rt.large.api import segment_large
res = segment_large(sys.argv[1], sys.argv[2], model=sys.argv[3], block=512, threads=1)
kb = next(int(ln.split()[1]) for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmHWM:"))
print(res.cells, kb)
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_image(shipped_onnx: Path, tmp_path: Path) -> None:
    import numpy as np

    from asfyolo_rt.data.mosaic import write_ome_zarr

    base = nuclei_image((512, 512), seed=31)
    peaks, cells = [], []
    for side in (1536, 3072):  # 9 and 36 blocks of 512
        path = tmp_path / f"n{side}.ome.zarr"
        write_ome_zarr(path, (side, side), "uint16",
                       lambda y0, y1, x0, x1: base[np.ix_(np.arange(y0, y1) % 512, np.arange(x0, x1) % 512)], chunk=512)
        r = subprocess.run([sys.executable, "-c", RUN, str(path), str(tmp_path / f"o{side}"), str(shipped_onnx)],
                           capture_output=True, text=True, check=True)
        n, kb = (int(v) for v in r.stdout.split()[-2:])
        cells.append(n)
        peaks.append(kb / 1024)
    assert cells[1] > 3.5 * cells[0]  # 4x the pixels, 4x the cells ...
    assert peaks[1] < 1.15 * peaks[0] + 40, peaks  # ... in the same memory (MB): blocks, not the image
