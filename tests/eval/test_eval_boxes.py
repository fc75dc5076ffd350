"""Box/mask geometry helpers: hand-computed IoUs and conversions."""

from __future__ import annotations

import pytest
import torch

from asfyolo_rt.boxes import (
    box_iou,
    clip_boxes,
    mask_iou,
    unletterbox_boxes,
    xywh_to_xyxy,
    xyxy_to_ltwh,
    xyxy_to_xywh,
)
from asfyolo_rt.errors import DataError


def test_box_iou_hand_values():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 0, 15, 10],    # half overlap: 50 / 150
                      [0.0, 0, 10, 10],    # identical
                      [10.0, 10, 20, 20],  # touching corner
                      [2.0, 2, 4, 4]])     # inside: 4 / 100
    assert box_iou(a, b)[0].tolist() == pytest.approx([1 / 3, 1.0, 0.0, 0.04], abs=1e-6)
    assert box_iou(a, torch.zeros(0, 4)).shape == (1, 0)
    # zero-area boxes give 0, not NaN
    assert box_iou(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0.0


def test_box_iou_rejects_bad_shape():
    with pytest.raises(DataError):
        box_iou(torch.zeros(3), torch.zeros(1, 4))


def test_format_round_trip():
    xywh = torch.tensor([[10.0, 20, 4, 6]])
    xyxy = xywh_to_xyxy(xywh)
    assert xyxy.tolist() == [[8.0, 17.0, 12.0, 23.0]]
    assert xyxy_to_xywh(xyxy).tolist() == xywh.tolist()
    assert xyxy_to_ltwh(xyxy).tolist() == [[8.0, 17.0, 4.0, 6.0]]


def test_mask_iou_hand_values():
    m1 = torch.zeros(2, 4, 4, dtype=torch.bool)
    m1[0, :2] = True   # 8 px
    m1[1, :, :1] = True  # 4 px
    m2 = torch.zeros(1, 4, 4, dtype=torch.bool)
    m2[0, :1] = True   # 4 px, inside m1[0]; shares 1 px with m1[1]
    assert mask_iou(m1, m2)[:, 0].tolist() == pytest.approx([0.5, 1 / 7], abs=1e-6)
    with pytest.raises(DataError):
        mask_iou(m1, torch.zeros(1, 2, 2, dtype=torch.bool))


def test_unletterbox_and_clip():
    # original 100x200 (h, w) resized by 3.2 to 320x640, padded 16 px top (network 352x640)
    net = torch.tensor([[32.0, 16 + 32, 64, 16 + 64], [-10, 0, 700, 400]])
    orig = unletterbox_boxes(net, gain=3.2, pad=(0.0, 16.0), orig_hw=(100, 200))
    assert orig[0].tolist() == pytest.approx([10.0, 10.0, 20.0, 20.0])
    assert orig[1].tolist() == pytest.approx([0.0, 0.0, 200.0, 100.0])
    assert clip_boxes(torch.tensor([[-1.0, -1, 5, 50]]), 10, 4).tolist() == [[0.0, 0.0, 4.0, 10.0]]
