"""COCO-compatible run-length encoding of binary masks.

A COCO RLE is {"size": [H, W], "counts": ...}: the mask is read in column-major (Fortran) order and
`counts` holds the lengths of alternating runs of 0s and 1s, starting with 0s (a leading 0 count when
the first pixel is 1). `counts` is either that list of ints (the "uncompressed" form COCO uses for
iscrowd annotations) or the compressed ASCII string of pycocotools' `rleToString`: each count (from the
third on, minus the count two before it) is written as signed 5-bit groups, low first, with bit 0x20
meaning "more groups follow", each group offset by 48 into printable ASCII.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from asfyolo_rt.errors import DataError


def counts_to_string(counts: Sequence[int]) -> str:
    """Compress run lengths into COCO's ASCII counts string."""
    out: list[str] = []
    cnts = [int(c) for c in counts]
    for i, c in enumerate(cnts):
        x = c - cnts[i - 2] if i > 2 else c
        more = True
        while more:
            group = x & 0x1F
            x >>= 5  # arithmetic shift: negative differences end at -1
            more = x != -1 if group & 0x10 else x != 0
            if more:
                group |= 0x20
            out.append(chr(group + 48))
    return "".join(out)


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
