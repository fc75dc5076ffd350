"""What `asfyolo-rt view IMAGE` opens: napari with the image, the "ASF-YOLO cells" widget docked, and
(with run=True) the segmentation started in the widget's worker thread."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from asfyolo_rt.errors import ConfigError, DataError


def require_napari() -> None:
    """Raise one clear ConfigError when the napari extra is not installed."""
    import importlib.util

    missing = [m for m in ("napari", "magicgui", "qtpy") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"the napari viewer is not installed (missing: {', '.join(missing)})",
                          hint="pip install 'asfyolo-rt[napari]' (napari, a Qt binding and the plugin's widgets)")


def open_viewer(image: Path, *, model: str | None = None, conf: float | None = None, iou: float | None = None,
                scale: str | None = None, device: str | None = None, run: bool = False,
                show: bool = True) -> tuple[Any, Any]:
    """A napari Viewer with `image` (napari's own reader: TIFF stacks, PNG, ...) and the widget docked.

    model/conf/iou/scale/device preset the widget (a shipped name or a model file); run starts it.
    Returns (viewer, widget); call napari.run() to hand over to the event loop.
    """
    require_napari()
    if not image.is_file():
        raise DataError(f"image {image} does not exist")
    if show and sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM")):
        raise ConfigError("napari needs a screen: DISPLAY is not set",
                          hint="run it on a desktop, over ssh -X, or on a virtual one: xvfb-run asfyolo-rt view ...")
    import napari

    from asfyolo_rt.napari.widget import MODEL_FILE, CellsWidget

    viewer = napari.Viewer(show=show, title=f"asfyolo-rt: {image.name}")
    try:
        viewer.open(str(image), plugin="napari")
    except Exception as exc:  # napari's readers raise many types
        viewer.close()
        raise DataError(f"{image}: napari cannot open this image ({exc})") from exc
    widget = CellsWidget(viewer)
    if model is not None:
        from asfyolo_rt.weights_registry import SHIPPED

        if model in SHIPPED:
            widget.model.value = model
        else:
            widget.model.value = MODEL_FILE
            widget.model_file.value = Path(model)
    for box, value in ((widget.conf, conf), (widget.iou, iou), (widget.scale, scale), (widget.device, device)):
        if value is not None:
            box.value = value
    viewer.window.add_dock_widget(widget, name="ASF-YOLO cells", area="right")
    if run:
        widget.run()
    return viewer, widget
