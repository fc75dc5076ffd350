"""Segment every frame of a pymmcore-plus acquisition (MDA) with `asfyolo_rt.Segmenter`.

pymmcore-plus emits ``core.mda.events.frameReady(image, event, metadata)`` on the thread that runs the
acquisition, once per frame: image (H, W) camera pixels (uint8/uint16), event the `useq.MDAEvent` (its
``index``, e.g. ``{"t": 3, "c": 0}``, places the frame in the sequence), metadata pymmcore-plus's
`FrameMetaV1` dict (``metadata["pixel_size_um"]`` is ``core.getPixelSizeUm()`` at that frame, 0 when no
pixel size is configured). Whatever a slot does there delays the next frame, so `FrameSegmenter.frameReady`
only copies the frame into a queue; one worker thread, with one `Segmenter` made before the acquisition,
segments the frames in acquisition order and stores a `SegmentedFrame` (label image, cell count, table) per
event index:

    seg = Segmenter("dsb2018")                        # once: loading the model takes seconds
    with FrameSegmenter(seg) as cells:                # leaving the block waits for the last frame
        core.mda.events.frameReady.connect(cells.frameReady)
        core.mda.run(useq.MDASequence(time_plan={"interval": 1, "loops": 20}))
        core.mda.events.frameReady.disconnect(cells.frameReady)
    cells.results[(("t", 0),)].count                  # keys: `event_key(event)`

psygnal holds a weak reference to a bound-method slot: keep the `FrameSegmenter` alive while it is connected.

Run ``python examples/pymmcore_plus_segment.py`` for a demo without hardware or Micro-Manager device
adapters: a pure-Python camera (`pymmcore_plus.experimental.unicore`) serves the given images (or
synthetic nuclei) to a real ``core.mda.run``; the cell count of every frame is printed.
"""

from __future__ import annotations

import argparse
import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from useq import MDAEvent

from asfyolo_rt import Segmenter

logger = logging.getLogger(__name__)

EventKey = tuple[tuple[str, int], ...]
_STOP = object()  # queued by `close`: the worker ends after the frames queued before it


def event_key(event: MDAEvent) -> EventKey:
    """A hashable key for a frame's place in the sequence: ``(("c", 0), ("t", 3))`` (axes sorted)."""
    return tuple(sorted((str(axis), int(i)) for axis, i in event.index.items()))


def pixel_size_from_meta(meta: Mapping[str, Any]) -> float | None:
    """µm per pixel recorded by pymmcore-plus for the frame (``core.getPixelSizeUm()``); None when unset (0)."""
    value = float(meta.get("pixel_size_um") or 0.0)
    return value if value > 0 else None


@dataclass
class SegmentedFrame:
    """The cells of one acquired frame.

    key: `event_key` of its event; labels: (H, W) int32 label image (0 background, k = table row k - 1);
    table: `asfyolo_rt.runtime.segmenter.CELL_DTYPE` rows; pixel_size_um: from the frame's metadata.
    """

    key: EventKey
    labels: np.ndarray
    table: np.ndarray
    pixel_size_um: float | None

    @property
    def count(self) -> int:
        return int(self.table.shape[0])


class FrameSegmenter:
    """A `frameReady` slot that segments frames on a worker thread (module docstring).

    segmenter: a ready `Segmenter`, used by the worker thread only while frames are pending; max_pending:
    frames allowed to wait for segmentation (None: no limit); a frame arriving when that many wait is not
    segmented and its key is added to `skipped`, so the acquisition is never held up. Results: `results`
    (event key -> `SegmentedFrame`, filled in acquisition order); a frame whose segmentation raised is in
    `errors` and makes `close` raise.
    """

    def __init__(self, segmenter: Segmenter, max_pending: int | None = None) -> None:
        if max_pending is not None and max_pending < 1:
            raise ValueError(f"max_pending {max_pending}: expected None or >= 1")
        self.segmenter = segmenter
        self.results: dict[EventKey, SegmentedFrame] = {}
        self.errors: dict[EventKey, BaseException] = {}
        self.skipped: list[EventKey] = []
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending or 0)
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="asfyolo-segment", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------- the slot (acquisition thread)
    def frameReady(self, image: np.ndarray, event: MDAEvent, meta: dict) -> None:
        """Queue one frame and return at once. image: (H, W) or (H, W, C) camera pixels, copied here because
        the camera may reuse its buffer for the next frame."""
        if self._closed:
            raise RuntimeError("frameReady after close(): connect a new FrameSegmenter for a new acquisition")
        item = (event_key(event), np.array(image, copy=True), pixel_size_from_meta(meta))
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.skipped.append(item[0])
            logger.warning("frame %s not segmented: %d frames already wait", item[0], self._queue.maxsize)

    # ------------------------------------------------------------------------------ the worker
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            key, image, pixel_size = item
            try:
                cells = self.segmenter.segment(image, pixel_size=pixel_size)
            except Exception as exc:  # kept and raised by `close`, in the caller's thread
                logger.exception("segmenting frame %s failed", key)
                self.errors[key] = exc
                continue
            self.results[key] = SegmentedFrame(key, cells.labels, cells.table, pixel_size)

    # ------------------------------------------------------------------------------- the end
    @property
    def pending(self) -> int:
        """Frames queued and not yet segmented (approximate while the worker runs)."""
        return self._queue.qsize()

    def close(self, timeout: float | None = None) -> None:
        """Wait until every queued frame is segmented (at most timeout seconds) and stop the worker; raise
        if a frame failed (`errors` holds all of them) or the worker did not finish in time."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)  # unbounded for _STOP: a full queue only delays it
        self._worker.join(timeout)
        if self._worker.is_alive():
            raise TimeoutError(f"{self.pending} frames still waiting for segmentation after {timeout} s")
        if self.errors:
            key, first = next(iter(self.errors.items()))
            raise RuntimeError(f"{len(self.errors)} frames could not be segmented; first {key}: {first}") from first

    def __enter__(self) -> FrameSegmenter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# ------------------------------------------------------------------- demo without hardware
def synthetic_nuclei(n_frames: int, shape: tuple[int, int] = (256, 256), seed: int = 0) -> list[np.ndarray]:
    """n_frames (H, W) uint16 frames of 10-20 bright elliptic blobs on a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    frames = []
    for _ in range(n_frames):
        img = rng.normal(400, 40, shape)
        for _ in range(int(rng.integers(10, 21))):
            cy, cx = rng.uniform(20, shape[0] - 20), rng.uniform(20, shape[1] - 20)
            ry, rx = rng.uniform(6, 12, 2)
            img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] += rng.uniform(2000, 4000)
        frames.append(np.clip(img, 0, 65535).astype(np.uint16))
    return frames


def grey_frames(paths: Sequence[Path], shape: tuple[int, int]) -> list[np.ndarray]:
    """The images at paths as (H, W) uint16 grey frames, centre-cropped (zero-padded) to one sensor shape."""
    from asfyolo_rt.data.io import read_image

    frames = []
    for p in paths:
        grey = read_image(p).astype(np.float32).mean(axis=2)  # (h, w, 3) uint8 RGB -> (h, w)
        out = np.zeros(shape, np.uint16)
        h, w = min(shape[0], grey.shape[0]), min(shape[1], grey.shape[1])
        y0, x0 = (grey.shape[0] - h) // 2, (grey.shape[1] - w) // 2
        out[:h, :w] = np.round(grey[y0:y0 + h, x0:x0 + w] * 256).astype(np.uint16)
        frames.append(out)
    return frames


def demo_core(frames: Sequence[np.ndarray], pixel_size_um: float | None = None) -> Any:
    """A `UniMMCore` whose current camera is a pure-Python device serving frames in turn (no adapters)."""
    from pymmcore_plus.experimental.unicore import SimpleCameraDevice, UniMMCore

    class FrameCamera(SimpleCameraDevice):
        def __init__(self) -> None:
            super().__init__()
            self._next, self._exposure = 0, 10.0

        def get_exposure(self) -> float:
            return self._exposure

        def set_exposure(self, exposure: float) -> None:
            self._exposure = exposure

        def sensor_shape(self) -> tuple[int, int]:
            h, w = frames[0].shape[:2]
            return (h, w)

        def dtype(self) -> Any:
            return frames[0].dtype

        def snap(self, buffer: np.ndarray) -> Mapping:
            buffer[:] = frames[self._next % len(frames)]
            self._next += 1
            return {}

    core = UniMMCore()
    core.loadPyDevice("Camera", FrameCamera())
    core.initializeDevice("Camera")
    core.setCameraDevice("Camera")
    if pixel_size_um:
        core.definePixelSizeConfig("demo")
        core.setPixelSizeUm("demo", pixel_size_um)
        core.setPixelSizeConfig("demo")
    return core


def segment_acquisition(core: Any, sequence: Any, segmenter: Segmenter,
                        max_pending: int | None = None) -> dict[EventKey, SegmentedFrame]:
    """Run sequence (a `useq.MDASequence`) on core with every frame segmented; the results by event key."""
    with FrameSegmenter(segmenter, max_pending) as handler:
        core.mda.events.frameReady.connect(handler.frameReady)
        try:
            core.mda.run(sequence)
        finally:
            core.mda.events.frameReady.disconnect(handler.frameReady)
    return handler.results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", type=Path, help="images the demo camera serves (default: synthetic)")
    parser.add_argument("--frames", type=int, default=4, help="frames to acquire (time points)")
    parser.add_argument("--model", default="dsb2018", help="shipped model name or model file")
    parser.add_argument("--pixel-size", type=float, default=None, help="µm per pixel set on the core")
    args = parser.parse_args(argv)

    import useq

    frames = grey_frames(args.images, (256, 256)) if args.images else synthetic_nuclei(args.frames)
    core = demo_core(frames, args.pixel_size)
    sequence = useq.MDASequence(time_plan=useq.TIntervalLoops(interval=timedelta(0), loops=args.frames))
    results = segment_acquisition(core, sequence, Segmenter(args.model))
    for key, frame in results.items():
        print(dict(key), f"{frame.count} cells", f"labels {frame.labels.shape} {frame.labels.dtype}",
              f"pixel size {frame.pixel_size_um} µm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
