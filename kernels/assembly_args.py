"""The scalar arguments of mask assembly, checked once for its two implementations: the PyTorch/Triton kernel
(`asfyolo_rt.kernels.mask_assembly`) and the NumPy twin (`asfyolo_rt.runtime.lean_ops.assemble_masks`). No
PyTorch import: the NumPy path must not pay for it."""

from __future__ import annotations

import math
from collections.abc import Sequence

from asfyolo_rt.errors import ConfigError


def check_geometry(who: str, out_size: Sequence[float], threshold: float, scale: float,
                   pad: Sequence[float]) -> tuple[tuple[int, int], tuple[float, float]]:
    """ConfigError naming `who` for a bad output size, threshold, scale or pad; else ((H, W), (pad_x, pad_y))."""
    if len(out_size) != 2 or any(int(v) != v or v < 1 for v in out_size):
        raise ConfigError(f"{who}: out_size={out_size!r}; expected two positive integers (H, W)")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"{who}: threshold={threshold}; expected a probability in (0, 1)")
    if not (math.isfinite(scale) and scale > 0):
        raise ConfigError(f"{who}: scale={scale}; expected a finite number > 0")
    if len(pad) != 2 or not all(math.isfinite(p) for p in pad):
        raise ConfigError(f"{who}: pad={pad!r}; expected two finite numbers (pad_x, pad_y)")
    return (int(out_size[0]), int(out_size[1])), (float(pad[0]), float(pad[1]))
