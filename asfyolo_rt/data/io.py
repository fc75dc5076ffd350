"""Reading and writing the images microscopes and datasets produce.

Formats: PNG, JPEG, BMP (decoded by OpenCV) and TIFF (decoded by tifffile); 8- or 16-bit (TIFF also
32-bit integer and float); grayscale, RGB or RGBA.

Two levels:

* `read_image_raw(path)` returns the pixels as stored: (H, W) or (H, W, C) with C in {3, 4} in RGB(A)
  channel order, dtype preserved (uint8, uint16, ...).
* `read_image(path)` returns the model's input format, (H, W, 3) uint8 RGB, through
  `to_uint8_rgb`:
  - uint8 data passes through unchanged (it is what the model is trained on);
  - other dtypes are scaled to [0, 255], by default linearly between the image's own 0.1 and 99.9
    percentiles (computed jointly over the colour channels, so colour balance is kept); with
    `method="full-range"`, by the dtype's full range (uint16: 0..65535; floats: 0..1);
    16-bit data is never truncated to its low byte;
  - grayscale is replicated to 3 channels; an alpha channel is dropped.

EXIF orientation tags are not applied: pixels come as stored (microscopes do not rotate images).
Truncated or corrupt files raise `DataError` naming the file. PNG and JPEG files are checked for their
end marker before decoding, because OpenCV returns a half-grey picture for a truncated JPEG.

Every decode goes through `read_image_raw`, which reads the image size from the file's header first and
refuses images above the pixel limit (`MAX_PIXELS`, changed for a block of code with `pixel_limit(n)`,
the CLI's `--max-pixels`) before any pixel memory is allocated: a 1.5 MB PNG can declare 40000x40000
pixels. Decoder failures (cv2.error, tifffile exceptions) become one-line `DataError`s naming the file.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import struct
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from asfyolo_rt.atomic import atomic_write_bytes
from asfyolo_rt.data.header import (  # noqa: F401  (image_size, MAX_PIXELS, pixel_limit: re-exported)
    MAX_PIXELS,
    check_headers,
    check_pixels,
    header_size,
    image_size,
    one_line,
    pixel_limit,
    sniff_format,
    unknown_format_error,
)
from asfyolo_rt.errors import DataError

try:  # Intel ISA-L deflate, for PNG: without a wheel for the platform, OpenCV's 4.5x slower encoder
    from isal import isal_zlib
except ImportError:
    isal_zlib = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""File name endings (lower case) that are treated as images."""

ScaleMethod = Literal["percentile", "full-range"]

def _check_complete(path: Path, fmt: str, data: bytes) -> None:
    """Raise DataError when a PNG/JPEG/BMP file is visibly cut short."""
    if fmt == "png" and b"IEND" not in data[-64:]:
        raise DataError(
            f"{path}: truncated or corrupt PNG (no IEND chunk at the end of its {len(data)} bytes)",
            hint="the file was probably cut short while copying; re-copy or re-export it",
        )
    if fmt == "jpeg" and b"\xff\xd9" not in data[-4096:]:
        raise DataError(
            f"{path}: truncated or corrupt JPEG (no end-of-image marker in its {len(data)} bytes)",
            hint="the file was probably cut short while copying; re-copy or re-export it",
        )
    if fmt == "bmp" and len(data) >= 6:
        declared = struct.unpack_from("<I", data, 2)[0]
        if declared > len(data):
            raise DataError(
                f"{path}: truncated BMP ({len(data)} bytes, header declares {declared})",
                hint="the file was probably cut short while copying; re-copy or re-export it",
            )


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            planes = [n for a, n in zip(series.axes, series.shape) if a not in "SC"]
            check_pixels(path, (int(np.prod(planes[:-1], dtype=np.int64)), int(planes[-1]) if planes else 1))
            axes, array = series.axes, series.asarray()
    except DataError:
        raise
    except Exception as exc:  # tifffile raises many types (ValueError, TiffFileError, struct.error, MemoryError)
        raise DataError(f"{path}: unreadable or corrupt TIFF ({one_line(exc)})", hint="re-copy or re-export it"
                        ) from exc
    squeezed = "".join(a for a, n in zip(axes, array.shape) if n != 1) or "YX"
    array = array.reshape([n for n in array.shape if n != 1] or [1, 1])
    if squeezed in ("YX", "YXS"):
        return array
    if squeezed in ("SYX", "CYX") and array.shape[0] in (3, 4):
        return np.ascontiguousarray(np.moveaxis(array, 0, -1))
    raise DataError(
        f"{path}: TIFF holds an array of shape {tuple(series.shape)} (axes {axes!r}); "
        "expected a single 2-D grayscale, RGB or RGBA image",
        hint="save one plane per file (e.g. a max projection of a z-stack)",
    )


def read_image_raw(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image exactly as stored.

    Returns (H, W) for grayscale or (H, W, C), C in {3, 4}, channels in RGB(A) order; the dtype is the
    file's (uint8, uint16, or for TIFF also int/float types). Raises DataError naming the file when it is
    missing, empty, of an unknown format, truncated or otherwise undecodable.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read image file ({exc.strerror or exc})") from exc
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise unknown_format_error(path, data[:16])
    if fmt == "tiff":
        array = _read_tiff(path)
    else:
        check_pixels(path, header_size(path, fmt, io.BytesIO(data)))
        _check_complete(path, fmt, data)
        try:
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except (cv2.error, MemoryError) as exc:
            own_limit = "CV_IO_MAX_IMAGE_PIXELS" in str(exc)
            raise DataError(f"{path}: OpenCV cannot decode this {fmt.upper()} ({one_line(exc)})",
                            hint="OpenCV refuses more than 2**30 pixels unless OPENCV_IO_MAX_IMAGE_PIXELS is set "
                            "before start-up" if own_limit else "re-export the image as PNG or TIFF") from exc
        if decoded is None:
            raise DataError(f"{path}: corrupt {fmt.upper()} file (the decoder rejected it)",
                            hint="re-copy or re-export the image")
        array = np.asarray(decoded)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        elif array.ndim == 3 and array.shape[2] == 3:
            array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
        elif array.ndim == 3 and array.shape[2] == 4:
            array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
        raise DataError(f"{path}: decoded to shape {array.shape}; expected (H, W) or (H, W, 3|4)")
    return array


def to_uint8_rgb(
    array: np.ndarray,
    *,
    method: ScaleMethod = "percentile",
    low: float = 0.1,
    high: float = 99.9,
) -> np.ndarray:
    """Convert any supported image array to the model's input format.

    array: (H, W), (H, W, 1), (H, W, 2) (grey + alpha), (H, W, 3) RGB or (H, W, 4) RGBA; any integer,
        float or bool dtype.
    method: how non-uint8 data reaches [0, 255]. "percentile": linearly map the image's own `low`..`high`
        percentiles (in %, over all colour channels together) to 0..255 and clip; "full-range": map the
        dtype's range (integers: iinfo min..max; floats: 0..1; bool: False/True) to 0..255.
        uint8 input is returned unchanged whatever the method; a constant image maps to 0.
    Returns: (H, W, 3) uint8 RGB, C-contiguous (a new array).
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] in (1, 2):
        a = a[:, :, 0]  # grey, or grey + alpha: drop the alpha
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]  # RGBA: drop the alpha
    elif not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise DataError(f"image array of shape {a.shape}; expected (H, W), (H, W, 1|2|3|4)")
    if method not in ("percentile", "full-range"):
        raise DataError(f"unknown scaling method {method!r}; expected 'percentile' or 'full-range'")
    if not 0.0 <= low < high <= 100.0:
        raise DataError(f"percentiles low={low}, high={high}; expected 0 <= low < high <= 100")
    if a.dtype == np.uint8:
        out = a
    elif a.dtype == np.bool_:
        out = a.astype(np.uint8) * np.uint8(255)
    elif a.dtype.kind not in "uif":
        raise DataError(f"image array of dtype {a.dtype}; expected an integer, float or bool dtype")
    else:
        out = scale_to_uint8(a, *intensity_range(a, method=method, low=low, high=high))
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out)


def intensity_range(a: np.ndarray, *, method: ScaleMethod = "percentile", low: float = 0.1,
                    high: float = 99.9) -> tuple[float, float]:
    """(lo, hi): the intensities `to_uint8_rgb` maps to 0 and 255 for a non-uint8 integer or float array (see
    there). Split out so that an image read by window (`asfyolo_rt.large`) is scaled with the whole image's
    range: the same lo, hi from a histogram reduce give the same pixels as `to_uint8_rgb` of the whole."""
    if method == "percentile":
        if a.dtype.kind in "iu" and a.dtype.itemsize <= 2:  # 8/16-bit: exact from a histogram, 5x faster
            return percentiles_from_hist(*window_histogram(a), (low, high))
        finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
        if finite.size == 0:
            return 0.0, 1.0
        lo, hi = (float(v) for v in np.percentile(finite, [low, high]))
        return lo, hi
    if a.dtype.kind == "f":
        return 0.0, 1.0
    info = np.iinfo(a.dtype)
    return float(info.min), float(info.max)


def window_histogram(window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values ascending, counts) of an integer window (every channel counted, as percentiles are joint)."""
    a = window.ravel()
    if a.size == 0:
        return np.zeros(0, a.dtype), np.zeros(0, np.int64)
    if a.dtype.itemsize <= 2:
        base = int(np.iinfo(a.dtype).min)
        counts = np.bincount((a.astype(np.int64) - base) if base else a, minlength=1)
        nz = np.nonzero(counts)[0]
        return (nz + base).astype(a.dtype), counts[nz].astype(np.int64)
    values, counts = np.unique(a, return_counts=True)
    return values, counts.astype(np.int64)


def percentiles_from_hist(values: np.ndarray, counts: np.ndarray, qs: tuple[float, float]) -> tuple[float, float]:
    """`numpy.percentile(a, qs)` (method "linear") of the array whose histogram is (values, counts), computed
    with numpy's own operations in its own order so that the result is identical, not just close."""
    n = int(counts.sum())
    if n == 0:
        return 0.0, 1.0
    q = np.true_divide(np.asarray(qs, np.float64), 100)
    virtual = (n - 1) * q
    prev = np.floor(virtual)
    nxt = prev + 1
    above = virtual >= n - 1
    prev_i = np.where(above, n - 1, prev).astype(np.int64)
    next_i = np.where(above, n - 1, nxt).astype(np.int64)
    gamma = virtual - np.where(above, -1.0, prev)  # numpy's gamma (unused where above: both values equal)
    cum = np.cumsum(counts)
    a = values[np.searchsorted(cum, prev_i, side="right")]
    b = values[np.searchsorted(cum, next_i, side="right")]
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5, casting="unsafe")
    return float(out[0]), float(out[1])


def scale_to_uint8(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """a (any shape, integer or float) linearly from lo..hi to 0..255, rounded and clipped; NaN -> 0; all 0
    when hi <= lo. Elementwise: a window of an image gives the same pixels as the whole image. 8/16-bit integers
    go through a table of every value (the same arithmetic, once per value)."""
    if a.dtype.kind in "iu" and a.dtype.itemsize <= 2 and a.size > 4 * 65536:
        info = np.iinfo(a.dtype)
        table = scale_to_uint8(np.arange(info.min, info.max + 1, dtype=a.dtype), lo, hi)
        return np.take(table, (a.astype(np.int32) - info.min) if info.min else a)
    if hi > lo:
        scaled = (a.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    else:
        scaled = np.zeros(a.shape, np.float32)
    return np.clip(np.nan_to_num(scaled, nan=0.0) + 0.5, 0, 255).astype(np.uint8)


def read_image(
    path: str | os.PathLike[str],
    *,
    method: ScaleMethod = "percentile",
    low: float = 0.1,
    high: float = 99.9,
) -> np.ndarray:
    """Read an image file as the model's input: (H, W, 3) uint8 RGB. See `to_uint8_rgb` for scaling."""
    return to_uint8_rgb(read_image_raw(path), method=method, low=low, high=high)


def pixel_hash(array: np.ndarray) -> str:
    """Hex digest identifying an image by its pixels (dtype and shape included), not its file bytes."""
    a = np.ascontiguousarray(array)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.data)
    return h.hexdigest()


def write_image(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write an image atomically; the format follows the suffix (.png, .jpg/.jpeg, .bmp, .tif/.tiff).

    array: (H, W) grayscale or (H, W, 3|4) RGB(A); uint8 or uint16 (TIFF: any dtype tifffile writes).
    PNG is encoded by `_png_bytes` where isal is installed, else by OpenCV (the same pixels, 4.5x slower).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    a = np.ascontiguousarray(array)
    if suffix in (".tif", ".tiff"):
        import tifffile

        buf = io.BytesIO()
        photometric = "rgb" if a.ndim == 3 else "minisblack"
        extrasamples = ("unassalpha",) if a.ndim == 3 and a.shape[2] == 4 else None
        tifffile.imwrite(buf, a, photometric=photometric, extrasamples=extrasamples)
        atomic_write_bytes(path, buf.getvalue())
        return
    if suffix not in IMAGE_SUFFIXES:
        raise DataError(f"{path}: cannot write images with suffix {suffix!r}; expected one of {IMAGE_SUFFIXES}")
    channels = a.shape[2] if a.ndim == 3 else 1
    if (suffix == ".png" and isal_zlib is not None and a.dtype.kind == "u" and a.itemsize <= 2 and a.ndim in (2, 3)
            and channels in _PNG_COLOUR_TYPE and a.size):
        atomic_write_bytes(path, _png_bytes(a))
        return
    if a.ndim == 3 and a.shape[2] == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = cv2.cvtColor(a, cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(suffix, a)
    if not ok:
        raise DataError(f"{path}: OpenCV could not encode an array of shape {array.shape} "
                        f"and dtype {array.dtype} as {suffix}")
    atomic_write_bytes(path, encoded.tobytes())


_PNG_COLOUR_TYPE = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type: grey, RGB, RGBA
_IDAT_MAX = 1 << 30  # bytes of deflate stream per IDAT chunk (PNG allows up to 2**31 - 1)


def _png_bytes(a: np.ndarray) -> bytes:
    """PNG file of a C-contiguous, non-empty (H, W) or (H, W, 1|3|4) uint8/uint16 array (16-bit: big-endian).

    Every scanline filtered SUB (one NumPy pass; 16-bit: after a byte swap) and deflated by ISA-L at level 1,
    which releases the GIL (two at once on two threads: 26 ms, as one alone). 2048 x 2048 RGB overlay (1687
    cells), deflate alone: SUB 25 ms, 3.52 MB; NONE 25 ms, 3.87 MB (UP as SUB); level 2 +0.5 ms for -0.01..0.07
    MB; level 0 23 ms, 4.1..4.4 MB; level 3 40 ms; stdlib zlib level 1 100 ms. OpenCV's whole encoder (libpng,
    zlib 1.2.13): 113 ms, 4.78 MB.
    """
    h, w = a.shape[:2]
    channels = a.shape[2] if a.ndim == 3 else 1
    bpp = channels * a.itemsize  # bytes per pixel: SUB subtracts the byte this far to the left
    raw = a.astype(a.dtype.newbyteorder(">"), copy=False).view(np.uint8).reshape(h, w * bpp)
    rows = np.empty((h, 1 + w * bpp), np.uint8)
    rows[:, 0] = 1  # filter type SUB
    rows[:, 1 : 1 + bpp] = raw[:, :bpp]
    np.subtract(raw[:, bpp:], raw[:, :-bpp], out=rows[:, 1 + bpp :])  # mod 256
    idat = memoryview(isal_zlib.compress(rows, 1))
    header = struct.pack(">IIBBBBB", w, h, 8 * a.itemsize, _PNG_COLOUR_TYPE[channels], 0, 0, 0)
    parts = [b"\x89PNG\r\n\x1a\n", *_png_chunk(b"IHDR", header)]
    for i in range(0, len(idat), _IDAT_MAX):
        parts += _png_chunk(b"IDAT", idat[i : i + _IDAT_MAX])
    return b"".join([*parts, *_png_chunk(b"IEND", b"")])


def _png_chunk(kind: bytes, data: bytes | memoryview) -> tuple[bytes, bytes | memoryview, bytes]:
    """A PNG chunk as its parts (length and type, data, CRC of type and data), to be joined once."""
    crc = isal_zlib.crc32(data, isal_zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind, data, struct.pack(">I", crc)


_UNIT_UM = {"m": 1e6, "mm": 1e3, "cm": 1e4, "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0,
            "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3, "\\u00b5m": 1.0}


def read_pixel_size(path: str | os.PathLike[str]) -> float | None:
    """Physical pixel size (micrometres per pixel, along x) recorded in an image file, or None.

    Read from OME-TIFF (`PhysicalSizeX` with `PhysicalSizeXUnit`, default µm), ImageJ TIFF (the
    `unit` entry with the XResolution tag) or a plain TIFF whose ResolutionUnit is centimetre. Inch
    resolutions are left out (72/96/300 dpi are screen or print defaults, not a microscope's), and
    nothing is ever guessed: files without one give None.
    """
    p = Path(path)
    if p.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        import tifffile

        with tifffile.TiffFile(p) as tif:
            if tif.ome_metadata:
                return _ome_pixel_size(tif.ome_metadata)
            page = tif.pages[0]
            xres = page.tags.get("XResolution")  # type: ignore[union-attr]
            ppu = None
            if xres is not None:
                num, den = xres.value
                ppu = num / den if den else None
            ij = tif.imagej_metadata or {}
            unit = str(ij.get("unit", "")).strip().lower()
            if ppu and unit in _UNIT_UM:
                return _sane(_UNIT_UM[unit] / ppu)
            runit = page.tags.get("ResolutionUnit")  # type: ignore[union-attr]
            if ppu and runit is not None and int(runit.value) == 3:  # centimetre
                return _sane(1e4 / ppu)
    except Exception:  # unreadable metadata never blocks reading the pixels (read_image reports those)
        return None
    return None


def _ome_pixel_size(xml: str) -> float | None:
    import re

    m = re.search(r"<(?:\w+:)?Pixels\b[^>]*>", xml)
    if not m:
        return None
    tag = m.group(0)
    size = re.search(r'PhysicalSizeX="([^"]+)"', tag)
    if not size:
        return None
    unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tag)
    factor = _UNIT_UM.get((unit.group(1) if unit else "µm").strip().lower())
    try:
        return _sane(float(size.group(1)) * factor) if factor else None
    except ValueError:
        return None


def _sane(um: float) -> float | None:
    return float(um) if np.isfinite(um) and 1e-4 < um < 1e4 else None
