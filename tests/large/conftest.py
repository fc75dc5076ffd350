"""Fixtures of the block route: the shipped model as a small static ONNX (tests/runtime's fixture), and a
synthetic uint16 nuclei image as an OME-Zarr several blocks wide."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location("_runtime_conftest", Path(__file__).parents[1] / "runtime" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_runtime = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_runtime)
shipped_onnx = _runtime.shipped_onnx  # the same session fixture: the shipped model, static 1x3x320x320

SHAPE = (560, 720)  # 5 x 6 blocks of 128 px at 1.5 network px per image px: tiles of 320 cross every block seam
BLOCK = 128


def nuclei_image(shape: tuple[int, int] = SHAPE, seed: int = 5) -> np.ndarray:
    """(H, W) uint16 camera-like nuclei, ~1 per 4,000 px (dense enough to lie across every seam)."""
    from asfyolo_rt.data.synth import make_nuclei

    img, _ = make_nuclei(seed, shape=shape, n_cells=(shape[0] * shape[1] // 4000,) * 2)
    a = np.asarray(img)
    a = a if a.ndim == 2 else a[..., 0]
    return (a.astype(np.float32) / max(float(a.max()), 1.0) * 4000 + 100).astype(np.uint16)


@pytest.fixture(scope="session")
def nuclei_zarr(tmp_path_factory) -> Path:
    """The nuclei image as an OME-Zarr (NGFF 0.4, chunks of 128, with a pyramid)."""
    from asfyolo_rt.data.mosaic import write_ome_zarr

    a = nuclei_image()
    path = tmp_path_factory.mktemp("zarr") / "nuclei.ome.zarr"
    return write_ome_zarr(path, a.shape, "uint16", lambda y0, y1, x0, x1: a[y0:y1, x0:x1], chunk=BLOCK)


@pytest.fixture(scope="session")
def serial(nuclei_zarr: Path, shipped_onnx: Path, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The image through the block route in this process: (output folder, level-0 labels)."""
    import zarr

    from asfyolo_rt.large.api import segment_large

    out = tmp_path_factory.mktemp("serial")
    res = segment_large(nuclei_zarr, out, model=shipped_onnx, block=BLOCK)
    assert res.blocks == 30 and res.shape == SHAPE and not res.resumed
    return out, np.asarray(zarr.open_array(str(res.labels), mode="r"))
