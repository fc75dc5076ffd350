"""`asfyolo-rt weights import|pack|show` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from asfyolo_rt.model import build_model
from asfyolo_rt.model.weights import config_of, load_checkpoint, save_checkpoint


def test_pack_and_show(tmp_path: Path, cli) -> None:
    m = build_model("n")
    src = save_checkpoint(m, tmp_path / "m.safetensors", config_of(m, img_size=320))
    out = tmp_path / "packed.safetensors"
    r = cli("weights", "pack", src, "--out", out, "--note", "hardware=2-core CPU")
    assert r.exit_code == 0, r.stderr
    assert out.stat().st_size < 0.6 * src.stat().st_size
    _, cfg = load_checkpoint(out)
    assert cfg.provenance["hardware"] == "2-core CPU" and cfg.provenance["stored_dtype"] == "float16"
    shown = json.loads(cli("weights", "show", out).stdout)
    assert shown["parameters"] == 1_945_665 and shown["img_size"] == 320


def test_pack_bad_note_and_missing_file(tmp_path: Path, cli) -> None:
    r = cli("weights", "pack", tmp_path / "nope.safetensors", "--out", tmp_path / "x.safetensors")
    assert r.exit_code == 1 and "does not exist" in r.stderr
    m = build_model("n")
    src = save_checkpoint(m, tmp_path / "m.safetensors", config_of(m))
    r = cli("weights", "pack", src, "--out", tmp_path / "x.safetensors", "--note", "novalue")
    assert r.exit_code == 1 and "KEY=VALUE" in r.stderr
