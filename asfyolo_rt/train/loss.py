"""The YOLOv5-seg training loss used by ASF-YOLO (ASF-YOLO.md §4).

L_total = B * (L_box + L_obj + L_cls + L_seg) with, over levels l and positives from `assign`:
- L_box = g_box * sum_l mean(1 - CIoU) (or EIoU with box_loss="eiou", the paper's choice);
- L_obj = g_obj * sum_l w_l * BCE(objectness logits, target), target = detached IoU clamped at 0 for
  positives (last write wins for repeated cells), 0 elsewhere; w = (4.0, 1.0, 0.4);
- L_cls = g_cls * sum_l BCE(class logits, one-hot) on positives, skipped when nc = 1;
- L_seg = (g_box / B) * sum_l sum_images mean_positives(mean BCE inside the GT box), mask logits =
  coefficients . prototypes at 1/4 resolution, GT = (index map == instance id).
Gains: g_box = box * 3/nl, g_obj = obj * (img/640)^2 * 3/nl, g_cls = cls * nc/80 * 3/nl.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from asfyolo_rt.model.head import SegmentHead
from asfyolo_rt.train.assign import assign
from asfyolo_rt.train.config import LossConfig

EPS = 1e-7


def bbox_iou(box1: Tensor, box2: Tensor, kind: str = "iou") -> Tensor:
    """Element-wise IoU-family score of paired boxes. box1, box2: (m, 4) float xywh (centre, size).

    kind: "iou"; "ciou" = IoU - rho^2/c^2 - alpha*v (alpha without gradient);
    "eiou" = IoU - rho^2/c^2 - (w1-w2)^2/C_w^2 - (h1-h2)^2/C_h^2 (C = enclosing box). Returns (m,).
    """
    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.unbind(-1), box2.unbind(-1)
    h1, h2 = h1 + EPS, h2 + EPS
    l1, r1, t1, b1 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    l2, r2, t2, b2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = (torch.min(r1, r2) - torch.max(l1, l2)).clamp(0) * (torch.min(b1, b2) - torch.max(t1, t2)).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + EPS
    iou = inter / union
    if kind == "iou":
        return iou
    cw = torch.max(r1, r2) - torch.min(l1, l2)
    ch = torch.max(b1, b2) - torch.min(t1, t2)
    c2 = cw**2 + ch**2 + EPS
    rho2 = (x2 - x1) ** 2 + (y2 - y1) ** 2
    if kind == "ciou":
        v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
        with torch.no_grad():
            alpha = v / (v - iou + (1 + EPS))
        return iou - (rho2 / c2 + v * alpha)
    if kind == "eiou":
        return iou - (rho2 / c2 + (w1 - w2) ** 2 / (cw**2 + EPS) + (h1 - h2) ** 2 / (ch**2 + EPS))
    raise ValueError(f"unknown IoU kind {kind!r}; expected iou, ciou or eiou")


def instance_ids(targets: Tensor) -> Tensor:
    """(n,) int64 1-based position of each target row within its image (= its id in the index map).

    targets: (n, 6) with rows grouped by image (column 0), as `train.dataset.collate` writes them.
    """
    if targets.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=targets.device)
    img = targets[:, 0].long()
    rows = torch.arange(len(img), device=targets.device)
    first = torch.full((int(img.max()) + 1,), len(img), dtype=torch.long, device=targets.device)
    first.scatter_reduce_(0, img, rows, reduce="amin")
    return rows - first[img] + 1


def mask_loss_image(coeffs: Tensor, protos: Tensor, gt: Tensor, xywhn: Tensor) -> Tensor:
    """Mean over positives of the mean per-pixel BCE inside each GT box (scalar) - the specification,
    on full Hp x Wp masks; training uses the equivalent, windowed `mask_loss_level`.

    coeffs: (m, nm) raw coefficients; protos: (nm, Hp, Wp); gt: (m, Hp, Wp) float {0, 1};
    xywhn: (m, 4) GT boxes normalised to [0, 1] (centre, size).
    """
    hp, wp = protos.shape[1:]
    logits = (coeffs @ protos.reshape(protos.shape[0], -1)).view(-1, hp, wp)
    bce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none")
    scale = torch.tensor([wp, hp, wp, hp], device=xywhn.device, dtype=xywhn.dtype)
    xyxy = torch.cat([xywhn[:, :2] - xywhn[:, 2:] / 2, xywhn[:, :2] + xywhn[:, 2:] / 2], 1) * scale
    cols = torch.arange(wp, device=xyxy.device, dtype=xyxy.dtype)[None, None, :]
    rows = torch.arange(hp, device=xyxy.device, dtype=xyxy.dtype)[None, :, None]
    x1, y1, x2, y2 = (xyxy[:, i, None, None] for i in range(4))
    inside = (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    area = xywhn[:, 2] * xywhn[:, 3]
    return ((bce * inside).mean(dim=(1, 2)) / area.clamp_min(EPS)).mean()


def mask_loss_level(
    coeffs: Tensor, protos: Tensor, image: Tensor, ids: Tensor, index_maps: Tensor, xywhn: Tensor,
    max_elements: int = 2**24,
) -> Tensor:
    """The mask term of one level: sum over images of `mask_loss_image`, computed only inside GT boxes.

    coeffs: (m, nm) raw coefficients of the positives; protos: (B, nm, Hp, Wp); image: (m,) int64;
    ids: (m,) int64 instance id of each positive's target in its image's index map (B, Hp, Wp);
    xywhn: (m, 4) normalised GT boxes. Pixels outside a positive's GT box contribute nothing, so
    each positive only evaluates the prototype window under its box (cells are small: this is
    ~100x cheaper than full Hp x Wp masks). Windows are padded to the largest box and processed in
    chunks of at most `max_elements` gathered prototype values.
    """
    b, nm, hp, wp = protos.shape
    m = coeffs.shape[0]
    scale = torch.tensor([wp, hp, wp, hp], device=xywhn.device, dtype=xywhn.dtype)
    xyxy = torch.cat([xywhn[:, :2] - xywhn[:, 2:] / 2, xywhn[:, :2] + xywhn[:, 2:] / 2], 1) * scale
    # pixel k is inside when x1 <= k < x2: k runs from ceil(x1) to ceil(x2) - 1
    lo = xyxy[:, :2].ceil().long()
    hi = xyxy[:, 2:].ceil().long()
    lo[:, 0].clamp_(0, wp)
    lo[:, 1].clamp_(0, hp)
    hi[:, 0].clamp_(0, wp)
    hi[:, 1].clamp_(0, hp)
    span = (hi - lo).clamp_min(0)
    win_w, win_h = (int(span[:, 0].max()), int(span[:, 1].max())) if m else (0, 0)
    if win_w == 0 or win_h == 0:
        return coeffs.sum() * 0.0
    cols = lo[:, 0, None] + torch.arange(win_w, device=lo.device)
    rows = lo[:, 1, None] + torch.arange(win_h, device=lo.device)
    valid = (rows < hi[:, 1, None])[:, :, None] & (cols < hi[:, 0, None])[:, None, :]
    cols, rows = cols.clamp_(max=wp - 1), rows.clamp_(max=hp - 1)
    area = (xywhn[:, 2] * xywhn[:, 3]).clamp_min(EPS)
    step = max(1, max_elements // (win_h * win_w * nm))
    per = []
    for s in range(0, m, step):
        sl = slice(s, s + step)
        ii, rr, cc = image[sl, None, None], rows[sl, :, None], cols[sl, None, :]
        window = protos[ii, :, rr, cc]  # (k, win_h, win_w, nm)
        logits = torch.einsum("khwc,kc->khw", window, coeffs[sl])
        gt = (index_maps[ii, rr, cc] == ids[sl, None, None]).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none") * valid[sl]
        per.append(bce.sum(dim=(1, 2)) / (hp * wp) / area[sl])
    per_pos = torch.cat(per)
    sums = torch.zeros(b, device=per_pos.device, dtype=per_pos.dtype).index_add(0, image, per_pos)
    counts = torch.bincount(image, minlength=b)
    has = counts > 0
    return (sums[has] / counts[has]).sum()


class SegmentationLoss:
    """Callable loss. `anchors` is read from the head at every call (AutoAnchor may change it)."""

    def __init__(self, head: SegmentHead, nc: int, img_size: int, cfg: LossConfig | None = None) -> None:
        self.head = head
        self.cfg = cfg or LossConfig()
        self.nc = nc
        nl = int(head.nl)
        self.nl = nl
        self.gain_box = self.cfg.box * 3 / nl
        self.gain_obj = self.cfg.obj * (img_size / 640) ** 2 * 3 / nl
        self.gain_cls = self.cfg.cls * nc / 80 * 3 / nl
        self.cp = 1.0 - 0.5 * self.cfg.label_smoothing
        self.cn = 0.5 * self.cfg.label_smoothing

    def __call__(
        self, levels: list[Tensor], protos: Tensor, targets: Tensor, index_maps: Tensor
    ) -> tuple[Tensor, Tensor]:
        """levels: nl raw (B, na, H, W, 5 + nc + nm); protos: (B, nm, Hp, Wp); targets: (n, 6) = image,
        cls, cx, cy, w, h normalised, grouped by image; index_maps: (B, Hm, Wm) int, 0 = background,
        k = the image's k-th target. Returns (total loss scalar, (4,) detached [box, seg, obj, cls]).
        """
        levels = [p.float() for p in levels]
        protos = protos.float()
        dev = protos.device
        bs = protos.shape[0]
        targets = targets.to(dev)
        index_maps = index_maps.to(dev)
        if index_maps.shape[-2:] != protos.shape[-2:]:
            index_maps = F.interpolate(index_maps[:, None].float(), size=protos.shape[-2:], mode="nearest")[:, 0].long()
        ids = instance_ids(targets)
        anchors = self.head.anchors.to(dev).float()
        grids = [(int(p.shape[2]), int(p.shape[3])) for p in levels]
        assigned = assign(targets, anchors, grids, self.cfg.anchor_t)
        lbox = torch.zeros((), device=dev)
        lobj = torch.zeros((), device=dev)
        lcls = torch.zeros((), device=dev)
        lseg = torch.zeros((), device=dev)
        for i, (pi, lt) in enumerate(zip(levels, assigned)):
            tobj = torch.zeros(pi.shape[:4], device=dev)
            if lt.image.numel():
                ps = pi[lt.image, lt.anchor, lt.gy, lt.gx]  # (m, no)
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * lt.anchors
                iou = bbox_iou(torch.cat([pxy, pwh], 1), lt.tbox, self.cfg.box_loss)
                lbox = lbox + (1.0 - iou).mean()
                tobj[lt.image, lt.anchor, lt.gy, lt.gx] = iou.detach().clamp(0).to(tobj.dtype)
                if self.nc > 1:
                    t = torch.full_like(ps[:, 5:5 + self.nc], self.cn)
                    t[torch.arange(len(lt.cls), device=dev), lt.cls] = self.cp
                    lcls = lcls + F.binary_cross_entropy_with_logits(ps[:, 5:5 + self.nc], t)
                lseg = lseg + mask_loss_level(ps[:, 5 + self.nc:], protos, lt.image, ids[lt.target], index_maps,
                                              targets[lt.target, 2:6])
            lobj = lobj + F.binary_cross_entropy_with_logits(pi[..., 4], tobj) * self.cfg.balance[i]
        lbox = lbox * self.gain_box
        lobj = lobj * self.gain_obj
        lcls = lcls * self.gain_cls
        lseg = lseg * self.gain_box / bs
        total = (lbox + lseg + lobj + lcls) * bs
        return total, torch.stack([lbox, lseg, lobj, lcls]).detach()
