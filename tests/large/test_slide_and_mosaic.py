"""A whole-slide file (Aperio SVS layout written with tifffile) read through tiffslide by the predict CLI, with
QuPath GeoJSON; the generated DSB2018 mosaic and its ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import nuclei_image
from helpers import read_rows


def write_svs(path: Path, rgb: np.ndarray, mpp: float) -> None:
    """Baseline (tiled), thumbnail (strips), one half-resolution level (tiled): the SVS page layout."""
    import tifffile

    h, w = rgb.shape[:2]
    head = "Aperio Image Library v12.0.0\n"
    with tifffile.TiffWriter(path) as tw:
        tw.write(rgb, tile=(128, 128), photometric="rgb", metadata=None,
                 description=f"{head}{w}x{h} [0,0 {w}x{h}] (128x128) RAW|AppMag = 40|MPP = {mpp}")
        tw.write(np.ascontiguousarray(rgb[::8, ::8]), photometric="rgb", metadata=None, description=f"{head}thumb")
        tw.write(np.ascontiguousarray(rgb[::2, ::2]), tile=(128, 128), photometric="rgb", metadata=None,
                 description=f"{head}{w // 2}x{h // 2}")


def test_slide_through_tiffslide_with_geojson(shipped_onnx: Path, tmp_path: Path, cli) -> None:
    grey = (nuclei_image((400, 512), seed=9) // 16).clip(0, 255).astype(np.uint8)
    write_svs(tmp_path / "he.svs", np.repeat(grey[..., None], 3, 2), 0.5)
    r = cli("predict", tmp_path / "he.svs", "--model", shipped_onnx, "--block", 256, "--out", tmp_path / "o", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    (info,) = json.loads(r.stdout)["images"]
    assert info["shape"] == [400, 512] and info["level"] == 0 and info["intensity"]["method"] == "uint8"
    labels = np.asarray(zarr.open_array(str(tmp_path / "o" / "he.ome.zarr" / "labels" / "cells" / "0"), mode="r"))
    rows = read_rows(tmp_path / "o" / "he.cells.csv")
    assert len(rows) == info["cells"] == labels.max() > 20
    features = json.loads((tmp_path / "o" / "he.geojson").read_text())["features"]
    assert sorted(f["properties"]["measurements"]["id"] for f in features) == sorted(rows)
    f = features[0]
    assert f["properties"]["objectType"] == "detection" and f["geometry"]["type"] == "Polygon"
    assert f["properties"]["measurements"]["area_px"] == int(rows[f["properties"]["measurements"]["id"]]["area_px"])
    r = cli("predict", tmp_path / "he.svs", "--model", shipped_onnx, "--level", 1, "--block", 256, "--out",
            tmp_path / "o1", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["images"][0]["shape"] == [200, 256]


@pytest.mark.datasets
def test_mosaic_is_made_chunk_by_chunk_with_ground_truth(datasets_root: Path, tmp_path: Path, cli) -> None:
    r = cli("data", "mosaic", datasets_root / "DSB2018", "--size", "700", "--chunk", "256", "--out",
            tmp_path / "m.ome.zarr", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    g = zarr.open_group(str(tmp_path / "m.ome.zarr"), mode="r")
    img, gt = np.asarray(g["0"]), np.asarray(g["labels/ground_truth/0"])
    assert img.shape == gt.shape == (700, 700) and img.dtype == np.uint16 and gt.dtype == np.uint32
    assert g["0"].chunks == (256, 256) and g["2"].shape == (175, 175)  # 700 -> 350 -> 175 (<= one chunk)
    assert 100 < img[gt == 0].mean() < img[gt > 0].mean()  # dark background (offset 100), bright nuclei
    ids = np.unique(gt)[1:]
    assert len(ids) == json.loads(r.stdout)["nuclei_visible"] > 100
    from asfyolo_rt.data.dataset import load_split
    from asfyolo_rt.data.mosaic import write_mosaic

    again = write_mosaic(load_split(datasets_root / "DSB2018", "val", on_problem="warn"), tmp_path / "n.ome.zarr",
                         (700, 700), chunk=128)  # other chunks, same pixels: every chunk made on its own
    assert np.array_equal(np.asarray(zarr.open_array(str(again.path / "0"), mode="r")), img)
