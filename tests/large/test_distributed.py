"""Identical results serial, on a Dask LocalCluster of worker processes, and after kill -9 and a resume; one task
per image for a plate, with predict's own outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zarr
from conftest import BLOCK, nuclei_image
from helpers import id_map, same_table

CELLS = "nuclei.cells.csv"
LABELS = "nuclei.ome.zarr/labels/cells/0"


def _labels(out: Path) -> np.ndarray:
    return np.asarray(zarr.open_array(str(out / LABELS), mode="r"))


def test_local_cluster_equals_serial(serial, nuclei_zarr: Path, shipped_onnx: Path, tmp_path: Path, cli) -> None:
    ref_out, ref = serial
    r = cli("predict", nuclei_zarr, "--model", shipped_onnx, "--block", BLOCK, "--cluster", "local:2", "--out",
            tmp_path, "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "dashboard http" in r.stderr
    (info,) = json.loads(r.stdout)["images"]
    assert info["blocks"] == 30 and info["cells"] == ref.max()
    same_table(ref_out / CELLS, tmp_path / CELLS, id_map(ref, _labels(tmp_path)))


def test_kill_9_then_resume_redoes_only_unfinished_blocks(serial, nuclei_zarr: Path, shipped_onnx: Path,
                                                          tmp_path: Path, cli) -> None:
    ref_out, ref = serial
    args = ["predict", str(nuclei_zarr), "--model", str(shipped_onnx), "--block", str(BLOCK), "--out", str(tmp_path)]
    blocks = tmp_path / "nuclei.ome.zarr" / ".asfyolo" / "blocks"
    proc = subprocess.Popen([sys.executable, "-m", "asfyolo_rt", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while len(list(blocks.glob("*.npz"))) < 8 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in blocks.glob("*.npz")}
    assert proc.returncode == -signal.SIGKILL and 8 <= len(before) < 30  # killed half-way, records whole
    assert not (tmp_path / CELLS).exists()
    r = cli(*args, "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["images"][0]["resumed"] is True
    assert {p.name: p.stat().st_mtime_ns for p in blocks.glob("*.npz") if p.name in before} == before
    same_table(ref_out / CELLS, tmp_path / CELLS, id_map(ref, _labels(tmp_path)))
    r = cli(*args, "--conf", "0.3")  # another option into the same output: refused, nothing mixed
    assert r.exit_code == 1 and "other settings" in r.stdout + r.stderr


def test_plate_on_cluster_writes_what_predict_writes(shipped_onnx: Path, tmp_path: Path, cli) -> None:
    import tifffile

    plate = tmp_path / "plate"
    plate.mkdir()
    for k, shape in enumerate([(200, 240), (256, 256), (180, 300)]):
        tifffile.imwrite(plate / f"well_{k}.tif", nuclei_image(shape, seed=20 + k))
    outs = []
    for extra in ([], ["--cluster", "local:2"]):
        out = tmp_path / f"o{len(outs)}"
        r = cli("predict", str(plate / "*.tif"), "--model", shipped_onnx, "--out", out, *extra)
        assert r.exit_code == 0, r.stdout + r.stderr
        outs.append(out)
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    assert len(files) == 9 and Path("labels/well_2.tif") in files  # cells, summary, coco, 3 labels, 3 overlays
    for f in files:
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f
    assert sorted(p.relative_to(outs[1]) for p in outs[1].rglob("*") if p.is_file()) == files
