"""What a block task needs, in picklable values, and what a worker process makes of it once.

A `Job` (image spec, backend spec, settings, block side, intensity range, work folder) travels to every task;
`context(job)` opens the image and the backend and builds the `Runner` once per process (a Dask worker runs
many blocks: the model is loaded once per worker, not per block).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.large.normalise import IntensityRange
from asfyolo_rt.large.readers import ImageSpec, LargeImage
from asfyolo_rt.runtime.registry import BackendSpec

DEFAULT_BLOCK = 4096  # block side (image px): ~200 tiles of 640 at the shipped model's scale; ~1 GB peak per worker


@dataclass(frozen=True)
class Job:
    """One image's run. settings: `PredictConfig` overrides (the CLI's option names); block: block side in
    pixels of the chosen level (a multiple of `chunk`); chunk: the label array's chunk side; work: the folder of
    block records (inside the output)."""

    image: ImageSpec
    model: BackendSpec
    settings: tuple[tuple[str, Any], ...]
    block: int
    chunk: int
    norm: IntensityRange
    work: str

    @property
    def work_dir(self) -> Path:
        return Path(self.work)


@dataclass
class Context:
    """A worker's opened image, runner and run settings for one job."""

    image: LargeImage
    runner: Any  # asfyolo_rt.runtime.stages.Runner
    config: Any  # asfyolo_rt.runtime.pipeline.PredictConfig
    scale: float


_RUNNERS: dict[tuple[Any, ...], tuple[Any, Any, float]] = {}
_IMAGES: dict[tuple[Any, ...], LargeImage] = {}
_LOCK = threading.Lock()


def source_key(spec: ImageSpec) -> tuple[Any, ...]:
    """What identifies an image across the tasks of a process: a path, a zarr array's store and path (the same
    in every unpickled copy), or an in-memory array's identity (serial runs only)."""
    src = spec.source
    if isinstance(src, str | Path):
        where: Any = str(src)
    elif hasattr(src, "store") and hasattr(src, "path"):
        where = (str(src.store), str(src.path), tuple(src.shape), str(src.dtype))
    else:
        where = id(src)
    return (where, spec.level, spec.channel, spec.axes, spec.pixel_size_um)


def opened(image: ImageSpec) -> LargeImage:
    """The image of `image`, opened once per process."""
    key = source_key(image)
    with _LOCK:
        if key not in _IMAGES:
            _IMAGES[key] = image.open()
        return _IMAGES[key]


def context(job: Job) -> Context:
    """The job's image, backend and Runner, made once per process (thread-safe): a worker loads the model once
    for every block it runs, whatever image they come from."""
    img = opened(job.image)
    key = (job.model, job.settings, img.pixel_size_um)
    with _LOCK:
        if key not in _RUNNERS:
            _RUNNERS[key] = make_runner(img, job.model, dict(job.settings))
        runner, cfg, scale = _RUNNERS[key]
    return Context(img, runner, cfg, scale)


def make_context(image: LargeImage, model: BackendSpec, settings: dict[str, Any]) -> Context:
    """A Context made now (no cache): `make_runner` for this image."""
    return Context(image, *make_runner(image, model, settings))


def make_runner(image: LargeImage, model: BackendSpec, settings: dict[str, Any]) -> tuple[Any, Any, float]:
    """(Runner, PredictConfig, scale): the backend opened and the Runner of `settings` for this image's pixel
    size (as `FramePipeline` does for a frame: network px per image px = the model's, times image / training
    pixel size when both are known)."""
    from dataclasses import replace

    from asfyolo_rt.runtime.info import read_model_info
    from asfyolo_rt.runtime.pipeline import FramePipeline, PredictConfig
    from asfyolo_rt.runtime.tiles import DEFAULT_TILE

    # blocks keep the 640 tile of a dynamic model (not each frame's own, `tiles.fit_tile`, up to 1024): the
    # memory per worker measured for this route (docs/how-to/large-images.md) holds for it
    info = read_model_info(model.file)
    if info.input_shape is None and settings.get("img_size") is None:
        settings = {**settings, "img_size": DEFAULT_TILE}
    cfg = PredictConfig.from_info(info, **settings)
    if cfg.scale != "native":
        raise ConfigError("--scale fit resizes a whole image: images read by block run at --scale native",
                          hint="leave out --scale fit")
    px = image.pixel_size_um  # the level's (ImageSpec.pixel_size_um overrides the metadata's)
    scale = cfg.model_scale * px / cfg.train_pixel_size_um if px and cfg.train_pixel_size_um else cfg.model_scale
    pipe = FramePipeline(model.open(), replace(cfg, pixel_size_um=None))
    return pipe.runner(scale), cfg, scale
