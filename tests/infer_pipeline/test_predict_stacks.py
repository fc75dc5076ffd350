"""predict on stacks: a 5-plane z-stack in, a 5-plane label TIFF, cells.csv with plane/z columns, and the
GeoJSON / ImageJ ROI / OME-Zarr outputs with the same cells; an OME hyperstack with --channel."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from asfyolo_rt.model import build_model
from asfyolo_rt.model.weights import config_of, save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    m = build_model("n")
    with torch.no_grad():  # every anchor a confident detection: non-trivial outputs from an untrained model
        for conv in m.head.m:
            conv.bias.view(3, -1)[:, 4] += 8
    path = tmp_path_factory.mktemp("w") / "n.safetensors"
    return save_checkpoint(m, path, config_of(m, img_size=64))


def _zstack(path: Path, planes: int = 5) -> np.ndarray:
    from asfyolo_rt.data.synth import make_nuclei

    data = np.stack([make_nuclei(k, shape=(72, 64), n_cells=(4, 8))[0] for k in range(planes)])
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"axes": "ZYX", "unit": "um", "spacing": 2.0})
    return data


def test_predict_zstack_writes_stack_outputs(tmp_path: Path, checkpoint: Path, cli) -> None:
    import roifile
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    src = tmp_path / "zstack.tif"
    data = _zstack(src)
    out = tmp_path / "out"
    r = cli("predict", src, "--weights", checkpoint, "--out", out, "--conf", "0.3", "--img-size", "64",
            "--geojson", "--imagej-rois", "--ome-zarr", "--no-coco", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    summaries = json.loads(r.stdout)["images"]
    assert len(summaries) == 5  # one per plane
    with tifffile.TiffFile(out / "labels" / "zstack.tif") as tif:
        labels = tif.series[0].asarray()
        assert tif.series[0].axes == "ZYX" and tif.imagej_metadata["spacing"] == 2.0
        assert tif.pages[0].tags["XResolution"].value == (2, 1)  # 0.5 um per pixel carried over
    assert labels.shape == (5, 72, 64) and labels.dtype == np.uint16
    rows = list(csv.DictReader(open(out / "cells.csv")))
    n = sum(s["cells"] for s in summaries)
    assert n > 5 and len(rows) == n
    assert sorted({int(r["plane"]) for r in rows}) == list(range(5)) and all(r["z"] == r["plane"] for r in rows)
    ids = [int(r["id"]) for r in rows]
    assert ids == list(range(1, n + 1))  # ids run on across planes: unique in the file
    for r in rows[:: max(1, n // 10)]:  # each id lies in its own plane, with the CSV's area
        assert int(r["area_px"]) == int((labels[int(r["plane"])] == int(r["id"])).sum())
    visible = [r for r in rows if int(r["area_px"]) > 0]
    features = json.loads((out / "zstack.geojson").read_text())["features"]
    assert len(features) == len(visible)
    assert [f["properties"]["measurements"]["id"] for f in features] == [int(r["id"]) for r in visible]
    assert [f["geometry"]["plane"]["z"] for f in features] == [int(r["z"]) for r in visible]
    rois = roifile.roiread(out / "zstack.rois.zip")
    assert len(rois) == len(visible)
    assert [ro.z_position for ro in rois] == [int(r["z"]) + 1 for r in visible]
    nodes = list(Reader(parse_url(str(out / "zstack.ome.zarr")))())
    assert np.array_equal(np.asarray(nodes[0].data[0]), data)
    lab = [x for x in nodes if any(isinstance(s, Label) for s in x.specs)][0]
    assert np.array_equal(np.asarray(lab.data[0]), labels)


def test_predict_ome_hyperstack_channel(tmp_path: Path, checkpoint: Path, cli) -> None:
    from asfyolo_rt.data.synth import make_nuclei

    nuclei = np.stack([make_nuclei(k, shape=(64, 64), n_cells=(3, 6))[0] for k in range(2)])  # T
    data = np.stack([np.zeros_like(nuclei), nuclei], axis=1)[:, None]  # T Z=1 C=2 Y X; channel 1 = nuclei
    src = tmp_path / "ts.ome.tif"
    tifffile.imwrite(src, data, ome=True, metadata={"axes": "TZCYX", "PhysicalSizeX": 0.4, "PhysicalSizeY": 0.4})
    r = cli("predict", src, "--weights", checkpoint, "--out", tmp_path / "o", "--img-size", "64", "--json")
    assert r.exit_code == 1 and "--channel" in r.stdout + r.stderr  # two channels: which is nuclear?
    r = cli("predict", src, "--weights", checkpoint, "--out", tmp_path / "o2", "--img-size", "64", "--channel", "1",
            "--conf", "0.3", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    with tifffile.TiffFile(tmp_path / "o2" / "labels" / "ts.ome.tif") as tif:
        assert tif.is_ome and tif.series[0].axes == "TYX" and tif.series[0].shape == (2, 64, 64)
        assert 'PhysicalSizeX="0.4"' in tif.ome_metadata
    rows = list(csv.DictReader(open(tmp_path / "o2" / "cells.csv")))
    assert {r["t"] for r in rows} == {"0", "1"} and {r["z"] for r in rows} == {""}


def test_predict_ome_zarr_input_gets_labels_group(tmp_path: Path, checkpoint: Path, cli) -> None:
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader
    from ome_zarr.writer import write_image

    from asfyolo_rt.data.synth import make_nuclei

    data = np.stack([make_nuclei(k, shape=(64, 64), n_cells=(3, 6))[0] for k in range(3)])
    src = tmp_path / "z.ome.zarr"
    write_image(data, zarr.open_group(str(src), mode="w"), scale_factors=[], axes="zyx",
                scale={"z": 2.0, "y": 0.5, "x": 0.5}, axes_units={a: "micrometer" for a in "zyx"})
    r = cli("predict", src, "--weights", checkpoint, "--out", tmp_path / "o", "--img-size", "64", "--conf", "0.3",
            "--ome-zarr", "--no-overlays")
    assert r.exit_code == 0, r.stdout + r.stderr
    nodes = list(Reader(parse_url(str(src)))())
    lab = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    assert len(lab) == 1 and lab[0].metadata["name"] == "cells"
    back = np.asarray(lab[0].data[0])
    labels = tifffile.imread(tmp_path / "o" / "labels" / "z.ome.tif")
    assert back.shape == (3, 64, 64) and np.array_equal(back, labels) and back.max() > 0
    assert lab[0].metadata["coordinateTransformations"][0][0]["scale"] == [2.0, 0.5, 0.5]
    r = cli("predict", src, "--weights", checkpoint, "--out", tmp_path / "o2", "--img-size", "64", "--ome-zarr")
    assert r.exit_code == 1 and "already exists" in r.stdout + r.stderr  # never overwritten
