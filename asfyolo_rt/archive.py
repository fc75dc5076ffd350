"""Bounded memory for the zip archives the project reads: sizes checked before anything is decompressed.

The archives read are PyTorch checkpoints (torch.save writes a zip: `weights import`, `bench` on an
official `.pt`, training checkpoints). torch.load inflates each record into a buffer of the size that
the zip's central directory declares (a stream that inflates to more fails its size check), so those
declared sizes bound the memory. `check_zip_sizes` reads them, and nothing else, and refuses:

- a total uncompressed size above max(64 MiB, 4 x the file's size): torch.save stores its records
  uncompressed (total = the file's size, whatever the model's size), so a genuine checkpoint of any size
  passes; one re-zipped with deflate inflates by 1.1-1.3x (float tensors) to about 10x (the pickle);
- any entry above 1 MiB uncompressed that inflates more than 200:1 (a pickle of real modules deflates
  about 10:1, tensors of trained weights barely; a decompression bomb of zeros about 1000:1).

A genuine file beyond these (e.g. large all-zero buffers, deflated) is read with an explicit allowance:
`max_unzipped_bytes=` in the API, or the environment variable ASFYOLO_RT_MAX_UNZIPPED_GIB for the command
line: a total within it passes both checks (it never lowers them). The error names the file, what it would inflate to and the limit.
(Safetensors files are not compressed and their header sizes are checked by the library; the project writes
ImageJ `.rois.zip` files and bioimage.io packages but reads neither.)
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from asfyolo_rt.errors import CheckpointError

MAX_ENTRY_RATIO = 200.0  # uncompressed : compressed, for entries above RATIO_FLOOR bytes
RATIO_FLOOR = 1 << 20
MIN_UNZIPPED_ALLOWANCE = 64 << 20  # total uncompressed bytes allowed whatever the file's size ...
UNZIPPED_PER_FILE_BYTE = 4  # ... or this many times the file's size, whichever is larger
UNZIPPED_LIMIT_ENV = "ASFYOLO_RT_MAX_UNZIPPED_GIB"


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def unzipped_allowance() -> int | None:
    """The total set by ASFYOLO_RT_MAX_UNZIPPED_GIB (bytes), None when unset; CheckpointError when malformed."""
    text = os.environ.get(UNZIPPED_LIMIT_ENV, "").strip()
    if not text:
        return None
    try:
        gib = float(text)
    except ValueError:
        gib = float("nan")
    if not gib > 0 or gib == float("inf"):
        raise CheckpointError(f"{UNZIPPED_LIMIT_ENV}={text!r}: expected a positive number of GiB, e.g. 8")
    return int(gib * 2**30)


def check_zip_sizes(path: str | Path, max_unzipped_bytes: int | None = None) -> None:
    """CheckpointError naming `path` and the limit when the zip archive `path` would inflate beyond the limits
    of the module docstring; read from the central directory only, before any decompression. Files that are
    not zip archives pass (torch's legacy format is an uncompressed pickle or tar). `max_unzipped_bytes`
    (default: ASFYOLO_RT_MAX_UNZIPPED_GIB) only raises the limits: a total within it passes both checks."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as zf:
            entries = [(i.filename, i.file_size, i.compress_size) for i in zf.infolist()]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable zip archive ({exc})") from exc
    size = path.stat().st_size
    total = sum(e[1] for e in entries)
    explicit = max_unzipped_bytes if max_unzipped_bytes is not None else unzipped_allowance()
    if explicit is not None and total <= explicit:
        return  # the caller vouches for the file: the explicit total replaces both limits
    raise_hint = (f"if you trust the file, allow more with {UNZIPPED_LIMIT_ENV}=<GiB> "
                  f"(here at least {max(1, -(-total // 2**30))})")
    limit = max(MIN_UNZIPPED_ALLOWANCE, UNZIPPED_PER_FILE_BYTE * size)
    if total > limit:
        biggest = max(entries, key=lambda e: e[1])
        also = f", and above the {_gib(explicit)} allowed explicitly" if explicit is not None else ""
        raise CheckpointError(
            f"{path}: its zip entries inflate to {_gib(total)} from a {_gib(size)} file (largest: {biggest[0]}, "
            f"{_gib(biggest[1])}); the limit is {_gib(limit)} (max of {_gib(MIN_UNZIPPED_ALLOWANCE)} and "
            f"{UNZIPPED_PER_FILE_BYTE}x the file size){also}: refused before decompressing (a zip bomb?)",
            hint=raise_hint)
    for name, full, packed in entries:
        if full > RATIO_FLOOR and full > MAX_ENTRY_RATIO * max(packed, 1):
            raise CheckpointError(
                f"{path}: zip entry {name} inflates {full / max(packed, 1):.0f}:1 ({_gib(packed)} to {_gib(full)}); "
                f"the limit is {MAX_ENTRY_RATIO:.0f}:1 for entries above {_gib(RATIO_FLOOR)}: refused before "
                "decompressing (a zip bomb?)", hint=raise_hint)
