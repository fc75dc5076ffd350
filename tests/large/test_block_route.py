"""The block route (asfyolo_rt.large.segment_large) equals the whole image through the same stages: no cell split
or duplicated at block or tile seams, whatever the block size; the table measures what predict measures."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import zarr
from conftest import BLOCK, nuclei_image
from helpers import id_map

from asfyolo_rt.large.api import segment_large


def whole_image(a: np.ndarray, model: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels, CELL_DTYPE table) of the image in memory: one plan, one merge, one paint (the same scaling)."""
    from asfyolo_rt.data.io import to_uint8_rgb
    from asfyolo_rt.infer.writers import cell_table
    from asfyolo_rt.large.context import make_context
    from asfyolo_rt.large.readers import ImageSpec
    from asfyolo_rt.large.resample import resample
    from asfyolo_rt.runtime.registry import BackendSpec
    from asfyolo_rt.runtime.stages import paint

    ctx = make_context(ImageSpec(a).open(), BackendSpec(str(model)), {})
    plan = ctx.runner.plan(a.shape)
    hs, ws = plan.scaled_shape
    scaled = resample(to_uint8_rgb(a)[..., 0], (0, 0), a.shape, (hs, ws), (0, hs, 0, ws))
    res, labels = paint(ctx.runner.run_plan(np.repeat(scaled[..., None], 3, 2), plan, {}), ctx.config.min_visible)
    table = cell_table(labels, res.boxes.numpy(), res.scores.numpy(), res.classes.numpy(), res.masks.windows.numpy())
    return labels, table


def test_blocks_equal_the_whole_image(serial, shipped_onnx: Path) -> None:
    out, labels = serial
    ref, table = whole_image(nuclei_image(), shipped_onnx)
    ids = id_map(ref, labels)
    assert len(ids) == len(table) > 50
    rows = list(csv.DictReader(open(out / "nuclei.cells.csv")))
    assert len(rows) == len(table)
    by_id = {int(r["id"]): r for r in rows}
    for t in table:  # area and centroid measured on the label image, as predict's cells.csv
        r = by_id[ids[int(t["id"])]]
        assert int(r["area_px"]) == t["area_px"] and float(r["score"]) == round(float(t["score"]), 5)
        assert float(r["centroid_x"]) == round(float(t["centroid_x"]), 2)
        assert float(r["centroid_y"]) == round(float(t["centroid_y"]), 2)


def test_cells_cross_block_seams_whole(serial) -> None:
    """Cells lying across block seams exist (the test means something) and each is one label (equal to the
    whole-image run above: never split in two, never twice)."""
    _, labels = serial
    h, w = labels.shape
    seams = [labels[:, x - 1: x + 1] for x in range(BLOCK, w, BLOCK)] + [labels[y - 1: y + 1].T for y in range(BLOCK, h, BLOCK)]
    crossing = {int(v) for s in seams for v in np.unique(s[:, 0][(s[:, 0] == s[:, 1]) & (s[:, 0] > 0)])}
    assert len(crossing) >= 10
    assert len(np.unique(labels)) - 1 == labels.max()  # ids 1..n, sequential


def test_block_size_does_not_change_the_result(serial, nuclei_zarr: Path, shipped_onnx: Path, tmp_path: Path) -> None:
    _, labels = serial
    res = segment_large(nuclei_zarr, tmp_path, model=shipped_onnx, block=256, chunk=128)
    assert res.blocks == 9
    id_map(labels, np.asarray(zarr.open_array(str(res.labels), mode="r")))


def test_outputs_ome_zarr_pyramid_and_parquet(serial) -> None:
    import pyarrow.parquet as pq

    out, labels = serial
    group = zarr.open_group(str(out / "nuclei.ome.zarr" / "labels" / "cells"), mode="r")
    ms = group.attrs["multiscales"][0]
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2", "3"]  # 720 -> 360 -> 180 -> 90 (chunk 128)
    assert group["0"].dtype == np.uint32 and group["0"].chunks == (128, 128)
    assert np.array_equal(np.asarray(group["1"]), labels[::2, ::2])
    assert np.array_equal(np.asarray(group["3"]), labels[::8, ::8])
    table = pq.read_table(out / "nuclei.cells.parquet")
    assert table.num_rows == labels.max() and table.column("area_px").to_pylist()[0] > 0
