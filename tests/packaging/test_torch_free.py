"""The CLI start-up, the data/IO layer and the prediction writers run without importing torch.

`import torch` takes over a second on a small machine; every `asfyolo-rt` command paid it at start-up, and
the torch-free inference path for exported models must not pay it at all. Each import check runs in a fresh
interpreter (this one has long imported torch) and names the chain of modules that imported torch.

The writers take box-local masks either as the torch-backed `PackedMasks` of kernels/mask_assembly or as a
NumPy twin with the same attributes; both must give the same bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: records which asfyolo_rt frames were on the stack when torch was first imported.
_PROBE = """
import json, sys, traceback

chain = []

class _Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not chain:
            chain.extend(f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()
                         if "asfyolo_rt" in f.filename or "/kernels/" in f.filename)
            chain.append("torch")
        return None

sys.meta_path.insert(0, _Watch())
exit_code = None
try:
    exec(sys.argv[1])
except SystemExit as exc:
    exit_code = exc.code
print(json.dumps({"torch": "torch" in sys.modules, "chain": chain, "exit": exit_code}))
"""


def _probe(code: str) -> dict:
    run = subprocess.run([sys.executable, "-c", _PROBE, code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


TORCH_FREE_MODULES = [
    "asfyolo_rt.cli.main",
    "asfyolo_rt.data",
    "asfyolo_rt.data.io",
    "asfyolo_rt.data.letterbox",
    "asfyolo_rt.data.rle",
    "asfyolo_rt.data.stacks",
    "asfyolo_rt.infer.sources",
    "asfyolo_rt.infer.writers",
]


@pytest.mark.parametrize("module", TORCH_FREE_MODULES)
def test_module_imports_without_torch(module: str) -> None:
    found = _probe(f"import {module}")
    assert not found["torch"], f"importing {module} imports torch via:\n  " + "\n  ".join(found["chain"])


@pytest.mark.parametrize("argv", [["--help"], ["predict", "--help"], ["data", "--help"]], ids=" ".join)
def test_cli_help_runs_without_torch(argv: list[str]) -> None:
    found = _probe(f"import sys; from asfyolo_rt.cli.main import main; sys.argv = ['asfyolo-rt', *{argv!r}]; main()")
    assert found["exit"] in (0, None), found
    assert not found["torch"], f"asfyolo-rt {' '.join(argv)} imports torch via:\n  " + "\n  ".join(found["chain"])


def test_letterbox_geometry_runs_without_torch() -> None:
    code = """
import numpy as np
from asfyolo_rt.data.letterbox import letterbox, preprocess_array
out, t = letterbox(np.zeros((30, 60, 3), np.uint8), 64)
assert out.shape == (64, 64, 3) and t.scale == 64 / 60, t
assert np.allclose(t.boxes_to_original(t.boxes_to_network(np.array([[1.0, 2.0, 30.0, 20.0]]))), [[1, 2, 30, 20]])
x, _ = preprocess_array([np.full((30, 60, 3), 255, np.uint8)], 64)
assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32 and x.max() == 1.0
"""
    found = _probe(code)
    assert found["exit"] is None and not found["torch"], found


def test_preprocess_is_preprocess_array_as_a_tensor() -> None:
    torch = pytest.importorskip("torch")
    from asfyolo_rt.data.letterbox import preprocess, preprocess_array

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (37, 51, 3), dtype=np.uint8), rng.integers(0, 256, (64, 20, 3), dtype=np.uint8)]
    tensor, t1 = preprocess(images, (48, 64))
    array, t2 = preprocess_array(images, (48, 64))
    assert isinstance(tensor, torch.Tensor) and tensor.is_contiguous() and tensor.dtype == torch.float32
    np.testing.assert_array_equal(tensor.numpy(), array)
    assert t1 == t2
    # the second image (64 x 20) is resized to 48 x 15 and placed at columns 24..38: grey 114 either side
    assert t2[1].pad == (24.0, 0.0)
    assert np.all(array[1, :, :, :24] == np.float32(114) / np.float32(255))
    assert np.all(array[1, :, :, 39:] == np.float32(114) / np.float32(255))


# ---- writers: NumPy twin of PackedMasks ------------------------------------------------------------------------


from asfyolo_rt.runtime.lean_ops import PackedArrays as NumpyPackedMasks  # noqa: E402 (the writers' NumPy twin)


def _ellipse_masks(h: int, w: int, n: int, seed: int) -> tuple[NumpyPackedMasks, np.ndarray]:
    """n random ellipses (some cut by the frame's edges, one window as tall as the frame), and boxes."""
    rng = np.random.default_rng(seed)
    data, offsets, windows, boxes = [], [0], [], []
    for i in range(n):
        a, b = rng.uniform(2, 9, 2)
        cx, cy = rng.uniform(-3, w + 3), rng.uniform(-3, h + 3)
        if i == 0:  # a window as tall as the frame: RLE runs that join across columns
            cy, b = h / 2, h
        x0, y0 = int(np.clip(cx - a - 1, 0, w - 1)), int(np.clip(cy - b - 1, 0, h - 1))
        x1, y1 = int(np.clip(cx + a + 2, x0 + 1, w)), int(np.clip(cy + b + 2, y0 + 1, h))
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.ellipse(m, (int(cx - x0), int(cy - y0)), (int(a), int(b)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        data.append(m.ravel())
        offsets.append(offsets[-1] + m.size)
        windows.append((x0, y0, x1 - x0, y1 - y0))
        boxes.append((x0 + 0.25, y0 + 0.5, x1 - 0.75, y1 - 0.125))
    packed = NumpyPackedMasks(np.concatenate(data), np.array(offsets, np.int64), np.array(windows, np.int32),
                              np.zeros(n, np.int64), (h, w))
    return packed, np.array(boxes, np.float32)


def _dense(packed: NumpyPackedMasks, i: int) -> np.ndarray:
    x0, y0, w, h = (int(v) for v in packed.windows[i])
    out = np.zeros(packed.size, np.uint8)
    out[y0 : y0 + h, x0 : x0 + w] = packed.mask(i)
    return out


def _label_map(packed: NumpyPackedMasks) -> np.ndarray:
    """1 + index of the first (highest-scoring) mask covering each pixel; masks come sorted by score."""
    out = np.zeros(packed.size, np.int32)
    for i in reversed(range(len(packed))):
        out[_dense(packed, i) > 0] = i + 1
    return out


def _result(masks: object, packed: NumpyPackedMasks, boxes: np.ndarray, image: np.ndarray):
    from asfyolo_rt.infer.predict import ImageResult
    from asfyolo_rt.infer.sources import Frame

    n = len(packed)
    rng = np.random.default_rng(1)
    return ImageResult(frame=Frame(name="cells", source=Path("in/cells.png"), image=image), transform=None,
                       boxes=boxes, scores=np.linspace(0.9, 0.3, n, dtype=np.float32),
                       classes=rng.integers(0, 2, n).astype(np.int64), label_map=_label_map(packed), masks=masks)


OUTPUTS = ["cells.csv", "summary.csv", "predictions.coco.json", "labels/cells.tif", "overlays/cells.png"]


@pytest.mark.parametrize("seed", [0, 1])
def test_numpy_twin_masks_write_the_same_bytes_as_packed_masks(tmp_path: Path, seed: int) -> None:
    torch = pytest.importorskip("torch")
    from asfyolo_rt.kernels.mask_assembly import PackedMasks

    from asfyolo_rt.infer.writers import PredictionWriter

    h, w = 61, 83
    packed, boxes = _ellipse_masks(h, w, 40, seed)
    tensors = PackedMasks(torch.from_numpy(packed.data), torch.from_numpy(packed.offsets),
                          torch.from_numpy(packed.windows), torch.from_numpy(packed.batch_idx), packed.size)
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    for tag, masks in (("torch", tensors), ("numpy", packed)):
        writer = PredictionWriter(tmp_path / tag, names={0: "cell", 1: "mitosis"})
        writer.write(_result(masks, packed, boxes, image))
        writer.close()
    for name in OUTPUTS:
        assert (tmp_path / "numpy" / name).read_bytes() == (tmp_path / "torch" / name).read_bytes(), name


def test_coco_rle_and_cells_csv_match_the_masks(tmp_path: Path) -> None:
    """What the writers compute from the packed arrays (RLE, area, centroids) against the dense masks."""
    import csv

    from asfyolo_rt.data.io import read_image_raw
    from asfyolo_rt.data.rle import rle_decode
    from asfyolo_rt.infer.writers import PredictionWriter

    h, w = 47, 52
    packed, boxes = _ellipse_masks(h, w, 30, 2)
    result = _result(packed, packed, boxes, np.zeros((h, w, 3), np.uint8))
    writer = PredictionWriter(tmp_path, names={0: "cell", 1: "mitosis"})
    writer.write(result)
    writer.close()
    anns = json.loads((tmp_path / "predictions.coco.json").read_text())["annotations"]
    assert len(anns) == len(packed)
    for i, ann in enumerate(anns):
        dense = _dense(packed, i)
        np.testing.assert_array_equal(rle_decode(ann["segmentation"]), dense, err_msg=f"mask {i}")
        assert ann["area"] == int(dense.sum())
    labels = result.label_map
    np.testing.assert_array_equal(read_image_raw(tmp_path / "labels" / "cells.tif"), labels)
    with open(tmp_path / "cells.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        ys, xs = np.nonzero(labels == i + 1)
        assert int(row["area_px"]) == ys.size
        if ys.size:
            assert float(row["centroid_x"]) == round(xs.mean() + 0.5, 2)
            assert float(row["centroid_y"]) == round(ys.mean() + 0.5, 2)
        else:
            assert row["centroid_x"] == ""


@pytest.mark.parametrize("h,w", [(1, 1), (5, 3), (9, 11)])
def test_window_rles_equal_rle_encode_of_the_full_masks(h: int, w: int) -> None:
    from asfyolo_rt.data.rle import rle_encode, window_rles

    rng = np.random.default_rng(h * w)
    data, offsets, windows = [], [0], []
    for _ in range(200):
        x0, y0 = int(rng.integers(0, w + 1)), int(rng.integers(0, h + 1))
        ww, hh = int(rng.integers(0, w - x0 + 1)), int(rng.integers(0, h - y0 + 1))
        if rng.random() < 0.3:  # as tall as the frame
            y0, hh = 0, h
        m = (rng.random((hh, ww)) < rng.choice([0.0, 0.5, 1.0])).astype(np.uint8)
        data.append(m.ravel())
        offsets.append(offsets[-1] + m.size)
        windows.append((x0, y0, ww, hh))
    flat = np.concatenate(data)
    got = window_rles(flat, np.array(offsets), np.array(windows), h, w)
    for i, (x0, y0, ww, hh) in enumerate(windows):
        full = np.zeros((h, w), np.uint8)
        full[y0 : y0 + hh, x0 : x0 + ww] = flat[offsets[i] : offsets[i + 1]].reshape(hh, ww)
        assert got[i] == rle_encode(full)["counts"], (i, windows[i])
