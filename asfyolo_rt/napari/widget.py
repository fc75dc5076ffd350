"""The "ASF-YOLO cells" dock widget: pick a model and thresholds, Run on the active image layer.

The model runs in a napari worker thread (`napari.qt.threading.thread_worker`), plane after plane, with a
progress bar, so the viewer stays responsive; the result arrives as a Labels layer (one id per cell) whose
features table (score, class, area, centroid, equivalent diameter; napari shows it on hover) is measured
on the label image, plus an optional Shapes layer of the boxes. The segmentation itself is
`asfyolo_rt.napari.segment` (the project's inference geometry, as `asfyolo-rt predict` uses it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
)

from asfyolo_rt.errors import AsfYoloError, ConfigError
from asfyolo_rt.napari.segment import ModelSettings, Segmentation, iter_segment, load_segmenter, plane_shape
from asfyolo_rt.weights_registry import SHIPPED

if TYPE_CHECKING:
    import napari

MODEL_FILE = "file..."
# Loaded models, (path, device) -> backend, shared by every widget of the session (re-runs do not reload).
_BACKENDS: dict[tuple[str, str], Any] = {}


def model_file_filter() -> str:
    """Checkpoints and ONNX files always; TensorRT engines where TensorRT is installed."""
    patterns = ["*.safetensors", "*.pt", "*.onnx"]
    if importlib.util.find_spec("tensorrt") is not None:
        patterns += ["*.engine", "*.plan"]
    return " ".join(patterns)


def model_conf(model: str) -> float:
    """The confidence threshold `model` (a shipped name or a file) records, else 0.25."""
    from asfyolo_rt.runtime.info import read_model_info
    from asfyolo_rt.weights_registry import resolve_weights

    return round(read_model_info(resolve_weights(model)).default_conf, 2)


def devices() -> list[str]:
    import torch

    return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


class CellsWidget(Container):
    """Dock widget; napari passes the viewer (npe2 widget contribution)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self.viewer = napari_viewer
        self.model = ComboBox(label="model", choices=[*SHIPPED, MODEL_FILE], value="dsb2018",
                              tooltip="a shipped model, or a checkpoint / ONNX / TensorRT engine file")
        self.model_file = FileEdit(label="model file", mode=FileDialogMode.EXISTING_FILE, filter=model_file_filter(), visible=False)
        self.conf = FloatSpinBox(label="confidence", value=model_conf("dsb2018"), min=0.0, max=0.99, step=0.05,
                                 tooltip="cells below this confidence are not drawn; set to the model's tuned "
                                         "threshold when a model is chosen")
        self.iou = FloatSpinBox(label="IoU (NMS)", value=0.45, min=0.05, max=1.0, step=0.05)
        self.scale = ComboBox(label="scale", choices=["native", "fit"], value="native",
                              tooltip="native: the image at its own pixel scale, in tiles; fit: resized whole")
        self.device = ComboBox(label="device", choices=devices(), value="cpu")
        self.boxes = CheckBox(label="boxes as Shapes", value=False)
        self.run_button = PushButton(text="Run")
        self.progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self.status = Label(value="")
        super().__init__(widgets=[self.model, self.model_file, self.conf, self.iou, self.scale, self.device,
                                  self.boxes, self.run_button, self.progress, self.status])
        self.model.changed.connect(self._model_changed)
        self.model_file.changed.connect(self._model_changed)
        self.run_button.changed.connect(self.run)
        self._backends = _BACKENDS
        self.worker: Any = None
        self.result: Segmentation | None = None
        self.busy = False

    def _model_changed(self, *_: Any) -> None:
        """Show the file chooser for a model file; preset the confidence to the chosen model's tuned one."""
        self.model_file.visible = self.model.value == MODEL_FILE
        try:
            self.conf.value = model_conf(self.settings().model)
        except AsfYoloError:  # no file chosen yet, or one that does not open: the Run button reports it
            pass

    # ------------------------------------------------------------------------------------- settings
    def settings(self) -> ModelSettings:
        model = self.model.value
        if model == MODEL_FILE:
            path = self.model_file.value
            if isinstance(path, tuple):
                path = path[0] if path else None
            if not path or not Path(path).is_file():
                raise ConfigError(f"model file {path or '(none)'} does not exist",
                                  hint="choose a .safetensors/.pt checkpoint, an .onnx or a TensorRT engine")
            model = str(path)
        return ModelSettings(model=model, conf=float(self.conf.value), iou=float(self.iou.value),
                             scale=self.scale.value, device=self.device.value)

    def image_layer(self) -> napari.layers.Image:
        from napari.layers import Image

        active = self.viewer.layers.selection.active
        if isinstance(active, Image):
            return active
        images = [lay for lay in self.viewer.layers if isinstance(lay, Image)]
        if len(images) == 1:
            return images[0]
        raise ConfigError("no image layer selected" if images else "no image layer to segment",
                          hint="select the image layer to segment in the layer list" if images
                          else "open an image first (File > Open)")

    # ------------------------------------------------------------------------------------------ run
    def run(self, *_: Any) -> None:
        """Start segmenting the active image layer in a worker thread (returns at once)."""
        from napari.qt.threading import thread_worker

        if self.busy:
            return
        try:
            settings, layer = self.settings(), self.image_layer()
            data = layer.data[0] if layer.multiscale else layer.data
            plane_shape(tuple(data.shape), bool(layer.rgb))
        except AsfYoloError as exc:
            self._report(exc)
            return
        backends = self._backends

        def work() -> Any:
            seg = load_segmenter(settings, backends)
            result = None
            for done, total, part in iter_segment(data, bool(layer.rgb), seg):
                result = part
                yield done, total
            return result

        self.busy = True
        self.run_button.enabled = False
        self.progress.value, self.status.value = 0, f"segmenting {layer.name} ..."
        worker = thread_worker(work, start_thread=False)()
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda res: self._show(res, layer))
        worker.errored.connect(self._report)
        worker.finished.connect(self._done)
        self.worker = worker
        worker.start()

    def _on_progress(self, step: tuple[int, int]) -> None:
        done, total = step
        self.progress.max = total
        self.progress.value = done

    def _done(self) -> None:
        self.busy = False
        self.run_button.enabled = True

    def _report(self, exc: BaseException) -> None:
        hint = getattr(exc, "hint", None)
        text = f"error: {exc}" + (f" ({hint})" if hint else "")
        self.status.value = text
        from napari.utils.notifications import show_error

        show_error(text)

    # -------------------------------------------------------------------------------------- results
    def _show(self, res: Segmentation, image: napari.layers.Image) -> None:
        self.result = res
        name = f"{image.name} cells"
        for old in (name, f"{name} boxes"):
            if old in self.viewer.layers:
                self.viewer.layers.remove(old)
        geom = {"scale": image.scale, "translate": image.translate}
        self.viewer.add_labels(res.labels, name=name, features=res.features, **geom)
        if self.boxes.value and len(res):
            self.viewer.add_shapes(box_rectangles(res), shape_type="rectangle", name=f"{name} boxes",
                                   edge_color="yellow", face_color="transparent", edge_width=1,
                                   features={"index": res.features["index"]}, **geom)
        planes = f" in {len(res.counts)} planes" if len(res.counts) > 1 else ""
        self.status.value = f"{len(res)} cells{planes}"


def box_rectangles(res: Segmentation) -> list[np.ndarray]:
    """One rectangle (2 corners, napari data coordinates: pixel centres at integers) per cell."""
    lead = res.labels.shape[:-2]
    out = []
    for (x1, y1, x2, y2), k in zip(res.boxes, res.features["plane"]):
        where = [float(i) for i in np.unravel_index(int(k), lead)] if lead else []
        out.append(np.array([[*where, y1 - 0.5, x1 - 0.5], [*where, y2 - 0.5, x2 - 0.5]]))
    return out
