"""`asfyolo-rt data synth` and `asfyolo-rt data convert ...` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from asfyolo_rt.data.dataset import load_split
from asfyolo_rt.data.io import read_image_raw, write_image


def test_synth_command(cli, tmp_path: Path) -> None:
    r = cli("data", "synth", tmp_path / "s", "--kind", "nuclei", "--train", "2", "--val", "1", "--seed", "3",
            "--size", "64", "--bit-depth", "16")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "wrote 2 train + 1 val nuclei images" in r.stdout
    assert (len(load_split(tmp_path / "s", "train")), len(load_split(tmp_path / "s", "val"))) == (2, 1)
    assert read_image_raw(tmp_path / "s/images/val/nuclei_val_00000.png").dtype == np.uint16
    r = cli("data", "synth", tmp_path / "t", "--kind", "tissue", "--bit-depth", "16")
    assert r.exit_code == 1 and "8-bit RGB only" in r.stderr
    r = cli("data", "synth", tmp_path / "t", "--kind", "phase")
    assert r.exit_code == 2  # click rejects the choice


def test_convert_commands_round_trip(cli, tmp_path: Path) -> None:
    assert cli("data", "synth", tmp_path / "s", "--train", "0", "--val", "2", "--size", "48").exit_code == 0
    r = cli("data", "convert", "yolo2coco", tmp_path / "s", tmp_path / "v.json", "--split", "val", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    n = json.loads(r.stdout)["n_instances"]
    assert n == len(json.loads((tmp_path / "v.json").read_text())["annotations"]) > 0
    r = cli("data", "convert", "coco2yolo", tmp_path / "v.json", tmp_path / "s", tmp_path / "y", "--split", "val")
    assert r.exit_code == 0 and f"wrote 2 images, {n} instances" in r.stdout
    assert load_split(tmp_path / "y", "val").n_instances == n


def test_convert_dsb2018_and_instances_commands(cli, tmp_path: Path) -> None:
    for name in ("id1", "id2"):
        write_image(tmp_path / "k" / name / "images" / f"{name}.png", np.zeros((20, 20, 4), np.uint8))
        m = np.zeros((20, 20), np.uint8)
        m[5:12, 4:9] = 255
        write_image(tmp_path / "k" / name / "masks" / "a.png", m)
        write_image(tmp_path / "lab" / f"{name}.tif", (m > 0).astype(np.uint16) * 5)
    (tmp_path / "val.txt").write_text("id2\n")
    r = cli("data", "convert", "dsb2018", tmp_path / "k", tmp_path / "o", "--val-ids", tmp_path / "val.txt")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert len(load_split(tmp_path / "o", "val")) == 1 and len(load_split(tmp_path / "o", "train")) == 1
    r = cli("data", "convert", "instances", tmp_path / "k" / "id1" / "images", tmp_path / "lab", tmp_path / "p")
    assert r.exit_code == 0 and "wrote 1 images, 1 instances" in r.stdout
    r = cli("data", "convert", "dsb2018", tmp_path / "lab", tmp_path / "q")
    assert r.exit_code == 1 and "stage1_train layout" in r.stderr


def test_help_shows_examples(cli) -> None:
    r = cli("data", "check", "--help")
    assert r.exit_code == 0 and "asfyolo-rt data check ../shared/datasets/DSB2018" in r.stdout
