"""COCO-compatible run-length encoding of binary masks.

A COCO RLE is {"size": [H, W], "counts": ...}: the mask is read in column-major (Fortran) order and
`counts` holds the lengths of alternating runs of 0s and 1s, starting with 0s (a leading 0 count when
the first pixel is 1). `counts` is either that list of ints (the "uncompressed" form COCO uses for
iscrowd annotations) or the compressed ASCII string of pycocotools' `rleToString`: each count (from the
third on, minus the count two before it) is written as signed 5-bit groups, low first, with bit 0x20
meaning "more groups follow", each group offset by 48 into printable ASCII.

`counts_to_strings` and `window_rles` encode many RLEs in one vectorised pass (a prediction's cells);
`counts_to_string` and `rle_encode` are the one-mask forms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from asfyolo_rt.errors import DataError


def counts_to_string(counts: Sequence[int]) -> str:
    """Compress run lengths into COCO's ASCII counts string."""
    c = np.asarray(counts, dtype=np.int64).reshape(-1)
    return counts_to_strings(c, np.array([0, c.size]))[0]


def counts_to_strings(counts: np.ndarray, bounds: np.ndarray) -> list[str]:
    """COCO counts strings of many RLEs at once.

    counts: (M,) int64, the run lengths of every RLE one after the other; bounds: (K + 1,) int64, RLE k is
    counts[bounds[k]:bounds[k + 1]]. Returns K strings, each what `counts_to_string` gives for its RLE.
    """
    c = np.asarray(counts, dtype=np.int64)
    bounds = np.asarray(bounds, dtype=np.int64)
    pos = np.arange(c.size, dtype=np.int64) - np.repeat(bounds[:-1], np.diff(bounds))  # index within its RLE
    x = c.copy()
    later = np.flatnonzero(pos > 2)  # from the 4th count on: the difference from the count two before
    x[later] -= c[later - 2]
    # Signed 5-bit groups, low first, until the rest is the sign extension of the last group's bit 0x10.
    groups: list[np.ndarray] = []
    active = np.ones(c.size, bool)
    while active.any():
        group = x & 0x1F
        x >>= 5  # arithmetic shift: negative differences end at -1
        more = active & np.where(group & 0x10, x != -1, x != 0)
        groups.append(np.where(active, (group | (more << 5)) + 48, 0).astype(np.uint8))
        active = more
    if not groups:
        return ["" for _ in range(bounds.size - 1)]
    chars = np.stack(groups, axis=1)  # (M, G): the groups of count m in row m, 0 past its last
    text = chars[chars != 0].tobytes().decode("ascii")
    ends = np.concatenate(([0], np.cumsum((chars != 0).sum(1))))[bounds]
    return [text[a:b] for a, b in zip(ends[:-1].tolist(), ends[1:].tolist())]


def window_rles(data: np.ndarray, offsets: np.ndarray, windows: np.ndarray, height: int, width: int) -> list[str]:
    """COCO counts strings of box-local masks, each placed in a (height, width) frame that is 0 elsewhere.

    data: (sum_i w_i * h_i,) {0, 1} (nonzero = inside); mask i is data[offsets[i]:offsets[i + 1]] reshaped to
    (h_i, w_i), row-major. offsets: (N + 1,) int. windows: (N, 4) int [x0, y0, w, h] in frame pixels.
    Returns N strings: counts_to_string of the run lengths of each full frame mask, read column-major, as
    `rle_encode` gives them; cost O(sum_i w_i * h_i), never O(N * height * width). Masks are taken in
    chunks of about _CHUNK_PIXELS pixels, which bounds the temporaries (a few bytes a pixel).
    """
    win = np.asarray(windows, dtype=np.int64).reshape(-1, 4)
    offsets = np.asarray(offsets, dtype=np.int64)
    flat = np.asarray(data).reshape(-1)
    out: list[str] = []
    i, n = 0, win.shape[0]
    while i < n:
        j = max(int(np.searchsorted(offsets, offsets[i] + _CHUNK_PIXELS, side="right")) - 1, i + 1)
        j = min(j, n)
        out += _window_rles(flat[offsets[i] : offsets[j]], offsets[i : j + 1] - offsets[i], win[i:j], height, width)
        i = j
    return out


_CHUNK_PIXELS = 1 << 22


def _window_rles(data: np.ndarray, offsets: np.ndarray, win: np.ndarray, height: int, width: int) -> list[str]:
    """`window_rles` of one chunk: offsets start at 0 and end at data.size."""
    n = win.shape[0]
    cells, cuts = [], []
    for wv in np.unique(win[:, 2]).tolist():  # masks of one width stack into one (rows, width) array
        group = np.flatnonzero((win[:, 2] == wv) & (win[:, 3] > 0))
        if wv == 0 or group.size == 0:
            continue
        m = np.concatenate([data[offsets[i] : offsets[i + 1]] for i in group.tolist()]).reshape(-1, wv) != 0
        top = np.concatenate(([0], np.cumsum(win[group, 3])))  # row of each mask's top row in m
        # Column-major, a run starts where a pixel differs from the one above it (0 above a window's top
        # row), and a run of 1s ending on a window's bottom row is followed by a run of 0s.
        above = np.empty_like(m)
        above[1:] = m[:-1]
        above[top[:-1]] = False
        row, col = np.nonzero(m != above)
        end_mask, end_col = np.nonzero(m[top[1:] - 1])
        row = np.concatenate((row, top[end_mask + 1]))  # the row below the bottom one
        col = np.concatenate((col, end_col))
        j = np.searchsorted(top, row, side="right") - 1
        j[row.size - end_mask.size :] = end_mask
        cell = group[j]
        cells.append(cell)
        cuts.append((win[cell, 0] + col) * height + win[cell, 1] + row - top[j])
    cut_cell = np.concatenate(cells) if cells else np.zeros(0, np.int64)
    cut = np.concatenate(cuts) if cuts else np.zeros(0, np.int64)
    order = np.lexsort((cut, cut_cell))
    cut_cell, cut = cut_cell[order], cut[order]
    # A window as tall as the frame: a column ending in 1 and the next starting with 1 is one run, not a
    # cut at the same position from each side; and the frame's end is no cut.
    same = (cut[1:] == cut[:-1]) & (cut_cell[1:] == cut_cell[:-1])
    drop = np.zeros(cut.size, bool)
    drop[1:] |= same
    drop[:-1] |= same
    drop |= cut == height * width
    cut_cell, cut = cut_cell[~drop], cut[~drop]
    # Runs of cell i: differences of 0, its cuts, height * width.
    per_cell = np.bincount(cut_cell, minlength=n)
    first = np.concatenate(([0], np.cumsum(per_cell + 2)))  # where each cell's bounds start
    bounds = np.full(first[-1], height * width, np.int64)
    bounds[first[:-1]] = 0
    bounds[np.arange(cut.size) + 2 * cut_cell + 1] = cut
    runs = np.diff(bounds)
    keep = np.ones(runs.size, bool)
    keep[first[1:-1] - 1] = False  # the differences across two cells
    return counts_to_strings(runs[keep], first - np.arange(n + 1))


def string_to_counts(s: str | bytes) -> list[int]:
    """Decompress COCO's ASCII counts string into run lengths."""
    data = s.encode("ascii") if isinstance(s, str) else bytes(s)
    counts: list[int] = []
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                raise DataError(f"RLE counts string ends inside a number (at byte {p})")
            c = data[p] - 48
            if c < 0 or c > 63:
                raise DataError(f"RLE counts string has an invalid character {chr(data[p])!r} at byte {p}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _run_lengths(mask: np.ndarray) -> list[int]:
    flat = np.asarray(mask).ravel(order="F") != 0
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def rle_encode(mask: np.ndarray, *, compressed: bool = True) -> dict[str, Any]:
    """Encode a binary mask (H, W) (nonzero = inside) as a COCO RLE dict.

    Returns {"size": [H, W], "counts": str} (compressed, JSON-ready) or counts as a list of ints.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise DataError(f"mask of shape {m.shape}; expected (H, W)")
    runs = _run_lengths(m)
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": counts_to_string(runs) if compressed else runs}


def _counts(rle: Mapping[str, Any]) -> tuple[int, int, list[int]]:
    try:
        h, w = (int(v) for v in rle["size"])
        raw = rle["counts"]
        counts = string_to_counts(raw) if isinstance(raw, (str, bytes)) else [int(c) for c in raw]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"RLE {str(rle)[:80]}: expected a dict with 'size': [H, W] and 'counts'") from exc
    if any(c < 0 for c in counts) or sum(counts) != h * w:
        raise DataError(f"RLE counts sum to {sum(counts)} (or hold negatives); expected H*W = {h * w}")
    return h, w, counts


def rle_decode(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode a COCO RLE dict (compressed string or list counts) to an (H, W) uint8 mask in {0, 1}."""
    h, w, counts = _counts(rle)
    values = np.arange(len(counts), dtype=np.int64) % 2
    flat = np.repeat(values.astype(np.uint8), counts)
    return np.ascontiguousarray(flat.reshape(w, h).T)


def rle_area(rle: Mapping[str, Any]) -> int:
    """Number of foreground pixels of a COCO RLE."""
    _, _, counts = _counts(rle)
    return int(sum(counts[1::2]))


def rle_to_bbox(rle: Mapping[str, Any]) -> list[float]:
    """COCO box [x, y, w, h] (pixels) enclosing the mask of a COCO RLE; [0, 0, 0, 0] when empty."""
    mask = rle_decode(rle)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])]
