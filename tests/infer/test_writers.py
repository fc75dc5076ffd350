"""PredictionWriter: its files are what the one-pass writer made (the overlay painted in one go, DictWriter CSV,
json.dumps COCO), and an error on one of its threads reaches the caller and leaves no half-written file."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from asfyolo_rt.infer import writers
from asfyolo_rt.infer.predict import ImageResult
from asfyolo_rt.infer.sources import Frame
from asfyolo_rt.infer.writers import CELL_FIELDS, PredictionWriter, cell_rows, overlay
from asfyolo_rt.runtime.lean_ops import PackedArrays


def fake_result(name: str, h: int, w: int, n: int, seed: int) -> ImageResult:
    """n overlapping disks (some cut by the frame's edges), sorted by descending score; the label map keeps the
    highest-scoring disk where they overlap."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    lm = np.zeros((h, w), np.int32)
    boxes, data, offsets, windows = [], [], [0], []
    for i in range(n):
        cx, cy, r = rng.uniform(-5, w + 5), rng.uniform(-5, h + 5), rng.uniform(3, 14)
        disk = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        if not disk.any():
            disk[min(max(int(cy), 0), h - 1), min(max(int(cx), 0), w - 1)] = True
        ys, xs = np.nonzero(disk)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        data.append(disk[y0:y1, x0:x1].astype(np.uint8).reshape(-1))
        offsets.append(offsets[-1] + data[-1].size)
        windows.append([x0, y0, x1 - x0, y1 - y0])
        boxes.append([x0, y0, x1, y1])
        lm[disk & (lm == 0)] = i + 1
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    masks = PackedArrays(np.concatenate(data) if data else np.zeros(0, np.uint8), np.array(offsets, np.int64),
                         np.array(windows, np.int32).reshape(-1, 4), np.zeros(n, np.int64), (h, w))
    scores = np.sort(rng.uniform(0.3, 1.0, n).astype(np.float32))[::-1].copy()
    return ImageResult(Frame(name, Path(f"/data/{name}.tif"), image), None,
                       np.array(boxes, np.float32).reshape(-1, 4) + rng.uniform(-0.4, 0.4, (n, 4)).astype(np.float32),
                       scores, rng.integers(0, 2, n), lm, masks)


def one_pass_overlay(result: ImageResult, alpha: float = 0.4) -> np.ndarray:
    """The overlay as the writer made it before it went band by band (the specification of `overlay`)."""
    img = result.frame.image.copy()
    lm = result.label_map
    h, w = lm.shape
    colours = writers._palette(len(result))
    tint = (img * (1 - alpha) + colours[lm] * alpha).astype(np.uint8)
    img[lm > 0] = tint[lm > 0]
    edge = np.zeros(lm.shape, bool)
    edge[:, 1:] |= lm[:, 1:] != lm[:, :-1]
    edge[1:, :] |= lm[1:, :] != lm[:-1, :]
    border = np.maximum(lm, np.maximum(np.roll(lm, 1, axis=0), np.roll(lm, 1, axis=1)))
    img[edge] = colours[border[edge]]
    return img


# shapes: one band; several bands and a short last one (600 = 256 + 256 + 88); one row; one column
@pytest.mark.parametrize("h,w,n", [(40, 50, 6), (600, 270, 60), (1, 64, 3), (130, 1, 2), (33, 40, 0)])
def test_overlay_in_bands_is_the_one_pass_overlay(h: int, w: int, n: int) -> None:
    res = fake_result("a", h, w, n, seed=h + w)
    expected = one_pass_overlay(res)
    assert np.array_equal(overlay(res), expected)


def one_pass_rows(result: ImageResult) -> list[dict[str, Any]]:
    """cells.csv's rows as the writer made them before it wrote lists (the specification of its rows)."""
    t = writers.result_table(result)
    classes, scores, boxes = result.classes.tolist(), result.scores.tolist(), result.boxes.tolist()
    area, cx, cy = t["area_px"].tolist(), t["centroid_x"].tolist(), t["centroid_y"].tolist()
    diameter = t["equivalent_diameter_px"].tolist()
    return [{
        "image": result.frame.name, "id": i + 1, "class": int(classes[i]),
        "score": round(float(scores[i]), 5),
        **{k: round(float(v), 2) for k, v in zip(("x1", "y1", "x2", "y2"), boxes[i])},
        "area_px": int(area[i]),
        "centroid_x": round(cx[i], 2) if area[i] else "",
        "centroid_y": round(cy[i], 2) if area[i] else "",
        "equivalent_diameter_px": round(diameter[i], 3),
    } for i in range(len(result))]


def write_all(out: Path, results: list[ImageResult]) -> PredictionWriter:
    w = PredictionWriter(out, names={0: "cell", 1: "mitotic"})
    for r in results:
        w.write(r)
    w.close()
    return w


def test_files_are_what_the_one_pass_writer_wrote(tmp_path: Path) -> None:
    results = [fake_result("a", 300, 270, 60, 1), fake_result("empty", 20, 30, 0, 2), fake_result("b", 90, 70, 9, 3)]
    write_all(tmp_path, results)
    for r in results:  # pixels, not bytes: write_image's PNG encoder is its own (tests/data/test_data_io.py)
        png = cv2.imread(str(tmp_path / "overlays" / f"{r.frame.name}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(cv2.cvtColor(png, cv2.COLOR_BGR2RGB), one_pass_overlay(r))
    text = io.StringIO(newline="")
    dict_writer = csv.DictWriter(text, CELL_FIELDS)
    dict_writer.writeheader()
    for r in results:
        dict_writer.writerows(one_pass_rows(r))
        assert cell_rows(r) == one_pass_rows(r)
    assert (tmp_path / "cells.csv").read_bytes() == text.getvalue().encode()
    raw = (tmp_path / "predictions.coco.json").read_bytes()
    coco = json.loads(raw)
    assert json.dumps(coco).encode() == raw  # one json.dumps of the whole document, default separators
    assert [a["id"] for a in coco["annotations"]] == list(range(1, 70))
    assert [a["image_id"] for a in coco["annotations"]] == [1] * 60 + [3] * 9
    assert [i["name"] for i in coco["images"]] == ["a", "empty", "b"]
    summary = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert float(summary[0]["covered_fraction"]) == round(float((results[0].label_map > 0).mean()), 5)


def leftovers(out: Path) -> list[Path]:
    """Temporary files of atomic writes."""
    return [p for p in out.rglob(".*")]


def test_overlay_write_error_reaches_the_caller(tmp_path: Path) -> None:
    (tmp_path / "overlays").write_text("a file where the folder goes")
    w = PredictionWriter(tmp_path, names={0: "cell"})
    with pytest.raises(NotADirectoryError):
        w.write(fake_result("a", 300, 270, 60, 1))
    assert (tmp_path / "labels" / "a.tif").is_file()  # the other outputs are whole, as before
    assert len((tmp_path / "cells.csv").read_text().splitlines()) == 61
    assert not leftovers(tmp_path)


def test_error_making_the_overlay_reaches_the_caller_and_writes_nothing_of_the_image(tmp_path: Path,
                                                                                     monkeypatch) -> None:
    def failing(result: ImageResult, alpha: float = 0.4) -> np.ndarray:
        raise MemoryError("no room for the overlay")

    monkeypatch.setattr(writers, "overlay", failing)
    w = PredictionWriter(tmp_path, names={0: "cell"})
    with pytest.raises(MemoryError, match="overlay"):
        w.write(fake_result("a", 300, 270, 60, 1))
    assert not (tmp_path / "overlays" / "a.png").exists() and not leftovers(tmp_path)
    w.close()
    assert (tmp_path / "cells.csv").read_text().splitlines() == [",".join(CELL_FIELDS)]  # header only


def test_label_write_error_records_nothing_of_the_image(tmp_path: Path) -> None:
    (tmp_path / "labels").write_text("a file where the folder goes")
    w = PredictionWriter(tmp_path, names={0: "cell"})
    with pytest.raises(NotADirectoryError):
        w.write(fake_result("a", 300, 270, 60, 1))
    assert (tmp_path / "overlays" / "a.png").is_file() and not leftovers(tmp_path)
    w.close()
    assert (tmp_path / "cells.csv").read_text().splitlines() == [",".join(CELL_FIELDS)]  # header only
    assert json.loads((tmp_path / "predictions.coco.json").read_text())["images"] == []
