"""The "ASF-YOLO cells" widget in a headless napari viewer (make_napari_viewer, Qt offscreen): it segments
synthetic nuclei with the shipped DSB2018 model into a Labels layer equal to the project's Runner called
directly, a 3-D layer plane by plane, reads back what `asfyolo-rt predict` writes, and `asfyolo-rt view
--run` opens the image with the widget docked and the cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from asfyolo_rt.data.io import to_uint8_rgb  # noqa: E402
from asfyolo_rt.data.synth import make_nuclei  # noqa: E402
from asfyolo_rt.napari.widget import CellsWidget  # noqa: E402

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def backends() -> dict:
    """The widgets' shared cache of loaded models (the shipped model is loaded once per session)."""
    from asfyolo_rt.napari.widget import _BACKENDS

    return _BACKENDS


@pytest.fixture(scope="module")
def frames() -> list[tuple[np.ndarray, np.ndarray]]:
    """Two different synthetic fluorescence frames (8-bit grey) and their true label maps."""
    return [make_nuclei(seed, (160, 160), n_cells=12) for seed in (3, 4)]


_REFERENCE: dict = {}


def reference(image: np.ndarray, conf: float | None = None):
    """(kept detections, label map) of the pipeline's stages wired by hand (model info -> geometry -> Runner ->
    paint), independently of the Segmenter the plugin goes through."""
    from asfyolo_rt.runtime.info import read_model_info
    from asfyolo_rt.runtime.registry import load_backend
    from asfyolo_rt.runtime.stages import Geometry, PostConfig, Runner

    info = read_model_info("dsb2018")
    if "backend" not in _REFERENCE:
        _REFERENCE["backend"] = load_backend("dsb2018")
    runner = Runner(_REFERENCE["backend"], Geometry("native", model_scale=info.model_scale),
                    PostConfig(conf=info.default_conf if conf is None else conf), max_object_px=info.overlap_object_px)
    return runner(image).final_labels(0.5)


def direct(image: np.ndarray, backends: dict) -> np.ndarray:
    """The label map `asfyolo-rt predict` would write, from the stages called directly."""
    return reference(to_uint8_rgb(image))[1]


def run_widget(viewer, qtbot, backends: dict, **values) -> CellsWidget:
    widget = CellsWidget(viewer)
    assert widget._backends is backends
    for key, value in values.items():
        getattr(widget, key).value = value
    viewer.window.add_dock_widget(widget)
    widget.run()
    assert widget.busy  # running in the worker thread: run() returned before the result
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)
    return widget


def test_widget_segments_a_frame_into_a_labels_layer(make_napari_viewer, qtbot, gl_display, backends, frames):
    image, truth = frames[0]
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    widget = run_widget(viewer, qtbot, backends, boxes=True)
    assert widget.status.value.endswith("cells"), widget.status.value
    layer = viewer.layers["nuclei cells"]
    assert isinstance(layer, napari.layers.Labels)
    expected = direct(image, backends)
    n = int(expected.max())
    assert abs(n - int(truth.max())) <= 2 and n >= 8  # the model finds the synthetic cells (12 drawn)
    np.testing.assert_array_equal(layer.data, expected)  # same pixels as the Runner called directly
    assert len(np.unique(layer.data)) - 1 == n  # one id per cell
    f = layer.features
    assert f["index"].tolist() == list(range(1, n + 1))
    assert f["area_px"].tolist() == np.bincount(expected.ravel(), minlength=n + 1)[1:].tolist()
    assert f["score"].between(0.25, 1).all()
    cell = int(f.loc[f["area_px"].idxmax(), "index"])  # hover over the largest cell: napari shows its features
    y, x = np.argwhere(layer.data == cell)[0]
    status = layer.get_status((float(y), float(x)))
    value = status["value"] if isinstance(status, dict) else str(status)
    assert value.startswith(f"{cell};") and "score" in value and "equivalent_diameter_px" in value
    boxes = viewer.layers["nuclei cells boxes"]
    assert len(boxes.data) == n and boxes.shape_type[0] == "rectangle"


def test_stack_layer_is_segmented_plane_by_plane(make_napari_viewer, qtbot, gl_display, backends, frames):
    stack = np.stack([f[0] for f in frames])  # (Z=2, H, W)
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="stack", scale=(2.0, 0.5, 0.5))
    run_widget(viewer, qtbot, backends)
    layer = viewer.layers["stack cells"]
    assert layer.data.shape == stack.shape
    assert tuple(layer.scale) == (2.0, 0.5, 0.5)
    first, second = (direct(f[0], backends) for f in frames)
    n0 = int(first.max())
    np.testing.assert_array_equal(layer.data[0], first)
    np.testing.assert_array_equal(layer.data[1], np.where(second > 0, second + n0, 0))  # ids run on
    assert int(second.max()) > 0 and not np.array_equal(first, second)
    assert layer.features["plane"].value_counts().sort_index().tolist() == [n0, int(second.max())]
    assert layer.features["index"].is_unique


def test_predict_outputs_open_as_labels_with_cells_csv(make_napari_viewer, gl_display, backends, frames,
                                                        tmp_path: Path):
    """What `asfyolo-rt predict` writes (PredictionWriter) opens through the plugin's reader."""
    from asfyolo_rt.infer.predict import ImageResult
    from asfyolo_rt.infer.sources import Frame
    from asfyolo_rt.infer.writers import PredictionWriter, cell_rows

    image = to_uint8_rgb(frames[1][0])
    kept, lm = reference(image)
    result = ImageResult(Frame("frame1", tmp_path / "frame1.png", image), None, kept.boxes.numpy(),
                         kept.scores.numpy(), kept.classes.numpy(), lm, kept.masks)
    writer = PredictionWriter(tmp_path / "run", names={0: "cell"}, overlays=False, coco=False)
    writer.write(result)
    writer.close()
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "run" / "labels" / "frame1.tif"), plugin="asfyolo-rt")
    assert isinstance(layer, napari.layers.Labels)
    np.testing.assert_array_equal(layer.data, lm)
    rows = cell_rows(result)
    assert layer.features["index"].tolist() == [r["id"] for r in rows]
    np.testing.assert_allclose(layer.features["score"], [r["score"] for r in rows])
    np.testing.assert_allclose(layer.features["centroid_x"], [r["centroid_x"] for r in rows])
    saved = layer.save(str(tmp_path / "export" / "edited.tif"), plugin="asfyolo-rt")  # napari's File > Save
    assert saved == [str(tmp_path / "export" / "edited.tif"), str(tmp_path / "export" / "cells.csv")]
    (again,) = viewer.open(saved[0], plugin="asfyolo-rt")
    np.testing.assert_array_equal(again.data, lm)
    np.testing.assert_allclose(again.features["score"], layer.features["score"])


def test_view_run_opens_image_widget_and_cells(qtbot, gl_display, backends, tmp_path: Path) -> None:
    """What `asfyolo-rt view IMAGE --run --weights dsb2018 --conf 0.3` opens (before napari.run())."""
    from asfyolo_rt.data.io import write_image
    from asfyolo_rt.napari.viewer import open_viewer

    image, truth = make_nuclei(5, (160, 160), n_cells=12)
    write_image(tmp_path / "nuclei.png", image)
    viewer, widget = open_viewer(tmp_path / "nuclei.png", model="dsb2018", conf=0.3, run=True, show=False)
    try:
        assert "ASF-YOLO cells" in viewer.window.dock_widgets
        assert widget.conf.value == pytest.approx(0.3)
        qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
        labels = viewer.layers["nuclei cells"].data
        expected = reference(to_uint8_rgb(image), conf=0.3)[1]
        np.testing.assert_array_equal(labels, expected)  # the options reached the widget's run
        assert abs(int(expected.max()) - int(truth.max())) <= 2
    finally:
        viewer.close()
