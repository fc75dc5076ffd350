"""The example program `asfyolo_segment` against `asfyolo-rt predict` with the same model file: 16-bit TIFF
(deflate, LZW + predictor) and 8-bit PNG in; the label TIFF's cells and cells.csv's columns and rows out."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from cpp_helpers import PY, label_f1, run


def _predict(model: Path, image: Path, out: Path) -> tuple[np.ndarray, list[dict[str, str]]]:
    done = run([Path(PY).parent / "asfyolo-rt", "predict", image, "--model", model, "--out", out, "--no-overlays",
                "--no-coco"])
    assert done.returncode == 0, done.stderr[-3000:]
    labels = tifffile.imread(next((out / "labels").glob("*.tif")))
    with open(out / "cells.csv", newline="") as f:
        return labels, list(csv.DictReader(f))


def _segment(build: Path, model: Path, image: Path, out: Path) -> tuple[np.ndarray, list[dict[str, str]]]:
    done = run([build / "asfyolo_segment", model, image, out / "labels.tif", "--cells", out / "cells.csv",
                "--threads", "2"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cells," in done.stderr and "inference" in done.stderr
    with open(out / "cells.csv", newline="") as f:
        return tifffile.imread(out / "labels.tif"), list(csv.DictReader(f))


@pytest.mark.parametrize("compression", ["zlib", "lzw"])
def test_segment_tool_matches_predict(native_build, shipped_onnx, nuclei_frame, tmp_path, compression):
    if not (native_build / "asfyolo_segment").is_file():
        pytest.skip("asfyolo_segment not built (libpng-dev / zlib1g-dev missing)")
    image = tmp_path / "frame.tif"
    kw = {"predictor": True} if compression == "lzw" else {}
    tifffile.imwrite(image, nuclei_frame, compression=compression, rowsperstrip=50, **kw)
    py_labels, py_rows = _predict(shipped_onnx, image, tmp_path / "py")
    c_labels, c_rows = _segment(native_build, shipped_onnx, image, tmp_path)
    assert c_labels.dtype == np.uint16 and c_labels.shape == nuclei_frame.shape
    f1, n_py, n_c = label_f1(py_labels, c_labels)
    assert n_py > 20 and n_c == n_py and f1 >= 0.999
    assert list(c_rows[0]) == list(py_rows[0])  # predict's columns, in order
    assert len(c_rows) == len(py_rows) and c_rows[0]["image"] == py_rows[0]["image"] == "frame"
    assert sorted(int(r["area_px"]) for r in c_rows) == sorted(int(r["area_px"]) for r in py_rows)
    assert all(r["plane"] == "" and r["id"] == str(i + 1) for i, r in enumerate(c_rows))


def test_segment_tool_reads_png_and_refuses_bad_files(native_build, shipped_onnx, tmp_path):
    if not (native_build / "asfyolo_segment").is_file():
        pytest.skip("asfyolo_segment not built (libpng-dev / zlib1g-dev missing)")
    import cv2

    rgb = np.full((120, 150, 3), 20, np.uint8)
    cv2.circle(rgb, (60, 50), 9, (200, 180, 220), -1)
    cv2.imwrite(str(tmp_path / "a.png"), rgb[..., ::-1])
    done = run([native_build / "asfyolo_segment", shipped_onnx, tmp_path / "a.png", tmp_path / "a.tif"])
    assert done.returncode == 0, done.stderr
    assert tifffile.imread(tmp_path / "a.tif").shape == (120, 150)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    done = run([native_build / "asfyolo_segment", shipped_onnx, tmp_path / "bad.png", tmp_path / "b.tif"])
    assert done.returncode == 1 and "bad.png" in done.stderr and done.stderr.count("\n") == 1
    done = run([native_build / "asfyolo_segment", tmp_path / "nothing", tmp_path / "a.png", tmp_path / "b.tif"])
    assert done.returncode == 1 and "nothing: no such file or folder" in done.stderr
    done = run([native_build / "asfyolo_segment", shipped_onnx])
    assert done.returncode == 2 and "usage" in done.stderr
