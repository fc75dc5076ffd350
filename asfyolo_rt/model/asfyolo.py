"""ASF-YOLO assembled in Python (ASF-YOLO.md §2.2), with n/s/m/l/x variants.

Only `l` (depth 1.0, width 1.0) is the paper's model. The other sizes scale every width by the
YOLOv5 rule (ceil(c * w / 8) * 8) and every C3 depth by max(round(n * d), 1) *consistently*,
including the SSFF/CPAM/TFE widths the official code leaves unscaled (§2.3): they are an
extrapolation, not a published model.

Layer table (upstream index -> attribute), used by the official-checkpoint importer:
 0 backbone.stem  1 backbone.down1  2 backbone.stage1  3 backbone.down2  4 backbone.stage2 (P3)
 5 backbone.down3  6 backbone.stage3 (P4)  7 backbone.down4  8 backbone.stage4 (P5)  9 backbone.sppf
10 neck.lateral_p5  11 neck.tfe1_large  12 neck.tfe1  13 neck.c3_p4  14 neck.lateral_p4
15 neck.tfe2_large  16 neck.tfe2  17 neck.c3_p3  18 neck.down_p3  19 (concat)  20 neck.c3_out_p4
21 neck.down_p4  22 (concat)  23 neck.c3_out_p5  24 ssff  25 cpam  26 head
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.model.blocks import C3, SPPF, Conv, make_divisible
from asfyolo_rt.model.head import DEFAULT_ANCHORS, SegmentHead
from asfyolo_rt.model.neck import ChannelPositionAttention, ScaleSequenceFusion, TripleFeatureEncoder


@dataclass(frozen=True)
class Variant:
    """Depth/width multiples of one model size."""

    name: str
    depth: float
    width: float

    def ch(self, c: int) -> int:
        return make_divisible(c * self.width, 8)

    def n(self, n: int) -> int:
        return max(round(n * self.depth), 1) if n > 1 else n


VARIANTS: dict[str, Variant] = {
    "n": Variant("n", 0.33, 0.25),
    "s": Variant("s", 0.33, 0.50),
    "m": Variant("m", 0.67, 0.75),
    "l": Variant("l", 1.00, 1.00),  # the paper's model
    "x": Variant("x", 1.33, 1.25),
}


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ConfigError(f"unknown model size {name!r}; expected one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


class Backbone(nn.Module):
    """YOLOv5 CSP-Darknet backbone; returns (stride-4 C3, P3, P4, P5 before SPPF, SPPF output)."""

    def __init__(self, v: Variant) -> None:
        super().__init__()
        c64, c128, c256, c512, c1024 = (v.ch(c) for c in (64, 128, 256, 512, 1024))
        self.stem = Conv(3, c64, 6, 2, 2)
        self.down1 = Conv(c64, c128, 3, 2)
        self.stage1 = C3(c128, c128, v.n(3))
        self.down2 = Conv(c128, c256, 3, 2)
        self.stage2 = C3(c256, c256, v.n(6))
        self.down3 = Conv(c256, c512, 3, 2)
        self.stage3 = C3(c512, c512, v.n(9))
        self.down4 = Conv(c512, c1024, 3, 2)
        self.stage4 = C3(c1024, c1024, v.n(3))
        self.sppf = SPPF(c1024, c1024, 5)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        s4 = self.stage1(self.down1(self.stem(x)))
        p3 = self.stage2(self.down2(s4))
        p4 = self.stage3(self.down3(p3))
        p5 = self.stage4(self.down4(p4))
        return s4, p3, p4, p5, self.sppf(p5)


class Neck(nn.Module):
    """TFE top-down path and PAN bottom-up path (layers 10-23). Returns (neck P3, head P4, head P5)."""

    def __init__(self, v: Variant) -> None:
        super().__init__()
        c128, c256, c512, c1024 = (v.ch(c) for c in (128, 256, 512, 1024))
        n3 = v.n(3)
        self.lateral_p5 = Conv(c1024, c512, 1)
        self.tfe1_large = Conv(c256, c512, 1)
        self.tfe1 = TripleFeatureEncoder()
        self.c3_p4 = C3(3 * c512, c512, n3, shortcut=False)
        self.lateral_p4 = Conv(c512, c256, 1)
        self.tfe2_large = Conv(c128, c256, 1)
        self.tfe2 = TripleFeatureEncoder()
        self.c3_p3 = C3(3 * c256, c256, n3, shortcut=False)
        self.down_p3 = Conv(c256, c256, 3, 2)
        self.c3_out_p4 = C3(2 * c256, c512, n3, shortcut=False)
        self.down_p4 = Conv(c512, c512, 3, 2)
        self.c3_out_p5 = C3(2 * c512, c1024, n3, shortcut=False)

    def forward(self, s4: Tensor, p3: Tensor, p4: Tensor, sppf: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        l10 = self.lateral_p5(sppf)
        l13 = self.c3_p4(self.tfe1([self.tfe1_large(p3), p4, l10]))
        l14 = self.lateral_p4(l13)
        l17 = self.c3_p3(self.tfe2([self.tfe2_large(s4), p3, l14]))
        l20 = self.c3_out_p4(torch.cat((self.down_p3(l17), l14), dim=1))
        l23 = self.c3_out_p5(torch.cat((self.down_p4(l20), l10), dim=1))
        return l17, l20, l23


class ASFYOLO(nn.Module):
    """ASF-YOLO segmentation model.

    Input: images (B, 3, H, W) float32 in [0, 1], RGB, H and W multiples of 32.
    Eval output: (pred (B, N, 5 + nc + 32), protos (B, 32, H/4, W/4)) with N = 3 * (H*W) * 21 / 1024
    (25,200 at 640x640); training output: (list of 3 raw (B, 3, H/s, W/s, 5 + nc + 32), protos).
    """

    def __init__(
        self,
        variant: str = "l",
        nc: int = 1,
        anchors: tuple[tuple[float, ...], ...] = DEFAULT_ANCHORS,
        nm: int = 32,
    ) -> None:
        super().__init__()
        if nc < 1:
            raise ConfigError(f"nc must be >= 1, got {nc}")
        v = get_variant(variant)
        self.variant = v.name
        self.nc = nc
        c256, c512, c1024 = (v.ch(c) for c in (256, 512, 1024))
        self.backbone = Backbone(v)
        self.neck = Neck(v)
        self.ssff = ScaleSequenceFusion(c256, c512, c1024)
        self.cpam = ChannelPositionAttention(c256)
        self.head = SegmentHead(nc, (c256, c512, c1024), anchors=anchors, nm=nm, proto_width=v.ch(256))

    def forward(self, x: Tensor) -> tuple[Tensor | list[Tensor], Tensor]:
        if not torch.onnx.is_in_onnx_export() and not torch.compiler.is_compiling():
            h, w = x.shape[-2:]
            if x.dim() != 4 or x.shape[1] != 3 or h % 32 or w % 32:
                raise ConfigError(
                    f"model input must be (B, 3, H, W) with H and W multiples of 32, got {tuple(x.shape)}",
                    hint="pre-process with asfyolo_rt.data.letterbox.preprocess",
                )
        s4, p3, p4, p5, sppf = self.backbone(x)
        n3, h4, h5 = self.neck(s4, p3, p4, sppf)
        v = self.cpam([n3, self.ssff([p3, p4, p5])])
        return self.head([v, h4, h5])

    @property
    def stride(self) -> Tensor:
        return self.head.stride  # type: ignore[return-value]

    def fuse(self) -> ASFYOLO:
        """Fold every BatchNorm into its convolution, in place (inference only). Returns self."""
        for m in self.modules():
            fuse = getattr(m, "fuse", None)
            if m is not self and callable(fuse):
                fuse()
        return self

    def set_kernel_impl(self, impl: str) -> None:
        """'torch' (reference) or 'auto'/'triton' (fused Triton CPAM at inference on CUDA)."""
        if impl not in ("torch", "auto", "triton"):
            raise ConfigError(f"kernel impl must be torch, auto or triton, got {impl!r}")
        self.cpam.impl = impl


def build_model(variant: str = "l", nc: int = 1, anchors: tuple[tuple[float, ...], ...] | None = None) -> ASFYOLO:
    """Build an ASF-YOLO model of the given size with random (YOLOv5-initialised) weights."""
    return ASFYOLO(variant, nc, anchors if anchors is not None else DEFAULT_ANCHORS)
