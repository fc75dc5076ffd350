"""Standard YOLOv5 (v7.0) building blocks, re-implemented from ASF-YOLO.md §2.1.

Attribute names inside the blocks (`conv`/`bn`/`act`, `cv1`..`cv3`, `m`) follow the upstream
convention so that official checkpoints map onto these modules by layer prefix alone.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# YOLOv5 initialisation: every BatchNorm2d gets these (ASF-YOLO.md §2.1). BatchNorm3d keeps PyTorch defaults.
BN_EPS = 1e-3
BN_MOMENTUM = 0.03


def make_divisible(x: float, divisor: int = 8) -> int:
    """Smallest multiple of `divisor` that is >= x (YOLOv5 width-scaling rule)."""
    return int(-(-x // divisor) * divisor)


class Conv(nn.Module):
    """Conv2d (no bias, padding k//2 unless given) -> BatchNorm2d -> SiLU.

    After `fuse()` the BatchNorm is folded into the convolution (which then has a bias) and removed.
    """

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act: nn.Module = nn.SiLU(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        """Fold the BatchNorm into the convolution (inference only)."""
        if isinstance(self.bn, nn.Identity):
            return
        self.conv = fuse_conv_bn(self.conv, self.bn)  # type: ignore[arg-type,assignment]
        self.bn = nn.Identity()


class Bottleneck(nn.Module):
    """1x1 Conv c->c, 3x3 Conv c->c, plus the identity when `shortcut`."""

    def __init__(self, c: int, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1 = Conv(c, c, 1)
        self.cv2 = Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP block: [cv1 -> n Bottlenecks, cv2] concatenated (in that order) -> cv3; hidden width c2/2."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        h = c2 // 2
        self.cv1 = Conv(c1, h, 1)
        self.cv2 = Conv(c1, h, 1)
        self.cv3 = Conv(2 * h, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(h, shortcut) for _ in range(n)))

    def forward(self, x: Tensor) -> Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: x, mp5(x), mp5(mp5(x)), mp5^3(x) concatenated -> 1x1 Conv."""

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        h = c1 // 2
        self.cv1 = Conv(c1, h, 1)
        self.cv2 = Conv(4 * h, c2, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), dim=1))


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d | nn.Conv3d, bn: nn.BatchNorm2d | nn.BatchNorm3d) -> nn.Conv2d | nn.Conv3d:
    """Return a new convolution computing bn(conv(x)) with the BN statistics folded in (eval semantics)."""
    kind = type(conv)
    fused = kind(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=True,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    assert bn.running_var is not None and bn.running_mean is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    fused.weight.copy_(conv.weight * scale.reshape(shape))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)  # type: ignore[union-attr]
    return fused
