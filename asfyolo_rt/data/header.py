"""Image headers: format sniffing, the image size without decoding, and the pixel limit.

`read_image_raw` (asfyolo_rt.data.io) checks every image against the pixel limit from its header before it
allocates pixel memory: a 1.5 MB PNG can declare 40000x40000 pixels, which OpenCV refuses with a
traceback-shaped `cv2.error` or, below its own limit, decodes into gigabytes.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from asfyolo_rt.errors import DataError

MAX_PIXELS: int = 1 << 28
"""Default pixel limit (H x W, about 268 megapixels = 16384 x 16384): larger images are refused before
decoding. Raised per command with --max-pixels (see `pixel_limit`)."""
_limit = [MAX_PIXELS]


@contextlib.contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Within the block, images of more than `max_pixels` pixels are refused (None: keep the current limit)."""
    if max_pixels is not None and max_pixels < 1:
        raise DataError(f"--max-pixels {max_pixels}: expected a positive number of pixels (H x W)")
    old = _limit[0]
    _limit[0] = max_pixels if max_pixels is not None else old
    try:
        yield
    finally:
        _limit[0] = old


def check_pixels(path: Path, size: tuple[int, int]) -> None:
    """DataError naming the file when an image of `size` (H, W) exceeds the current pixel limit."""
    h, w = size
    if h * w > _limit[0]:
        raise DataError(f"{path}: {w}x{h} = {h * w:,} pixels, above the limit of {_limit[0]:,} pixels", hint=f"pass --max-pixels {h * w} if the image is genuine "
                        "and memory allows (an RGB copy needs about 3 bytes per pixel)")


def check_headers(paths: list[Path], suffixes: tuple[str, ...]) -> None:
    """Read the header of every file in `paths` ending in one of `suffixes` (lower case): DataError naming
    the first one that is unreadable or above the pixel limit. Lets a command refuse before any output."""
    for p in paths:
        if p.suffix.lower() in suffixes:
            check_pixels(p, image_size(p))


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def sniff_format(head: bytes) -> str | None:
    """The format named by a file's first bytes: 'png', 'jpeg', 'bmp', 'tiff' or None."""
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in _TIFF_MAGICS:
        return "tiff"
    return None


def unknown_format_error(path: Path, head: bytes) -> DataError:
    if not head:
        return DataError(f"{path}: the file is empty (0 bytes)", hint="re-copy or re-export the image")
    return DataError(
        f"{path}: not a PNG, JPEG, BMP or TIFF file (first bytes {head[:8]!r})",
        hint="convert the image to PNG or TIFF, or remove it from the dataset",
    )


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    f.seek(2)
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":
            byte = f.read(1)
        while byte == b"\xff":
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue  # markers without a length field
        seg = f.read(2)
        if len(seg) < 2:
            return None
        length = struct.unpack(">H", seg)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            body = f.read(5)
            if len(body) < 5:
                return None
            h, w = struct.unpack(">xHH", body)
            return h, w
        f.seek(length - 2, os.SEEK_CUR)


def header_size(path: Path, fmt: str, f: BinaryIO) -> tuple[int, int]:
    """(H, W) from a PNG, BMP or JPEG header read from `f`; DataError when the header holds none."""
    head = f.read(32)
    size: tuple[int, int] | None = None
    if fmt == "png" and len(head) >= 24 and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        size = (h, w)
    elif fmt == "bmp" and len(head) >= 26:
        if struct.unpack_from("<I", head, 14)[0] == 12:  # OS/2 BITMAPCOREHEADER
            w, h = struct.unpack_from("<HH", head, 18)
        else:
            w, h = struct.unpack_from("<ii", head, 18)
        size = (abs(h), w)
    elif fmt == "jpeg":
        size = _jpeg_size(f)
    if size is None or size[0] <= 0 or size[1] <= 0:
        raise DataError(f"{path}: corrupt {fmt.upper()} header (no valid image size found)",
                        hint="re-copy or re-export the image")
    return size


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (OpenCV's span several, with its source file first)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(H, W) of an image read from its header only (no pixel decoding). Raises DataError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            fmt = sniff_format(head)
            if fmt is None:
                raise unknown_format_error(path, head)
            if fmt != "tiff":
                f.seek(0)
                return header_size(path, fmt, f)
    except OSError as exc:
        raise DataError(f"{path}: cannot read image file ({exc.strerror or exc})") from exc
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            size = (int(page.imagelength), int(page.imagewidth))  # type: ignore[union-attr]
    except Exception as exc:
        raise DataError(f"{path}: unreadable or corrupt TIFF header ({one_line(exc)})") from exc
    if size[0] <= 0 or size[1] <= 0:
        raise DataError(f"{path}: corrupt TIFF header (no valid image size found)", hint="re-copy or re-export it")
    return size
