"""Augmentation keeps images, polygons and boxes aligned (mosaic, affine, flips)."""

from __future__ import annotations

import numpy as np
import pytest

from asfyolo_rt.train.augment import (
    Instances,
    augment_sample,
    flip,
    keep_candidates,
    polygon_boxes,
    resample_polygons,
)
from asfyolo_rt.train.config import AugmentConfig

from ._synthetic import blob, colour_mask, coloured_image, fill, iou

NO_COLOUR = {"hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0}


def test_resample_polygons_keeps_vertices_and_edges() -> None:
    square = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], np.float32)
    tri = np.array([[10, 10], [13, 10], [10, 14]], np.float32)
    out = resample_polygons([square, tri], 9)
    assert out.shape == (2, 9, 2)
    # 9 points over 4 closed edges -> every 0.5 vertex step: vertices at even positions
    np.testing.assert_allclose(out[0, ::2], np.vstack([square, square[:1]]), atol=1e-5)
    np.testing.assert_allclose(out[0, 1], [2, 0], atol=1e-5)
    np.testing.assert_allclose(out[1, 0], tri[0])
    assert resample_polygons([], 5).shape == (0, 5, 2)


def test_polygon_boxes_use_points_inside_only() -> None:
    polys = np.array([[[-5, 2], [3, 2], [3, 6]], [[20, 20], [30, 30], [25, 40]]], np.float32)
    boxes = polygon_boxes(polys, 10, 10)
    np.testing.assert_allclose(boxes[0], [3, 2, 3, 6])
    np.testing.assert_allclose(boxes[1], [0, 0, 0, 0])


def test_keep_rules() -> None:
    cfg = AugmentConfig()
    before = np.array([[0, 0, 10, 10]] * 4, np.float32)
    after = np.array([[0, 0, 10, 10], [0, 0, 2, 10], [0, 0, 0.9, 0.9], [0, 0, 3, 3]], np.float32)
    # scale 1: kept; too narrow (w = 2 is not > 2); too small; area ratio 0.09 > 0.01 -> kept
    assert keep_candidates(before, after, 1.0, cfg).tolist() == [True, False, False, True]
    assert keep_candidates(before[:1], np.array([[0, 0, 3, 3]], np.float32), 4.0, cfg).tolist() == [False]


def test_flip_moves_boxes_and_polygons() -> None:
    img = np.zeros((4, 10, 3), np.uint8)
    img[:, 1] = 255
    inst = Instances(np.zeros(1, np.int64), np.array([[[1.0, 1.0], [2.0, 3.0]]], np.float32),
                     np.array([[1, 1, 2, 3]], np.float32))
    out, f = flip(img, inst, horizontal=True)
    assert out[0, 8, 0] == 255  # column 1 -> column 10 - 1 - 1 = 8
    np.testing.assert_allclose(f.polygons[0], [[8, 1], [7, 3]])  # pixel-centre coordinates: x -> 9 - x
    np.testing.assert_allclose(f.boxes[0], [7, 1, 8, 3])


def _tiles(rng: np.random.Generator, size: int) -> list[tuple[np.ndarray, Instances]]:
    tiles = []
    for k, shape in enumerate([(size, size), (size * 3 // 4, size), (size, size // 2), (size // 2, size)]):
        h, w = shape
        poly = blob(rng, (w / 2, h / 2), min(h, w) * 0.35)
        tiles.append((coloured_image(shape, [poly], [k]), Instances(np.array([k]), [poly])))
    return tiles


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("use_mosaic", [True, False])
def test_polygons_stay_on_their_pixels(seed: int, use_mosaic: bool) -> None:
    size = 128
    rng = np.random.default_rng(seed)
    tiles = _tiles(rng, size)
    cfg = AugmentConfig(degrees=15.0, shear=3.0, flipud=0.5, fliplr=0.5, **NO_COLOUR)
    img, inst = augment_sample(tiles if use_mosaic else tiles[:1], size, cfg, rng, use_mosaic=use_mosaic)
    assert img.shape == (size, size, 3) and inst.polygons.shape[1:] == (1000, 2)
    checked = 0
    for cls, poly, box in zip(inst.classes, inst.polygons, inst.boxes):
        truth = colour_mask(img, int(cls))
        if truth.sum() < 80:  # mostly cut away
            continue
        # blended edge pixels fall outside the colour test: a 1-px ring matters more for small blobs
        assert iou(fill(poly, (size, size)), truth) > (0.9 if truth.sum() >= 300 else 0.8)
        ys, xs = np.nonzero(truth)
        np.testing.assert_allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=2.5)
        checked += 1
    # every instance whose colour survives in the image is present among the outputs
    for k in range(4 if use_mosaic else 1):
        if colour_mask(img, k).sum() >= 80:
            assert k in inst.classes.tolist()
    assert checked >= 1


def test_augmentation_is_a_function_of_the_generator() -> None:
    size = 64
    tiles = _tiles(np.random.default_rng(0), size)
    a = augment_sample(tiles, size, AugmentConfig(), np.random.default_rng(5), use_mosaic=True)
    b = augment_sample(tiles, size, AugmentConfig(), np.random.default_rng(5), use_mosaic=True)
    c = augment_sample(tiles, size, AugmentConfig(), np.random.default_rng(6), use_mosaic=True)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1].polygons, b[1].polygons)
    assert not np.array_equal(a[0], c[0])
