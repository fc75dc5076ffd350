"""`Segmenter`: the public object microscope software creates once and calls per frame.

    >>> import numpy as np
    >>> from asfyolo_rt import Segmenter
    >>> seg = Segmenter("dsb2018")                          # the shipped DSB2018 nuclei model, PyTorch on the CPU
    >>> frame = np.zeros((256, 256), np.uint16)             # a camera frame: any size, any dtype, grey or RGB
    >>> frame[100:120, 100:124] = 3000                       # one bright nucleus
    >>> cells = seg.segment(frame)
    >>> cells.labels.shape, cells.labels.dtype
    ((256, 256), dtype('int32'))
    >>> sorted(cells.table.dtype.names)[:4]
    ['area_px', 'centroid_x', 'centroid_y', 'class']

It is the same pipeline as `asfyolo-rt predict` (`asfyolo_rt.runtime.pipeline`): the model's recorded
geometry (native scale, tile overlap) and tuned confidence are the defaults; keyword overrides take the CLI
option names (``conf=0.3``, ``tile_overlap=96``, ``batch=4``, ``scale="fit"``, ...). Exported models run
the same way: ``Segmenter("bundle/model.onnx")``, ``Segmenter("bundle/model.int8-openvino.xml")``,
``Segmenter("model.engine")`` (on a GPU with TensorRT); ``backend=`` names a registered runtime
(`asfyolo_rt.runtime.registry.runtimes()`) where a file runs on several.

`segment_many` takes an iterable of frames (arrays or image paths) and overlaps reading, scaling and
painting of neighbouring frames with the inference of the current one (threads: OpenCV, NumPy, PyTorch,
ONNX Runtime and OpenVINO release the GIL in their work), yielding results in input order.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.infer.predict import ImageResult
from asfyolo_rt.infer.protocol import Backend
from asfyolo_rt.infer.sources import Frame
from asfyolo_rt.infer.writers import result_table
from asfyolo_rt.runtime.info import ModelInfo, read_model_info
from asfyolo_rt.runtime.pipeline import FramePipeline, PredictConfig
from asfyolo_rt.runtime.registry import BackendSpec

if TYPE_CHECKING:
    import pandas as pd

    from asfyolo_rt.kernels.mask_assembly import PackedMasks

@dataclass
class Cells:
    """The cells of one frame.

    labels: (H, W) int32 label image (0 = background, k = cell k, on the frame's own pixel grid);
    table: one row per cell (`asfyolo_rt.infer.writers.CELL_DTYPE`: id, class, score, box x1 y1 x2 y2,
    area_px, centroid_x/y, equivalent_diameter_px), measured on the label image like predict's cells.csv (NaN
    centroid for a cell with no visible pixel); boxes/scores/classes: the detections behind the labels (label
    k = row k - 1); masks: their box-local full-resolution masks; timing_ms: read / preprocess / inference /
    postprocess
    (and queue, in `segment_many`); pixel_size_um: micrometres per pixel when known (areas in µm² then).
    """

    labels: np.ndarray
    table: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: PackedMasks
    names: dict[int, str]
    timing_ms: dict[str, float] = field(default_factory=dict)
    tiles: int = 1
    pixel_size_um: float | None = None
    result: ImageResult | None = field(default=None, repr=False)  # what predict's writers take

    def __len__(self) -> int:
        return int(self.table.shape[0])

    @property
    def count(self) -> int:
        return len(self)

    def to_dataframe(self) -> pd.DataFrame:
        """The table as a pandas DataFrame (class names and, with a pixel size, µm columns added)."""
        import pandas as pd

        df = pd.DataFrame(self.table)
        df["class_name"] = [self.names.get(int(c), str(c)) for c in self.table["class"]]
        if self.pixel_size_um:
            df["area_um2"] = df["area_px"] * self.pixel_size_um ** 2
            df["equivalent_diameter_um"] = df["equivalent_diameter_px"] * self.pixel_size_um
        return df

    def polygons(self) -> list[np.ndarray | None]:
        """One (k, 2) float array of x, y outline vertices per cell (pixel corners; None where no pixel is
        visible), traced on the label image like the QuPath/Fiji exports."""
        from asfyolo_rt.infer.polygons import mask_outline

        out: list[np.ndarray | None] = []
        win = np.asarray(self.masks.windows).astype(np.int64)
        for i in range(len(self)):
            x0, y0, w, h = (int(v) for v in win[i])
            out.append(mask_outline(self.labels[y0:y0 + h, x0:x0 + w] == i + 1, x0, y0))
        return out


def cells_from_result(r: ImageResult, names: dict[int, str]) -> Cells:
    t0 = time.perf_counter()
    table = result_table(r)
    timing = dict(r.timing_ms)
    timing["postprocess"] = timing.get("postprocess", 0.0) + 1e3 * (time.perf_counter() - t0)
    return Cells(labels=r.label_map, table=table, boxes=r.boxes, scores=r.scores, classes=r.classes, masks=r.masks,
                 names=names, timing_ms=timing, tiles=r.tiles, pixel_size_um=r.frame.pixel_size_um, result=r)


class Segmenter:
    """A model made ready once, called per frame (module docstring).

    model: a shipped name ("dsb2018", "bcc"), a checkpoint, an exported .onnx / OpenVINO .xml / TensorRT
    .engine, or a bundle folder (its model.onnx); backend: a registered runtime (None: from the file);
    device: "cpu" or "cuda[:N]"; precision: PyTorch fp32/fp16/bf16, OpenVINO fp32/bf16/int8 (exported
    files carry their own); threads: intra-op threads of the runtime; overrides: `PredictConfig` fields
    (conf, iou, max_det, min_visible, scale, img_size, tile_overlap, batch, pixel_size_um, ...).
    """

    def __init__(self, model: str | Path = "dsb2018", backend: str | None = None, device: str = "cpu", *,
                 precision: str = "fp32", threads: int | None = None, kernel_impl: str = "torch",
                 **overrides: Any) -> None:
        from asfyolo_rt.weights_registry import resolve_weights

        path = resolve_weights(str(model), option="model")
        if path.is_dir():  # a bundle: its FP32 ONNX
            if not (path / "model.onnx").is_file():
                raise ConfigError(f"model {path} is a folder without model.onnx",
                                  hint="give a bundle written by `asfyolo-rt export`, or a model file")
            path = path / "model.onnx"
        self.info: ModelInfo = read_model_info(path)
        self.spec = BackendSpec(str(path), runtime=backend or "auto", precision=precision, device=device,
                                threads=threads, kernel_impl=kernel_impl)
        self.backend: Backend = self.spec.open()
        self._configure(overrides)

    def _configure(self, overrides: dict[str, Any]) -> None:
        """The run's settings (the model's, then `overrides`) and the pipeline that applies them. A whole-image
        ("fit") run of a dynamic model defaults to the model's training size, as predict's --scale fit does."""
        if overrides.get("scale") == "fit" and overrides.get("img_size") is None and self.backend.input_shape is None:
            overrides = {**overrides, "img_size": self.info.train_img_size or 640}
        from asfyolo_rt.runtime import lean

        self.config = PredictConfig.from_info(self.info, **overrides)
        # exported models on the CPU: the same stages in NumPy (no PyTorch import); else the PyTorch stages
        self.lean = lean.applies(self.backend, self.config)
        self._pipe = (lean.LeanPipeline if self.lean else FramePipeline)(self.backend, self.config)

    def with_settings(self, **overrides: Any) -> Segmenter:
        """A Segmenter sharing this one's model and backend (no reload) with other settings: the model's
        recorded defaults, then `overrides` (None values ignored), as in the constructor."""
        other = object.__new__(Segmenter)
        other.info, other.spec, other.backend = self.info, self.spec, self.backend
        other._configure(overrides)
        return other

    def __repr__(self) -> str:
        return (f"Segmenter({self.spec.path!r}, backend={self.backend.name!r}, precision={self.backend.precision!r}, "
                f"conf={self.config.conf:g}, scale={self.config.scale!r})")

    @property
    def tiler(self) -> Any:
        """The tile geometry of this model and settings (`asfyolo_rt.runtime.tiles.Tiler`): `tile`, `overlap`,
        `batch`, and `adaptive` when each image gets its own tile."""
        return self._pipe.runner(self.config.model_scale).tiler

    def warm(self, shape: tuple[int, int], pixel_size: float | None = None) -> threading.Thread | None:
        """Start making the model ready for frames of `shape` (H, W) (µm per pixel `pixel_size`) on a thread,
        and return at once: a dynamic-shape model on OpenVINO compiles each image size's tile shape once
        (0.1-0.3 s), which otherwise the first frame of that size waits for. Call it when the camera's frame
        size is known, before the first frame arrives; a size never warmed is compiled on first use. Returns
        the thread (join it to wait), None where there is nothing to make ready."""
        return self._pipe.warm(shape, pixel_size)

    @property
    def names(self) -> dict[int, str]:
        return dict(self.backend.names or self.info.names)

    # ------------------------------------------------------------------------------------ one frame
    def frame(self, image: np.ndarray | str | Path, pixel_size: float | None = None, name: str = "frame") -> Frame:
        """An input as the pipeline takes it: a path is read like predict reads files; an array (H, W) or
        (H, W, C) of any dtype is scaled to uint8 RGB (0.1..99.9 percentiles for non-uint8 data)."""
        from asfyolo_rt.data.io import read_image, read_pixel_size, to_uint8_rgb

        if isinstance(image, str | Path):
            p = Path(image)
            if not p.is_file():
                raise ConfigError(f"image {p} does not exist")
            return Frame(p.stem, p, read_image(p), pixel_size_um=pixel_size or read_pixel_size(p))
        a = np.asarray(image)
        if a.ndim not in (2, 3) or a.shape[0] < 1 or a.shape[1] < 1:
            raise ConfigError(f"image array of shape {a.shape}: expected (H, W) or (H, W, C)",
                              hint="pass one plane; segment a stack plane by plane")
        rgb = a if (a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3) else to_uint8_rgb(a)
        return Frame(name, Path(name), np.ascontiguousarray(rgb), pixel_size_um=pixel_size)

    def segment(self, image: np.ndarray | str | Path, pixel_size: float | None = None) -> Cells:
        """The cells of one frame. pixel_size: µm per pixel (rescales to the model's training pixel size where
        the model records one; areas in µm² in `Cells.to_dataframe`)."""
        t0 = time.perf_counter()
        frame = self.frame(image, pixel_size)
        read_ms = 1e3 * (time.perf_counter() - t0)
        cells = cells_from_result(self._pipe(frame), self.names)
        cells.timing_ms = {"read": read_ms, **cells.timing_ms}
        return cells

    def predict_frames(self, frames: Iterable[Frame]) -> Iterator[ImageResult]:
        """predict's results (what its writers take) for already read frames, one by one."""
        for frame in frames:
            yield self._pipe(frame)

    # ---------------------------------------------------------------------------------- many frames
    def stream_workers(self) -> int:
        """Frames `segment_many` runs at once: several on a CPU PyTorch backend (each with a share of the
        cores: small tiles use one thread better than several threads use one tile), else one."""
        cores = os.cpu_count() or 1  # (the backend's name, not its class: importing that class imports torch)
        if self.backend.name == "torch" and str(getattr(self.backend, "device", "cpu")).startswith("cpu") and cores >= 2:
            return min(cores, 4)
        return 1

    def segment_many(self, images: Iterable[np.ndarray | str | Path | Frame], *, prefetch: int = 2,
                     pixel_size: float | None = None, workers: int | None = None) -> Iterator[Cells]:
        """Cells of every frame, in input order, faster than one `segment` call per frame.

        workers > 1 (`stream_workers()`, the default on a CPU PyTorch backend): that many frames are read,
        segmented and measured at once in threads, the cores split between them (PyTorch's intra-op threads
        are set to cores // workers for the duration: a process-wide setting). workers == 1: reading + scaling
        of the next frames and painting + measuring of the previous one run beside the inference of the
        current one. An error in any step is raised here, at the frame it belongs to; leaving the loop early
        stops the threads (frames already running finish first)."""
        if prefetch < 1:
            raise ConfigError(f"prefetch {prefetch}: expected >= 1")
        workers = self.stream_workers() if workers is None else workers
        if workers < 1:
            raise ConfigError(f"workers {workers}: expected >= 1")
        if workers > 1:
            yield from self._segment_parallel(images, workers, prefetch, pixel_size)
            return
        stop = threading.Event()
        prepared: queue.Queue[Any] = queue.Queue(maxsize=prefetch)
        results: queue.Queue[Any] = queue.Queue(maxsize=prefetch)
        done = object()

        def put(q: queue.Queue[Any], item: Any) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def reader() -> None:
            try:
                for k, item in enumerate(images):
                    t0 = time.perf_counter()
                    frame = item if isinstance(item, Frame) else self.frame(item, pixel_size, name=f"frame{k}")
                    read_ms = 1e3 * (time.perf_counter() - t0)
                    p = self._pipe.prepare(frame)
                    p.timing_ms["read"] = read_ms
                    if not put(prepared, (p, time.perf_counter())):
                        return
                put(prepared, done)
            except BaseException as exc:  # handed to the consumer, raised there
                put(prepared, exc)

        def painter() -> None:
            try:
                while not stop.is_set():
                    try:
                        item = results.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    if item is done or isinstance(item, BaseException):
                        put(out, item)
                        return
                    frame, res = item
                    put(out, cells_from_result(self._pipe.finish(frame, res), self.names))
            except BaseException as exc:
                put(out, exc)

        out: queue.Queue[Any] = queue.Queue()  # unbounded: the painter never waits (the consumer drains it
        # before every inference, so it holds at most what `results` held)
        threads = [threading.Thread(target=reader, name="segment-read", daemon=True),
                   threading.Thread(target=painter, name="segment-paint", daemon=True)]
        for t in threads:
            t.start()

        def inferrer() -> Iterator[Any]:
            while True:
                item = prepared.get()
                if item is done or isinstance(item, BaseException):
                    put(results, item)
                    return
                p, t_ready = item
                wait_ms = 1e3 * (time.perf_counter() - t_ready)
                res = self._pipe.infer(p)
                res.timing_ms["queue"] = wait_ms
                res.timing_ms.setdefault("read", p.timing_ms.get("read", 0.0))
                put(results, (p.frame, res))
                yield None

        try:
            inf = inferrer()
            finished = False
            while True:
                try:  # what is painted already goes out first; else run one more inference
                    item = out.get_nowait()
                except queue.Empty:
                    if not finished:
                        try:
                            next(inf)
                        except StopIteration:
                            finished = True
                        except BaseException as exc:
                            put(results, exc)
                            finished = True
                        continue
                    item = out.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=5)

    def _segment_one(self, item: np.ndarray | str | Path | Frame, k: int, pixel_size: float | None,
                     submitted: float) -> Cells:
        t0 = time.perf_counter()
        frame = item if isinstance(item, Frame) else self.frame(item, pixel_size, name=f"frame{k}")
        t1 = time.perf_counter()
        cells = cells_from_result(self._pipe(frame), self.names)
        cells.timing_ms = {"queue": 1e3 * (t0 - submitted), "read": 1e3 * (t1 - t0), **cells.timing_ms}
        return cells

    def _segment_parallel(self, images: Iterable[np.ndarray | str | Path | Frame], workers: int, prefetch: int,
                          pixel_size: float | None) -> Iterator[Cells]:
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        torch: Any = None
        if self.backend.name == "torch":  # PyTorch's intra-op threads split between the workers (others: as set)
            import torch
        threads = torch.get_num_threads() if torch else 0
        if torch:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="segment-worker")
        pending: deque[Future[Cells]] = deque()
        source = iter(enumerate(images))  # the caller's iterable is consumed on this thread only

        def submit() -> bool:
            for k, item in source:
                pending.append(pool.submit(self._segment_one, item, k, pixel_size, time.perf_counter()))
                return True
            return False

        try:
            while len(pending) < workers + prefetch and submit():
                pass
            while pending:
                cells = pending.popleft().result()  # raises the frame's own error, in order
                submit()
                yield cells
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            if torch:
                torch.set_num_threads(threads)
