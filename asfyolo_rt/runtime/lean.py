"""The native-scale stages without PyTorch: exported models (ONNX Runtime, OpenVINO) on the CPU.

`import torch` alone takes longer than segmenting a 2048 x 2048 frame with OpenVINO on a 2-core CPU, and a
microscope PC or a Jetson image may not have PyTorch at all. `LeanPipeline` runs the stages of
`asfyolo_rt.runtime.stages` (same plan, same tiles, same ownership by tile core, same rescue of cut cells,
same global NMS and min-visible paint) on NumPy arrays, with the backend's `run_numpy` and the NumPy twins of
the post-processing in `asfyolo_rt.runtime.lean_ops`. It is a second implementation of the same
specification, tested against the first (tests/runtime/test_lean.py: the same cells on real frames), as the
C runtime is. `Segmenter` (and so `asfyolo-rt predict`) takes it where it applies (`applies`); the PyTorch
stages remain the reference and serve everything else (PyTorch and TensorRT backends, CUDA, --scale fit,
soft-NMS, validation).

Pipelining as in `Runner.parts`: worker threads test, read, pre-process, run and NMS the next tiles (as many
at once as the backend runs, plus one) while this thread assembles the masks of the previous ones.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from asfyolo_rt.infer.predict import ImageResult
from asfyolo_rt.infer.protocol import Backend
from asfyolo_rt.infer.sources import Frame
from asfyolo_rt.runtime.lean_ops import (
    MAX_WH,
    DetArrays,
    PackedArrays,
    assemble_masks,
    concat_packed,
    label_map,
    mask_areas,
    nms,
    non_max_suppression,
)
from asfyolo_rt.runtime.pipeline import FramePipeline, PredictConfig, Prepared
from asfyolo_rt.runtime.pixels import is_empty_tile, read_tile, scale_image, tiles_to_input
from asfyolo_rt.runtime.tiles import CUT_MARGIN, Geometry, Plan, Tile, Tiler, rescue_tile

LEAN_ENV = "ASFYOLO_RT_LEAN"  # 0: the PyTorch stages even where these apply (comparisons)
_Batch = tuple[list[DetArrays | None], np.ndarray | None, float, float, float]


def applies(backend: Backend, cfg: PredictConfig) -> bool:
    """Whether `LeanPipeline` runs `cfg` on `backend`: a plain model with NumPy outputs (ONNX Runtime, OpenVINO),
    native-scale tiles, hard NMS and the reference mask assembly (not the Triton kernels)."""
    import os

    if os.environ.get(LEAN_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return (callable(getattr(backend, "run_numpy", None)) and not getattr(backend, "end2end", False)
            and cfg.scale == "native" and not cfg.soft_nms and cfg.kernel_impl in ("auto", "torch"))


@dataclass
class LeanResult:
    """Detections of one image in original pixels, sorted by score (the PyTorch stages' `FrameResult`)."""

    boxes: np.ndarray  # (n, 4) float32 xyxy
    scores: np.ndarray  # (n,) float32
    classes: np.ndarray  # (n,) int64
    masks: PackedArrays
    orig_shape: tuple[int, int]
    tiles: int = 1
    timing_ms: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, index: np.ndarray) -> LeanResult:
        idx = np.asarray(index, np.int64)
        return LeanResult(self.boxes[idx], self.scores[idx], self.classes[idx], self.masks.select(idx),
                          self.orig_shape, self.tiles, dict(self.timing_ms))


@dataclass
class _Part:
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: PackedArrays


class LeanRunner:
    """The native stages for one backend, geometry and post-processing, on NumPy arrays."""

    def __init__(self, backend: Backend, geo: Geometry, cfg: PredictConfig) -> None:
        self.backend, self.geo, self.cfg = backend, geo, cfg
        self.tiler = Tiler(backend.input_shape, backend.max_batch, geo, max_object_px=cfg.max_object_px,
                           per_image=bool(getattr(backend, "per_image_tiles", False)))
        self.batch = self.tiler.batch
        self.skipped = 0  # tiles of the last image not run (empty)
        self.rescued = 0  # cut cells of the last image seen again in a tile centred on them

    def plan(self, orig_shape: tuple[int, int], window: tuple[int, int, int, int] | None = None) -> Plan:
        return self.tiler.plan(orig_shape, window)

    # ----------------------------------------------------------------------------------- stages 2-4
    def _batch(self, scaled: np.ndarray, group: Sequence[Tile], test_empty: bool) -> _Batch:
        """Stages 2b-4 for one batch: per tile its detections (None: an empty tile, not run), the prototypes,
        and the pre-process, forward and NMS seconds."""
        t0 = time.perf_counter()
        if test_empty and is_empty_tile(scaled, group[0]):
            return [None], None, time.perf_counter() - t0, 0.0, 0.0
        x = tiles_to_input([read_tile(scaled, tl) for tl in group])
        n_real = x.shape[0]
        if self.backend.max_batch is not None and n_real < self.backend.max_batch:  # a static batch: padded
            x = np.concatenate([x, np.zeros((self.backend.max_batch - n_real, *x.shape[1:]), np.float32)])
        t1 = time.perf_counter()
        pred, protos = self.backend.run_numpy(x)  # type: ignore[attr-defined]
        t2 = time.perf_counter()
        dets = non_max_suppression(pred[:n_real], conf_threshold=self.cfg.conf, iou_threshold=self.cfg.iou,
                                   max_det=self.cfg.max_det, nm=protos.shape[1])
        return list(dets), protos, t1 - t0, t2 - t1, time.perf_counter() - t2

    def _batches(self, scaled: np.ndarray, groups: Sequence[Sequence[Tile]], test_empty: bool) -> Iterator[_Batch]:
        prepare = getattr(self.backend, "prepare", None)  # a dynamic model compiled for this tile shape first
        if prepare is not None and groups:
            prepare((groups[0][0].h, groups[0][0].w))
        depth = max(1, int(getattr(self.backend, "parallel", 1)))
        if not self.cfg.pipeline or len(groups) < 2:
            for g in groups:
                yield self._batch(scaled, g, test_empty)
            return
        with ThreadPoolExecutor(max_workers=depth, thread_name_prefix="asfyolo-lean") as pool:
            pending: deque[Future[_Batch]] = deque()
            todo = iter(groups)
            try:
                for g in itertools.islice(todo, depth + 1):
                    pending.append(pool.submit(self._batch, scaled, g, test_empty))
                while pending:
                    done = pending.popleft().result()
                    nxt = next(todo, None)
                    if nxt is not None:
                        pending.append(pool.submit(self._batch, scaled, nxt, test_empty))
                    yield done
            finally:
                for f in pending:
                    f.cancel()

    # ------------------------------------------------------------------------------------ stage 5
    def _own(self, det: DetArrays, tile: Tile) -> DetArrays:
        b = det.boxes
        cx = (b[:, 0] + b[:, 2]) / 2 + tile.x0
        cy = (b[:, 1] + b[:, 3]) / 2 + tile.y0
        c = tile.core
        return det.subset(np.nonzero((cx >= c[0]) & (cx < c[2]) & (cy >= c[1]) & (cy < c[3]))[0])

    @staticmethod
    def _cut(det: DetArrays, tile: Tile, plan: Plan) -> np.ndarray:
        hs, ws = plan.scaled_shape
        b = det.boxes
        cut = np.zeros(b.shape[0], bool)
        if tile.x0 > 0:
            cut |= b[:, 0] <= CUT_MARGIN
        if tile.y0 > 0:
            cut |= b[:, 1] <= CUT_MARGIN
        if tile.x0 + tile.w < ws:
            cut |= b[:, 2] >= tile.w - CUT_MARGIN
        if tile.y0 + tile.h < hs:
            cut |= b[:, 3] >= tile.h - CUT_MARGIN
        return cut

    def _assemble(self, protos: np.ndarray, det: DetArrays, tile: Tile, plan: Plan) -> _Part:
        h0, w0 = plan.orig_shape
        shift = np.array([tile.x0, tile.y0, tile.x0, tile.y0], np.float32)
        boxes = (det.boxes + shift) / np.float32(plan.scale)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w0)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h0)
        packed = assemble_masks(protos, det.coeffs, boxes, (h0, w0), scale=plan.scale,
                                pad=(-float(tile.x0), -float(tile.y0)), threshold=self.cfg.mask_threshold)
        return _Part(boxes.astype(np.float32), det.scores.astype(np.float32), det.classes.astype(np.int64), packed)

    def _covering(self, det: DetArrays, tile: Tile, cut_box: np.ndarray, plan: Plan) -> np.ndarray | None:
        if len(det) == 0:
            return None
        b = det.boxes + np.array([tile.x0, tile.y0, tile.x0, tile.y0], np.float32)
        c = cut_box.astype(b.dtype)
        iw = (np.minimum(b[:, 2], c[2]) - np.maximum(b[:, 0], c[0])).clip(min=0)
        ih = (np.minimum(b[:, 3], c[3]) - np.maximum(b[:, 1], c[1])).clip(min=0)
        inter = iw * ih
        area_c = max(float(c[2] - c[0]), 1e-6) * max(float(c[3] - c[1]), 1e-6)
        area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        iou = inter / np.maximum(area_b + np.float32(area_c) - inter, np.float32(1e-6))
        ok = (inter >= np.float32(0.6 * area_c)) & ~self._cut(det, tile, plan)
        if not ok.any():
            return None
        return np.array([int(np.argmax(np.where(ok, iou, np.float32(-1.0))))])

    def parts(self, scaled: np.ndarray, plan: Plan, timing: dict[str, float]) -> list[_Part]:
        """Stages 2b-5 for the tiles of `plan` (`Runner.parts`); adds ms to `timing`."""
        out: list[_Part] = []
        cuts: list[tuple[Tile, DetArrays, _Part]] = []  # owned detections cut by their tile's inner edge
        tiles = list(plan.tiles)
        test_in_worker = self.cfg.skip_empty and self.batch == 1
        if self.cfg.skip_empty and not test_in_worker:
            tiles = [tl for tl in tiles if not is_empty_tile(scaled, tl)]
        groups = [tiles[s : s + self.batch] for s in range(0, len(tiles), self.batch)]
        skipped = len(plan.tiles) - len(tiles)
        t_pre = t_inf = t_post = 0.0
        for group, (dets, protos, pre_s, forward_s, nms_s) in zip(groups, self._batches(scaled, groups,
                                                                                          test_in_worker)):
            t0 = time.perf_counter()
            for k, (tl, det) in enumerate(zip(group, dets)):
                if det is None:
                    skipped += 1
                    continue
                if len(det) == 0 or protos is None:
                    continue
                mine = self._own(det, tl)
                if not len(mine):
                    continue
                cut = self._cut(mine, tl, plan)
                if cut.any():  # kept as they are unless a tile centred on them sees them whole
                    gone = mine.subset(np.nonzero(cut)[0])
                    cuts.append((tl, gone, self._assemble(protos[k], gone, tl, plan)))
                    mine = mine.subset(np.nonzero(~cut)[0])
                if len(mine):
                    out.append(self._assemble(protos[k], mine, tl, plan))
            t_pre, t_inf = t_pre + pre_s, t_inf + forward_s
            t_post += nms_s + time.perf_counter() - t0
        self.skipped, self.rescued = skipped, sum(len(det) for _, det, _ in cuts)
        if cuts:
            t0 = time.perf_counter()
            rescued, forward_s = self._rescue(scaled, plan, cuts)
            out += rescued
            t_inf += forward_s
            t_post += time.perf_counter() - t0 - forward_s
        for stage, v in (("preprocess", t_pre), ("inference", t_inf), ("postprocess", t_post)):
            timing[stage] = timing.get(stage, 0.0) + 1e3 * v
        return out

    def _rescue(self, scaled: np.ndarray, plan: Plan,
                cuts: list[tuple[Tile, DetArrays, _Part]]) -> tuple[list[_Part], float]:
        """Stage 5c (`Runner._rescue`): each cut cell seen again in a tile centred on it."""
        jobs: list[tuple[Tile, np.ndarray, _Part]] = []
        for tl, det, fb in cuts:
            shifted = det.boxes + np.array([tl.x0, tl.y0, tl.x0, tl.y0], np.float32)
            for i, b in enumerate(shifted):
                one = _Part(fb.boxes[i : i + 1], fb.scores[i : i + 1], fb.classes[i : i + 1],
                            fb.masks.select(np.array([i])))
                jobs.append((rescue_tile(b, tl, plan), b, one))
        out: list[_Part] = []
        forward = 0.0
        for start in range(0, len(jobs), self.batch):
            group = jobs[start : start + self.batch]
            dets, protos, _, forward_s, _ = self._batch(scaled, [rt for rt, _, _ in group], False)
            forward += forward_s
            for k, ((rt, box, fb), found) in enumerate(zip(group, dets)):
                pick = None if found is None else self._covering(found, rt, box, plan)
                if pick is None or found is None or protos is None:
                    out.append(fb)
                else:
                    out.append(self._assemble(protos[k], found.subset(pick), rt, plan))
        return out, forward

    # --------------------------------------------------------------------------------- stages 6-7
    def run_plan(self, scaled: np.ndarray, plan: Plan, timing: dict[str, float]) -> LeanResult:
        parts = self.parts(scaled, plan, timing)
        t0 = time.perf_counter()
        out = merge(parts, plan.orig_shape, self.cfg.iou, plan.grid > 1)
        out.tiles = plan.grid
        timing["postprocess"] = timing.get("postprocess", 0.0) + 1e3 * (time.perf_counter() - t0)
        out.timing_ms = timing
        return out


def merge(parts: Sequence[_Part], size: tuple[int, int], iou: float, global_nms: bool = True) -> LeanResult:
    """Stage 6 (`stages.merge`): one class-aware NMS over the parts' boxes, sorted by score."""
    if not parts:
        return LeanResult(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                          concat_packed([], size), size)
    boxes = np.concatenate([p.boxes for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    classes = np.concatenate([p.classes for p in parts])
    packed = concat_packed([p.masks for p in parts], size)
    if global_nms:  # class-aware through a per-class offset larger than the frame
        offset = np.float32(max(MAX_WH, max(size) + 1))
        keep = nms(boxes + classes[:, None].astype(np.float32) * offset, scores, iou)
    else:
        keep = np.argsort(-scores, kind="stable")
    return LeanResult(boxes[keep], scores[keep], classes[keep], packed.select(keep), size)


def paint(result: LeanResult, min_visible: float) -> tuple[LeanResult, np.ndarray]:
    """Stage 7 (`stages.paint`): the label image and the detections it shows."""
    lm = label_map(result.masks, result.scores, result.orig_shape)
    n = len(result)
    if n == 0 or min_visible <= 0:
        return result, lm
    visible = np.bincount(lm.ravel(), minlength=n + 1)[1 : n + 1]
    keep = visible >= min_visible * np.maximum(mask_areas(result.masks), 1)
    if keep.all():
        return result, lm
    out = result.select(np.nonzero(keep)[0])
    return out, label_map(out.masks, out.scores, out.orig_shape)


class LeanPipeline(FramePipeline):
    """`FramePipeline` on `LeanRunner`: the same prepare / infer / finish steps (so `Segmenter.segment_many`
    overlaps them the same way), no PyTorch."""

    def __init__(self, backend: Backend, cfg: PredictConfig) -> None:
        self.backend, self.cfg = backend, cfg
        self.geo = cfg.geometry()
        self._lean: dict[float, LeanRunner] = {}
        self._warned = False
        self.lean_runner(cfg.model_scale)

    def lean_runner(self, scale: float) -> LeanRunner:
        key = round(scale, 6)
        if key not in self._lean:
            self._lean[key] = LeanRunner(self.backend, replace(self.geo, model_scale=scale), self.cfg)
        return self._lean[key]

    def runner(self, scale: float) -> Any:
        return self.lean_runner(scale)

    def prepare(self, frame: Frame) -> Prepared:
        t0 = time.perf_counter()
        runner = self.lean_runner(self.frame_scale(frame))
        plan = runner.plan(frame.image.shape[:2])
        scaled = scale_image(frame.image, plan)
        return Prepared(frame, runner, plan, scaled, {"preprocess": 1e3 * (time.perf_counter() - t0)})

    def infer(self, p: Prepared) -> Any:
        assert p.plan is not None and p.scaled is not None  # native only (`applies`)
        runner: LeanRunner = p.runner  # type: ignore[assignment]
        return runner.run_plan(p.scaled, p.plan, dict(p.timing_ms))

    def finish(self, frame: Frame, res: Any) -> ImageResult:
        t0 = time.perf_counter()
        res, lm = paint(res, self.cfg.min_visible)
        timing = dict(res.timing_ms)
        timing["postprocess"] = timing.get("postprocess", 0.0) + 1e3 * (time.perf_counter() - t0)
        return ImageResult(frame=frame, transform=None, boxes=res.boxes.astype(np.float32), scores=res.scores,
                           classes=res.classes.astype(np.int64), label_map=lm, masks=res.masks,  # type: ignore[arg-type]
                           timing_ms=timing, tiles=res.tiles)
