"""ONNX Runtime: the session every ONNX backend opens, and the plain-model backend (no PyTorch import: its
outputs become tensors only where a PyTorch pipeline asks, `OrtBackend.__call__`; `run_numpy` serves the
PyTorch-free one, `asfyolo_rt.runtime.lean`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asfyolo_rt.errors import ConfigError, ExportError
from asfyolo_rt.infer.protocol import PlainBackend, json_or

if TYPE_CHECKING:
    import torch

__all__ = ["OrtBackend", "ort_session"]


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
        fixed = [isinstance(s, int) and s > 0 for s in shape[2:]]
        if len(shape) != 4 or fixed[0] != fixed[1]:
            raise ConfigError(f"{self.path}: input {shape} has one dynamic side; expected N x 3 x H x W with H and W "
                              "both fixed or both dynamic", hint="re-export it with `asfyolo-rt export`")
        self.input_shape = (shape[2], shape[3]) if all(fixed) else None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.names = {int(k): v for k, v in json_or(meta.get("names"), {"0": "cell"}).items()}
        self.nc = int(meta.get("nc", len(self.names)))
        self.precision = precision or meta.get("precision", "fp32")
        self.providers = self.session.get_providers()
        # the CPU provider takes a new tile shape at no cost (each image gets its own tile); CUDA and TensorRT-RTX
        # tune or build per shape
        self.per_image_tiles = self.providers == ["CPUExecutionProvider"]

    def run_numpy(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pred, protos) float32 arrays of a (B, 3, H, W) float32 batch (the PyTorch-free pipeline's call)."""
        pred, protos = self.session.run(["pred", "protos"], {self.input_name: np.ascontiguousarray(x, np.float32)})
        return np.asarray(pred, np.float32), np.asarray(protos, np.float32)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        pred, protos = self.run_numpy(images.detach().cpu().float().numpy())
        return torch.from_numpy(pred), torch.from_numpy(protos)
