"""YOLOv5-seg head: three 1x1 prediction convs (anchor-based) and the mask prototype branch (§3.4)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asfyolo_rt.model.blocks import Conv

# Default anchors in pixels (P3, P4, P5), before AutoAnchor re-fits them to a dataset.
DEFAULT_ANCHORS: tuple[tuple[float, ...], ...] = (
    (10, 13, 16, 30, 33, 23),
    (30, 61, 62, 45, 59, 119),
    (116, 90, 156, 198, 373, 326),
)
STRIDES = (8, 16, 32)


class Proto(nn.Module):
    """Mask prototypes: Conv3x3 -> nearest x2 -> Conv3x3 -> Conv1x1 (BN + SiLU kept, §10.13).

    (B, c_in, H/8, W/8) -> (B, nm, H/4, W/4).
    """

    def __init__(self, c1: int, c_hidden: int = 256, nm: int = 32) -> None:
        super().__init__()
        self.cv1 = Conv(c1, c_hidden, 3)
        self.cv2 = Conv(c_hidden, c_hidden, 3)
        self.cv3 = Conv(c_hidden, nm, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.cv3(self.cv2(F.interpolate(self.cv1(x), scale_factor=2.0, mode="nearest")))


class SegmentHead(nn.Module):
    """Per level one Conv2d (with bias) to na * (5 + nc + nm) channels, plus `Proto` on the P3 input.

    Channel order per anchor: tx, ty, tw, th, objectness, nc class logits, nm mask coefficients.
    `anchors` buffer: (nl, na, 2) in grid units (pixels / stride).

    Training output: ([(B, na, H_l, W_l, no) raw logits per level], protos).
    Inference output: (pred (B, N, no) decoded, protos (B, nm, H/4, W/4)) with pred = cx, cy, w, h
    (network pixels), sigmoid(objectness), sigmoid(class logits), raw mask coefficients.
    """

    stride: Tensor
    anchors: Tensor

    def __init__(
        self,
        nc: int,
        channels: tuple[int, int, int],
        anchors: tuple[tuple[float, ...], ...] = DEFAULT_ANCHORS,
        nm: int = 32,
        proto_width: int = 256,
        strides: tuple[int, ...] = STRIDES,
    ) -> None:
        super().__init__()
        self.nc = nc
        self.nm = nm
        self.no = 5 + nc + nm
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.register_buffer("stride", torch.tensor(strides, dtype=torch.float32), persistent=False)
        a = torch.tensor(anchors, dtype=torch.float32).view(self.nl, self.na, 2)
        self.register_buffer("anchors", a / self.stride.view(-1, 1, 1))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in channels)
        self.proto = Proto(channels[0], proto_width, nm)
        self.initialize_biases()

    @torch.no_grad()
    def initialize_biases(self, image_size: int = 640) -> None:
        """Objectness prior ln(8 / (640/s)^2), class prior ln(0.6 / (nc - 0.99999)) (§3.4)."""
        for conv, s in zip(self.m, self.stride.tolist()):
            b = conv.bias.view(self.na, -1)  # type: ignore[union-attr,operator]
            b[:, 4] += math.log(8 / (image_size / s) ** 2)
            b[:, 5 : 5 + self.nc] += math.log(0.6 / (self.nc - 0.99999))

    def set_anchors(self, anchors_px: Tensor) -> None:
        """anchors_px: (nl, na, 2) in pixels."""
        self.anchors.copy_(anchors_px.to(self.anchors) / self.stride.view(-1, 1, 1))

    def anchors_px(self) -> Tensor:
        return self.anchors * self.stride.view(-1, 1, 1)

    def forward(self, feats: list[Tensor]) -> tuple[Tensor | list[Tensor], Tensor]:
        protos = self.proto(feats[0])
        levels = []
        for i, x in enumerate(feats):
            b, _, h, w = x.shape
            levels.append(self.m[i](x).view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous())
        if self.training:
            return levels, protos
        return self.decode(levels), protos

    def decode(self, levels: list[Tensor]) -> Tensor:
        """Raw level tensors (B, na, H, W, no) -> (B, sum na*H*W, no), see class docstring."""
        out = []
        for i, p in enumerate(levels):
            b, na, h, w, _ = p.shape
            stride = self.stride[i]
            gy = torch.arange(h, device=p.device, dtype=p.dtype)
            gx = torch.arange(w, device=p.device, dtype=p.dtype)
            yy, xx = torch.meshgrid(gy, gx, indexing="ij")
            grid = torch.stack((xx, yy), dim=-1).view(1, 1, h, w, 2) - 0.5
            anchor = (self.anchors[i] * stride).view(1, na, 1, 1, 2).to(p.dtype)
            xy, wh, conf, coeffs = p.split((2, 2, self.nc + 1, self.nm), dim=4)
            xy = (xy.sigmoid() * 2 + grid) * stride
            wh = (wh.sigmoid() * 2) ** 2 * anchor
            out.append(torch.cat((xy, wh, conf.sigmoid(), coeffs), dim=4).view(b, na * h * w, self.no))
        return torch.cat(out, dim=1)
