"""Target assignment (§5.1): the anchor-ratio rule and the 3-cell neighbourhood."""

from __future__ import annotations

import pytest
import torch

from asfyolo_rt.train.assign import assign_level

ANCHORS = torch.tensor([[1.0, 1.0], [3.0, 3.0], [20.0, 20.0]])  # grid units


def _one(cx: float, cy: float, w: float, h: float, grid: int = 10) -> torch.Tensor:
    return torch.tensor([[0, 0, cx / grid, cy / grid, w / grid, h / grid]])


def _pairs(lt) -> set[tuple[int, int, int]]:
    return set(zip(lt.anchor.tolist(), lt.gx.tolist(), lt.gy.tolist()))


def test_target_near_a_cell_corner_gets_three_cells_per_matching_anchor() -> None:
    # centre (3.2, 6.8): fractional x 0.2 -> left neighbour, fractional y 0.8 -> lower neighbour.
    # size 2x2: ratios 2 (anchor 0) and 1.5 (anchor 1) are < 4; anchor 2 (ratio 10) does not match.
    lt = assign_level(_one(3.2, 6.8, 2, 2), ANCHORS, (10, 10))
    cells = {(3, 6), (2, 6), (3, 7)}
    assert _pairs(lt) == {(a, x, y) for a in (0, 1) for x, y in cells}
    for _a, gx, gy, (tx, ty, tw, th) in zip(lt.anchor, lt.gx, lt.gy, lt.tbox.tolist()):
        assert (tx, ty) == pytest.approx((3.2 - gx.item(), 6.8 - gy.item()), abs=1e-5)
        assert (tw, th) == pytest.approx((2, 2), abs=1e-5)
        assert -0.5 <= tx <= 1.5 and -0.5 <= ty <= 1.5


def test_other_quadrant_picks_right_and_upper_neighbours() -> None:
    lt = assign_level(_one(5.9, 4.1, 1, 1), ANCHORS, (10, 10))
    assert _pairs(lt) == {(a, x, y) for a in (0, 1) for x, y in {(5, 4), (6, 4), (5, 3)}}


@pytest.mark.parametrize(("cx", "cy"), [(0.3, 0.3), (9.7, 9.7)])
def test_no_neighbour_outside_the_grid(cx: float, cy: float) -> None:
    lt = assign_level(_one(cx, cy, 1, 1), ANCHORS[:1], (10, 10))
    assert len(lt.anchor) == 1 and (lt.gx.item(), lt.gy.item()) == (int(cx), int(cy))


@pytest.mark.parametrize(("w", "h", "matched"), [
    (3.9, 3.9, {0, 1}),  # 3.9/1 < 4
    (4.1, 4.1, {1}),  # 4.1/1 > 4 and 20/4.1 = 4.88 > 4: only anchor 1
    (0.26, 0.26, {0}),  # 1/0.26 = 3.85 < 4; 3/0.26 > 4
    (1.0, 12.5, set()),  # w fits anchor 0 but h/w mismatch kills every anchor
])
def test_ratio_rule(w: float, h: float, matched: set[int]) -> None:
    # centre exactly mid-cell (fraction 0.5): no neighbours, so one positive per matching anchor
    lt = assign_level(_one(5.5, 5.5, w, h), ANCHORS, (10, 10))
    assert set(lt.anchor.tolist()) == matched


def test_empty_targets() -> None:
    lt = assign_level(torch.zeros(0, 6), ANCHORS, (10, 10))
    assert lt.anchor.numel() == 0 and lt.tbox.shape == (0, 4)
