"""The npe2 manifest registers and validates; the reader/writer round trip of a Labels layer; measurements
agree with the ones `asfyolo-rt predict` writes. No viewer needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")

from asfyolo_rt.errors import DataError  # noqa: E402
from asfyolo_rt.napari.io import get_reader, write_labels  # noqa: E402
from asfyolo_rt.napari.measure import measure_labels  # noqa: E402


def test_npe2_validate_passes_for_the_installed_plugin() -> None:
    exe = Path(sys.executable).with_name("npe2")
    out = subprocess.run([str(exe), "validate", "asfyolo-rt"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


def test_manifest_contributes_the_widget_reader_and_writer() -> None:
    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("asfyolo-rt")
    c = manifest.contributions
    assert [w.display_name for w in c.widgets] == ["ASF-YOLO cells"]
    assert [r.command for r in c.readers] == ["asfyolo-rt.get_reader"]
    assert [w.layer_types for w in c.writers] == [["labels"]]
    for cmd in c.commands:  # every python_name resolves to an object in the package
        assert callable(cmd.exec) and cmd.python_name.startswith("asfyolo_rt.napari.")
        module, attr = cmd.python_name.split(":")
        assert callable(getattr(__import__(module, fromlist=[attr]), attr))


def _labels() -> np.ndarray:
    lab = np.zeros((2, 40, 50), np.int32)  # two planes, ids run on
    lab[0, 2:10, 3:9] = 1
    lab[0, 20:31, 30:45] = 2
    lab[1, 5:15, 5:7] = 3
    return lab


def test_writer_then_reader_round_trip(tmp_path: Path) -> None:
    lab = _labels()
    features = {"index": np.array([1, 2, 3]), "score": np.array([0.9, 0.8, 0.7]), "class": np.array([0, 0, 0])}
    written = write_labels(str(tmp_path / "edited"), lab, {"features": features})
    assert written == [str(tmp_path / "edited.tif"), str(tmp_path / "cells.csv")]
    reader = get_reader(str(tmp_path / "edited.tif"))
    assert reader is not None
    ((data, meta, kind),) = reader(str(tmp_path / "edited.tif"))
    assert kind == "labels" and data.dtype == np.uint16
    np.testing.assert_array_equal(data, lab)
    f = meta["features"]
    assert f["index"].tolist() == [1, 2, 3] and f["plane"].tolist() == [0, 0, 1]
    assert f["area_px"].tolist() == [48, 165, 20]
    np.testing.assert_allclose(f["score"], [0.9, 0.8, 0.7])
    np.testing.assert_allclose(f["centroid_x"], [6.0, 37.5, 6.0])  # pixel-centre convention (+0.5)
    np.testing.assert_allclose(f["x2"], [9, 45, 7])
    with pytest.raises(DataError, match="already exists"):  # never overwrites
        write_labels(str(tmp_path / "edited.tif"), lab, {})


def test_reader_leaves_other_tiffs_to_other_readers(tmp_path: Path) -> None:
    import tifffile

    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((8, 8), np.uint16))
    assert get_reader(str(tmp_path / "plain.tif")) is None  # no cells.csv beside it
    (tmp_path / "cells.csv").write_text("name,count\nplain,1\n")
    assert get_reader(str(tmp_path / "plain.tif")) is None  # another tool's cells.csv


def test_measurements_match_predict_cells_csv() -> None:
    """measure_labels gives cell_rows' numbers (what cells.csv of `predict` holds) on the same label map."""
    from asfyolo_rt.infer.predict import ImageResult
    from asfyolo_rt.infer.sources import Frame
    from asfyolo_rt.infer.writers import cell_rows

    lab = _labels()[0]
    n = int(lab.max())
    res = ImageResult(Frame("f", Path("f.png"), np.zeros((40, 50, 3), np.uint8)), None,
                      np.zeros((n, 4), np.float32), np.ones(n), np.zeros(n, np.int64), lab, masks=None)
    rows = cell_rows(res)
    t = measure_labels(lab)
    assert t.ids.tolist() == [r["id"] for r in rows]
    assert t.area_px.tolist() == [r["area_px"] for r in rows]
    np.testing.assert_allclose(t.centroid_x.round(2), [r["centroid_x"] for r in rows])
    np.testing.assert_allclose(t.centroid_y.round(2), [r["centroid_y"] for r in rows])
    np.testing.assert_allclose(t.equivalent_diameter_px.round(3), [r["equivalent_diameter_px"] for r in rows])
