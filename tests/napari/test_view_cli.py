"""`asfyolo-rt view`: one clear line without the napari extra; with it, the image, the docked widget and
(--run) the cells."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest


def test_view_without_the_napari_extra_says_how_to_install_it(cli, monkeypatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "napari" else real(name, *a))
    result = cli("view", str(tmp_path / "x.png"))
    assert result.exit_code == 1
    text = result.output
    assert "pip install 'asfyolo-rt[napari]'" in text and "Traceback" not in text


def test_view_run_opens_image_widget_and_cells(qtbot, gl_display, tmp_path: Path) -> None:
    pytest.importorskip("napari")
    from asfyolo_rt.data.io import write_image
    from asfyolo_rt.data.synth import make_nuclei
    from asfyolo_rt.napari.viewer import open_viewer

    image, truth = make_nuclei(5, (128, 128), n_cells=8)
    write_image(tmp_path / "nuclei.png", image)
    viewer, widget = open_viewer(tmp_path / "nuclei.png", model="dsb2018", conf=0.3, run=True, show=False)
    try:
        assert "ASF-YOLO cells" in viewer.window.dock_widgets
        assert widget.conf.value == pytest.approx(0.3)
        qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
        labels = viewer.layers["nuclei cells"].data
        assert labels.shape == image.shape
        assert abs(len(np.unique(labels)) - 1 - int(truth.max())) <= 2
    finally:
        viewer.close()
