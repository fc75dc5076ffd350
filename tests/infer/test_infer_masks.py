"""Mask assembly: crop rule at prototype resolution, threshold, the upsampled and original variants."""

from __future__ import annotations

import pytest
import torch

from asfyolo_rt.errors import DataError
from asfyolo_rt.infer.masks import (
    crop_masks,
    process_masks_original,
    process_masks_proto,
    process_masks_upsampled,
    resize_gt_masks,
)


def test_proto_mask_crop_rule_and_scale():
    protos = torch.ones(1, 8, 8)  # logit 1 everywhere -> sigmoid 0.73 > 0.5
    coeffs = torch.ones(1, 1)
    # network box (8, 4)-(20, 13) on a 32x32 input -> proto box (2, 1)-(5, 3.25)
    masks = process_masks_proto(protos, coeffs, torch.tensor([[8.0, 4.0, 20.0, 13.0]]), (32, 32))
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[1:4, 2:5] = True  # rows 1..3 (3 < 3.25), cols 2..4 (c < 5)
    assert masks.dtype == torch.bool and masks.shape == (1, 8, 8)
    assert torch.equal(masks[0], expected)


def test_proto_mask_threshold_and_linear_combination():
    protos = torch.zeros(2, 4, 4)
    protos[0, :, :2] = 1.0   # left half
    protos[1, :2, :] = 1.0   # top half
    coeffs = torch.tensor([[1.0, -1.0], [0.0, 0.0]])  # left minus top; second: logit 0 -> exactly 0.5
    masks = process_masks_proto(protos, coeffs, torch.tensor([[0.0, 0, 16, 16], [0, 0, 16, 16]]), (16, 16))
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[2:, :2] = True  # left and not top
    assert torch.equal(masks[0], expected)
    assert not masks[1].any()  # 0.5 is not > 0.5


def test_proto_masks_non_square_network_shape():
    protos = torch.ones(1, 4, 8)  # (Hp, Wp) for a 16x32 input
    m = process_masks_proto(protos, torch.ones(1, 1), torch.tensor([[4.0, 4.0, 12.0, 8.0]]), (16, 32))
    assert m[0].nonzero().tolist() == [[1, 1], [1, 2]]


def test_empty_detections():
    protos = torch.randn(32, 8, 8)
    assert process_masks_proto(protos, torch.zeros(0, 32), torch.zeros(0, 4), (32, 32)).shape == (0, 8, 8)
    assert process_masks_upsampled(protos, torch.zeros(0, 32), torch.zeros(0, 4), (32, 32)).shape == (0, 32, 32)


def test_crop_masks_bool_and_float():
    m = torch.ones(1, 3, 3)
    assert crop_masks(m, torch.tensor([[1.0, 0.0, 2.0, 3.0]]))[0].sum().item() == 3
    assert crop_masks(m.bool(), torch.tensor([[0.5, 0.5, 3.0, 3.0]]))[0].sum().item() == 4  # c >= 0.5 -> 1, 2


def test_upsampled_masks_full_resolution():
    protos = torch.ones(1, 8, 8)
    m = process_masks_upsampled(protos, torch.ones(1, 1), torch.tensor([[8.0, 8.0, 24.0, 24.0]]), (32, 32))
    assert m.shape == (1, 32, 32)
    # crop at proto res (cols/rows 2..5) then bilinear x4: the interior is certainly on, corners off
    assert m[0, 12:20, 12:20].all() and not m[0, :4, :4].any() and not m[0, 28:, 28:].any()


def test_original_masks_remove_letterbox_padding():
    # original 16x32 letterboxed into 32x32 with gain 1 and 8 px of padding on top and bottom
    protos = torch.full((1, 8, 8), -5.0)
    protos[0, 2:6, :] = 5.0  # the unpadded band is "on"
    m = process_masks_original(protos, torch.ones(1, 1), torch.tensor([[0.0, 0.0, 32.0, 16.0]]),
                               net_shape=(32, 32), orig_hw=(16, 32), gain=1.0, pad=(0.0, 8.0))
    assert m.shape == (1, 16, 32) and m.all()
    m2 = process_masks_original(protos, torch.ones(1, 1), torch.tensor([[4.0, 2.0, 10.0, 9.0]]),
                                net_shape=(32, 32), orig_hw=(16, 32), gain=1.0, pad=(0.0, 8.0))
    assert m2.sum().item() == 6 * 7


def test_resize_gt_masks():
    gt = torch.zeros(1, 8, 8, dtype=torch.bool)
    gt[0, :4, :4] = True
    small = resize_gt_masks(gt, (4, 4))
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, :2] = True
    assert torch.equal(small[0], expected)
    assert resize_gt_masks(gt, (8, 8)) is not None and torch.equal(resize_gt_masks(gt, (8, 8)), gt)


def test_bad_shapes_raise():
    with pytest.raises(DataError):
        process_masks_proto(torch.ones(32, 4, 4), torch.ones(1, 16), torch.zeros(1, 4), (16, 16))
