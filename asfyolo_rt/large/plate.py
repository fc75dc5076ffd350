"""A folder, glob or plate of ordinary images on a Dask cluster: one task per image, predict's outputs.

Each task reads one input (every frame or plane of it, named as the whole run names it: `unique_names` over
all inputs), segments it with a `Segmenter` made once per worker process from the same model and settings,
and returns predict's `ImageResult`s; the caller writes them in input order with predict's own writer, so a
run with ``--cluster`` writes the same files as one without. At most `window` inputs are in flight, so the
results waiting to be written stay bounded whatever the plate's size.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asfyolo_rt.infer.predict import ImageResult
from asfyolo_rt.infer.sources import BadInput

_SEGMENTERS: dict[Any, Any] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class ImageTask:
    """What a worker needs to segment inputs as `predict` does (picklable)."""

    model: str
    backend: str | None
    device: str
    precision: str
    threads: int | None
    settings: tuple[tuple[str, Any], ...]
    video_stride: int = 1
    channel: int | None = None
    skip_bad: bool = False
    max_pixels: int | None = None


def segment_input(task: ImageTask, item: tuple[Path, str]) -> tuple[list[ImageResult], list[BadInput]]:
    """One input's results (and, with skip_bad, why it was skipped) in a worker process."""
    from asfyolo_rt.data.io import pixel_limit
    from asfyolo_rt.infer.sources import iter_frames
    from asfyolo_rt.runtime.segmenter import Segmenter

    key = (task.model, task.backend, task.device, task.precision, task.threads, task.settings)
    with _LOCK:
        seg = _SEGMENTERS.get(key)
        if seg is None:
            seg = _SEGMENTERS[key] = Segmenter(task.model, backend=task.backend, device=task.device,
                                               precision=task.precision, threads=task.threads, **dict(task.settings))
    path, name = item
    skipped: list[BadInput] = []
    with pixel_limit(task.max_pixels):
        frames = iter_frames([path], video_stride=task.video_stride, channel=task.channel, names={path: name},
                             skip_bad=task.skip_bad, skipped=skipped)
        return list(seg.predict_frames(frames)), skipped


def predict_images(client: Any, task: ImageTask, files: list[Path], *, skipped: list[BadInput] | None = None,
                   window: int | None = None) -> Iterator[ImageResult]:
    """predict's results for `files`, in input order, one Dask task per input (module docstring)."""
    from asfyolo_rt.infer.sources import unique_names

    names = unique_names(files)
    n_workers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))
    window = window or 2 * n_workers + 2
    pending: deque[Any] = deque()
    todo = iter(files)

    def submit() -> bool:
        for p in todo:
            pending.append(client.submit(segment_input, task, (p, names[p]), pure=False))
            return True
        return False

    try:
        while len(pending) < window and submit():
            pass
        while pending:
            results, bad = pending.popleft().result()  # the input's own error, raised at its place in order
            submit()
            if skipped is not None:
                skipped.extend(bad)
            yield from results
    finally:
        for fut in pending:
            fut.cancel()
