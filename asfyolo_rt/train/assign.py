"""Target assignment for the anchor-based head (ASF-YOLO.md §5.1).

Per level l with grid H_l x W_l and anchors A_l (na, 2) in grid units:
1. a (target, anchor) pair is positive when max(r, 1/r) < anchor_t for both w and h, r = wh_t / wh_a;
2. each positive pair goes to the target centre's cell and to up to two neighbours: the left (right)
   cell when the centre's fractional x is < 0.5 (> 0.5), the upper (lower) cell likewise for y,
   only where that neighbour lies inside the grid (no diagonals) -> up to 3 cells per pair;
3. the regression target is xy = centre - cell index (in [-0.5, 1.5]) and wh = size, in grid units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

NEIGHBOUR_OFFSET = 0.5  # a neighbour is used when the centre is within this of the shared edge


@dataclass
class LevelTargets:
    """Positives of one level, m of them.

    image, anchor, gy, gx: (m,) int64 indices into the level tensor (B, na, H, W, no).
    tbox: (m, 4) float32 xy offset from the cell, wh, in grid units.
    anchors: (m, 2) float32 the matched anchor's wh in grid units.
    cls: (m,) int64. target: (m,) int64 row of the matched target in the `targets` input.
    """

    image: Tensor
    anchor: Tensor
    gy: Tensor
    gx: Tensor
    tbox: Tensor
    anchors: Tensor
    cls: Tensor
    target: Tensor


def assign_level(targets: Tensor, anchors: Tensor, grid_hw: tuple[int, int], anchor_t: float = 4.0) -> LevelTargets:
    """Positives of one level.

    targets: (n, 6) float32 = image index, cls, cx, cy, w, h normalised to [0, 1].
    anchors: (na, 2) float32 anchor sizes in grid units. grid_hw: (H, W) of the level.
    """
    h, w = grid_hw
    dev = targets.device
    scale = torch.tensor([w, h], device=dev, dtype=torch.float32)
    xy = targets[:, 2:4] * scale  # (n, 2) grid units
    wh = targets[:, 4:6] * scale
    ratio = wh[:, None, :] / anchors[None, :, :]  # (n, na, 2)
    match = torch.max(ratio, 1 / ratio).amax(dim=2) < anchor_t  # (n, na)
    a_idx, t_idx = match.T.nonzero(as_tuple=True)  # anchor-major order, as upstream
    pxy = xy[t_idx]
    cell = pxy.floor()
    frac = pxy - cell
    # candidate offsets: centre, left, up, right, down; each with a condition per pair
    limits = torch.tensor([w - 1, h - 1], device=dev, dtype=torch.float32)
    near_low = (frac < NEIGHBOUR_OFFSET) & (pxy > 1)  # left / up neighbour exists and is near
    near_high = (frac > 1 - NEIGHBOUR_OFFSET) & (pxy < limits)  # right / down
    use = torch.stack([
        torch.ones_like(near_low[:, 0]),
        near_low[:, 0], near_low[:, 1], near_high[:, 0], near_high[:, 1],
    ])  # (5, m)
    offsets = torch.tensor([[0, 0], [-1, 0], [0, -1], [1, 0], [0, 1]], device=dev, dtype=torch.float32)
    k, j = use.nonzero(as_tuple=True)  # k: offset kind, j: pair
    gij = cell[j] + offsets[k]
    gij[:, 0].clamp_(0, w - 1)
    gij[:, 1].clamp_(0, h - 1)
    tj = t_idx[j]
    tbox = torch.cat([pxy[j] - gij, wh[tj]], dim=1)
    return LevelTargets(
        image=targets[tj, 0].long(),
        anchor=a_idx[j],
        gy=gij[:, 1].long(),
        gx=gij[:, 0].long(),
        tbox=tbox,
        anchors=anchors[a_idx[j]],
        cls=targets[tj, 1].long(),
        target=tj,
    )


def assign(targets: Tensor, anchors: Tensor, grids: list[tuple[int, int]], anchor_t: float = 4.0) -> list[LevelTargets]:
    """assign_level for every level. anchors: (nl, na, 2) grid units; grids: [(H_l, W_l)]."""
    if len(grids) != anchors.shape[0]:
        raise ValueError(f"{len(grids)} grids for {anchors.shape[0]} anchor levels")
    return [assign_level(targets, anchors[i], g, anchor_t) for i, g in enumerate(grids)]
