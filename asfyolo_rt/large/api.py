"""`segment_large`: one image larger than memory, block by block, resumable, serial or on a Dask cluster.

    >>> from asfyolo_rt.large import segment_large                            # doctest: +SKIP
    >>> res = segment_large("slide.ome.zarr", "runs/slide", client=None)      # doctest: +SKIP
    >>> res.labels, res.cells                                                  # doctest: +SKIP
    (PosixPath('runs/slide/slide.ome.zarr/labels/cells/0'), 612345)

The steps, each a set of independent tasks whose completion is recorded (`asfyolo_rt.large.records`):

1. intensity range (integer images: a histogram per block, summed; `asfyolo_rt.large.normalise`);
2. one task per block: its tiles' detections (`asfyolo_rt.large.blocks`);
3. the global NMS over every block's boxes (`asfyolo_rt.large.reduce`), in this process;
4. one task per region: visible pixels per cell; the cells under `min_visible` dropped (a reduction);
5. one task per region: final ids painted into the label image and measured (`asfyolo_rt.large.paint`);
6. the label pyramid, then the cell table (CSV, Parquet) from the summed measurements.

A run killed at any point and started again with the same arguments does only what is not recorded, and
ends with the same label image and table as an uninterrupted run; the serial and the Dask engine run the
same tasks, so they agree too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt.atomic import atomic_write_bytes
from asfyolo_rt.errors import ConfigError
from asfyolo_rt.large.blocks import BlockGrid, histogram_block, run_block
from asfyolo_rt.large.context import DEFAULT_BLOCK, Job
from asfyolo_rt.large.engine import Engine
from asfyolo_rt.large.normalise import IntensityRange, float_range, merge_histograms, percentiles_from_hist
from asfyolo_rt.large.output import (
    create_labels,
    downsample_region,
    outline_block,
    table_columns,
    write_geojson_parts,
    write_tables,
)
from asfyolo_rt.large.paint import add_stats, count_region, paint_region
from asfyolo_rt.large.readers import ImageSpec, LargeImage
from asfyolo_rt.large.records import (
    RECORDS,
    block_file,
    check_run,
    count_file,
    outline_file,
    paint_file,
    read_npz,
    write_run,
)
from asfyolo_rt.large.reduce import global_nms
from asfyolo_rt.runtime.registry import BackendSpec

Progress = Callable[[str, int, int, dict[str, Any]], None]  # (step, done, total, last task's summary)
LOW, HIGH = 0.1, 99.9  # the percentiles of asfyolo_rt.data.io.to_uint8_rgb


@dataclass
class LargeResult:
    """What a run wrote. labels: level 0 of the label image (zarr array folder); cells: cells in it; cells_csv /
    cells_parquet: the table; shape: (H, W) of the level segmented; level; norm; blocks; seconds per step."""

    labels: Path
    image: Path
    cells: int
    cells_csv: Path
    cells_parquet: Path | None
    shape: tuple[int, int]
    level: int
    norm: IntensityRange
    blocks: int
    resumed: bool
    seconds: dict[str, float] = field(default_factory=dict)
    geojson: Path | None = None


def _model_spec(model: str | Path, backend: str | None, device: str, precision: str, threads: int | None
                ) -> BackendSpec:
    from asfyolo_rt.weights_registry import resolve_weights

    path = resolve_weights(str(model), option="model")
    if path.is_dir():
        path = path / "model.onnx"
    return BackendSpec(str(path), runtime=backend or "auto", precision=precision, device=device, threads=threads)


def _identity(spec: ImageSpec, img: LargeImage, model: BackendSpec, settings: dict[str, Any], block: int,
              chunk: int) -> dict[str, Any]:
    from asfyolo_rt.atomic import file_sha256

    src = spec.source
    source = str(Path(src).resolve()) if isinstance(src, str | Path) else f"array {tuple(src.shape)} {src.dtype}"
    return {"input": source, "level": img.level, "channel": spec.channel, "shape": list(img.shape),
            "dtype": str(img.dtype), "pixel_size_um": img.pixel_size_um, "model": model.path,
            "model_sha256": file_sha256(model.file), "backend": [model.runtime, model.precision],
            "settings": {k: settings[k] for k in sorted(settings)}, "block": block, "chunk": chunk}


def _intensity(img: LargeImage, spec: ImageSpec, grid: BlockGrid, engine: Engine) -> IntensityRange:
    if img.dtype == np.uint8:
        return IntensityRange(0.0, 255.0, "uint8")
    if img.dtype.kind == "b":
        return IntensityRange(0.0, 1.0, "bool")
    if img.dtype.kind in "ui":
        hist = merge_histograms(engine.run(histogram_block, range(len(grid)), spec, grid))
        lo, hi = percentiles_from_hist(hist[0], hist[1], (LOW, HIGH))
        return IntensityRange(lo, hi, "histogram")
    return float_range(img, LOW, HIGH)


def segment_large(store: Any, out_store: str | Path, client: Any = None, *, model: str | Path = "dsb2018",
                  backend: str | None = None, device: str = "cpu", precision: str = "fp32", threads: int | None = None,
                  level: int | None = None, channel: int | None = None, axes: str | None = None,
                  pixel_size: float | None = None, block: int = DEFAULT_BLOCK, chunk: int | None = None,
                  parquet: bool = True, geojson: bool = False, name: str | None = None,
                  progress: Progress | None = None,
                  **settings: Any) -> LargeResult:
    """Segment one image read by window into `out_store` (a folder): ``<name>.ome.zarr`` (labels/cells, uint32,
    with a pyramid), ``<name>.cells.csv``, ``<name>.cells.parquet`` and with `geojson` ``<name>.geojson`` (cell
    outlines QuPath imports as detections).

    store: an OME-Zarr folder, a TIFF (pyramidal/BigTIFF/OME/ImageJ), a whole-slide file, or a zarr array
    (axes: its axes, default "YX"); client: a `distributed.Client` (one task per block) or None (this process);
    model/backend/device/precision/threads: as `Segmenter`; level: pyramid level (default: nearest the model's
    pixel size where both are known, else 0); block: block side in pixels (a multiple of the label chunk);
    settings: `PredictConfig` overrides (conf, iou, min_visible, tile_overlap, img_size, batch, ...).
    A folder holding a run with other arguments is refused; the same arguments resume it.
    """
    from asfyolo_rt.runtime.info import read_model_info
    from asfyolo_rt.runtime.pipeline import PredictConfig

    t_start = time.perf_counter()
    mspec = _model_spec(model, backend, device, precision, threads)
    info = read_model_info(mspec.file)
    settings = {k: v for k, v in settings.items() if v is not None}
    if settings.get("scale", "native") != "native":
        raise ConfigError("--scale fit resizes a whole image: images read by block run at --scale native",
                          hint="leave out --scale fit")
    if "pixel_size_um" in settings:
        raise ConfigError("pixel_size_um: give pixel_size= (the image's level-0 pixel size) to segment_large")
    PredictConfig.from_info(info, **settings)  # every option checked before anything is read or written
    spec = ImageSpec(str(store) if isinstance(store, Path) else store, level, channel, axes, pixel_size,
                     info.pixel_size_um)
    img = spec.open()
    spec = ImageSpec(spec.source, img.level, channel, axes, pixel_size, info.pixel_size_um)
    chunk = chunk or min(1024, block)
    if block < 64 or chunk < 16 or block % chunk:
        raise ConfigError(f"--block {block}: expected >= 64 pixels and a multiple of the label chunk ({chunk})",
                          hint=f"e.g. --block {DEFAULT_BLOCK}")
    engine = Engine(client)
    grid = BlockGrid(img.shape, block)
    stem = name or spec.name
    out = Path(out_store)
    root = out / f"{stem}.ome.zarr"
    work = root / RECORDS
    identity = _identity(spec, img, mspec, settings, block, chunk)
    recorded = check_run(work, identity, str(root))
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    if recorded is None:
        norm = _intensity(img, spec, grid, engine)
        write_run(work, identity, norm=norm.to_json())
    else:
        norm = IntensityRange(**recorded["norm"])
    seconds["intensity"] = time.perf_counter() - t0
    job = Job(spec, mspec, tuple(sorted(settings.items())), block, chunk, norm, str(work))
    attrs = {"source": identity["input"], "level": img.level, "shape": list(img.shape), "intensity": norm.to_json(),
             "model": mspec.path, "settings": identity["settings"]}
    label_paths = create_labels(root, img.shape, chunk, img.pixel_size_um, attrs)
    n_blocks = len(grid)

    # 2. blocks
    t0 = time.perf_counter()
    todo = [k for k in range(n_blocks) if not block_file(work, k).is_file()]
    resumed = recorded is not None and len(todo) < n_blocks
    _drain(engine.run(run_block, todo, job), "blocks", n_blocks, n_blocks - len(todo), progress)
    seconds["blocks"] = time.perf_counter() - t0

    # 3-4. global NMS over every block's boxes, then the min-visible rule over every region's counts
    t0 = time.perf_counter()
    det = _Detections.load(work, n_blocks)
    cfg = PredictConfig.from_info(info, **settings)
    order = global_nms(det.boxes, det.scores, det.classes, img.shape, cfg.iou, det.grid > 1)
    reach = _reach(det.windows, det.starts, grid)
    seconds["nms"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    keep = _min_visible(engine, work, grid, det, order, reach, cfg.min_visible, progress)
    final = np.zeros(det.starts[-1], np.int64)
    final[order[keep]] = np.arange(1, int(keep.sum()) + 1)
    seconds["count"] = time.perf_counter() - t0

    # 5. the label image, region by region, and its measurements
    t0 = time.perf_counter()
    todo = [k for k in range(n_blocks) if not paint_file(work, k).is_file()]
    _drain(engine.run(_paint_task, [(k, det.slices(final, reach[k])) for k in todo], work, grid, label_paths[0]),
           "paint", n_blocks, n_blocks - len(todo), progress)
    seconds["paint"] = time.perf_counter() - t0

    # 6. pyramid and table
    t0 = time.perf_counter()
    _pyramid(engine, label_paths, block)
    sel = order[keep]
    cols = table_columns(stem, det.boxes[sel], det.scores[sel], det.classes[sel],
                         *_measurements(work, n_blocks, det.windows[sel]))
    csv_path = out / f"{stem}.cells.csv"
    pq_path = out / f"{stem}.cells.parquet" if parquet else None
    write_tables(cols, csv_path, pq_path)
    gj_path = None
    if geojson:
        gj_path = out / f"{stem}.geojson"
        todo = [k for k in range(n_blocks) if not outline_file(work, k).is_file()]
        _drain(engine.run(_outline_task, [(k, det.slices(final, [k])[k]) for k in todo], work, label_paths[0],
                          info.names), "outlines", n_blocks, n_blocks - len(todo), progress)
        write_geojson_parts([outline_file(work, k) for k in range(n_blocks)], gj_path)
    seconds["write"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start
    n = int(sel.size)
    atomic_write_bytes(work / "done.json", json.dumps({"cells": n, "seconds": seconds}).encode())
    return LargeResult(Path(label_paths[0]), root, n, csv_path, pq_path, img.shape, img.level, norm, n_blocks,
                       resumed, seconds, gj_path)


def _count_task(work: Path, grid: BlockGrid, item: tuple[int, dict[int, np.ndarray]]) -> dict[str, Any]:
    return count_region(work, grid, item[0], item[1])


def _paint_task(work: Path, grid: BlockGrid, labels: str, item: tuple[int, dict[int, np.ndarray]]) -> dict[str, Any]:
    return paint_region(work, grid, item[0], item[1], labels)


def _outline_task(work: Path, labels: str, names: dict[int, str], item: tuple[int, np.ndarray]) -> dict[str, Any]:
    return outline_block(work, item[0], item[1], labels, names)


@dataclass
class _Detections:
    """Every block's detections without their masks (which stay in the records), concatenated in block order;
    starts[b]: block b's first row; grid: tiles in the whole image's grid."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    windows: np.ndarray
    areas: np.ndarray
    starts: np.ndarray
    grid: int

    @classmethod
    def load(cls, work: Path, n_blocks: int) -> _Detections:
        keys = ("boxes", "scores", "classes", "windows", "areas")
        recs = [read_npz(block_file(work, k), (*keys, "grid")) for k in range(n_blocks)]
        b, s, c, w, a = (np.concatenate([r[key] for r in recs]) for key in keys)
        starts = np.cumsum([0] + [r["scores"].shape[0] for r in recs])
        return cls(b, s, c, w, a, starts, int(max((int(r["grid"]) for r in recs), default=0)))

    def slices(self, values: np.ndarray, blocks: list[int]) -> dict[int, np.ndarray]:
        """values (one per detection) of the given blocks' detections, by block."""
        return {b: values[self.starts[b]: self.starts[b + 1]] for b in blocks}


def _min_visible(engine: Engine, work: Path, grid: BlockGrid, det: _Detections, order: np.ndarray,
                 reach: list[list[int]], min_visible: float, progress: Progress | None) -> np.ndarray:
    """(len(order),) bool: the NMS survivors (in score order) of which at least `min_visible` of the mask stays
    visible in the label image painted with all of them (`asfyolo_rt.runtime.stages.paint`), from per-region
    counts summed here."""
    if min_visible <= 0 or order.size == 0:
        return np.ones(order.size, bool)
    rank = np.zeros(det.starts[-1], np.int64)
    rank[order] = np.arange(1, order.size + 1)
    n = len(grid)
    todo = [k for k in range(n) if not count_file(work, k).is_file()]
    _drain(engine.run(_count_task, [(k, det.slices(rank, reach[k])) for k in todo], work, grid), "count", n,
           n - len(todo), progress)
    visible = np.zeros(order.size + 1, np.int64)
    for k in range(n):
        c = read_npz(count_file(work, k))
        np.add.at(visible, c["values"], c["counts"])
    return np.asarray(visible[1:] >= min_visible * np.maximum(det.areas[order], 1))


def _measurements(work: Path, n_blocks: int, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(visible pixels, centroid x, centroid y) of cells 1..n from the regions' sums; computed as
    `asfyolo_rt.infer.writers.cell_table` computes them (the mean inside the cell's window, plus its origin and
    half a pixel), so that the numbers are the same; NaN centroid for a cell with no visible pixel."""
    n = windows.shape[0]
    stats = [read_npz(paint_file(work, k)) for k in range(n_blocks)]
    tot = add_stats(*(np.concatenate([s[key] for s in stats]) for key in ("ids", "count", "sum_x", "sum_y")))
    count, sx, sy = (np.zeros(n, np.int64) for _ in range(3))
    for arr, key in ((count, "count"), (sx, "sum_x"), (sy, "sum_y")):
        arr[tot["ids"] - 1] = tot[key]
    win = windows.astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x = (sx - count * win[:, 0]) / count + win[:, 0] + 0.5
        mean_y = (sy - count * win[:, 1]) / count + win[:, 1] + 0.5
    return count, mean_x, mean_y


def _reach(windows: np.ndarray, starts: np.ndarray, grid: BlockGrid) -> list[list[int]]:
    """For each region (block window): the blocks with a mask that meets it."""
    out: list[set[int]] = [set() for _ in range(len(grid))]
    for b in range(len(grid)):
        w = windows[starts[b]: starts[b + 1]].astype(np.int64)
        if w.shape[0] == 0:
            continue
        box = (int(w[:, 0].min()), int(w[:, 1].min()), int((w[:, 0] + w[:, 2]).max()), int((w[:, 1] + w[:, 3]).max()))
        for k in grid.touching(box):
            out[k].add(b)
    return [sorted(s) for s in out]


def _pyramid(engine: Engine, paths: list[str], block: int) -> None:
    """Levels 1.. of the label image, each region by region from the level above (regions of `block`: a
    multiple of the chunk, so that no two tasks write one chunk)."""
    import zarr

    for k in range(1, len(paths)):
        g = BlockGrid(tuple(zarr.open_array(paths[k], mode="r").shape), block)  # type: ignore[arg-type]
        list(engine.run(_down_task, range(len(g)), paths[k - 1], paths[k], g))


def _down_task(src: str, dst: str, grid: BlockGrid, k: int) -> None:
    downsample_region(src, dst, grid.window(k))


def _drain(results: Any, step: str, total: int, already: int, progress: Progress | None) -> None:
    n = already
    if progress:
        progress(step, n, total, {})
    for r in results:
        n += 1
        if progress:
            progress(step, n, total, r or {})

