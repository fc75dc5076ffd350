"""The three modules ASF-YOLO adds to the YOLOv5-seg neck (ASF-YOLO.md §3).

- `TripleFeatureEncoder` (TFE; upstream `Zoom_cat`): parameter-free fusion of three scales.
- `ScaleSequenceFusion` (SSFF; upstream `ScalSeq`): backbone P3/P4/P5 stacked along a scale axis,
  shared pointwise 3-D conv + BN + LeakyReLU, max over scales.
- `ChannelPositionAttention` (CPAM; upstream `attention_model` = `channel_att` + `local_att`).

Everything here exports to ONNX with input-size independent semantics: no adaptive pooling to a
non-1 size (ONNX exporters bake it to the traced size, TOOLCHAIN.md), means over a dimension instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asfyolo_rt.model.blocks import BN_EPS, BN_MOMENTUM, Conv, fuse_conv_bn


class TripleFeatureEncoder(nn.Module):
    """TFE: concat [maxpool2(L) + avgpool2(L), M, nearest2x(S)] along channels.

    Inputs, in this order: L (B, c, 2H, 2W), M (B, c, H, W), S (B, c, H/2, W/2); output (B, 3c, H, W).
    Upstream uses adaptive max+avg pooling of L to M's size; for inputs that are multiples of 32 (always
    true here) that is exactly a 2x2, stride-2 max pool plus a 2x2, stride-2 average pool.
    """

    def forward(self, x: list[Tensor]) -> Tensor:
        large, medium, small = x
        large = F.max_pool2d(large, 2, 2) + F.avg_pool2d(large, 2, 2)
        small = F.interpolate(small, scale_factor=2.0, mode="nearest")
        return torch.cat((large, medium, small), dim=1)


class ScaleSequenceFusion(nn.Module):
    """SSFF: y = max over s in {P3, up2(conv1(P4)), up4(conv2(P5))} of LeakyReLU_0.1(BN3d(W x_s + b)).

    Inputs: P3 (B, C, H, W) used as is, P4 (B, c4, H/2, W/2), P5 (B, c5, H/4, W/4) (backbone maps,
    P5 taken before SPPF). Output (B, C, H, W). The "3-D conv" has kernel 1x1x1 and a bias; the
    BatchNorm3d keeps PyTorch defaults (eps 1e-5, momentum 0.1) as upstream does.
    """

    def __init__(self, c3: int, c4: int, c5: int) -> None:
        super().__init__()
        self.conv1 = Conv(c4, c3, 1)
        self.conv2 = Conv(c5, c3, 1)
        self.conv3d = nn.Conv3d(c3, c3, kernel_size=(1, 1, 1))
        self.bn: nn.Module = nn.BatchNorm3d(c3)
        self.act = nn.LeakyReLU(0.1, inplace=True)
        self.pool_3d = nn.MaxPool3d(kernel_size=(3, 1, 1))

    def forward(self, x: list[Tensor]) -> Tensor:
        p3, p4, p5 = x
        p4 = F.interpolate(self.conv1(p4), scale_factor=2.0, mode="nearest")
        p5 = F.interpolate(self.conv2(p5), scale_factor=4.0, mode="nearest")
        stack = torch.stack((p3, p4, p5), dim=2)  # (B, C, 3, H, W): the scale axis is depth
        return self.pool_3d(self.act(self.bn(self.conv3d(stack)))).squeeze(2)

    def fuse(self) -> None:
        if not isinstance(self.bn, nn.Identity):
            self.conv3d = fuse_conv_bn(self.conv3d, self.bn)  # type: ignore[assignment,arg-type]
            self.bn = nn.Identity()


def eca_kernel_size(channels: int, b: int = 1, gamma: int = 2) -> int:
    """ECA kernel size: int(|(log2 C + b) / gamma|), made odd by +1 (C=256 -> 5, C=64 -> 3)."""
    k = int(abs((math.log2(channels) + b) / gamma))
    return k if k % 2 else k + 1


class ChannelPositionAttention(nn.Module):
    """CPAM: V = U * s_h * s_w with U = T * a + S (ASF-YOLO.md §3.3).

    Inputs T (B, C, H, W) = neck P3 ("detail" branch) and S (B, C, H, W) = SSFF output.
    a = sigmoid(conv1d_k(mean_hw T)) (ECA, no reduction); position attention on U with reduction r:
    [mean_w U ; mean_h U] -> 1x1 conv C->C/r -> BN -> ReLU -> split -> 1x1 convs C/r->C -> sigmoid.

    `impl` selects the inference implementation: "torch" (this module's reference code) or "auto"
    (the fused Triton kernel of asfyolo_rt.kernels.cpam on CUDA tensors when not training).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        k = eca_kernel_size(channels)
        hidden = channels // reduction
        # Channel attention (upstream `channel_att`).
        self.eca = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        # Position attention (upstream `local_att`).
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=False)
        self.reduce_bn: nn.Module = nn.BatchNorm2d(hidden, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.proj_h = nn.Conv2d(hidden, channels, 1, bias=False)
        self.proj_w = nn.Conv2d(hidden, channels, 1, bias=False)
        self.impl = "torch"

    def channel_gate(self, t: Tensor) -> Tensor:
        """a: (B, C, 1, 1) in (0, 1)."""
        g = t.mean(dim=(2, 3)).unsqueeze(1)  # (B, 1, C)
        return torch.sigmoid(self.eca(g)).transpose(1, 2).unsqueeze(-1)

    def forward(self, x: list[Tensor]) -> Tensor:
        t, s = x
        if not self.training and (self.impl == "triton" or (self.impl == "auto" and t.is_cuda)):
            return self._fused(t, s)  # explicit "triton" on CPU raises unless TRITON_INTERPRET=1
        u = t * self.channel_gate(t) + s
        h, w = u.shape[-2:]
        z_h = u.mean(dim=3, keepdim=True).transpose(2, 3)  # (B, C, 1, H)
        z_w = u.mean(dim=2, keepdim=True)  # (B, C, 1, W)
        y = self.relu(self.reduce_bn(self.reduce(torch.cat((z_h, z_w), dim=3))))
        y_h, y_w = torch.split(y, [h, w], dim=3)
        s_h = torch.sigmoid(self.proj_h(y_h.transpose(2, 3)))  # (B, C, H, 1)
        s_w = torch.sigmoid(self.proj_w(y_w))  # (B, C, 1, W)
        return u * s_h * s_w

    def folded_reduce(self) -> tuple[Tensor, Tensor]:
        """The reduce conv with its BatchNorm folded in: weight (C/r, C), bias (C/r,)."""
        conv = self.reduce if isinstance(self.reduce_bn, nn.Identity) else fuse_conv_bn(self.reduce, self.reduce_bn)  # type: ignore[arg-type]
        w = conv.weight.flatten(1)
        b = conv.bias if conv.bias is not None else torch.zeros(w.shape[0], device=w.device, dtype=w.dtype)
        return w, b

    def _fused(self, t: Tensor, s: Tensor) -> Tensor:
        from asfyolo_rt.kernels.cpam import cpam

        w, b = self.folded_reduce()
        return cpam(
            t, s, self.eca.weight.flatten(), w, b, self.proj_h.weight.flatten(1), self.proj_w.weight.flatten(1),
            impl=self.impl,  # type: ignore[arg-type]
        )

    def fuse(self) -> None:
        if not isinstance(self.reduce_bn, nn.Identity):
            self.reduce = fuse_conv_bn(self.reduce, self.reduce_bn)  # type: ignore[assignment,arg-type]
            self.reduce_bn = nn.Identity()
