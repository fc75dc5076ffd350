"""Inputs of `predict` (issue 27, items 2 and 7): unique output names for inputs sharing a stem, inputs
de-duplicated by real path, `**` globs through a symlink loop, natural sort, globs and folders without
images, special files, `skip_bad`, TIFFs holding images of different sizes, multichannel OME-TIFF notes."""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from asfyolo_rt.data.io import write_image
from asfyolo_rt.errors import DataError
from asfyolo_rt.infer.sources import BadInput, expand_sources, iter_frames, unique_names
from asfyolo_rt.model import build_model
from asfyolo_rt.model.weights import config_of, save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    m = build_model("n")
    with torch.no_grad():  # every anchor a confident detection: cells in every output of an untrained model
        for conv in m.head.m:
            conv.bias.view(3, -1)[:, 4] += 8
    path = tmp_path_factory.mktemp("w") / "n.safetensors"
    return save_checkpoint(m, path, config_of(m, img_size=64))


def _image(path: Path, seed: int, shape: tuple[int, int] = (48, 56)) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, img)
    return img


def _predict(cli, checkpoint: Path, out: Path, *sources: object):
    r = cli("predict", *sources, "--weights", checkpoint, "--out", out, "--scale", "fit", "--img-size", "64",
            "--conf", "0.3", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    return json.loads(r.stdout)["images"]


# ------------------------------------------------------------------------------------------ names
def test_same_stem_in_two_folders_and_two_extensions_keep_every_result(tmp_path: Path, checkpoint: Path,
                                                                       cli, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative sources: the names are the paths below the shared folder
    images = {p: _image(tmp_path / p, k) for k, p in enumerate(["x/img.png", "y/img.png", "a.png", "a.tif"])}
    assert images  # four inputs, two pairs sharing a stem: before the fix two label files and 2 names
    summaries = _predict(cli, checkpoint, tmp_path / "out", "x/img.png", "y/img.png", "a.png", "a.tif")
    names = ["x__img", "y__img", "a_png", "a_tif"]
    assert [s["image"] for s in summaries] == names
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "labels").iterdir()) == sorted(f"{n}.tif" for n in names)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(f"{n}.png" for n in names)
    rows = list(csv.DictReader(open(out / "cells.csv")))
    assert {r["image"] for r in rows} == set(names)  # every input's cells, none overwritten
    for n, s in zip(names, summaries):
        labels = tifffile.imread(out / "labels" / f"{n}.tif")
        assert labels.shape == (48, 56) and int(labels.max()) == s["cells"] > 0
    coco = json.loads((out / "predictions.coco.json").read_text())
    assert [i["name"] for i in coco["images"]] == names and len({i["file_name"] for i in coco["images"]}) == 4


def test_unique_names_rule(tmp_path: Path) -> None:
    paths = [Path("x/a.png"), Path("x/a.tif"), Path("y/a.png"), Path("b.ome.tif"), Path("c/d/B.png"), Path("e/8.png"),
             Path("x__a.png"), Path("c/b.png")]
    names = unique_names(paths)
    assert list(names.values()) == ["x__a_png", "x__a_tif", "y__a", "b", "c__d__B", "8", "x__a", "c__b"]
    # a name still taken gets _2, stable in input order
    assert list(unique_names([Path("x__a.png"), Path("x/a.png"), Path("y/a.png")]).values()) == [
        "x__a", "x__a_2", "y__a"]
    assert unique_names([Path("p/q/cells.ome.tif")]) == {Path("p/q/cells.ome.tif"): "cells"}


# ---------------------------------------------------------------------------------------- listing
def test_same_file_twice_or_through_a_symlink_is_one_input(tmp_path: Path) -> None:
    _image(tmp_path / "d" / "a.png", 0)
    (tmp_path / "link.png").symlink_to(tmp_path / "d" / "a.png")
    files = expand_sources([tmp_path / "d" / "a.png", tmp_path / "link.png", tmp_path / "d", tmp_path / "d/a.png"])
    assert files == [tmp_path / "d" / "a.png"]


def test_recursive_glob_through_a_symlink_loop_finds_each_image_once(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _image(root / "sub" / "cell.png", 0)
    _image(root / "top.png", 1)
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)  # data/sub/loop -> data
    files = expand_sources([f"{root}/**/*.png"])
    assert sorted(os.path.realpath(p) for p in files) == sorted(
        os.path.realpath(p) for p in (root / "sub" / "cell.png", root / "top.png"))
    assert len(files) == 2  # glob.glob(recursive=True) found cell.png 40+ times
    assert files == expand_sources([root], recursive=True)  # folders: the same walk, the same order


def test_folders_and_globs_sort_naturally(tmp_path: Path) -> None:
    for n in (79, 8, 100, 9):
        _image(tmp_path / f"{n}.png", n, (8, 8))
    want = [tmp_path / f"{n}.png" for n in (8, 9, 79, 100)]
    assert expand_sources([tmp_path]) == want  # as text: 100, 79, 8, 9
    assert expand_sources([f"{tmp_path}/*.png"]) == want


def test_folder_not_searched_recursively_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _image(tmp_path / "sub" / "a.png", 0, (8, 8))
    with pytest.raises(DataError, match="has no images"):
        expand_sources([tmp_path])
    _image(tmp_path / "top.png", 1, (8, 8))
    with caplog.at_level(logging.WARNING):
        assert expand_sources([tmp_path]) == [tmp_path / "top.png"]
    assert "1 subfolder(s) not searched (sub)" in caplog.text
    assert expand_sources([tmp_path], recursive=True) == [tmp_path / "sub" / "a.png", tmp_path / "top.png"]


def test_glob_of_only_text_files_is_an_error(tmp_path: Path, checkpoint: Path, cli) -> None:
    for n in ("a.txt", "b.txt"):
        (tmp_path / n).write_text("not an image")
    r = cli("predict", f"{tmp_path}/*.txt", "--weights", checkpoint, "--out", tmp_path / "out")
    assert r.exit_code != 0  # was: exit 0, "0 images"
    assert "*.txt" in r.stderr and "no images" in r.stderr and ".png" in r.stderr
    assert not (tmp_path / "out").exists()


def test_fifo_and_device_are_named_as_such(tmp_path: Path, checkpoint: Path, cli) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    r = cli("predict", tmp_path / "pipe.png", "--weights", checkpoint, "--out", tmp_path / "out")
    assert r.exit_code != 0 and "is a FIFO" in r.stderr and "does not exist" not in r.stderr
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    with pytest.raises(DataError, match=r"is a character device \(a link to /dev/zero\)"):
        expand_sources([tmp_path / "zero.png"])
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(DataError, match="broken symbolic link"):
        expand_sources([tmp_path / "gone.png"])
    _image(tmp_path / "ok.png", 0, (8, 8))
    os.mkfifo(tmp_path / "f")
    (tmp_path / "f2").mkdir()
    os.mkfifo(tmp_path / "f2" / "p.tif")
    _image(tmp_path / "f2" / "q.png", 0, (8, 8))
    with pytest.raises(DataError, match="p.tif is a FIFO"):  # in a folder: refused, never opened (would block)
        expand_sources([tmp_path / "f2"])
    skipped: list[BadInput] = []
    assert expand_sources([tmp_path], skip_bad=True, skipped=skipped) == [tmp_path / "ok.png"]
    assert [b.path.name for b in skipped] == ["gone.png", "pipe.png", "zero.png"]


def test_skip_bad_goes_on_past_unreadable_files(tmp_path: Path) -> None:
    _image(tmp_path / "a.png", 0, (8, 8))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    _image(tmp_path / "c.png", 1, (8, 8))
    files = expand_sources([tmp_path])
    with pytest.raises(DataError, match="b.png"):
        list(iter_frames(files))
    skipped: list[BadInput] = []
    assert [f.name for f in iter_frames(files, skip_bad=True, skipped=skipped)] == ["a", "c"]
    assert [b.path.name for b in skipped] == ["b.png"] and "b.png" in skipped[0].reason


# ------------------------------------------------------------------------------- parts of inputs
def test_multipage_tiff_with_pages_of_different_sizes_segments_every_page(tmp_path: Path, checkpoint: Path,
                                                                          cli) -> None:
    pages = [np.random.default_rng(k).integers(0, 255, s, dtype=np.uint8)
             for k, s in enumerate([(48, 56), (40, 64), (48, 56)])]
    with tifffile.TiffWriter(tmp_path / "m.tif") as w:
        for p in pages:
            w.write(p, metadata=None)  # a plain multi-page file: tifffile series by size
    frames = list(iter_frames([tmp_path / "m.tif"]))
    assert [(f.name, f.image.shape[:2]) for f in frames] == [
        ("m_s0_p0000", (48, 56)), ("m_s0_p0001", (48, 56)), ("m_s1", (40, 64))]
    np.testing.assert_array_equal(frames[2].image[..., 0], pages[1])  # was: page 0 only
    out = tmp_path / "out"
    summaries = _predict(cli, checkpoint, out, tmp_path / "m.tif")
    assert [s["image"] for s in summaries] == ["m_s0_p0000", "m_s0_p0001", "m_s1"]
    assert [(s["height"], s["width"]) for s in summaries] == [(48, 56), (48, 56), (40, 64)]
    assert tifffile.imread(out / "labels" / "m_s0.tif").shape == (2, 48, 56)
    assert tifffile.imread(out / "labels" / "m_s1.tif").shape == (40, 64)
    rows = list(csv.DictReader(open(out / "cells.csv")))
    assert {r["image"] for r in rows} == {"m_s0", "m_s1"}


def test_three_channel_ome_tiff_without_channel_gets_a_note(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = np.random.default_rng(0).integers(0, 255, (3, 32, 40), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.ome.tif", data, ome=True,
                     metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "GFP", "RFP"]}})
    with caplog.at_level(logging.WARNING):
        frames = list(iter_frames([tmp_path / "c.ome.tif"]))
    assert "3 channels (0: DAPI, 1: GFP, 2: RFP) are blended" in caplog.text and "--channel N" in caplog.text
    assert len(frames) == 1 and frames[0].name == "c"
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        frames = list(iter_frames([tmp_path / "c.ome.tif"], channel=0))
    assert "blended" not in caplog.text
    np.testing.assert_array_equal(frames[0].image[..., 0], data[0])
    write_image(tmp_path / "rgb.png", np.zeros((8, 8, 3), np.uint8))  # a colour image: no note
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with caplog.at_level(logging.WARNING):
        list(iter_frames([tmp_path / "rgb.png", tmp_path / "rgb.tif"]))
    assert "blended" not in caplog.text
