"""Plain backends in PyTorch and ONNX Runtime (the protocol: `asfyolo_rt.infer.protocol`; the registry that
opens every backend from a spec: `asfyolo_rt.runtime.registry`).

Every backend takes images (B, 3, H, W) float32 in [0, 1], RGB, letterboxed by
`asfyolo_rt.data.letterbox.preprocess`, and returns `(pred, protos)`:
- pred: (B, N, 5 + nc + 32) float32: cx, cy, w, h (network pixels), objectness and class
  probabilities, raw mask coefficients;
- protos: (B, 32, H/4, W/4) float32.
Outputs are torch tensors (CPU for ONNX Runtime; on the model's device for PyTorch), so one
post-processing serves every backend. Parity is evaluation run per backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.infer.ort import OrtBackend, ort_session
from asfyolo_rt.infer.protocol import Backend, PlainBackend, detect_batch, pad_to_static_batch

__all__ = ["Backend", "OrtBackend", "PlainBackend", "TorchBackend", "detect_batch", "ort_session",
           "pad_to_static_batch"]


@dataclass
class TorchBackend(PlainBackend):
    """PyTorch eager inference (CPU or CUDA; fp32, fp16 or bf16; reference or Triton kernels)."""

    model: torch.nn.Module
    device: str = "cpu"
    precision: str = "fp32"
    kernel_impl: str = "torch"
    names: dict[int, str] = field(default_factory=lambda: {0: "cell"})
    name: str = "torch"
    input_shape: tuple[int, int] | None = None
    max_batch: int | None = None

    def __post_init__(self) -> None:
        dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        if self.precision not in dtypes:
            raise ConfigError(f"PyTorch backend precision must be one of {sorted(dtypes)}, got {self.precision!r}")
        self.dtype = dtypes[self.precision]
        self.model = self.model.to(self.device, self.dtype).eval()
        set_impl = getattr(self.model, "set_kernel_impl", None)
        if callable(set_impl):
            set_impl(self.kernel_impl)
        self.nc = int(getattr(self.model, "nc", 1))

    @property
    def per_image_tiles(self) -> bool:
        """A new tile shape costs nothing on the CPU (the stages give each image its own tile there)."""
        return str(self.device).startswith("cpu")

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pred, protos = self.model(images.to(self.device, self.dtype, non_blocking=True))
        return pred.float(), protos.float()  # type: ignore[union-attr]
