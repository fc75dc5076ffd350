"""Pixel-edge outlines and the QuPath / Fiji / OME-Zarr exports, read back with the same libraries."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from asfyolo_rt.data.stacks import PhysicalSize, iter_planes, stack_layout
from asfyolo_rt.infer.exports import cell_outlines, to_ngff, write_geojson, write_imagej_rois, write_ome_zarr
from asfyolo_rt.infer.polygons import mask_outline, ring_area


def _shoelace(points: np.ndarray) -> float:
    return abs(ring_area(np.asarray(points, np.float64)))


@pytest.mark.parametrize("seed", range(4))
def test_outline_area_equals_mask_area(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = np.zeros((40, 50), np.uint8)
    cv2.ellipse(mask, (25, 20), (int(rng.integers(4, 20)), int(rng.integers(3, 15))), float(rng.integers(0, 180)),
                0, 360, 1, -1)
    poly = mask_outline(mask.astype(bool), 100, 7)
    assert poly is not None
    assert _shoelace(poly) == mask.sum()  # exact: the outline runs on pixel edges
    assert poly[:, 0].min() == 100 + np.nonzero(mask.any(0))[0].min()  # window origin applied
    assert poly[:, 1].max() == 7 + np.nonzero(mask.any(1))[0].max() + 1


def test_outline_keeps_largest_part_and_drops_holes() -> None:
    m = np.zeros((10, 10), bool)
    m[1:7, 1:7] = True
    m[3:5, 3:5] = False  # a hole
    m[8, 8] = True  # a separate pixel
    m[7, 7] = True  # touches the square only diagonally: another part (4-connectivity)
    poly = mask_outline(m)
    assert poly is not None and _shoelace(poly) == 36
    assert len(poly) == 4  # corners only
    assert mask_outline(np.zeros((3, 3), bool)) is None


def _labels() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lm = np.zeros((64, 80), np.int32)
    cv2.circle(lm, (20, 20), 8, 1, -1)
    cv2.circle(lm, (50, 30), 10, 2, -1)
    cv2.circle(lm, (56, 34), 7, 3, -1)  # covers part of cell 2
    windows = np.array([[10, 10, 22, 22], [38, 18, 24, 24], [47, 25, 18, 18], [0, 0, 5, 5]])
    return lm, windows, np.array([0, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.6])  # cell 4 is not visible


def test_geojson_round_trip(tmp_path: Path) -> None:
    lm, win, cls, sc = _labels()
    outlines = cell_outlines(lm, win, cls, sc, {0: "cell", 1: "mitosis"})
    doc = json.loads(write_geojson(tmp_path / "a.geojson", outlines).read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 3
    for f, cell_id in zip(doc["features"], (1, 2, 3)):
        props = f["properties"]
        assert props["objectType"] == "detection" and props["measurements"]["id"] == cell_id
        ring = np.array(f["geometry"]["coordinates"][0])
        assert np.array_equal(ring[0], ring[-1])  # closed ring, as GeoJSON requires
        assert _shoelace(ring[:-1]) == (lm == cell_id).sum() == props["measurements"]["area_px"]
    assert [f["properties"]["classification"]["name"] for f in doc["features"]] == ["cell", "cell", "mitosis"]
    assert doc["features"][0]["properties"]["measurements"]["score"] == pytest.approx(0.9)


def test_imagej_rois_round_trip(tmp_path: Path) -> None:
    import roifile

    lm, win, cls, sc = _labels()
    outlines = cell_outlines(lm, win, cls, sc, {0: "cell", 1: "mitosis"})
    rois = roifile.roiread(write_imagej_rois(tmp_path / "a.rois.zip", outlines))
    assert [r.name for r in rois] == ["cell-1", "cell-2", "cell-3"]
    for r, cell_id in zip(rois, (1, 2, 3)):
        assert r.roitype == roifile.ROI_TYPE.POLYGON
        assert _shoelace(r.coordinates()) == (lm == cell_id).sum()


def test_stack_rois_and_geojson_carry_planes(tmp_path: Path) -> None:
    import roifile

    data = np.zeros((2, 3, 16, 16), np.uint8)  # T Z Y X
    tifffile.imwrite(tmp_path / "s.tif", data, imagej=True, metadata={"axes": "TZYX"})
    lay = stack_layout(tmp_path / "s.tif")
    plane = [p for p, _ in iter_planes(lay)][4]  # t=1, z=1
    lm = np.zeros((16, 16), np.int32)
    lm[3:6, 4:9] = 1
    outlines = cell_outlines(lm, None, np.array([0]), np.array([0.5]), {0: "cell"}, id_offset=10, plane=plane)
    roi = roifile.roiread(write_imagej_rois(tmp_path / "s.zip", outlines))
    roi = roi[0] if isinstance(roi, list) else roi
    assert roi.name == "cell-11-t1-z1" and (roi.t_position, roi.z_position) == (2, 2)  # ImageJ is 1-based
    doc = json.loads(write_geojson(tmp_path / "s.geojson", outlines).read_text())
    assert doc["features"][0]["geometry"]["plane"] == {"c": -1, "z": 1, "t": 1}


def test_to_ngff_orders_axes() -> None:
    a = np.zeros((5, 2, 7, 9))  # Z C Y X (ImageJ order)
    b, axes = to_ngff(a, "ZCYX")
    assert axes == "czyx" and b.shape == (2, 5, 7, 9)
    assert to_ngff(np.zeros((4, 7, 9)), "IYX")[1] == "zyx"  # plain multi-page: z, as Fiji opens it
    assert to_ngff(np.zeros((7, 9, 3)), "YXS")[0].shape == (3, 7, 9)


def test_ome_zarr_round_trip(tmp_path: Path) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (5, 2, 32, 24), dtype=np.uint8)  # Z C Y X
    lab = np.zeros((5, 32, 24), np.uint16)
    lab[2, 4:9, 5:10], lab[3, 10:20, 3:8] = 1, 2
    path = write_ome_zarr(tmp_path / "a.ome.zarr", img, "ZCYX", lab, "ZYX", PhysicalSize(0.3, 0.3, 1.5))
    nodes = list(Reader(parse_url(str(path)))())
    image = np.asarray(nodes[0].data[0])
    assert image.shape == (2, 5, 32, 24) and np.array_equal(image, img.transpose(1, 0, 2, 3))
    scale = nodes[0].metadata["coordinateTransformations"][0][0]["scale"]
    assert scale == [1.0, 1.5, 0.3, 0.3]
    label_nodes = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    assert len(label_nodes) == 1 and label_nodes[0].metadata["name"] == "cells"
    back = np.asarray(label_nodes[0].data[0])
    assert back.shape == (1, 5, 32, 24) and np.array_equal(back[0], lab)
    with pytest.raises(Exception, match="already exists"):
        write_ome_zarr(path, img, "ZCYX", lab, "ZYX", PhysicalSize())
