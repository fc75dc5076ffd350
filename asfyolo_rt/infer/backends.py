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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asfyolo_rt.errors import ConfigError, ExportError
from asfyolo_rt.infer.protocol import Backend, PlainBackend, detect_batch, json_or, pad_to_static_batch

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

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pred, protos = self.model(images.to(self.device, self.dtype, non_blocking=True))
        return pred.float(), protos.float()  # type: ignore[union-attr]


def ort_session(path: Path, *, providers: list[str] | None = None, threads: int | None = None) -> Any:
    """An ONNX Runtime InferenceSession for `path` (full graph optimisation; CUDA first where installed)."""
    from asfyolo_rt.privacy import disable_telemetry

    disable_telemetry()  # before the import: ONNX Runtime reads its switch when the library loads
    import onnxruntime as ort

    if not path.is_file():
        raise ConfigError(f"ONNX model {path} does not exist", hint="export one with `asfyolo-rt export`")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    available = ort.get_available_providers()
    providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot load {path}: {exc}") from exc


class OrtBackend(PlainBackend):
    """ONNX Runtime (CPU provider, or CUDA where installed) running one of our exported ONNX files."""

    name = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        *,
        providers: list[str] | None = None,
        threads: int | None = None,
        precision: str | None = None,
        session: Any = None,  # an already created InferenceSession of `path` (load_backend reuses its own)
    ) -> None:
        self.path = Path(path)
        self.session = session if session is not None else ort_session(self.path, providers=providers, threads=threads)
        self._describe_session(precision)

    def _describe_session(self, precision: str | None) -> None:
        """Input name, static shape/batch, names, nc and precision from the loaded session (shared with
        the TensorRT-RTX execution-provider backend)."""
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        if len(inputs) != 1 or "pred" not in outputs or "protos" not in outputs:
            raise ConfigError(
                f"{self.path}: expected one input and outputs 'pred' and 'protos', got inputs "
                f"{[i.name for i in inputs]} and outputs {outputs}",
                hint="end-to-end (--end2end) models have a different interface; use the plain model.onnx",
            )
        self._session_info(precision)

    def _session_info(self, precision: str | None) -> None:
        """Input name, static shape/batch, class names, nc and precision of the loaded session."""
        inputs = self.session.get_inputs()
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        self.max_batch = shape[0] if isinstance(shape[0], int) else None
        self.input_shape = (shape[2], shape[3]) if all(isinstance(s, int) for s in shape[2:]) else None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.names = {int(k): v for k, v in json_or(meta.get("names"), {"0": "cell"}).items()}
        self.nc = int(meta.get("nc", len(self.names)))
        self.precision = precision or meta.get("precision", "fp32")
        self.providers = self.session.get_providers()

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.detach().cpu().float().numpy()
        pred, protos = self.session.run(["pred", "protos"], {self.input_name: np.ascontiguousarray(x)})
        return torch.from_numpy(pred).float(), torch.from_numpy(protos).float()
