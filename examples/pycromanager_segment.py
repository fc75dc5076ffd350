"""Segment every image of a pycro-manager acquisition with `asfyolo_rt.Segmenter`.

pycro-manager calls an image processor, ``Acquisition(image_process_fn=process)``, on its own processor
thread for every image: ``process(image, metadata)`` gets image (H, W) camera pixels (uint8/uint16) and
metadata the image's tags as a dict ("Axes": {"time": 0, "channel": "DAPI", ...}, "Width", "Height",
"PixelType", "PixelSize_um", ...) and returns what is stored: an ``(image, metadata)`` tuple (or None to drop
the image). `process` keeps the pixels as they are and adds to the metadata

    "asfyolo_cells": number of cells found (int),
    "asfyolo_cell_area_px": their areas in pixels (list of int, label order),
    "asfyolo_ms": segmentation time in milliseconds (float),

all JSON-serializable, because the Java backend sends the metadata back to Micro-Manager as JSON. The label
image is not returned as an extra channel: only the Java backend accepts a list of (image, metadata) tuples
(the Python backend's processor unpacks exactly one tuple), and it requires the same dtype as the camera's.

    from pycromanager import Acquisition, multi_d_acquisition_events
    with Acquisition(directory="data", name="cells", image_process_fn=process) as acq:
        acq.acquire(multi_d_acquisition_events(num_time_points=10))

An acquisition needs a running Micro-Manager (Java, or `pycromanager.start_headless`); the model is loaded
once, on the first image. Run ``python examples/pycromanager_segment.py [image.png]`` to call `process` as
pycro-manager does, on one image with pycro-manager-shaped metadata, without Micro-Manager.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt import Segmenter

MODEL = "dsb2018"
_segmenter: Segmenter | None = None
_segmenter_lock = threading.Lock()


def get_segmenter() -> Segmenter:
    """The module's `Segmenter`, made on first use (importing this module stays cheap)."""
    global _segmenter
    with _segmenter_lock:
        if _segmenter is None:
            _segmenter = Segmenter(MODEL)
        return _segmenter


def pixel_size_from_metadata(metadata: dict[str, Any]) -> float | None:
    """µm per pixel from pycro-manager's tags: "PixelSize_um" (acquisition engine) or "PixelSizeUm" (core
    tag), numbers or strings (the Python backend's core tags are strings); None when absent or 0."""
    for key in ("PixelSize_um", "PixelSizeUm"):
        if key in metadata:
            try:
                value = float(metadata[key])
            except (TypeError, ValueError):
                continue
            if value > 0:
                return value
    return None


def process(image: np.ndarray, metadata: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """pycro-manager's two-argument image processor. image: (H, W) or (H, W, 3) pixels; returns the same
    image with the cell count, areas and timing added to metadata (module docstring)."""
    cells = get_segmenter().segment(image, pixel_size=pixel_size_from_metadata(metadata))
    metadata["asfyolo_cells"] = len(cells)
    metadata["asfyolo_cell_area_px"] = [int(a) for a in cells.table["area_px"]]
    metadata["asfyolo_ms"] = round(float(sum(cells.timing_ms.values())), 3)
    return image, metadata


def demo_metadata(image: np.ndarray, pixel_size_um: float = 0.0) -> dict[str, Any]:
    """Tags shaped like pycro-manager's for one image of a time series (what `process` receives)."""
    return {
        "Axes": {"time": 0},
        "Width": int(image.shape[1]),
        "Height": int(image.shape[0]),
        "PixelType": "GRAY16" if image.dtype == np.uint16 else "GRAY8",
        "PixelSize_um": pixel_size_um,
        "Exposure": 10.0,
        "Camera": "Camera",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", nargs="?", type=Path, help="an image file (default: synthetic nuclei)")
    parser.add_argument("--pixel-size", type=float, default=0.0, help="µm per pixel put in the metadata")
    args = parser.parse_args(argv)

    if args.image is not None:
        from asfyolo_rt.data.io import read_image

        image = read_image(args.image).mean(axis=2).astype(np.uint8)  # (H, W, 3) RGB -> (H, W) grey
    else:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[:256, :256]
        image = rng.normal(400, 40, (256, 256))
        for cy, cx in rng.uniform(30, 226, (12, 2)):
            image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 100] += 3000
        image = np.clip(image, 0, 65535).astype(np.uint16)
    _, metadata = process(image, demo_metadata(image, args.pixel_size))
    print(json.dumps(metadata))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
