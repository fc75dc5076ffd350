"""`asfyolo-rt bench --frame N --levers`: what each throughput lever buys on a whole frame, one after another,
and all together as predict's default path; accuracy measured for the first and the last.

Rows, each adding one lever to the row above (same frame, same process, one run; all on the ONNX export of
the same weights that predict's fast path makes, `asfyolo_rt.fastpath`):

1. today's fastest path before these levers: ONNX Runtime FP32, tile overlap larger than the largest
   training cell (`overlap_for(max_object_px)`), one batch after another;
2. the overlap from the 99th percentile of the training cells (cells cut by a tile edge are rescued);
3. pipelined tiles (the next batch runs while the previous one's masks are assembled);
4. OpenVINO FP32 in throughput mode (parallel infer requests);
5. OpenVINO BF16 (CPUs with native BF16 only);
   instead of 5: the same with 1024 x 1024 tiles (a static export at that size);
6. instead of 5: OpenVINO INT8 (the NNCF IR of a bundle given as MODELS; CPUs with VNNI/AMX only);
7. empty tiles skipped, on the path this machine chose for predict (`fastpath.fast_choice`; where that is
   its INT8 IR, calibrated on synthetic nuclei, the IR run at 640 x 640 in rows 7-8);
8. the stages in NumPy (`asfyolo_rt.runtime.lean`: no PyTorch, its post-processing cheaper);
9. each frame's own tile shape (`asfyolo_rt.runtime.tiles.fit_tile` on the dynamic-shape export): predict's
   default, every lever;
10. the C runtime (`cpp/`, through `asfyolo_rt.native`) on the same files, FP32 and predict's precision,
   where its library is built (`make cpp`), with its own tile choice (the same rule): the same frame, the
   same run.

Rows 1-8 run the static 640 x 640 export (`fastpath.tile_model(weights, 640)`), as predict did before row 9.

Every row records frame ms (p50/p90), the speed-up over row 1 (row 1 is timed again after the last row, and
speed-ups are taken against the faster of its two times: a machine that drifts does not flatter the levers), GFLOP/s of the model's work per second of
frame and the percentage of the measured GEMM peak of its precision, and the frame's instance F1 against
its ground truth (DSB2018 val nuclei packed into the frame). With `val=True`, DSB2018 val tiled mask
mAP50 (the protocol's 640 tiles) of row 1 and of predict's default runtime.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

NATIVE = "native-openvino"  # a Lever.runtime: the C runtime through asfyolo_rt.native


def native_available() -> bool:
    """Whether the C runtime's library is built (`make cpp`) and loads."""
    try:
        from asfyolo_rt.native import load_library

        load_library()
    except Exception:
        return False
    return True


@dataclass(frozen=True)
class Lever:
    name: str
    runtime: str
    precision: str
    model: str
    overlap: int
    pipeline: bool
    skip_empty: bool
    img_size: int | None = 640  # None: each frame's own tile (a dynamic-shape model)
    lean: bool = False  # the NumPy stages (asfyolo_rt.runtime.lean) instead of the PyTorch ones


@dataclass
class LeverRow:
    lever: str
    runtime: str
    precision: str
    overlap: int
    pipeline: bool
    skip_empty: bool
    tile: str
    tiles: int
    tiles_run: int
    cells: int
    frame_p50_ms: float
    frame_p90_ms: float
    frame_p99_ms: float
    speedup: float  # row 1's p50 / this p50
    mpix_per_s: float
    gflops_per_frame: float | None
    gflop_per_s: float | None  # model work per second of frame wall time
    peak_gflop_per_s: float | None
    peak_kind: str
    pct_of_peak: float | None
    frame_f1: float | None
    post_ms: float = 0.0  # post-processing of the frame (NMS, ownership, masks, merge, paint): busy ms, median
    val_mask_map50: float | None = None
    val_box_map50: float | None = None
    frame_p50_again_ms: float | None = None  # row 1 only: timed again after every other row (drift)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_levers(weights: str | Path, bundle: Path | None = None, tile: int | None = 1024,
                log: Callable[[str], None] | None = None) -> list[Lever]:
    """The rows (module docstring) this machine can run for `weights`; `tile`: a larger tile side to compare."""
    from asfyolo_rt.fastpath import fast_choice, tile_model
    from asfyolo_rt.infer.openvino import has_bf16, has_int8_dot
    from asfyolo_rt.runtime.info import overlap_for, read_model_info

    choice = fast_choice(weights, log=log)
    info = read_model_info(weights)
    old, new = overlap_for(info.max_object_px), overlap_for(info.overlap_object_px)
    onnx = str(tile_model(weights, 640))  # rows before the per-frame tile: the static 640 export predict ran then
    dynamic = choice.onnx  # the fast path's dynamic-shape export (FP32 ONNX)
    rows = [
        Lever(f"before: ONNX Runtime FP32, overlap {old}, one batch at a time", "onnxruntime", "fp32", onnx, old,
              False, False),
        Lever(f"+ overlap {new} (99th percentile cell, cut cells rescued)", "onnxruntime", "fp32", onnx, new,
              False, False),
        Lever("+ pipelined tiles", "onnxruntime", "fp32", onnx, new, True, False),
        Lever("+ OpenVINO FP32, throughput mode", "openvino", "fp32", onnx, new, True, False),
    ]
    if has_bf16():
        rows.append(Lever("+ OpenVINO BF16", "openvino", "bf16", onnx, new, True, False))
    if tile:  # the same path with larger tiles: fewer tiles, less of the frame run twice, the same work per pixel
        big = str(tile_model(weights, tile))
        rows.append(Lever(f"(instead of 640) {tile} x {tile} tiles", rows[-1].runtime, rows[-1].precision, big, new,
                          True, False))
    ir = bundle / "model.int8-openvino.xml" if bundle is not None else None
    if ir is not None and ir.is_file() and has_int8_dot():
        rows.append(Lever("(instead of BF16) OpenVINO INT8 of the bundle", "openvino", "int8", str(ir), new,
                          True, False))
    # the fast path's runtime on 640 tiles: its INT8 IR (dynamic, run at 640 x 640), else the static export
    own = choice.model if choice.precision == "int8" else onnx
    rows.append(Lever(f"+ empty tiles skipped ({choice.label}, the fast path's runtime)", choice.runtime,
                      choice.precision, own, new, True, True))
    rows.append(Lever("+ stages in NumPy (no PyTorch)", choice.runtime, choice.precision, own, new, True, True,
                      lean=True))
    rows.append(Lever("+ each frame's own tile (dynamic-shape export) = predict's default", choice.runtime,
                      choice.precision, choice.model, new, True, True, img_size=None, lean=True))
    if native_available():  # the C runtime (cpp/, libasfyolo) on the same files: its OpenVINO backend
        for prec in dict.fromkeys(("fp32", choice.precision)):
            file = choice.model if prec == "int8" else dynamic
            rows.append(Lever(f"C runtime (libasfyolo), OpenVINO {prec.upper()}, same {Path(file).name}", NATIVE,
                              prec, file, new, True, True, img_size=None))
    return rows


def rescore(row: LeverRow, peak: Any) -> LeverRow:
    """`row` with its peak and percentage of peak taken from `peak` (its precision's GEMM peak; None: none)."""
    from asfyolo_rt.benchmark import peak_for

    pk, kind = peak_for(peak, row.precision)
    pct = round(100 * row.gflop_per_s / pk, 1) if row.gflop_per_s and pk else None
    return replace(row, peak_gflop_per_s=pk, peak_kind=kind, pct_of_peak=pct)


def run_levers(levers: list[Lever], image: np.ndarray, truth: np.ndarray | None, *, iters: int = 5,
               warmup: int = 1, peak: Any = None, val_split: Any = None,
               progress: Callable[[str], None] | None = None) -> list[LeverRow]:
    """Time every lever on `image` (H, W, 3 uint8), F1 against `truth` (a label map), val on `val_split`."""
    from asfyolo_rt.infer.sources import Frame
    from asfyolo_rt.onnx_flops import onnx_gflops
    from asfyolo_rt.runtime.info import read_model_info
    from asfyolo_rt.runtime.lean import LeanPipeline
    from asfyolo_rt.runtime.pipeline import FramePipeline, PredictConfig
    from asfyolo_rt.runtime.registry import BackendSpec

    rows: list[LeverRow] = []
    gflops_tile = {}
    for i, lv in enumerate(levers):
        if progress:
            progress(f"lever {i + 1}/{len(levers)}: {lv.name}")
        info = read_model_info(lv.model)
        times: list[float] = []
        posts: list[float] = []
        if lv.runtime == NATIVE:
            labels, tiles, run, shape = _native_times(lv, image, warmup, iters, times, posts)
        else:
            backend = BackendSpec(lv.model, runtime=lv.runtime,
                                  precision="fp32" if lv.precision == "int8" else lv.precision).open()
            cfg = PredictConfig.from_info(info, tile_overlap=lv.overlap, pipeline=lv.pipeline,
                                          skip_empty=lv.skip_empty,
                                          img_size=lv.img_size if backend.input_shape is None else None)
            pipe = (LeanPipeline if lv.lean else FramePipeline)(backend, cfg)
            frame = Frame("frame", Path("frame"), image)
            runner = pipe.runner(cfg.model_scale)
            first = runner.plan(image.shape[:2]).tiles[0]
            res = None
            for k in range(warmup + iters):
                t0 = time.perf_counter()
                res = pipe(frame)
                dt = time.perf_counter() - t0
                if k >= warmup:
                    times.append(dt)
                    posts.append(res.timing_ms.get("postprocess", 0.0))
            assert res is not None
            labels, tiles, run = res.label_map, res.tiles, res.tiles - runner.skipped
            shape = (first.h, first.w)
        if (lv.model, shape) not in gflops_tile:
            gflops_tile[(lv.model, shape)] = _gflops(onnx_gflops, lv.model, shape)
        g = gflops_tile[(lv.model, shape)]
        p50, p90, p99 = (float(np.percentile(times, q)) for q in (50, 90, 99))
        work = g * run if g else None
        achieved = work / p50 if work else None
        f1 = _f1(truth, labels) if truth is not None else None
        h, w = image.shape[:2]
        rows.append(rescore(LeverRow(
            lever=lv.name, runtime=lv.runtime, precision=lv.precision, overlap=lv.overlap, pipeline=lv.pipeline,
            skip_empty=lv.skip_empty, tile=f"{shape[0]}x{shape[1]}", tiles=tiles, tiles_run=run, cells=int(labels.max()),
            frame_p50_ms=round(1e3 * p50, 1), frame_p90_ms=round(1e3 * p90, 1), frame_p99_ms=round(1e3 * p99, 1),
            speedup=round(rows[0].frame_p50_ms / (1e3 * p50), 2) if rows else 1.0,
            mpix_per_s=round(h * w / 1e6 / p50, 3), gflops_per_frame=round(work, 1) if work else None,
            gflop_per_s=round(achieved, 1) if achieved else None, peak_gflop_per_s=None, peak_kind="",
            pct_of_peak=None, frame_f1=round(f1, 4) if f1 is not None else None,
            post_ms=round(float(np.median(posts)), 1)), peak))
        if val_split is not None and lv.runtime != NATIVE and (i == 0 or lv.img_size is None):
            if progress:
                progress(f"  DSB2018 val, tiled protocol: {lv.name}")
            box, mask = _val(backend, val_split, info, lv.overlap)
            rows[-1].val_box_map50, rows[-1].val_mask_map50 = round(box, 4), round(mask, 4)
    if len(levers) > 1:  # row 1 again, last: the machine may have drifted; speed-ups against its faster time
        if progress:
            progress(f"lever 1 again: {levers[0].name}")
        again = run_levers(levers[:1], image, None, iters=iters, warmup=warmup, peak=peak)[0]
        rows[0].frame_p50_again_ms = again.frame_p50_ms
        base = min(rows[0].frame_p50_ms, again.frame_p50_ms)
        for r in rows:
            r.speedup = round(base / r.frame_p50_ms, 2)
    return rows


def _native_times(lv: Lever, image: np.ndarray, warmup: int, iters: int, times: list[float],
                  posts: list[float]) -> tuple[np.ndarray, int, int, tuple[int, int]]:
    """Time the C runtime on `image` (appends to times/posts); (labels, tiles, tiles run, tile shape)."""
    import json

    from asfyolo_rt.native import NativeSegmenter

    with NativeSegmenter(lv.model, backend="openvino", precision=lv.precision, tile_overlap=lv.overlap,
                         skip_empty=int(lv.skip_empty)) as seg:
        labels = None
        timing: dict[str, float] = {}
        for k in range(warmup + iters):
            t0 = time.perf_counter()
            labels, _, timing = seg.segment(image)
            dt = time.perf_counter() - t0
            if k >= warmup:
                times.append(dt)
                posts.append(float(timing.get("postprocess", 0.0)))
        info = json.loads(seg.info or "{}")
    assert labels is not None
    tiles = int(timing.get("tiles", 0) or info.get("tiles", 0) or 0)
    tile = info.get("input")
    if isinstance(tile, list) and len(tile) >= 2 and int(tile[-2]) > 0 and int(tile[-1]) > 0:
        shape = (int(tile[-2]), int(tile[-1]))
    else:  # a dynamic model: the C runtime plans each frame's own tile by the Python rule (tested equal)
        from asfyolo_rt.runtime.info import read_model_info
        from asfyolo_rt.runtime.tiles import plan_image

        mi = read_model_info(lv.model)
        first = plan_image(image.shape[:2], model_scale=mi.model_scale, tile_hw=None, overlap=lv.overlap,
                           static=False).tiles[0]
        shape = (first.h, first.w)
    return labels.astype(np.int32), tiles, tiles, shape


def _gflops(fn: Callable[..., Any], model: str, shape: tuple[int, int]) -> float | None:
    if not model.endswith(".onnx"):  # an IR: the work is its ONNX twin's (same graph, quantized)
        twin = Path(model).with_name("model.onnx")
        if not twin.is_file():
            return None
        model = str(twin)
    try:
        return float(fn(model, shape).gflops)
    except Exception:
        return None


def _f1(truth: np.ndarray, labels: np.ndarray) -> float:
    from asfyolo_rt.eval.dsb import instance_f1

    return instance_f1(truth, labels).f1


def _val(backend: Any, split: Any, info: Any, overlap: int) -> tuple[float, float]:
    """DSB2018 val, tiled protocol (predict's geometry), box and mask mAP50."""
    from asfyolo_rt.eval.results import ValConfig
    from asfyolo_rt.eval.validate import validate

    cfg = ValConfig(protocol="tiled", model_scale=info.model_scale, tile_overlap=overlap,
                    max_object_px=info.overlap_object_px, img_size=640)
    m = validate(backend, split, cfg).metrics
    return float(m.box_map50), float(m.mask_map50)
