"""`asfyolo-rt view` without the napari extra: one clear line (runs with or without napari installed;
the command with napari is tested in test_widget.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def test_view_without_the_napari_extra_says_how_to_install_it(cli, monkeypatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "napari" else real(name, *a))
    result = cli("view", str(tmp_path / "x.png"))
    assert result.exit_code == 1
    text = result.output
    assert "pip install 'asfyolo-rt[napari]'" in text and "Traceback" not in text
