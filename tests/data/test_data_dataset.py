"""YOLO-seg dataset loading: layouts, YAMLs, label parsing, problems and the on_problem policy."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest

from asfyolo_rt.data.dataset import (
    Sample,
    format_label_line,
    label_path_for,
    load_split,
    parse_label_text,
    read_split,
    resolve_source,
)
from asfyolo_rt.data.io import write_image
from asfyolo_rt.errors import DataError

TRI = "0 0.1 0.1 0.5 0.1 0.3 0.4"


def make_dataset(root: Path, labels: dict[str, str | None], split: str = "train") -> Path:
    """images/<split>/<stem>.png (tiny) + labels/<split>/<stem>.txt (None: no label file)."""
    for stem, text in labels.items():
        write_image(root / "images" / split / f"{stem}.png", np.full((8, 10, 3), len(stem) * 20, np.uint8))
        if text is not None:
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{stem}.txt").write_text(text)
    return root


def test_label_path_for() -> None:
    assert label_path_for("/d/images/train/a.b.png") == Path("/d/labels/train/a.b.txt")
    assert label_path_for("/images/x/images/val/sub/c.TIF") == Path("/images/x/labels/val/sub/c.txt")
    with pytest.raises(DataError, match="no 'images' folder"):
        label_path_for("/d/pics/a.png")


def test_parse_valid_lines() -> None:
    text = f"{TRI}\n\n  1 0 0 1 0 1 1 0 1  \n"
    classes, polys, problems = parse_label_text(text, Path("x.txt"))
    assert problems == []
    np.testing.assert_array_equal(classes, [0, 1])
    assert classes.dtype == np.int64
    assert polys[0].dtype == np.float32 and polys[0].shape == (3, 2)
    np.testing.assert_allclose(polys[1], [[0, 0], [1, 0], [1, 1], [0, 1]])


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("0 0.5", r"malformed line: got 2 number"),
        ("0", r"malformed line: got 1 number"),
        ("0 0.1 0.2 0.3", r"malformed line: got 4 number"),
        ("0 0.1 0.2 abc 0.4 0.5 0.6", r"'abc' is not a number"),
        ("1.5 0.1 0.1 0.5 0.1 0.3 0.4", r"class id '1.5' is not a non-negative integer"),
        ("-1 0.1 0.1 0.5 0.1 0.3 0.4", r"class id '-1'"),
        ("0 0.1 0.1 1.2 0.1 0.3 0.4", r"outside \[0, 1\].*max 1.2"),
        ("0 -0.01 0.1 0.5 0.1 0.3 0.4", r"outside \[0, 1\].*min -0.01"),
        ("0 0.5 0.5 0.2 0.3", r"2 vertices.*detection box"),
        ("0 0.1 0.1 nan 0.1 0.3 0.4", r"nan or inf"),
    ],
)
def test_parse_bad_lines_name_file_and_line(line: str, pattern: str) -> None:
    classes, polys, problems = parse_label_text(f"{TRI}\n{line}\n", Path("lab/x.txt"))
    assert len(classes) == 1 and len(polys) == 1  # the good line survives
    assert len(problems) == 1
    p = problems[0]
    assert (p.path, p.line, p.severity) == (Path("lab/x.txt"), 2, "error")
    assert re.search(pattern, p.message), p.message
    assert str(p).startswith("lab/x.txt:2: error: ")


def test_parse_duplicates_and_unknown_class() -> None:
    _, polys, problems = parse_label_text(f"{TRI}\n{TRI}\n", Path("x.txt"))
    assert len(polys) == 1 and [(p.line, p.severity) for p in problems] == [(2, "warning")]
    _, _, problems = parse_label_text(TRI.replace("0 ", "3 ", 1), Path("x.txt"), {0: "cell"})
    assert "class id 3 is not in" in problems[0].message


def test_sample_boxes() -> None:
    s = Sample(Path("a.png"), None, np.array([0, 0]),
               [np.array([[0.1, 0.2], [0.5, 0.1], [0.3, 0.7]], np.float32), np.array([[0, 0], [1, 0], [1, 1]], np.float32)])
    np.testing.assert_allclose(s.boxes_xyxy_norm(), [[0.1, 0.1, 0.5, 0.7], [0, 0, 1, 1]])
    assert s.boxes_xyxy_norm().dtype == np.float32
    assert Sample(Path("a.png"), None, np.zeros(0, np.int64), []).boxes_xyxy_norm().shape == (0, 4)


def test_load_split_folder_and_missing_label_is_warning(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", {"a": TRI, "bb": None, "ccc": f"{TRI}\n0 0 0 1 0 1 1\n"})
    split = load_split(root, "train")
    assert [s.image_path.name for s in split.samples] == ["a.png", "bb.png", "ccc.png"]
    assert [len(s) for s in split.samples] == [1, 0, 2]
    assert split.samples[1].label_path is None
    assert split.n_instances == 3 and split.names == {0: "cell"} and split.split == "train"
    assert [(p.path.name, p.severity) for p in split.problems] == [("bb.png", "warning")]
    assert "no label file" in split.problems[0].message


def test_on_problem_policies(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_dataset(tmp_path / "ds", {"a": TRI, "b": f"{TRI}\n0 0.5\n", "c": TRI})
    with pytest.raises(DataError, match=r"(?s)1 error\(s\).*b\.txt:2: error: malformed line") as info:
        load_split(root, "train")
    assert "on_problem='skip'" in (info.value.hint or "")
    skipped = load_split(root, "train", on_problem="skip")
    assert [s.image_path.name for s in skipped.samples] == ["a.png", "c.png"]
    assert len(skipped.errors) == 1
    with caplog.at_level(logging.WARNING, logger="asfyolo_rt.data.dataset"):
        warned = load_split(root, "train", on_problem="warn")
    assert [s.image_path.name for s in warned.samples] == ["a.png", "c.png"]
    assert any("b.txt:2" in r.getMessage() for r in caplog.records)
    # read_split keeps everything (the bad line excluded)
    assert [len(s) for s in read_split(root, "train").samples] == [1, 1, 1]
    with pytest.raises(DataError, match="on_problem"):
        load_split(root, "train", on_problem="ignore")  # type: ignore[arg-type]


def test_orphan_labels_and_unknown_split(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", {"a": TRI})
    (root / "labels" / "train" / "ghost.txt").write_text(TRI)
    split = load_split(root, "train")
    assert [(p.path.name, p.severity) for p in split.problems] == [("ghost.txt", "warning")]
    with pytest.raises(DataError, match=r"no split 'val'.*\['train'\]"):
        load_split(root, "val")


def test_yaml_source_relative_path_list_names_and_txt_lists(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data" / "ds", {"a": TRI, "b": TRI.replace("0 ", "1 ", 1)})
    make_dataset(root, {"v": TRI}, split="val")
    (root / "train.txt").write_text("images/train/b.png\n./images/train/a.png\n")
    cfg = tmp_path / "cfg" / "mine.yaml"
    cfg.parent.mkdir()
    cfg.write_text("path: ../data/ds\ntrain: train.txt\nval: [images/val]\ntest: images/val\nnames: [cell, blob]\nnc: 2\n")
    src = resolve_source(cfg)
    assert src.root == root.resolve() and src.names == {0: "cell", 1: "blob"}
    train = load_split(cfg, "train")
    assert [s.image_path.name for s in train.samples] == ["b.png", "a.png"]
    assert train.names == {0: "cell", 1: "blob"}
    assert load_split(cfg, "test").samples[0].image_path.name == "v.png"
    # without `path`, entries are relative to the YAML's folder
    (root / "d.yaml").write_text("train: images/train\nval: images/val\nnames: {0: cell, 1: blob}\n")
    assert len(load_split(root / "d.yaml", "val")) == 1


def test_yaml_errors(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", {"a": TRI})
    bad = tmp_path / "typo.yaml"
    bad.write_text(f"path: {root}\ntrian: images/train\nnames: {{0: cell}}\n")
    with pytest.raises(DataError, match=r"unknown key 'trian'; did you mean 'train'"):
        resolve_source(bad)
    official = tmp_path / "DSB2018.yaml"
    official.write_text("path: /ASF-YOLO/datasets/DSB2018\ntrain: images/train\nval: images/val\nnames: {0: cell}\n")
    with pytest.raises(DataError, match="does not exist") as info:
        load_split(official, "val")
    assert "edit `path`" in (info.value.hint or "")
    with pytest.raises(DataError, match="does not exist"):
        resolve_source(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images/ folder"):
        resolve_source(tmp_path / "empty")


def test_folder_with_data_yaml_uses_its_names(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", {"a": TRI.replace("0 ", "2 ", 1)})
    assert load_split(root, "train").names == {0: "0", 1: "1", 2: "2"}
    (root / "data.yaml").write_text("train: images/train\nnames: {0: a, 1: b, 2: nucleus}\n")
    assert load_split(root, "train").names[2] == "nucleus"


def test_format_label_line_round_trips() -> None:
    poly = np.array([[0.2031251, 0.7], [1.0000001, 0.0], [0.1234567, 0.5]])
    line = format_label_line(3, poly)
    assert line == "3 0.203125 0.7 1 0 0.123457 0.5"
    classes, polys, problems = parse_label_text(line, Path("x.txt"))
    assert not problems and classes[0] == 3
    np.testing.assert_allclose(polys[0], np.clip(poly, 0, 1), atol=1e-6)


@pytest.mark.datasets
@pytest.mark.parametrize(
    ("name", "counts"),
    [("DSB2018", {"train": (536, 24675), "val": (134, 5684)}), ("BCC", {"train": (128, 1235), "val": (32, 312)})],
)
def test_shared_dataset_counts(datasets_root: Path, name: str, counts: dict[str, tuple[int, int]]) -> None:
    for split, (n_images, n_instances) in counts.items():
        data = load_split(datasets_root / name, split)
        assert (len(data), data.n_instances) == (n_images, n_instances)
        assert data.problems == [] and data.names == {0: "cell"}
        boxes = np.concatenate([s.boxes_xyxy_norm() for s in data.samples])
        assert boxes.min() >= 0 and boxes.max() <= 1 and (boxes[:, 2:] > boxes[:, :2]).all()
