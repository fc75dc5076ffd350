"""COCO RLE: hand-worked examples, round trips, and agreement with faster-coco-eval's mask utils."""

from __future__ import annotations

import numpy as np
import pytest

from asfyolo_rt.data.rle import (
    counts_to_string,
    rle_area,
    rle_decode,
    rle_encode,
    rle_to_bbox,
    string_to_counts,
)
from asfyolo_rt.errors import DataError


def test_hand_worked_example() -> None:
    # [[0, 1], [1, 1]] in column-major order is 0, 1, 1, 1 -> runs: 1 zero, 3 ones
    m = np.array([[0, 1], [1, 1]], np.uint8)
    assert rle_encode(m, compressed=False) == {"size": [2, 2], "counts": [1, 3]}
    assert rle_encode(m) == {"size": [2, 2], "counts": "13"}  # chr(48 + 1), chr(48 + 3)
    # first pixel set -> a leading zero-length run
    assert rle_encode(np.array([[1, 0]]), compressed=False)["counts"] == [0, 1, 1]
    assert rle_encode(np.zeros((0, 3)), compressed=False)["counts"] == []


@pytest.mark.parametrize(
    "counts",
    [[0], [5, 10, 2, 1], [1, 2, 3, 4, 5, 6], [100000, 3, 70000, 1, 1], [31, 32, 15, 16, 17, 1000, 1]],
)
def test_counts_string_round_trip(counts: list[int]) -> None:
    # differences from the 3rd count on may be negative (2 - 10, 1 - 2): the sign-extension path
    assert string_to_counts(counts_to_string(counts)) == counts


def test_decode_list_and_string_forms_agree() -> None:
    rng = np.random.default_rng(0)
    m = (rng.random((13, 7)) < 0.4).astype(np.uint8)
    np.testing.assert_array_equal(rle_decode(rle_encode(m)), m)
    np.testing.assert_array_equal(rle_decode(rle_encode(m, compressed=False)), m)
    assert rle_decode(rle_encode(m)).dtype == np.uint8
    assert rle_area(rle_encode(m)) == int(m.sum())
    enc = rle_encode(m)
    assert rle_decode({"size": enc["size"], "counts": str(enc["counts"]).encode()}).sum() == m.sum()


def test_bbox() -> None:
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 3:9] = 1
    assert rle_to_bbox(rle_encode(m)) == [3.0, 2.0, 6.0, 3.0]
    assert rle_to_bbox(rle_encode(np.zeros((4, 4)))) == [0.0, 0.0, 0.0, 0.0]


def test_bad_rle_raises() -> None:
    with pytest.raises(DataError, match="H\\*W"):
        rle_decode({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(DataError, match="size"):
        rle_decode({"counts": "13"})
    with pytest.raises(DataError, match="invalid character"):
        rle_decode({"size": [2, 2], "counts": "1 3"})
    with pytest.raises(DataError, match="ends inside"):
        string_to_counts("1" + chr(48 + 0x20))
    with pytest.raises(DataError, match="expected \\(H, W\\)"):
        rle_encode(np.zeros((2, 2, 2)))


@pytest.mark.parametrize("seed", range(4))
def test_matches_faster_coco_eval(seed: int) -> None:
    mask_api = pytest.importorskip("faster_coco_eval.core.mask")
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 60, 2))
    masks = [(rng.random((h, w)) < p).astype(np.uint8) for p in (0.0, 0.05, 0.5, 0.97, 1.0)]
    # blobs give long runs (multi-group numbers); noise gives many short ones
    blob = np.zeros((h, w), np.uint8)
    blob[h // 4: 3 * h // 4 + 1, w // 3:] = 1
    masks.append(blob)
    for m in masks:
        ref = mask_api.encode(np.asfortranarray(m[:, :, None]))[0]
        ref_counts = ref["counts"].decode() if isinstance(ref["counts"], bytes) else ref["counts"]
        ours = rle_encode(m)
        assert ours["counts"] == ref_counts and ours["size"] == list(ref["size"])
        np.testing.assert_array_equal(rle_decode(ref), m)
        np.testing.assert_array_equal(mask_api.decode(ours), m)
        assert rle_area(ours) == int(mask_api.area(ref))
        np.testing.assert_allclose(rle_to_bbox(ours), mask_api.toBbox(ref))
