"""The backend protocol: a pre-processed batch in, the raw model outputs out (ARCHITECTURE.md).

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
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from asfyolo_rt.errors import ConfigError, ExportError


@runtime_checkable
class Backend(Protocol):
    name: str  # "torch", "onnxruntime", "tensorrt"
    precision: str  # "fp32", "fp16", "bf16", "int8", "int8-cpu"
    input_shape: tuple[int, int] | None  # fixed (H, W) of a static model, None when any multiple of 32 works
    max_batch: int | None  # fixed batch of a static model, None when dynamic
    nc: int
    names: dict[int, str]

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class TorchBackend:
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


class OrtBackend:
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
        self.names = {int(k): v for k, v in _json_or(meta.get("names"), {"0": "cell"}).items()}
        self.nc = int(meta.get("nc", len(self.names)))
        self.precision = precision or meta.get("precision", "fp32")
        self.providers = self.session.get_providers()

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.detach().cpu().float().numpy()
        pred, protos = self.session.run(["pred", "protos"], {self.input_name: np.ascontiguousarray(x)})
        return torch.from_numpy(pred).float(), torch.from_numpy(protos).float()


def pad_to_static_batch(backend: Backend, x: torch.Tensor) -> torch.Tensor:
    """`x` padded with blank images up to a static-batch backend's batch (unchanged for dynamic batches)."""
    mb = backend.max_batch
    if mb and x.shape[0] < mb:
        x = torch.cat([x, x.new_zeros((mb - x.shape[0], *x.shape[1:]))])
    return x

def detect_batch(backend: Backend, x: torch.Tensor, *, conf: float, iou: float, max_det: int,
                 soft: bool = False) -> tuple[list[Any], torch.Tensor, float]:
    """One batch through a plain backend: padded to a static batch, forward, NMS on the real images.

    Returns one `Detections` per image of `x` (padding dropped), the prototypes (padded batch) and the
    forward time in seconds alone (NMS is post-processing in every caller's timing)."""
    import time

    from asfyolo_rt.infer.nms import non_max_suppression

    n_real = x.shape[0]
    x = pad_to_static_batch(backend, x)
    t0 = time.perf_counter()
    pred, protos = backend(x)
    forward_s = time.perf_counter() - t0
    dets = non_max_suppression(pred[:n_real], conf_threshold=conf, iou_threshold=iou, max_det=max_det, soft=soft)
    return dets, protos, forward_s


def _json_or(text: str | None, default: Any) -> Any:
    import json

    if not text:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return default


def load_backend(
    source: str | Path | torch.nn.Module,
    *,
    device: str = "cpu",
    precision: str = "fp32",
    kernel_impl: str = "torch",
    threads: int | None = None,
    ort_rtx: Any = None,  # an asfyolo_rt.infer.ort_rtx.OrtRtxOptions (or True): ONNX files on TensorRT-RTX
    backend: str | None = None,  # "openvino": ONNX files on OpenVINO (IR .xml files always are)
) -> Backend:
    """A backend for a checkpoint (.safetensors, official .pt), an ONNX file, an OpenVINO IR or a TensorRT engine."""
    if isinstance(source, torch.nn.Module):
        return TorchBackend(source, device=device, precision=precision, kernel_impl=kernel_impl)
    if backend not in (None, "onnxruntime", "openvino"):
        raise ConfigError(f"--backend {backend!r}: expected onnxruntime or openvino")
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix == ".xml" or (suffix == ".onnx" and backend == "openvino"):
        from asfyolo_rt.infer.openvino import OpenVinoBackend  # --backend openvino

        return OpenVinoBackend(path, precision=None if precision == "fp32" else precision, threads=threads)
    if backend == "openvino":
        raise ConfigError(f"--backend openvino runs ONNX files and OpenVINO IR (.xml), not {path.name}",
                          hint="pass --model BUNDLE/model.onnx or BUNDLE/model.int8-openvino.xml")
    if suffix == ".onnx" and ort_rtx:
        from asfyolo_rt.infer.ort_rtx import OrtRtxBackend  # --backend ort-rtx

        return OrtRtxBackend(path, ort_rtx, threads=threads)
    if suffix == ".onnx":
        from asfyolo_rt.infer.end2end import OrtEnd2EndBackend

        session = ort_session(path, threads=threads)  # one session; its outputs say which interface it has
        e2e = "num_dets" in [o.name for o in session.get_outputs()]  # export --end2end: NMS inside
        return (OrtEnd2EndBackend if e2e else OrtBackend)(path, threads=threads, session=session)
    if suffix in (".engine", ".plan"):
        from asfyolo_rt.export.engine.runner import (  # lazily: TensorRT, CUDA
            TensorRTBackend,
            TensorRTEnd2EndBackend,
        )
        from asfyolo_rt.export.engine.sidecar import read_sidecar

        e2e = read_sidecar(path).end2end if path.is_file() else False  # built from an `export --end2end` ONNX
        return (TensorRTEnd2EndBackend if e2e else TensorRTBackend)(path)  # type: ignore[return-value]
    if suffix == ".pt":
        from asfyolo_rt.model.weights import import_official

        model, cfg = import_official(path)
        return TorchBackend(model, device=device, precision=precision, kernel_impl=kernel_impl, names=cfg.names)
    if suffix == ".safetensors":
        from asfyolo_rt.model.weights import load_checkpoint

        model, cfg = load_checkpoint(path)
        return TorchBackend(model, device=device, precision=precision, kernel_impl=kernel_impl, names=cfg.names)
    raise ConfigError(
        f"don't know how to run {path}: expected .safetensors, .pt (official), .onnx, .xml (OpenVINO) or .engine/.plan",
    )
