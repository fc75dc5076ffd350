"""Loss: IoU-family values by hand, perfect predictions, the mask term restricted to the GT box."""

from __future__ import annotations

import math

import pytest
import torch

from asfyolo_rt.model.head import SegmentHead
from asfyolo_rt.train.assign import assign
from asfyolo_rt.train.config import LossConfig
from asfyolo_rt.train.loss import SegmentationLoss, bbox_iou, instance_ids, mask_loss_image, mask_loss_level


def _t(*rows: float) -> torch.Tensor:
    return torch.tensor([rows], dtype=torch.float64)


def test_ciou_and_eiou_same_aspect() -> None:
    # boxes [0,0,2,2] and [1,0,3,2]: IoU 2/6, centre distance^2 1, enclosing 3x2 -> c^2 = 13, v = 0
    b1, b2 = _t(1, 1, 2, 2), _t(2, 1, 2, 2)
    assert bbox_iou(b1, b2, "iou").item() == pytest.approx(1 / 3, abs=1e-6)
    assert bbox_iou(b1, b2, "ciou").item() == pytest.approx(1 / 3 - 1 / 13, abs=1e-6)
    assert bbox_iou(b1, b2, "eiou").item() == pytest.approx(1 / 3 - 1 / 13, abs=1e-6)


def test_ciou_and_eiou_different_aspect() -> None:
    # [0,0,2,2] vs [1,-1,3,3]: inter 2, union 10, IoU 0.2; enclosing 3x4 -> c^2 = 25; rho^2 = 1
    b1, b2 = _t(1, 1, 2, 2), _t(2, 1, 2, 4)
    v = 4 / math.pi**2 * (math.atan(2 / 4) - math.atan(2 / 2)) ** 2
    alpha = v / (v - 0.2 + 1)
    assert bbox_iou(b1, b2, "ciou").item() == pytest.approx(0.2 - 1 / 25 - alpha * v, abs=1e-6)
    # EIoU: - (w1-w2)^2/Cw^2 - (h1-h2)^2/Ch^2 = -0 - 4/16
    assert bbox_iou(b1, b2, "eiou").item() == pytest.approx(0.2 - 1 / 25 - 4 / 16, abs=1e-6)


def test_identical_boxes_score_one() -> None:
    b = torch.tensor([[5.0, 7.0, 3.0, 9.0], [0.5, 0.5, 0.2, 0.1]])
    for kind in ("iou", "ciou", "eiou"):
        assert torch.allclose(bbox_iou(b, b, kind), torch.ones(2), atol=1e-5)


def test_instance_ids_count_within_each_image() -> None:
    t = torch.tensor([[0, 0, .5, .5, .1, .1], [0, 0, .5, .5, .1, .1], [2, 0, .5, .5, .1, .1],
                      [2, 0, .5, .5, .1, .1], [2, 0, .5, .5, .1, .1]])
    assert instance_ids(t).tolist() == [1, 2, 1, 2, 3]


def test_mask_loss_is_mean_bce_inside_the_gt_box_only() -> None:
    hp = wp = 8
    protos = torch.zeros(2, hp, wp)
    coeffs = torch.tensor([[1.0, 0.0]])
    gt = torch.zeros(1, hp, wp)
    gt[0, 2:4, 2:6] = 1
    box = torch.tensor([[4 / 8, 3 / 8, 4 / 8, 2 / 8]])  # cols 2..5, rows 2..3 exactly
    # logits 0 everywhere -> BCE ln 2 per pixel -> mean inside the box = ln 2
    assert mask_loss_image(coeffs, protos, gt, box).item() == pytest.approx(math.log(2), rel=1e-5)
    outside = protos.clone()
    outside[0, 6:, :] = 9.0  # rows 6..7 lie outside the box: no effect
    outside[0, :, 0] = -9.0
    assert mask_loss_image(coeffs, outside, gt, box).item() == pytest.approx(math.log(2), rel=1e-5)
    inside = protos.clone()
    inside[0, 2:4, 2:6] = 9.0  # confident and right inside -> ~0
    assert mask_loss_image(coeffs, inside, gt, box).item() < 1e-3


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p / (1 - p))


def _perfect_levels(head: SegmentHead, targets: torch.Tensor, grids: list[tuple[int, int]], bs: int) -> list[torch.Tensor]:
    no = head.no
    levels = [torch.full((bs, head.na, h, w, no), -20.0) for h, w in grids]
    for lv, lt in zip(levels, assign(targets, head.anchors, grids)):
        xy = _logit((lt.tbox[:, :2] + 0.5) / 2)
        wh = _logit(torch.sqrt(lt.tbox[:, 2:] / lt.anchors) / 2)
        lv[lt.image, lt.anchor, lt.gy, lt.gx, :4] = torch.cat([xy, wh], 1)
    return levels


@pytest.mark.parametrize("box_loss", ["ciou", "eiou"])
def test_perfect_box_prediction_gives_zero_box_loss(box_loss: str) -> None:
    torch.manual_seed(0)
    head = SegmentHead(nc=1, channels=(8, 8, 8))
    img = 256
    grids = [(img // s, img // s) for s in (8, 16, 32)]
    targets = torch.tensor([[0, 0, 0.31, 0.52, 0.08, 0.06], [1, 0, 0.7, 0.2, 0.2, 0.3]])
    levels = _perfect_levels(head, targets, grids, bs=2)
    protos = torch.zeros(2, 32, img // 4, img // 4)
    maps = torch.zeros(2, img // 4, img // 4, dtype=torch.int32)
    loss = SegmentationLoss(head, nc=1, img_size=img, cfg=LossConfig(box_loss=box_loss))
    _, items = loss(levels, protos, targets, maps)
    assert items[0].item() < 1e-5
    # a wrong prediction at the same positions gives a clearly positive box loss
    for lv in levels:
        lv[..., 0] += 1.5
    _, items_bad = loss(levels, protos, targets, maps)
    assert items_bad[0].item() > 1e-3


def test_loss_gains_follow_the_official_scaling() -> None:
    head = SegmentHead(nc=3, channels=(8, 8, 8))
    loss = SegmentationLoss(head, nc=3, img_size=320)
    assert loss.gain_box == pytest.approx(0.05)
    assert loss.gain_obj == pytest.approx(1.0 * (320 / 640) ** 2)
    assert loss.gain_cls == pytest.approx(0.5 * 3 / 80)


def test_class_loss_only_when_several_classes() -> None:
    torch.manual_seed(0)
    img = 64
    grids = [(img // s, img // s) for s in (8, 16, 32)]
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.2, 0.2]])
    protos = torch.zeros(1, 32, img // 4, img // 4)
    maps = torch.zeros(1, img // 4, img // 4, dtype=torch.int32)
    for nc, expect_cls in ((1, False), (2, True)):
        head = SegmentHead(nc=nc, channels=(8, 8, 8))
        levels = [torch.randn(1, 3, h, w, 5 + nc + 32) for h, w in grids]
        total, items = SegmentationLoss(head, nc=nc, img_size=img)(levels, protos, targets, maps)
        assert (items[3].item() > 0) == expect_cls
        assert total.item() == pytest.approx(items.sum().item(), rel=1e-5)  # batch size 1


def test_objectness_targets_are_zero_without_objects() -> None:
    head = SegmentHead(nc=1, channels=(8, 8, 8))
    img = 64
    grids = [(img // s, img // s) for s in (8, 16, 32)]
    levels = [torch.full((1, 3, h, w, 38), -30.0, requires_grad=True) for h, w in grids]
    total, items = SegmentationLoss(head, nc=1, img_size=img)(
        levels, torch.zeros(1, 32, 16, 16), torch.zeros(0, 6), torch.zeros(1, 16, 16, dtype=torch.int32))
    assert total.item() < 1e-6 and items[0] == 0 and items[1] == 0
    total.backward()


@pytest.mark.parametrize("max_elements", [2**24, 3000])  # one chunk, and many small chunks
def test_windowed_mask_loss_equals_the_full_mask_specification(max_elements: int) -> None:
    torch.manual_seed(0)
    b, nm, hp, wp = 3, 4, 12, 10
    protos = torch.randn(b, nm, hp, wp, requires_grad=True)
    index_maps = torch.randint(0, 4, (b, hp, wp))
    m = 17
    image = torch.tensor([0, 0, 0, 2, 2, 0, 2, 2, 2, 2, 0, 0, 2, 2, 2, 2, 2])
    ids = torch.randint(1, 4, (m,))
    centre, size = torch.rand(m, 2), torch.rand(m, 2) * 0.7 + 0.02
    xywhn = torch.cat([centre, size], 1)  # some boxes leave the image: clipping must match
    coeffs = torch.randn(m, nm, requires_grad=True)
    got = mask_loss_level(coeffs, protos, image, ids, index_maps, xywhn, max_elements=max_elements)
    want = sum(
        mask_loss_image(coeffs[image == i], protos[i], (index_maps[i][None] == ids[image == i][:, None, None]).float(),
                        xywhn[image == i])
        for i in (0, 2)
    )
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    g1 = torch.autograd.grad(got, (coeffs, protos))
    g2 = torch.autograd.grad(want, (coeffs, protos))
    for a, bb in zip(g1, g2):
        torch.testing.assert_close(a, bb, rtol=1e-4, atol=1e-6)
