"""ONNX Runtime on TensorRT-RTX (`--backend ort-rtx`): our ONNX files on RTX GPUs without leaving ONNX Runtime.

NVIDIA ships TensorRT-RTX for ONNX Runtime as a plugin execution provider (ORT plugin EP ABI, ONNX Runtime
>= 1.23): `pip install onnxruntime-ep-nv-tensorrt-rtx-cu12` (or `-cu13`), module `onnxruntime_ep_nv_tensorrt_rtx`
(`get_ep_name()`, `get_library_path()`), registered with `ort.register_execution_provider_library`, its GPUs
listed by `ort.get_ep_devices()` and added with `SessionOptions.add_provider_for_devices`. Some ONNX Runtime
builds have it built in as `NvTensorRTRTXExecutionProvider`; both are supported, the plugin first.

It needs an RTX GPU (Ampere or newer) and its driver: on a machine without one (this project's CI) creating
the backend raises one clear EngineBuildError saying what is missing. The provider compiles the ONNX graph
just in time on the GPU; `cache_dir` keeps its runtime cache (`nv_runtime_cache_path`) so later sessions
start in seconds. There is no silent CPU fallback: nodes TensorRT-RTX cannot run make the session fail
unless `allow_cpu_fallback=True`. Never run here: no GPU (see README).

Same interface as `OrtBackend`: images (B, 3, H, W) float32 in [0, 1] -> (pred, protos) CPU torch tensors.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asfyolo_rt.errors import ConfigError, EngineBuildError, ExportError
from asfyolo_rt.infer.backends import OrtBackend

PLUGIN_MODULE = "onnxruntime_ep_nv_tensorrt_rtx"
BUILTIN_PROVIDER = "NvTensorRTRTXExecutionProvider"
INSTALL_HINT = ("pip install onnxruntime-ep-nv-tensorrt-rtx-cu12 (CUDA 12) or onnxruntime-ep-nv-tensorrt-rtx-cu13, "
                "with onnxruntime >= 1.24 and not onnxruntime-gpu; it runs on RTX GPUs (Ampere or newer). Without "
                "one use --backend onnxruntime, or a TensorRT-RTX engine from `asfyolo-rt build --runtime rtx`")


@dataclass(frozen=True)
class OrtRtxOptions:
    """Options of the TensorRT-RTX execution provider (`--backend ort-rtx`).

    device_id: CUDA device index of the RTX GPU.
    cache_dir: folder for the provider's runtime cache (just-in-time compiled kernels); created if missing;
        None: no cache (every session compiles again).
    cuda_graph: capture the run in a CUDA graph (static shapes only; fewer launches per frame).
    max_workspace_bytes: TensorRT-RTX workspace limit; None: the provider's default.
    allow_cpu_fallback: let ONNX Runtime run nodes TensorRT-RTX rejects on the CPU (default: the session fails
        instead, so a result never silently comes from the CPU).
    """

    device_id: int = 0
    cache_dir: Path | None = None
    cuda_graph: bool = False
    max_workspace_bytes: int | None = None
    allow_cpu_fallback: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.device_id, bool) or not isinstance(self.device_id, int) or self.device_id < 0:
            raise ConfigError(f"ort-rtx device_id {self.device_id!r}: expected a CUDA device index >= 0")
        if self.max_workspace_bytes is not None and self.max_workspace_bytes < 1:
            raise ConfigError(f"ort-rtx max_workspace_bytes {self.max_workspace_bytes}: expected >= 1 or None")
        if self.cache_dir is not None and Path(self.cache_dir).exists() and not Path(self.cache_dir).is_dir():
            raise ConfigError(f"ort-rtx cache_dir {self.cache_dir} is a file; expected a folder")

    def provider_options(self) -> dict[str, str]:
        """The provider's option strings (ONNX Runtime takes strings)."""
        opts = {"device_id": str(self.device_id), "enable_cuda_graph": "1" if self.cuda_graph else "0"}
        if self.cache_dir is not None:
            opts["nv_runtime_cache_path"] = str(self.cache_dir)
        if self.max_workspace_bytes is not None:
            opts["nv_max_workspace_size"] = str(self.max_workspace_bytes)
        return opts


def _plugin() -> Any | None:
    try:
        return importlib.import_module(PLUGIN_MODULE)
    except ImportError:
        return None


def session_options(options: OrtRtxOptions) -> tuple[Any, list[Any] | None]:
    """(ort.SessionOptions with the plugin's device added, None) or (SessionOptions, built-in providers list).

    EngineBuildError when the provider is not installed or finds no GPU (the message says which).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if not options.allow_cpu_fallback:
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if options.cache_dir is not None:
        Path(options.cache_dir).mkdir(parents=True, exist_ok=True)
    plugin = _plugin()
    if plugin is None:
        if BUILTIN_PROVIDER in ort.get_available_providers():
            return so, [(BUILTIN_PROVIDER, options.provider_options())]
        raise EngineBuildError(
            f"--backend ort-rtx: ONNX Runtime's TensorRT-RTX execution provider is not installed (no module "
            f"{PLUGIN_MODULE}, and onnxruntime {ort.__version__} here offers only "
            f"{', '.join(ort.get_available_providers())})", hint=INSTALL_HINT)
    name = str(plugin.get_ep_name())
    try:
        ort.register_execution_provider_library(name, str(plugin.get_library_path()))
    except Exception as exc:
        if "already registered" not in str(exc).lower():
            raise EngineBuildError(f"--backend ort-rtx: ONNX Runtime cannot load the TensorRT-RTX provider "
                                   f"library ({type(exc).__name__}: {str(exc)[:200]})", hint=INSTALL_HINT) from exc
    devices = [d for d in ort.get_ep_devices() if d.ep_name == name]
    if not devices:
        raise EngineBuildError("--backend ort-rtx: the TensorRT-RTX provider is installed but found no RTX GPU "
                               "(no driver, or no Ampere-or-newer NVIDIA GPU on this machine)", hint=INSTALL_HINT)
    if options.device_id >= len(devices):
        raise ConfigError(f"ort-rtx device_id {options.device_id}: the TensorRT-RTX provider sees {len(devices)} "
                          f"GPU(s) (ids 0-{len(devices) - 1})")
    so.add_provider_for_devices([devices[options.device_id]], options.provider_options())
    return so, None


class OrtRtxBackend(OrtBackend):
    """One of our exported ONNX files run by ONNX Runtime on TensorRT-RTX (module docstring)."""

    name = "onnxruntime-rtx"

    def __init__(self, path: str | Path, options: OrtRtxOptions | bool = True, *, threads: int | None = None,
                 precision: str | None = None) -> None:
        import onnxruntime as ort

        opts = OrtRtxOptions() if options is True else options
        if not isinstance(opts, OrtRtxOptions):
            raise ConfigError(f"ort-rtx options {options!r}: expected an OrtRtxOptions")
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"ONNX model {self.path} does not exist", hint="export one with `asfyolo-rt export`")
        self.options = opts
        so, providers = session_options(opts)
        if threads:
            so.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=so, providers=providers)
        except Exception as exc:
            raise ExportError(f"ONNX Runtime (TensorRT-RTX) cannot load {self.path}: {str(exc)[:300]}",
                              hint="allow_cpu_fallback=True runs unsupported nodes on the CPU") from exc
        self._describe_session(precision)
