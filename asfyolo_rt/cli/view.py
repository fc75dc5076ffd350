"""`asfyolo-rt view`: the image in napari with the ASF-YOLO cells widget (the `napari` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from asfyolo_rt.cli.main import app


@app.command()
def view(
    image: Annotated[Path, typer.Argument(help="Image file (PNG, TIFF, TIFF stack, ...) to open in napari.")],
    run: Annotated[bool, typer.Option("--run", help="Segment it right away (in the widget's worker thread).")] = False,
    weights: Annotated[str | None, typer.Option("--weights", "-w", help="Shipped name (dsb2018, bcc), checkpoint, .onnx or .engine.")] = None,
    conf: Annotated[float | None, typer.Option(help="Confidence threshold. [default: the model's tuned one, else 0.25]")] = None,
    iou: Annotated[float | None, typer.Option(help="NMS IoU threshold (default 0.45).")] = None,
    scale: Annotated[str | None, typer.Option("--scale", help="native (tiles at the image's pixel scale) or fit.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda:N.")] = None,
) -> None:
    """Open napari with the image and the "ASF-YOLO cells" widget docked; --run shows the cells at once.

    Examples:
      asfyolo-rt view nuclei.tif --run
      asfyolo-rt view stack.tif --weights bundle/model.onnx
    """
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.napari.viewer import open_viewer, require_napari

    require_napari()
    if scale is not None and scale not in ("native", "fit"):
        raise ConfigError(f"--scale {scale!r}: expected native or fit")
    open_viewer(image, model=weights, conf=conf, iou=iou, scale=scale, device=device, run=run)
    import napari

    napari.run()
