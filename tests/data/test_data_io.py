"""Image reading: formats, bit depths, channel layouts, the uint8 RGB conversion, broken files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from asfyolo_rt.data import io as data_io
from asfyolo_rt.data.io import image_size, pixel_hash, read_image, read_image_raw, to_uint8_rgb, write_image
from asfyolo_rt.errors import DataError

RNG = np.random.default_rng(0)
GREY8 = RNG.integers(0, 256, (37, 53), dtype=np.uint8)
GREY16 = RNG.integers(0, 65536, (37, 53), dtype=np.uint16)
RGB8 = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
RGBA8 = RNG.integers(0, 256, (37, 53, 4), dtype=np.uint8)
RGB16 = RNG.integers(0, 65536, (37, 53, 3), dtype=np.uint16)


def _cv2_write(path: Path, rgb_or_grey: np.ndarray) -> Path:
    """Write with OpenCV directly (BGR order), independent of write_image."""
    a = rgb_or_grey
    if a.ndim == 3:
        a = a[:, :, [2, 1, 0, 3][: a.shape[2]]]
    assert cv2.imwrite(str(path), a)
    return path


# Lossless formats written by OpenCV or tifffile: read_image_raw must return exactly what was stored.
@pytest.mark.parametrize(
    ("name", "array"),
    [
        ("g8.png", GREY8), ("g16.png", GREY16), ("rgb8.png", RGB8), ("rgba8.png", RGBA8), ("rgb16.png", RGB16),
        ("g8.bmp", GREY8), ("rgb8.bmp", RGB8),
    ],
)
def test_read_raw_lossless_opencv_formats(tmp_path: Path, name: str, array: np.ndarray) -> None:
    path = _cv2_write(tmp_path / name, array)
    raw = read_image_raw(path)
    assert raw.dtype == array.dtype
    np.testing.assert_array_equal(raw, array)
    assert image_size(path) == array.shape[:2]


@pytest.mark.parametrize(
    ("array", "kwargs"),
    [
        (GREY8, {}), (GREY16, {}), (RGB8, {"photometric": "rgb"}), (RGB16, {"photometric": "rgb"}),
        (np.ascontiguousarray(np.moveaxis(RGB8, -1, 0)), {"photometric": "rgb", "planarconfig": "separate"}),
        (GREY16[None], {}),  # a single-page stack (1, H, W)
    ],
)
def test_read_raw_tiff(tmp_path: Path, array: np.ndarray, kwargs: dict) -> None:
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, array, **kwargs)
    raw = read_image_raw(path)
    if kwargs.get("planarconfig"):
        expected = np.moveaxis(array, 0, -1)
    elif array.ndim == 3 and array.shape[0] == 1:
        expected = array[0]
    else:
        expected = array
    np.testing.assert_array_equal(raw, expected)
    assert image_size(path) == raw.shape[:2]


def test_tiff_stack_is_rejected_with_shape(tmp_path: Path) -> None:
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((5, 20, 30), np.uint16))
    with pytest.raises(DataError, match=r"stack\.tif.*\(5, 20, 30\)"):
        read_image_raw(path)


def test_channel_order_is_rgb(tmp_path: Path) -> None:
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    for suffix in (".png", ".bmp", ".jpg"):
        path = _cv2_write(tmp_path / f"red{suffix}", red)
        img = read_image(path)
        assert img[..., 0].min() > 240 and img[..., 1:].max() < 15, suffix


def test_jpeg_reads_close_to_source(tmp_path: Path) -> None:
    smooth = cv2.GaussianBlur(RGB8, (0, 0), 3)
    path = _cv2_write(tmp_path / "x.jpeg", smooth)
    img = read_image(path)
    assert img.shape == smooth.shape and img.dtype == np.uint8
    assert np.abs(img.astype(int) - smooth).mean() < 4
    assert image_size(path) == (37, 53)


def test_uint8_passes_through_unchanged() -> None:
    for method in ("percentile", "full-range"):
        np.testing.assert_array_equal(to_uint8_rgb(RGB8, method=method), RGB8)
    out = to_uint8_rgb(GREY8)
    assert out.shape == (37, 53, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], GREY8)


def test_rgba_drops_alpha() -> None:
    np.testing.assert_array_equal(to_uint8_rgb(RGBA8), RGBA8[..., :3])
    grey_alpha = np.stack([GREY8, 255 - GREY8], axis=-1)
    np.testing.assert_array_equal(to_uint8_rgb(grey_alpha)[..., 1], GREY8)


def test_16bit_percentile_scaling_is_not_truncation() -> None:
    # A dim 16-bit image (values 1000..5000): truncating to the low byte wraps; >> 8 gives 3..19.
    ramp = np.linspace(1000, 5000, 10001).astype(np.uint16).reshape(1, -1)
    out = to_uint8_rgb(ramp)[0, :, 0].astype(int)
    assert out.min() == 0 and out.max() == 255
    assert abs(out[5000] - 128) <= 1  # the median maps to the middle
    assert np.all(np.diff(out) >= 0)  # monotonic, no wrap-around
    lo, hi = np.percentile(ramp, [0.1, 99.9])
    assert out[0] == 0 and out[-1] == 255 and np.isclose((ramp[0, 5000] - lo) / (hi - lo) * 255, 127.5, atol=1)


def test_16bit_full_range_and_custom_percentiles() -> None:
    a = np.array([[0, 32768, 65535]], np.uint16)
    np.testing.assert_array_equal(to_uint8_rgb(a, method="full-range")[0, :, 0], [0, 128, 255])
    ramp = np.arange(101, dtype=np.uint16).reshape(1, -1) * 100
    out = to_uint8_rgb(ramp, low=10, high=90)[0, :, 0]
    assert out[10] == 0 and out[90] == 255 and out[50] == 128 and out[0] == 0 and out[100] == 255


def test_float_bool_constant_and_colour_balance() -> None:
    f = np.array([[0.0, 0.5, 1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(to_uint8_rgb(f, method="full-range")[0, :, 0], [0, 128, 255, 255])
    np.testing.assert_array_equal(to_uint8_rgb(np.array([[True, False]]))[0, :, 0], [255, 0])
    assert to_uint8_rgb(np.full((3, 3), 700, np.uint16)).max() == 0
    # percentiles are joint over channels: a dim blue channel stays dimmer than a bright red one
    rgb = np.zeros((10, 10, 3), np.uint16)
    rgb[..., 0], rgb[..., 2] = 4000, 1000
    out = to_uint8_rgb(rgb)
    assert out[0, 0, 0] > out[0, 0, 2] > out[0, 0, 1]


def test_to_uint8_rgb_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="shape"):
        to_uint8_rgb(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(DataError, match="method"):
        to_uint8_rgb(GREY16, method="log")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="percentiles"):
        to_uint8_rgb(GREY16, low=50, high=10)


def test_read_image_16bit_png_uses_percentiles(tmp_path: Path) -> None:
    dim = (GREY16 // 16 + 100).astype(np.uint16)  # 100..4195
    path = _cv2_write(tmp_path / "dim.png", dim)
    img = read_image(path)
    assert img.dtype == np.uint8 and img.shape == (37, 53, 3)
    assert img.max() == 255 and img.min() == 0
    np.testing.assert_array_equal(read_image(path, method="full-range")[..., 0],
                                  np.clip(dim / 65535 * 255 + 0.5, 0, 255).astype(np.uint8))


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif"])
def test_truncated_files_raise_dataerror_naming_the_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"broken{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, RGB16, photometric="rgb")
    else:
        _cv2_write(path, cv2.GaussianBlur(RGB8, (0, 0), 2))
    _truncate(path)
    with pytest.raises(DataError, match=f"broken\\{suffix}"):
        read_image_raw(path)


def test_empty_garbage_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"this is not an image at all")
    for name, pattern in [("empty.png", "empty"), ("junk.png", "not a PNG"), ("missing.png", "cannot read")]:
        with pytest.raises(DataError, match=pattern) as info:
            read_image_raw(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(DataError, match="junk.png"):
        image_size(tmp_path / "junk.png")


def test_corrupt_png_body_raises(tmp_path: Path) -> None:
    path = _cv2_write(tmp_path / "x.png", RGB8)
    data = bytearray(path.read_bytes())
    data[60:200] = bytes(140)  # zero out compressed data, keep the IEND chunk
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="x.png"):
        read_image_raw(path)


@pytest.mark.parametrize(
    ("name", "array"),
    [("a.png", GREY16), ("b.png", RGBA8), ("c.tif", RGBA8), ("d.tiff", GREY16), ("e.bmp", RGB8), ("f.png", RGB8)],
)
def test_write_image_round_trip(tmp_path: Path, name: str, array: np.ndarray) -> None:
    write_image(tmp_path / "sub" / name, array)
    np.testing.assert_array_equal(read_image_raw(tmp_path / "sub" / name), array)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == [name]  # no temporary file left behind


def _png_cases() -> list[np.ndarray]:
    """Every kind of array write_image's PNG encoder takes, at odd sizes (one pixel, one row, one column)."""
    rng = np.random.default_rng(7)
    kinds = [((), np.uint8), ((), np.uint16), ((3,), np.uint8), ((4,), np.uint8), ((3,), np.uint16), ((1,), np.uint8)]
    return [rng.integers(0, np.iinfo(dtype).max + 1, (h, w, *channels), dtype=dtype)
            for h, w in ((1, 1), (3, 5), (1, 9), (7, 1), (37, 53)) for channels, dtype in kinds]


PNG_CASES = _png_cases()


def _decoded_by_opencv(path: Path) -> np.ndarray:
    """The PNG's pixels as OpenCV (libpng) decodes them, in RGB(A) order."""
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert a is not None, path
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_BGR2RGB if a.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    return a


def _as_stored(array: np.ndarray) -> np.ndarray:
    """What a PNG of `array` decodes to: (H, W, 1) is grey (H, W)."""
    return array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array


@pytest.mark.parametrize("array", PNG_CASES, ids=lambda a: f"{'x'.join(map(str, a.shape))}-{a.dtype}")
def test_png_decodes_to_the_array_written(tmp_path: Path, array: np.ndarray) -> None:
    path = tmp_path / "x.png"
    write_image(path, array)
    assert data_io.isal_zlib is not None  # the ISA-L encoder wrote it (isal is a dependency)
    np.testing.assert_array_equal(_decoded_by_opencv(path), _as_stored(array))
    np.testing.assert_array_equal(read_image_raw(path), _as_stored(array))
    Image = pytest.importorskip("PIL.Image")
    if array.dtype == np.uint8 or array.ndim == 2:  # Pillow has no 16-bit colour mode
        with Image.open(path) as im:
            im.load()  # Pillow checks every chunk's CRC and the deflate stream
            np.testing.assert_array_equal(np.asarray(im), _as_stored(array))


def test_png_without_isal_has_the_same_pixels(tmp_path: Path) -> None:
    """A platform without an isal wheel: `import isal` fails, OpenCV encodes the same pixels."""
    for i, array in enumerate(PNG_CASES):
        np.save(tmp_path / f"{i}.npy", array)
    code = ("import sys; sys.modules['isal'] = None\n"  # Python's documented way to make an import fail
            "from pathlib import Path; import numpy as np; from asfyolo_rt.data import io\n"
            "assert io.isal_zlib is None\n"
            "for p in Path(sys.argv[1]).glob('*.npy'): io.write_image(p.with_suffix('.png'), np.load(p))\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, env={**os.environ, "PYTHONPATH": ""})
    for i, array in enumerate(PNG_CASES):
        path = tmp_path / f"{i}.png"
        np.testing.assert_array_equal(_decoded_by_opencv(path), _as_stored(array))
        write_image(tmp_path / "isal.png", array)
        assert path.read_bytes() != (tmp_path / "isal.png").read_bytes()  # two encoders, one picture


def test_png_replaces_an_existing_file_atomically(tmp_path: Path) -> None:
    path, before = tmp_path / "x.png", tmp_path / "before.png"
    write_image(path, RGB8)
    os.link(path, before)  # the old file's bytes stay under this name if it is replaced, not rewritten in place
    old = path.read_bytes()
    write_image(path, RGB8[::-1])
    assert before.read_bytes() == old and not os.path.samefile(path, before)
    np.testing.assert_array_equal(read_image_raw(path), RGB8[::-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["before.png", "x.png"]  # no temporary file left


def test_pixel_hash_ignores_container() -> None:
    assert pixel_hash(RGB8) == pixel_hash(RGB8.copy())
    assert pixel_hash(RGB8) != pixel_hash(RGB8[:, :, ::-1])
    assert pixel_hash(GREY8) != pixel_hash(GREY8.astype(np.uint16))


@pytest.mark.datasets
def test_read_shared_dataset_images(datasets_root: Path) -> None:
    for ds in ("DSB2018", "BCC"):
        path = min((datasets_root / ds / "images" / "val").iterdir())
        img = read_image(path)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(img, bgr[:, :, ::-1])
        assert image_size(path) == img.shape[:2]
