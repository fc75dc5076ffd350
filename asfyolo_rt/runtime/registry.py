"""The backend registry: one entry per runtime, each opened from a picklable `BackendSpec`.

A worker process (a Dask task, a `segment_many` reader thread's peer, a C-runtime parity test) gets a
`BackendSpec` (path, runtime, precision, device, threads, options), pickles it, and opens the backend
itself with `spec.open()`: backends hold sessions, compiled models and CUDA memory, which never cross a
process boundary.

Adding a backend is one module with an ``open(spec) -> Backend`` function and one `register` call below.
The CLI's ``--backend`` choices and their precisions come from `runtimes()`.

Example:
    >>> from asfyolo_rt.runtime.registry import BackendSpec, runtimes
    >>> runtimes()
    ['onnxruntime', 'onnxruntime-rtx', 'openvino', 'tensorrt', 'torch']
    >>> spec = BackendSpec("dsb2018")          # the shipped model, runtime chosen from the file (torch)
    >>> spec.resolved_runtime()
    'torch'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.infer.protocol import Backend

Opener = Callable[["BackendSpec"], Backend]


@dataclass(frozen=True)
class RuntimeEntry:
    """One registered runtime: its name, the module function that opens a spec, the files it runs (by
    suffix), its precisions (the first is the default), and a one-line description for --help."""

    name: str
    opener: str  # "module:function", imported on first use (no runtime is imported to list them)
    suffixes: tuple[str, ...]
    precisions: tuple[str, ...]
    description: str
    auto: bool = True  # chosen by suffix when runtime="auto" (the first registered auto entry wins)

    def open(self, spec: BackendSpec) -> Backend:
        module, func = self.opener.split(":")
        fn: Opener = getattr(importlib.import_module(module), func)
        return fn(spec)


_REGISTRY: dict[str, RuntimeEntry] = {}


def register(entry: RuntimeEntry) -> None:
    """Add (or replace) a runtime."""
    _REGISTRY[entry.name] = entry


def runtimes() -> list[str]:
    return sorted(_REGISTRY)


def entry(name: str) -> RuntimeEntry:
    if name not in _REGISTRY:
        raise ConfigError(f"--backend {name!r}: expected one of {', '.join(runtimes())}")
    return _REGISTRY[name]


@dataclass(frozen=True)
class BackendSpec:
    """Everything needed to open a backend, in plain picklable values.

    path: a model file (.safetensors, official .pt, .onnx, OpenVINO .xml, .engine/.plan) or a shipped name;
    runtime: a registered runtime or "auto" (from the file's suffix); precision: what the runtime runs
    ("fp32" default; OpenVINO bf16/int8, PyTorch fp16/bf16; exported files carry their own); device: "cpu" or
    "cuda[:N]"; threads: intra-op threads (None: the runtime's default); kernel_impl: PyTorch's CPAM/mask
    kernels ("torch" reference or "triton"); options: runtime-specific settings as (key, value) pairs.
    """

    path: str
    runtime: str = "auto"
    precision: str = "fp32"
    device: str = "cpu"
    threads: int | None = None
    kernel_impl: str = "torch"
    options: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", str(self.path))

    @property
    def file(self) -> Path:
        from asfyolo_rt.weights_registry import resolve_weights

        return resolve_weights(self.path, option="model")

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def resolved_runtime(self) -> str:
        """The runtime that opens this spec: the one named, else the first auto entry for the file's suffix."""
        if self.runtime != "auto":
            e = entry(self.runtime)
            suffix = self.file.suffix.lower()
            if suffix not in e.suffixes:
                raise ConfigError(f"--backend {e.name} runs {'/'.join(e.suffixes)} files, not {self.file.name}",
                                  hint=_hint_for(suffix))
            return e.name
        suffix = self.file.suffix.lower()
        for e in _REGISTRY.values():
            if e.auto and suffix in e.suffixes:
                return e.name
        raise ConfigError(f"don't know how to run {self.file}: expected .safetensors, .pt (official), .onnx, "
                          ".xml (OpenVINO) or .engine/.plan")

    def open(self) -> Backend:
        """The backend (in this process); a model file of an export that did not finish (a folder with export
        records but no bundle.json, `asfyolo_rt.infer.bundle_check`) is opened with one warning per folder."""
        runtime = self.resolved_runtime()
        from asfyolo_rt.infer.bundle_check import warn_if_unfinished

        warn_if_unfinished(self.file)
        return entry(runtime).open(self)


def _hint_for(suffix: str) -> str:
    by = [e.name for e in _REGISTRY.values() if suffix in e.suffixes]
    return f"{suffix or 'this'} files run on: {', '.join(by)}" if by else "pass an exported model (.onnx, .xml, .engine)"


def open_backend(spec: BackendSpec) -> Backend:
    return spec.open()


# ------------------------------------------------------------------------------------------ openers
def open_torch(spec: BackendSpec) -> Backend:
    from asfyolo_rt.infer.backends import TorchBackend

    path = spec.file
    if path.suffix.lower() == ".pt":
        from asfyolo_rt.model.weights import import_official

        model, cfg = import_official(path)
    else:
        from asfyolo_rt.model.weights import load_checkpoint

        model, cfg = load_checkpoint(path)
    if spec.threads:
        import torch

        torch.set_num_threads(int(spec.threads))
    return TorchBackend(model, device=spec.device, precision=spec.precision, kernel_impl=spec.kernel_impl,
                        names=cfg.names)


def open_onnxruntime(spec: BackendSpec) -> Backend:
    from asfyolo_rt.infer.ort import OrtBackend, ort_session

    path = spec.file
    session = ort_session(path, threads=spec.threads)  # one session; its outputs say which interface it has
    if "num_dets" in [o.name for o in session.get_outputs()]:  # export --end2end: NMS inside
        from asfyolo_rt.infer.end2end import OrtEnd2EndBackend

        return OrtEnd2EndBackend(path, threads=spec.threads, session=session)
    return OrtBackend(path, threads=spec.threads, session=session)


def open_openvino(spec: BackendSpec) -> Backend:
    from asfyolo_rt.infer.openvino import OpenVinoBackend

    return OpenVinoBackend(spec.file, precision=None if spec.precision == "fp32" else spec.precision,
                           threads=spec.threads)


def open_ort_rtx(spec: BackendSpec) -> Backend:
    from asfyolo_rt.infer.ort_rtx import OrtRtxBackend, OrtRtxOptions

    opts = spec.option("ort_rtx")
    if not isinstance(opts, OrtRtxOptions):
        opts = OrtRtxOptions(**dict(opts or {}))
    return OrtRtxBackend(spec.file, opts, threads=spec.threads)


def open_tensorrt(spec: BackendSpec) -> Backend:
    from asfyolo_rt.infer.sidecar import read_sidecar
    from asfyolo_rt.infer.tensorrt import TensorRTBackend, TensorRTEnd2EndBackend  # lazily: TensorRT, CUDA

    path = spec.file
    e2e = read_sidecar(path).end2end if path.is_file() else False  # built from an `export --end2end` ONNX
    device = int(spec.device.split(":")[1]) if spec.device.startswith("cuda:") else 0
    return (TensorRTEnd2EndBackend if e2e else TensorRTBackend)(path, device=device)


register(RuntimeEntry("torch", f"{__name__}:open_torch", (".safetensors", ".pt"), ("fp32", "fp16", "bf16"),
                      "PyTorch eager (CPU or CUDA): checkpoints and official .pt files"))
register(RuntimeEntry("onnxruntime", f"{__name__}:open_onnxruntime", (".onnx",), ("fp32",),
                      "ONNX Runtime (CPU; CUDA where installed): plain and end-to-end ONNX, every exported precision"))
register(RuntimeEntry("openvino", f"{__name__}:open_openvino", (".xml", ".onnx"), ("fp32", "bf16", "int8"),
                      "OpenVINO on the CPU: IR (.xml) and ONNX files; bf16 on AVX512-BF16/AMX CPUs"))
register(RuntimeEntry("onnxruntime-rtx", f"{__name__}:open_ort_rtx", (".onnx",), ("fp32",),
                      "ONNX Runtime's TensorRT-RTX execution provider (RTX GPUs)", auto=False))
register(RuntimeEntry("tensorrt", f"{__name__}:open_tensorrt", (".engine", ".plan"), ("fp32", "fp16", "int8"),
                      "TensorRT / TensorRT-RTX engines with their sidecar (GPU)"))
# ".xml" files are only OpenVINO's: auto picks openvino for them, onnxruntime for .onnx (registered first)


def load_backend(
    source: str | Path | Any,
    *,
    device: str = "cpu",
    precision: str = "fp32",
    kernel_impl: str = "torch",
    threads: int | None = None,
    ort_rtx: Any = None,  # an asfyolo_rt.infer.ort_rtx.OrtRtxOptions (or True): ONNX files on TensorRT-RTX
    backend: str | None = None,  # a registered runtime (--backend); None: from the file
) -> Backend:
    """A backend for a checkpoint, an exported file or a torch module (the CLI's options as keywords)."""
    import torch

    if isinstance(source, torch.nn.Module):
        from asfyolo_rt.infer.backends import TorchBackend

        return TorchBackend(source, device=device, precision=precision, kernel_impl=kernel_impl)
    runtime = backend or "auto"
    options: tuple[tuple[str, Any], ...] = ()
    if ort_rtx:
        runtime = "onnxruntime-rtx"
        options = (("ort_rtx", None if ort_rtx is True else ort_rtx),)
    if runtime == "openvino" and Path(str(source)).suffix.lower() not in (".onnx", ".xml"):
        raise ConfigError(f"--backend openvino runs ONNX files and OpenVINO IR (.xml), not {Path(str(source)).name}",
                          hint="pass --model BUNDLE/model.onnx or BUNDLE/model.int8-openvino.xml")
    spec = BackendSpec(str(source), runtime=runtime, precision=precision, device=device, threads=threads,
                       kernel_impl=kernel_impl, options=options)
    return spec.open()
