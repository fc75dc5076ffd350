"""`check_dataset` and `asfyolo-rt data check`: statistics, problems with file and line, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asfyolo_rt.data.check import check_dataset
from asfyolo_rt.data.io import write_image

TRI = "0 0.1 0.1 0.5 0.1 0.3 0.4"


def make_broken(root: Path) -> Path:
    """A small dataset with one of each problem.

    train: good.png (2 instances), trunc.png (truncated), nolabel.png (no label file),
           twonum.png (line 2 has two numbers), dup.png (same pixels as good.png)
    val:   leak.png (same pixels as good.png), v.png (fine, 20x30)
    """
    rng = np.random.default_rng(0)
    good = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    for split, name, pixels, label in [
        ("train", "good", good, f"{TRI}\n0 0.5 0.5 0.9 0.5 0.9 0.9\n"),
        ("train", "trunc", rng.integers(0, 256, (16, 24, 3), dtype=np.uint8), TRI),
        ("train", "nolabel", rng.integers(0, 256, (16, 24, 3), dtype=np.uint8), None),
        ("train", "twonum", rng.integers(0, 256, (16, 24, 3), dtype=np.uint8), f"{TRI}\n0 0.5\n"),
        ("train", "dup", good, TRI),
        ("val", "leak", good, TRI),
        ("val", "v", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), TRI),
    ]:
        write_image(root / "images" / split / f"{name}.png", pixels)
        if label is not None:
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{name}.txt").write_text(label)
    trunc = root / "images" / "train" / "trunc.png"
    trunc.write_bytes(trunc.read_bytes()[:200])
    return root


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    return make_broken(tmp_path / "broken")


def test_check_finds_every_problem(broken: Path) -> None:
    report = check_dataset(broken)
    found = {(p.path.name, p.line, p.severity) for p in report.problems}
    assert found == {
        ("nolabel.png", None, "warning"),
        ("twonum.txt", 2, "error"),
        ("trunc.png", None, "error"),
        ("good.png", None, "warning"),  # same pixels as dup.png (first in sort order), same split
        ("leak.png", None, "error"),  # same pixels across splits
    }
    assert not report.ok and len(report.errors) == 3
    msgs = {p.path.name: p.message for p in report.problems}
    assert msgs["trunc.png"].startswith("unreadable image: truncated or corrupt PNG")
    assert "dup.png" in msgs["good.png"] and "dup.png" in msgs["leak.png"] and "'train'" in msgs["leak.png"]
    train, val = report.splits
    assert (train.split, train.n_images, train.n_instances) == ("train", 5, 5)  # twonum keeps its good line
    assert train.instances_per_image_max == 2 and train.n_images_without_instances == 1
    assert train.size_histogram == {"24x16": 4}  # trunc.png has no size
    assert val.size_histogram == {"30x20": 1, "24x16": 1}
    # TRI's box is 0.4 x 0.3 of the image: 9.6 x 4.8 px at 24x16, 12 x 6 px at 30x20
    assert val.box_width_px["p5"] == pytest.approx(9.6 + 0.05 * 2.4)
    assert val.box_height_640["p50"] == pytest.approx((4.8 * 640 / 24 + 6 * 640 / 30) / 2)


def test_check_header_only_and_split_selection(broken: Path) -> None:
    report = check_dataset(broken, ["train"], decode=False)
    assert [s.split for s in report.splits] == ["train"]
    # headers only: the truncated PNG still has a readable size, and duplicates are not looked for
    assert {p.path.name for p in report.errors} == {"twonum.txt"}
    assert report.splits[0].size_histogram == {"24x16": 5}


def test_yaml_with_test_aliasing_val_is_not_a_leak(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for split in ("train", "val"):
        write_image(root / "images" / split / "a.png", np.full((8, 8, 3), 10 if split == "train" else 99, np.uint8))
        (root / "labels" / split).mkdir(parents=True)
        (root / "labels" / split / "a.txt").write_text(TRI)
    (root / "data.yaml").write_text("train: images/train\nval: images/val\ntest: images/val\nnames: {0: cell}\n")
    report = check_dataset(root / "data.yaml")
    assert report.ok and report.problems == []
    assert [s.split for s in report.splits] == ["train", "val"] and report.aliases == {"test": "val"}
    calls: list[tuple[int, int]] = []
    check_dataset(root / "data.yaml", progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 2), (2, 2)]


def test_cli_check_reports_file_and_line_not_traceback(cli, broken: Path) -> None:
    r = cli("data", "check", broken)
    assert r.exit_code == 1
    out = r.stdout
    assert "Traceback" not in out + r.stderr
    assert f"{broken / 'labels' / 'train' / 'twonum.txt'}:2: error: malformed line: got 2 number(s)" in out
    assert f"{broken / 'images' / 'train' / 'trunc.png'}: error: unreadable image" in out
    assert "nolabel.png: warning: no label file" in out
    assert "problems: 3 error(s), 2 warning(s)" in out


def test_cli_check_json(cli, broken: Path) -> None:
    r = cli("data", "check", broken, "--json", "--split", "val")
    assert r.exit_code == 0, r.stdout  # val alone: no leak (train not checked), no errors
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["splits"][0]["n_images"] == 2
    r = cli("data", "check", broken / "nowhere")
    assert r.exit_code == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.datasets
@pytest.mark.parametrize(
    ("name", "expected"),
    [("DSB2018", {"train": (536, 24675, 382), "val": (134, 5684, 250)}),
     ("BCC", {"train": (128, 1235, 33), "val": (32, 312, 32)})],
)
def test_cli_check_shared_datasets(cli, datasets_root: Path, name: str, expected: dict) -> None:
    r = cli("data", "check", datasets_root / name, "--json")
    assert r.exit_code == 0, r.stdout[-2000:]
    doc = json.loads(r.stdout)
    assert doc["problems"] == []
    got = {s["split"]: (s["n_images"], s["n_instances"], s["instances_per_image_max"]) for s in doc["splits"]}
    assert got == expected
    if name == "DSB2018":  # ASF-YOLO.md §9.2: sizes and box medians at 640
        train = doc["splits"][0]
        assert train["size_histogram"]["256x256"] == 252 and train["size_histogram"]["1388x1040"] == 1
        assert 24 <= train["box_width_640"]["p50"] <= 28 and 3 <= train["box_width_640"]["p5"] <= 5
    else:
        assert doc["splits"][1]["size_histogram"] == {"512x512": 32}
