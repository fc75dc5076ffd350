"""GT masks from polygons (per instance and overlap index map) and polygons from masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from asfyolo_rt.data.masks import (
    mask_to_polygon,
    masks_to_polygons,
    polygon_areas,
    polygons_to_index_map,
    polygons_to_masks,
)
from asfyolo_rt.errors import DataError


def square(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def reference_masks(polys: list[np.ndarray], shape: tuple[int, int], d: int) -> np.ndarray:
    """Whole-image rasterisation then cv2.resize: what the crop optimisation must reproduce."""
    out = []
    for p in polys:
        m = np.zeros(shape, np.uint8)
        cv2.fillPoly(m, [np.round(p).astype(np.int32)], 1)
        out.append(m if d == 1 else cv2.resize(m, (shape[1] // d, shape[0] // d)))
    return np.array(out).reshape(len(polys), shape[0] // d, shape[1] // d)


def random_polygons(rng: np.random.Generator, n: int, shape: tuple[int, int]) -> list[np.ndarray]:
    polys = []
    for _ in range(n):
        c = rng.uniform(-10, [shape[1] + 10, shape[0] + 10])  # some partly outside the image
        r = rng.uniform(0.5, 40)
        t = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 12)))
        polys.append(np.stack([c[0] + r * np.cos(t), c[1] + r * np.sin(t)], 1))
    return polys


@pytest.mark.parametrize("shape", [(160, 192), (161, 190)])  # divisible by 1, 2, 4, 8 / not divisible
@pytest.mark.parametrize("d", [1, 2, 4, 8])
def test_crop_rasterisation_equals_whole_image(shape: tuple[int, int], d: int) -> None:
    polys = random_polygons(np.random.default_rng(d), 40, shape)
    masks = polygons_to_masks(polys, shape, downsample=d)
    assert masks.dtype == np.uint8 and masks.shape == (40, shape[0] // d, shape[1] // d)
    np.testing.assert_array_equal(masks, reference_masks(polys, shape, d))
    assert set(np.unique(masks)) <= {0, 1}


def test_square_fills_inclusive_pixels_and_rounds_vertices() -> None:
    m = polygons_to_masks([square(2, 3, 5, 6)], (10, 10))[0]
    assert m.sum() == 16 and m[3:7, 2:6].all()
    # 4.9999 rounds to 5 (truncation would give 4)
    m2 = polygons_to_masks([square(1.9999, 2.9999, 4.9999, 5.9999)], (10, 10))[0]
    np.testing.assert_array_equal(m, m2)
    np.testing.assert_array_equal(polygon_areas([square(2, 3, 5, 6), square(0, 0, 1, 1)], (10, 10)), [16, 4])


def test_downsampled_square() -> None:
    m = polygons_to_masks([square(8, 8, 23, 23)], (32, 32), downsample=4)[0]
    expected = np.zeros((8, 8), np.uint8)
    expected[2:6, 2:6] = 1
    np.testing.assert_array_equal(m, expected)


def test_index_map_smaller_overwrites_larger() -> None:
    big, small, other = square(0, 0, 19, 19), square(5, 5, 9, 9), square(25, 25, 30, 28)
    index_map, order = polygons_to_index_map([small, other, big], (32, 32))
    np.testing.assert_array_equal(order, [2, 0, 1])  # areas: big 400, small 5x5 = 25, other 6x4 = 24
    assert index_map.dtype == np.int32
    assert (index_map[5:10, 5:10] == 2).all()  # small (input 0) painted over big (id 1)
    assert index_map[0, 0] == 1 and index_map[25, 25] == 3 and index_map[31, 31] == 0
    assert (index_map == 1).sum() == 400 - 25
    masks = polygons_to_masks([small, other, big], (32, 32))
    for painted_id, idx in enumerate(order, 1):
        visible = index_map == painted_id
        assert (masks[idx][visible] == 1).all()


def test_index_map_order_by_area_with_ties_and_downsample() -> None:
    a, b, c = square(0, 0, 7, 7), square(16, 16, 23, 23), square(0, 16, 15, 31)
    index_map, order = polygons_to_index_map([a, b, c], (32, 32), downsample=4)
    assert index_map.shape == (8, 8)
    np.testing.assert_array_equal(order, [2, 0, 1])  # c largest; a and b tie -> input order
    np.testing.assert_array_equal(np.unique(index_map), [0, 1, 2, 3])
    empty_map, empty_order = polygons_to_index_map([], (32, 32), downsample=4)
    assert empty_map.shape == (8, 8) and not empty_map.any() and empty_order.shape == (0,)


def test_masks_to_polygons_round_trip() -> None:
    masks = np.zeros((3, 60, 80), np.uint8)
    cv2.ellipse(masks[0], (30, 20), (15, 9), 30, 0, 360, 1, -1)
    cv2.rectangle(masks[1], (50, 30), (70, 55), 1, -1)
    masks[2, 5, 5] = 1  # a single pixel: fewer than 3 contour points
    polys = masks_to_polygons(masks)
    assert len(polys) == 3 and polys[2].shape == (0, 2)
    assert polys[1].dtype == np.float32
    np.testing.assert_array_equal(sorted(map(tuple, polys[1].tolist())),
                                  sorted([(50.0, 30.0), (50.0, 55.0), (70.0, 55.0), (70.0, 30.0)]))
    back = polygons_to_masks(polys[:2], (60, 80))
    np.testing.assert_array_equal(back, masks[:2])  # filled contours reproduce the masks exactly


def test_mask_to_polygon_keeps_largest_part_and_offsets() -> None:
    m = np.zeros((20, 20), np.uint8)
    m[1:4, 1:4] = 1
    m[8:18, 8:18] = 1
    poly = mask_to_polygon(m, offset=(100, 200))
    assert poly.min(0).tolist() == [108, 208] and poly.max(0).tolist() == [117, 217]
    assert mask_to_polygon(np.zeros((5, 5))).shape == (0, 2)


def test_bad_arguments() -> None:
    with pytest.raises(DataError, match="downsample"):
        polygons_to_masks([square(0, 0, 3, 3)], (8, 8), downsample=0)
    with pytest.raises(DataError, match=r"\(K, 2\)"):
        polygons_to_masks([np.zeros((3, 3))], (8, 8))
    with pytest.raises(DataError, match="shape"):
        polygons_to_masks([], (8,))
    with pytest.raises(DataError, match="smaller than"):
        polygons_to_masks([], (4, 4), downsample=8)
