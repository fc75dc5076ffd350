"""The acquisition-software examples (examples/): pymmcore-plus and pycro-manager calling `Segmenter`.

pymmcore-plus: a real `core.mda.run` on a `UniMMCore` (pymmcore-plus's pure-Python device layer) whose camera
is a Python device serving DSB2018 nuclei crops, so the real runner emits the real `frameReady` signal; no
Micro-Manager device adapter is needed. pycro-manager: an acquisition needs a running Micro-Manager (Java or
adapters), so `process` is called through pycro-manager's own dispatcher (`_call_image_process_fn`, which both
backends' processor threads call) with metadata built by pycro-manager's `AcqEngMetadata` setters.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import threading
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VAL_IMAGES = ("DSB2018", "images", "val")
N_FRAMES = 3
SENSOR = (192, 192)  # camera frame (H, W): a centre crop of the DSB2018 val images (256x256 and larger)


def load_example(name: str) -> ModuleType:
    """examples/<name>.py imported as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"asfyolo_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def segmenter() -> Any:
    from asfyolo_rt import Segmenter

    return Segmenter("dsb2018")


@pytest.fixture(scope="module")
def nuclei_paths(datasets_root: Path) -> list[Path]:
    """The first N_FRAMES fluorescence (grey) DSB2018 val images, in name order."""
    from asfyolo_rt.data.io import read_image

    val = datasets_root.joinpath(*VAL_IMAGES)
    if not val.is_dir():
        pytest.skip(f"needs the DSB2018 val images at {val}")
    paths = []
    for p in sorted(val.glob("*.png")):
        rgb = read_image(p)
        if rgb.shape[0] >= SENSOR[0] and rgb.shape[1] >= SENSOR[1] and np.ptp(rgb.astype(int), axis=2).max() == 0:
            paths.append(p)
        if len(paths) == N_FRAMES:
            return paths
    pytest.skip(f"fewer than {N_FRAMES} grey images of at least {SENSOR} in {val}")


class RecordingSegmenter:
    """The real `Segmenter`, recording the thread of each call and optionally waiting for a gate first."""

    def __init__(self, inner: Any, gate: threading.Event | None = None) -> None:
        self.inner, self.gate = inner, gate
        self.threads: list[int] = []
        self.entered = threading.Event()

    def segment(self, image: np.ndarray, pixel_size: float | None = None) -> Any:
        self.threads.append(threading.get_ident())
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=60)  # a bound against a hang, not a timing assertion
        return self.inner.segment(image, pixel_size=pixel_size)


# ----------------------------------------------------------------------------------------- pymmcore-plus
@pytest.fixture(scope="module")
def mm() -> ModuleType:
    pytest.importorskip("pymmcore_plus")
    pytest.importorskip("pymmcore_plus.experimental.unicore")
    return load_example("pymmcore_plus_segment")


@pytest.mark.datasets
def test_real_mda_frames_segmented_off_the_acquisition_thread(mm: ModuleType, segmenter: Any,
                                                             nuclei_paths: list[Path]) -> None:
    import useq

    frames = mm.grey_frames(nuclei_paths, SENSOR)
    assert len({f.tobytes() for f in frames}) == N_FRAMES  # three different frames, so a mix-up shows
    core = mm.demo_core(frames, pixel_size_um=0.65)
    recording = RecordingSegmenter(segmenter)
    results = mm.segment_acquisition(core, useq.MDASequence(time_plan={"interval": 0, "loops": N_FRAMES}),
                                     recording)

    assert list(results) == [(("t", t),) for t in range(N_FRAMES)]
    # `core.mda.run` runs (and emits frameReady) on this thread; segmentation ran on another one
    assert len(recording.threads) == N_FRAMES
    assert threading.get_ident() not in recording.threads
    for t, frame in enumerate(frames):
        got = results[(("t", t),)]
        direct = segmenter.segment(frame, pixel_size=0.65)
        assert got.labels.dtype == np.int32 and got.labels.shape == SENSOR
        assert got.count == len(direct) > 0
        np.testing.assert_array_equal(got.labels, direct.labels)
        np.testing.assert_array_equal(got.table, direct.table)
        assert got.pixel_size_um == pytest.approx(0.65)  # core.getPixelSizeUm() through FrameMetaV1
        assert set(np.unique(got.labels)) <= set(range(got.count + 1))


def test_handler_connects_to_the_frame_ready_signal(mm: ModuleType, segmenter: Any) -> None:
    from pymmcore_plus.mda.events import MDASignaler

    declared = [p.annotation for p in MDASignaler.frameReady.signature.parameters.values()]
    assert [getattr(t, "__name__", t) for t in declared] == ["ndarray", "MDAEvent", "dict"]
    handler = mm.FrameSegmenter(segmenter)
    try:
        assert len(inspect.signature(handler.frameReady).parameters) == len(declared)
        # psygnal's own checks: they raise if the slot needs more arguments or declares incompatible types
        MDASignaler().frameReady.connect(handler.frameReady, check_nargs=True, check_types=True)
    finally:
        handler.close()


def test_emitted_frame_is_segmented_with_the_metadata_pixel_size(mm: ModuleType, segmenter: Any) -> None:
    import useq
    from pymmcore_plus.mda.events import MDASignaler

    frame = mm.synthetic_nuclei(1, SENSOR, seed=3)[0]
    signals = MDASignaler()
    gate = threading.Event()
    with mm.FrameSegmenter(RecordingSegmenter(segmenter, gate)) as handler:
        signals.frameReady.connect(handler.frameReady)
        signals.frameReady.emit(frame, useq.MDAEvent(index={"t": 2, "c": 1}), {"pixel_size_um": 0.5})
        signals.frameReady.emit(frame, useq.MDAEvent(index={"t": 3}), {"pixel_size_um": 0.0})
        frame[:] = 0  # the camera reuses its buffer before segmentation starts: the handler must have copied it
        gate.set()
    direct = segmenter.segment(mm.synthetic_nuclei(1, SENSOR, seed=3)[0])
    assert list(handler.results) == [(("c", 1), ("t", 2)), (("t", 3),)]
    first, second = handler.results.values()
    assert first.pixel_size_um == 0.5 and second.pixel_size_um is None
    assert first.count == second.count == len(direct) > 0
    np.testing.assert_array_equal(first.labels, direct.labels)


def test_full_queue_skips_frames_instead_of_blocking(mm: ModuleType, segmenter: Any) -> None:
    import useq

    gate = threading.Event()
    recording = RecordingSegmenter(segmenter, gate)
    frame = np.zeros(SENSOR, np.uint16)
    handler = mm.FrameSegmenter(recording, max_pending=1)
    try:
        handler.frameReady(frame, useq.MDAEvent(index={"t": 0}), {})
        assert recording.entered.wait(timeout=60)  # t=0 is out of the queue, held in segment()
        handler.frameReady(frame, useq.MDAEvent(index={"t": 1}), {})  # waits in the queue
        handler.frameReady(frame, useq.MDAEvent(index={"t": 2}), {})  # queue full: skipped, not blocked
    finally:
        gate.set()
        handler.close()
    assert handler.skipped == [(("t", 2),)]
    assert list(handler.results) == [(("t", 0),), (("t", 1),)]


def test_failed_frame_is_raised_at_close(mm: ModuleType, segmenter: Any) -> None:
    import useq

    handler = mm.FrameSegmenter(segmenter)
    handler.frameReady(np.zeros((4, 4, 4, 4), np.uint16), useq.MDAEvent(index={"t": 0}), {})  # not (H, W)
    with pytest.raises(RuntimeError, match=r"1 frames could not be segmented"):
        handler.close()
    assert list(handler.errors) == [(("t", 0),)] and not handler.results


# ----------------------------------------------------------------------------------------- pycro-manager
@pytest.fixture(scope="module")
def pm(segmenter: Any) -> ModuleType:
    pytest.importorskip("pycromanager")
    module = load_example("pycromanager_segment")
    module._segmenter = segmenter  # the module-level Segmenter, loaded once for the whole test module
    return module


def pycromanager_metadata(image: np.ndarray, pixel_size_um: float) -> dict[str, Any]:
    """Tags as pycro-manager's acquisition engine writes them, through its own `AcqEngMetadata` setters."""
    from pycromanager.acquisition.acq_eng_py.main.acq_eng_metadata import AcqEngMetadata as M

    tags: dict[str, Any] = {}
    M.set_width(tags, image.shape[1])
    M.set_height(tags, image.shape[0])
    M.set_pixel_type_from_byte_depth(tags, image.dtype.itemsize)
    M.set_pixel_size_um(tags, pixel_size_um)
    M.set_exposure(tags, 10.0)
    M.create_axes(tags)
    M.set_axis_position(tags, M.TIME_AXIS, 4)
    M.set_axis_position(tags, M.CHANNEL_AXIS, "DAPI")
    return tags


def test_acquisition_takes_image_process_fn_with_this_arity(pm: ModuleType) -> None:
    from pycromanager import Acquisition
    from pycromanager.acquisition.acquisition_superclass import Acquisition as AcquisitionBase

    assert "image_process_fn" in inspect.signature(Acquisition).parameters
    # AcquisitionBase._call_image_process_fn, called by both processor threads (Java backend:
    # java_backend_acquisitions._run_image_processor; Python backend: ImageProcessor._process), accepts a
    # function of exactly 2 (image, metadata) or 3 (image, metadata, event_queue) parameters
    source = inspect.getsource(AcquisitionBase._call_image_process_fn)
    assert "self._process_fn(image, metadata)" in source
    assert len(inspect.signature(pm.process).parameters) == 2


@pytest.mark.datasets
def test_process_through_pycromanager_dispatch(pm: ModuleType, segmenter: Any, nuclei_paths: list[Path]) -> None:
    from pycromanager.acquisition.acquisition_superclass import Acquisition as AcquisitionBase

    mm_frames = load_example("pymmcore_plus_segment").grey_frames(nuclei_paths[:1], SENSOR)
    image = mm_frames[0]
    metadata = pycromanager_metadata(image, 0.65)
    aborted: list[BaseException] = []
    acquisition = SimpleNamespace(_process_fn=pm.process, _event_queue=None, abort=aborted.append)
    out = AcquisitionBase._call_image_process_fn(acquisition, image, metadata)

    assert not aborted
    out_image, out_meta = out  # one (image, metadata) tuple: what both backends store
    assert out_image is image and out_image.dtype == np.uint16  # Java backend: same dtype as the camera's
    direct = segmenter.segment(image, pixel_size=0.65)
    assert out_meta["asfyolo_cells"] == len(direct) > 0
    assert out_meta["asfyolo_cell_area_px"] == [int(a) for a in direct.table["area_px"]]
    assert out_meta["Axes"] == {"time": 4, "channel": "DAPI"} and out_meta["PixelSize_um"] == 0.65
    assert json.loads(json.dumps(out_meta)) == out_meta  # the Java backend sends it back as JSON


@pytest.mark.parametrize(("tags", "expected"), [
    ({"PixelSize_um": 0.65}, 0.65),      # acquisition engine tag, a number
    ({"PixelSizeUm": "0.3250"}, 0.325),  # core tag, a string (Python backend's pymmcore metadata)
    ({"PixelSize_um": 0.0}, None),       # no pixel size configured
    ({}, None),
])
def test_pixel_size_from_metadata(pm: ModuleType, tags: dict[str, Any], expected: float | None) -> None:
    assert pm.pixel_size_from_metadata(tags) == expected


def test_processor_error_aborts_the_acquisition(pm: ModuleType) -> None:
    from pycromanager.acquisition.acquisition_superclass import Acquisition as AcquisitionBase

    aborted: list[BaseException] = []
    acquisition = SimpleNamespace(_process_fn=pm.process, _event_queue=None, abort=aborted.append)
    out = AcquisitionBase._call_image_process_fn(acquisition, np.zeros((2, 2, 2, 2), np.uint16), {})
    assert out is None and len(aborted) == 1 and "image processor" in str(aborted[0])
