"""A whole frame through the stages: the one wiring of model info, geometry, post-processing and backend.

`PredictConfig.from_info` turns a model's `ModelInfo` plus a caller's overrides into the settings of a run
(no second set of defaults anywhere: they are the model's, else `asfyolo_rt.runtime.info`'s).
`FramePipeline` runs frames in three steps that can run on different threads (`Segmenter.segment_many`
overlaps them): `prepare` (plan the tiles, scale the image: CPU work that releases the GIL in OpenCV),
`infer` (tiles through the backend, ownership, masks, merge), `finish` (paint the label image).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.infer.predict import ImageResult
from asfyolo_rt.infer.protocol import Backend
from asfyolo_rt.infer.sources import Frame
from asfyolo_rt.runtime.info import (
    DEFAULT_CONF,
    DEFAULT_IOU,
    DEFAULT_MASK_THRESHOLD,
    DEFAULT_MAX_DET,
    DEFAULT_MIN_VISIBLE,
    ModelInfo,
)
from asfyolo_rt.runtime.tiles import SCALES, Geometry, Plan

if TYPE_CHECKING:
    from asfyolo_rt.runtime.stages import FrameResult, Runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictConfig:
    """The settings of a run. Build it with `from_info` so that the model's recorded values are the defaults."""

    img_size: int | None = None  # fit: long side after resizing; native: tile side (default: the model's, else each image's own: tiles.fit_tile)
    scale: str = "native"  # "native" (tiles at the model's pixel scale) or "fit" (whole-image letterbox)
    tile_overlap: int | None = None  # native: px shared by neighbouring tiles (default: the model's)
    model_scale: float = 1.0  # native: network px per image px
    max_object_px: float | None = None  # the object size the default overlap exceeds (ModelInfo.overlap_object_px)
    batch: int = 1  # tiles per backend call
    train_pixel_size_um: float | None = None  # the model's training pixel size (checkpoint), if recorded
    pixel_size_um: float | None = None  # --pixel-size: overrides what the image files record
    conf: float = DEFAULT_CONF
    iou: float = DEFAULT_IOU
    max_det: int = DEFAULT_MAX_DET  # per tile (native) or per image (fit); DSB2018 images hold up to 382 cells
    mask_threshold: float = DEFAULT_MASK_THRESHOLD
    min_visible: float = DEFAULT_MIN_VISIBLE  # drop a cell of which less than this stays visible in the label image
    soft_nms: bool = False
    kernel_impl: str = "auto"  # mask assembly: auto = Triton on CUDA, reference on CPU
    pipeline: bool = True  # native: run the next tiles while the previous ones' masks are assembled
    skip_empty: bool = True  # native: tiles with no content (stages.is_empty_tile) are not run

    @classmethod
    def from_info(cls, info: ModelInfo, **overrides: Any) -> PredictConfig:
        """The model's recorded geometry and post-processing, with `overrides` (None values ignored).

        Unknown keys and out-of-range values are ConfigErrors naming the option."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
        base = cls(model_scale=info.model_scale, max_object_px=info.overlap_object_px,
                   train_pixel_size_um=info.pixel_size_um, conf=info.default_conf, iou=info.iou,
                   max_det=info.max_det, mask_threshold=info.mask_threshold, min_visible=info.min_visible)
        cfg = replace(base, **{k: v for k, v in overrides.items() if v is not None})
        cfg.check()
        return cfg

    def check(self) -> None:
        """ConfigError naming the CLI option of the first out-of-range value."""
        if self.scale not in SCALES:
            raise ConfigError(f"--scale {self.scale!r}: expected native or fit")
        if not 0.0 <= self.conf < 1.0:
            raise ConfigError(f"--conf {self.conf}: expected a threshold in [0, 1)")
        if not 0.0 < self.iou <= 1.0:
            raise ConfigError(f"--iou {self.iou}: expected a threshold in (0, 1]")
        if self.max_det < 1:
            raise ConfigError(f"--max-det {self.max_det}: expected >= 1")
        if not 0.0 <= self.min_visible <= 1.0:
            raise ConfigError(f"--min-visible {self.min_visible}: expected a fraction in [0, 1]")
        if not 0.0 < self.mask_threshold < 1.0:
            raise ConfigError(f"mask threshold {self.mask_threshold}: expected a value in (0, 1)")
        if self.pixel_size_um is not None and not 0 < self.pixel_size_um < 1000:
            raise ConfigError(f"--pixel-size {self.pixel_size_um}: expected micrometres per pixel in (0, 1000), "
                              "e.g. 0.325")
        self.geometry()  # its own checks (--img-size, --tile-overlap, --batch)

    def geometry(self) -> Geometry:
        """Where the pixels go: the tile geometry of these settings (`asfyolo_rt.runtime.tiles.Geometry`)."""
        return Geometry(self.scale, img_size=self.img_size, tile_overlap=self.tile_overlap,
                        model_scale=self.model_scale, batch=self.batch)


@dataclass
class Prepared:
    """A frame after `prepare`: its runner, plan and scaled pixels (native), and the ms it took."""

    frame: Frame
    runner: Any  # a Runner (a LeanRunner in `asfyolo_rt.runtime.lean`)
    plan: Plan | None  # None for "fit"
    scaled: np.ndarray | None
    timing_ms: dict[str, float]


class FramePipeline:
    """Frames through one backend with one PredictConfig (module docstring)."""

    def __init__(self, backend: Backend, cfg: PredictConfig) -> None:
        from asfyolo_rt.runtime.stages import PostConfig

        self.backend, self.cfg = backend, cfg
        self.geo = cfg.geometry()
        self.post = PostConfig(conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det, mask_threshold=cfg.mask_threshold,
                               soft_nms=cfg.soft_nms, kernel_impl=cfg.kernel_impl)
        self._runners: dict[float, Runner] = {}
        self._warned = False
        self.runner(cfg.model_scale)  # settings the backend cannot run (batch, img-size) fail here, not mid-stream

    def runner(self, scale: float) -> Runner:
        from asfyolo_rt.runtime.stages import Runner

        key = round(scale, 6)
        if key not in self._runners:
            self._runners[key] = Runner(self.backend, replace(self.geo, model_scale=scale), self.post,
                                        max_object_px=self.cfg.max_object_px, pipeline=self.cfg.pipeline,
                                        skip_empty=self.cfg.skip_empty)
        return self._runners[key]

    def frame_scale(self, frame: Frame) -> float:
        """Network px per image px for this frame: the model's, times image/training pixel size when both
        are known (cells at the size the model was trained on)."""
        return self._scale(frame.pixel_size_um, frame.name)

    def _scale(self, pixel_size_um: float | None, name: str | None) -> float:
        cfg = self.cfg
        px = cfg.pixel_size_um or pixel_size_um
        if cfg.scale == "native" and px and cfg.train_pixel_size_um:
            return cfg.model_scale * px / cfg.train_pixel_size_um
        if px and not cfg.train_pixel_size_um and not self._warned and name is not None:
            log.info("%s: pixel size %.4g um; the model records none, so images are processed at their own "
                     "pixel scale (record it with `asfyolo-rt weights pack --pixel-size`)", name, px)
            self._warned = True
        return cfg.model_scale

    def warm(self, shape: tuple[int, int], pixel_size_um: float | None = None) -> threading.Thread | None:
        """Make the backend ready for frames of `shape` (H, W) on a thread of its own, so that the compile of a
        dynamic model's tile shape (OpenVINO: 0.1-0.3 s) runs while the frame is read and scaled; returns the
        thread (None: nothing to make ready). An error there is left for the frame's own call to raise."""
        prepare = getattr(self.backend, "prepare", None)
        if prepare is None or self.geo.scale != "native":
            return None
        plan = self.runner(self._scale(pixel_size_um, None)).plan((int(shape[0]), int(shape[1])))
        if not plan.tiles:
            return None
        hw = (plan.tiles[0].h, plan.tiles[0].w)

        def run() -> None:
            try:
                prepare(hw)
            except Exception as exc:  # raised again, with its message, by the frame's first batch
                log.debug("warming tiles of %s failed: %s", hw, exc)

        thread = threading.Thread(target=run, name="asfyolo-warm")
        thread.start()
        return thread

    def prepare(self, frame: Frame) -> Prepared:
        t0 = time.perf_counter()
        from asfyolo_rt.runtime.stages import scale_image

        runner = self.runner(self.frame_scale(frame))
        if self.geo.scale == "fit":
            return Prepared(frame, runner, None, None, {})
        plan = runner.plan(frame.image.shape[:2])
        scaled = scale_image(frame.image, plan)
        return Prepared(frame, runner, plan, scaled, {"preprocess": 1e3 * (time.perf_counter() - t0)})

    def infer(self, p: Prepared) -> FrameResult:
        if p.plan is None or p.scaled is None:
            res = p.runner(p.frame.image)
            for k, v in p.timing_ms.items():
                res.timing_ms[k] = res.timing_ms.get(k, 0.0) + v
            return res
        return p.runner.run_plan(p.scaled, p.plan, dict(p.timing_ms))

    def finish(self, frame: Frame, res: FrameResult) -> ImageResult:
        from asfyolo_rt.runtime.stages import paint

        t0 = time.perf_counter()
        res, label_map = paint(res, self.cfg.min_visible)
        timing = dict(res.timing_ms)
        timing["postprocess"] = timing.get("postprocess", 0.0) + 1e3 * (time.perf_counter() - t0)
        return ImageResult(
            frame=frame, transform=res.transform, boxes=res.boxes.numpy().astype(np.float32),
            scores=res.scores.numpy(), classes=res.classes.numpy().astype(np.int64), label_map=label_map,
            masks=res.masks, timing_ms=timing, tiles=res.tiles,
        )

    def __call__(self, frame: Frame) -> ImageResult:
        return self.finish(frame, self.infer(self.prepare(frame)))


def predict(
    backend: Backend,
    frames: Iterable[Frame],
    cfg: PredictConfig | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    total: int = 0,
) -> Iterator[ImageResult]:
    """Run the whole pipeline image by image with the geometry of `cfg` (see asfyolo_rt.runtime.stages)."""
    pipe = FramePipeline(backend, cfg or PredictConfig())
    for i, frame in enumerate(frames):
        yield pipe(frame)
        if progress:
            progress(i + 1, total)
