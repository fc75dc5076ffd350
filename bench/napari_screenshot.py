"""A real screenshot of napari with the "ASF-YOLO cells" widget and a segmented DSB2018 frame (docs/napari.png).

Headless: Qt's xcb platform on an Xvfb display (asfyolo_rt.napari.headless; Debian packages xvfb,
libxcb-icccm4, libxcb-keysyms1); Qt's offscreen platform would draw the canvas black. The widget runs the shipped
DSB2018 model in its worker thread exactly as a user's click does; the script waits for the result,
hovers one cell so napari's status bar shows its features, and saves viewer.screenshot(canvas_only=False).

    python bench/napari_screenshot.py --data ../shared/datasets/DSB2018 --out docs/napari.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# A DSB2018 val fluorescence image (520 x 696, 199 annotated nuclei).
DEFAULT_IMAGE = "images/val/e23e11414ee645b51081fb202d38b793f0c8ef2940f8228ded384899d21b02c2.png"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/DSB2018"))
    ap.add_argument("--image", type=Path, help="image to segment (default: a DSB2018 val frame under --data)")
    ap.add_argument("--out", type=Path, default=Path("docs/napari.png"))
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    ap.add_argument("--window", default="1400x820", help="window size WxH")
    args = ap.parse_args(argv)

    from asfyolo_rt.napari.headless import ensure_display

    if ensure_display(platform="xcb") is None:
        print("no X display and no Xvfb: apt-get install xvfb", file=sys.stderr)
        return 2
    image = args.image or _default_image(args.data)
    if args.out.exists() and not args.overwrite:
        print(f"{args.out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    import napari
    from qtpy.QtWidgets import QApplication

    from asfyolo_rt.atomic import atomic_write_bytes
    from asfyolo_rt.napari.viewer import open_viewer

    viewer, widget = open_viewer(image, show=True)
    w, h = (int(v) for v in args.window.split("x"))
    viewer.window._qt_window.resize(w, h)
    widget.native.setMaximumWidth(340)
    viewer.layers[0].name = f"DSB2018 {Path(image).stem[:8]}"
    t0 = time.perf_counter()
    widget.run()
    while widget.busy:
        QApplication.processEvents()
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    labels = viewer.layers[f"{viewer.layers[0].name} cells"]
    viewer.layers.selection.active = labels
    labels.contour = 2  # outlines: the nuclei stay visible
    f = labels.features
    k = int(f["area_px"].idxmax())
    pos = (float(f.loc[k, "centroid_y"]) - 0.5, float(f.loc[k, "centroid_x"]) - 0.5)
    viewer.cursor.position = pos
    viewer.status = labels.get_status(pos)["coordinates"] if isinstance(labels.get_status(pos), dict) else ""
    viewer.reset_view()
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    if viewer.screenshot(canvas_only=True, flash=False)[..., :3].max() == 0:
        print("the canvas rendered black (no OpenGL widget on this Qt platform): use QT_QPA_PLATFORM=xcb",
              file=sys.stderr)
        return 3
    atomic_write_bytes(args.out, _palette_png(shot[:, :, :3]))
    print(json.dumps({"image": str(image), "cells": len(f), "segment_s": round(seconds, 2), "out": str(args.out),
                      "shape": list(shot.shape), "bytes": args.out.stat().st_size, "napari": napari.__version__}))
    viewer.close()
    return 0


def _palette_png(rgb: object) -> bytes:
    """256-colour PNG (median cut): this screenshot is 562 KB as RGB, 215 KB as a palette (measured)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buf, "PNG", optimize=True)  # type: ignore[arg-type]
    return buf.getvalue()


def _default_image(data: Path) -> Path:
    path = data / DEFAULT_IMAGE
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass --data DSB2018_ROOT or --image PATH")
    return path


if __name__ == "__main__":
    raise SystemExit(main())
