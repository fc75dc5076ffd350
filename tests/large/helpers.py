"""Comparisons of label images and cell tables that do not depend on id order."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def id_map(a: np.ndarray, b: np.ndarray) -> dict[int, int]:
    """The id of b for each id of a when a and b are the same label image up to a permutation of ids; raises
    AssertionError naming the first pixel where they disagree otherwise."""
    assert a.shape == b.shape
    assert np.array_equal(a == 0, b == 0), "background differs"
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]).astype(np.int64), axis=1)
    pairs = pairs[:, pairs[0] > 0]
    assert len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1])), "a cell is split or merged"
    return dict(zip(pairs[0].tolist(), pairs[1].tolist()))


def read_rows(path: Path) -> dict[int, dict[str, str]]:
    with open(path, newline="") as f:
        return {int(r["id"]): r for r in csv.DictReader(f)}


def same_table(a: Path, b: Path, ids: dict[int, int]) -> None:
    """Row for row equal cell tables (every column but id), ids matched through `ids` (a's id -> b's id)."""
    ra, rb = read_rows(a), read_rows(b)
    assert len(ra) == len(rb)
    for i, row in ra.items():
        other = rb[ids.get(i, i)]
        assert {k: v for k, v in row.items() if k != "id"} == {k: v for k, v in other.items() if k != "id"}, i
