"""Letterbox pre-processing: official rect shapes, resize/pad semantics, the inverse transform."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from asfyolo_rt.data.letterbox import LetterboxTransform, letterbox, preprocess, rect_shape, rect_shape_batch
from asfyolo_rt.errors import DataError

RNG = np.random.default_rng(0)


# (h, w) -> official batch shape at 640 / stride 32 / pad 0.5, worked by hand:
# ceil(aspect * 20 + 0.5) * 32 with aspect = h/w for wide images (e.g. 520/696 * 20 + 0.5 = 15.44 -> 16 -> 512).
@pytest.mark.parametrize(
    ("hw", "expected"),
    [((256, 256), (672, 672)), ((520, 696), (512, 672)), ((696, 520), (672, 512)), ((603, 1272), (320, 672)),
     ((512, 640), (544, 672)), ((1024, 1024), (672, 672))],
)
def test_rect_shape(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    assert rect_shape(*hw) == expected


def test_rect_shape_batch_uses_extreme_aspects() -> None:
    # all wide: the least wide (max h/w) decides; all tall: the least tall; mixed: square
    assert rect_shape_batch([(520, 696), (256, 320)]) == (544, 672)  # max ar 0.8
    assert rect_shape_batch([(696, 520), (320, 256)]) == (544, 672)[::-1]
    assert rect_shape_batch([(520, 696), (696, 520)]) == (672, 672)
    assert rect_shape(256, 256, img_size=320) == (352, 352)
    with pytest.raises(DataError):
        rect_shape_batch([])


def test_official_val_letterbox_square_image() -> None:
    img = RNG.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    out, t = letterbox(img, rect_shape(256, 256), size=640)
    assert out.shape == (672, 672, 3) and out.dtype == np.uint8
    assert t == LetterboxTransform(scale=2.5, pad=(16.0, 16.0), orig_shape=(256, 256), net_shape=(672, 672))
    np.testing.assert_array_equal(out[16:656, 16:656], cv2.resize(img, (640, 640), interpolation=cv2.INTER_LINEAR))
    border = np.ones((672, 672), bool)
    border[16:656, 16:656] = False
    assert (out[border] == 114).all()


def test_official_val_letterbox_wide_image_ceil_and_area() -> None:
    img = RNG.integers(0, 256, (520, 696, 3), dtype=np.uint8)
    out, t = letterbox(img, rect_shape(520, 696), size=640)
    # long side exactly 640 (696 * 640/696 is 640.0000000000001 in floats), short side ceil(478.16) = 479
    assert out.shape == (512, 672, 3)
    assert t.pad == (16.0, 16.0) and t.scale == pytest.approx(640 / 696)
    np.testing.assert_array_equal(out[16:495, 16:656], cv2.resize(img, (640, 479), interpolation=cv2.INTER_AREA))
    assert (out[495:] == 114).all() and (out[:16] == 114).all()  # odd padding: 16 top, 17 bottom


def test_letterbox_default_fits_shape_and_scaleup() -> None:
    img = RNG.integers(0, 256, (100, 50), dtype=np.uint8)  # grey, tall
    out, t = letterbox(img, 64)
    assert out.shape == (64, 64) and t.scale == pytest.approx(0.64) and t.pad == (16.0, 0.0)
    out, t = letterbox(img, (300, 200), scaleup=False)
    assert t.scale == 1.0 and t.pad == (75.0, 100.0)
    np.testing.assert_array_equal(out[100:200, 75:125], img)
    single = img[:, :, None]
    assert letterbox(single, 64)[0].shape == (64, 64, 1)
    assert (letterbox(img[:, :, None].repeat(3, 2), 64, color=0)[0][:, :16] == 0).all()


def test_letterbox_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="does not fit"):
        letterbox(np.zeros((256, 256, 3), np.uint8), (512, 672), size=640)
    with pytest.raises(DataError, match="shape"):
        letterbox(np.zeros((0, 5, 3), np.uint8), 64)
    with pytest.raises(DataError, match="shape"):
        letterbox(np.zeros((5, 5, 3), np.uint8), (64, 64, 3))  # type: ignore[arg-type]


def test_transform_round_trip_numpy_and_torch() -> None:
    t = LetterboxTransform(scale=640 / 696, pad=(16.0, 16.5), orig_shape=(520, 696), net_shape=(512, 672))
    boxes = np.array([[10, 20, 300.5, 400], [0, 0, 696, 520]], np.float32)
    net = t.boxes_to_network(boxes)
    np.testing.assert_allclose(net[0], [10 * 640 / 696 + 16, 20 * 640 / 696 + 16.5, 300.5 * 640 / 696 + 16,
                                        400 * 640 / 696 + 16.5], rtol=1e-6)
    np.testing.assert_allclose(t.boxes_to_original(net), boxes, atol=1e-3)
    assert net.dtype == np.float32 and isinstance(net, np.ndarray)
    tb = torch.tensor(boxes, dtype=torch.float64)
    back = t.boxes_to_original(t.boxes_to_network(tb))
    assert isinstance(back, torch.Tensor) and back.dtype == torch.float64
    torch.testing.assert_close(back, tb)
    pts = torch.tensor([[[1.0, 2.0]]])
    torch.testing.assert_close(t.points_to_original(t.points_to_network(pts)), pts)
    assert t.boxes_to_network(np.array([[1, 2, 3, 4]])).dtype == np.float32  # ints become float


def test_boxes_to_original_clips_and_does_not_modify_input() -> None:
    t = LetterboxTransform(scale=2.0, pad=(10.0, 0.0), orig_shape=(100, 50), net_shape=(200, 120))
    net = torch.tensor([[0.0, -5.0, 130.0, 250.0]])
    out = t.boxes_to_original(net)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, 50.0, 100.0]]))
    assert net[0, 0] == 0.0 and net[0, 2] == 130.0
    assert t.content_box() == (10.0, 0.0, 110.0, 200.0)
    with pytest.raises(DataError, match=r"\(\.\.\., 4\)"):
        t.boxes_to_original(np.zeros((3, 5)))


def test_letterboxed_pixel_lands_where_transform_says() -> None:
    img = np.zeros((300, 400, 3), np.uint8)
    img[100:110, 200:210] = 255  # a white square, box (200, 100, 210, 110)
    out, t = letterbox(img, 640)
    ys, xs = np.nonzero(out[..., 0] > 127)
    x1, y1, x2, y2 = t.boxes_to_network(np.array([[200.0, 100.0, 210.0, 110.0]]))[0]
    assert abs(xs.min() - x1) <= 1 and abs(xs.max() + 1 - x2) <= 1
    assert abs(ys.min() - y1) <= 1 and abs(ys.max() + 1 - y2) <= 1


def test_preprocess_batch() -> None:
    imgs = [RNG.integers(0, 256, (256, 256, 3), dtype=np.uint8), RNG.integers(0, 256, (100, 300, 3), dtype=np.uint8)]
    x, ts = preprocess(imgs, (320, 320))
    assert x.shape == (2, 3, 320, 320) and x.dtype == torch.float32 and x.is_contiguous()
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    expected, t1 = letterbox(imgs[1], 320)
    torch.testing.assert_close(x[1], torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    assert ts[1] == t1 and ts[0].scale == 1.25
    # channel 0 is R: a pure red image keeps red in channel 0
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    xr, _ = preprocess([red], 8)
    assert float(xr[0, 0].min()) == 1.0 and float(xr[0, 1:].max()) == 0.0
    xv, tv = preprocess([imgs[0]], rect_shape(256, 256), size=640)
    assert xv.shape == (1, 3, 672, 672) and tv[0].pad == (16.0, 16.0)


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.uint16), np.zeros((8, 8, 4), np.uint8)])
def test_preprocess_rejects_non_rgb8(bad: np.ndarray) -> None:
    with pytest.raises(DataError, match=r"expected \(H, W, 3\) uint8 RGB"):
        preprocess([bad], 32)


def test_linear_interpolation_is_the_prediction_letterbox() -> None:
    """interpolation="linear" shrinks with INTER_LINEAR (the official prediction letterbox), "area" with
    INTER_AREA (validation); both place the image identically, and a bad name is refused."""
    img = np.random.default_rng(3).integers(0, 256, (603, 1272, 3), dtype=np.uint8)
    lin, t_lin = letterbox(img, 320, interpolation="linear")
    area, t_area = letterbox(img, 320)
    assert t_lin == t_area
    top, nh = int(t_lin.pad[1]), 152  # 603 * 320 / 1272 = 151.7 -> 152 rows
    np.testing.assert_array_equal(lin[top : top + nh], cv2.resize(img, (320, 152), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_array_equal(area[top : top + nh], cv2.resize(img, (320, 152), interpolation=cv2.INTER_AREA))
    assert not np.array_equal(lin, area)
    x, _ = preprocess([img], 320, interpolation="linear")
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy() * 255, lin.astype(np.float32), atol=1e-3)
    with pytest.raises(DataError, match="interpolation"):
        letterbox(img, 320, interpolation="cubic")
