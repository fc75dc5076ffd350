"""Parameter and FLOP counts, output shapes: what `asfyolo-rt info` prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from asfyolo_rt.model.asfyolo import ASFYOLO


@dataclass(frozen=True)
class ModelInfo:
    variant: str
    nc: int
    img_size: tuple[int, int]
    parameters: int
    gflops: float  # 2 x multiply-accumulates of every convolution, at img_size, batch 1
    gflops_fused: float  # same after Conv+BN fusion (adds the folded biases)
    layers: int
    head_outputs: list[list[int]]  # training-mode raw outputs per level, (B, na, H, W, no)
    pred_shape: list[int]  # decoded inference output (B, N, 5 + nc + 32)
    protos_shape: list[int]  # (B, 32, H/4, W/4)

    def to_dict(self) -> dict:
        return asdict(self)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, x: torch.Tensor) -> float:
    """GFLOPs = 2 * MACs of all Conv1d/2d/3d layers for one forward pass on `x` (+1 per output for a bias)."""
    total = 0

    def hook(m: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
        k = 1
        for d in m.kernel_size:
            k *= d
        total += out.numel() * (m.in_channels // m.groups) * k * 2
        if m.bias is not None:
            total += out.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return total / 1e9 / x.shape[0]


def model_info(model: ASFYOLO, img_size: int | tuple[int, int] = 640) -> ModelInfo:
    """Counts and shapes of `model` at `img_size` (the model is not modified)."""
    import copy

    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    x = torch.zeros(1, 3, h, w)
    was_training = model.training
    model.eval()
    try:
        gflops = count_flops(model, x)
        with torch.no_grad():
            pred, protos = model(x)
            model.train()
            levels, _ = model(x)
        model.eval()
        fused = copy.deepcopy(model).fuse()
        gflops_fused = count_flops(fused, x)
    finally:
        model.train(was_training)
    return ModelInfo(
        variant=model.variant,
        nc=model.nc,
        img_size=(h, w),
        parameters=count_parameters(model),
        gflops=round(gflops, 2),
        gflops_fused=round(gflops_fused, 2),
        layers=sum(1 for _ in model.modules()),
        head_outputs=[list(t.shape) for t in levels],  # type: ignore[union-attr]
        pred_shape=list(pred.shape),  # type: ignore[union-attr]
        protos_shape=list(protos.shape),
    )
