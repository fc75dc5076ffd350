"""One TensorRT layer for TensorRT 8.6-11.x and TensorRT-RTX 1.x, chosen by feature detection.

`load_tensorrt(runtime)` imports the module lazily and returns a `TensorRTApi`: the module plus what it
can do, read from the module itself (`hasattr` on its enums and classes), never from its version number:

| feature                  | TensorRT 8.6 | 10.x        | 11.x   | TensorRT-RTX 1.x | detected by                                    |
| ------------------------ | ------------ | ----------- | ------ | ---------------- | ---------------------------------------------- |
| builder precision flags  | yes          | yes         | no     | no               | `BuilderFlag.FP16` (legacy path, TensorRT < 11) |
| strongly typed networks  | no           | opt-in flag | always | always           | `NetworkDefinitionCreationFlag.STRONGLY_TYPED` |
| EXPLICIT_BATCH needed    | yes          | no (no-op)  | no     | no               | EXPLICIT_BATCH present, STRONGLY_TYPED absent  |
| AOT Python plugins       | no           | >= 10.9     | yes    | no               | `PREFER_AOT_PYTHON_PLUGINS`                    |
| target GPU architectures | no           | no          | no     | yes              | `IBuilderConfig.set_compute_capability`        |
| DLA                      | Jetson       | Jetson      | 11.4.1 | no               | `DeviceType.DLA` and `Builder.num_DLA_cores`   |

Two facts cannot be read from the API and follow from the flavour (the module TensorRT-RTX ships as):
TensorRT-RTX has an `add_nms` method but no NonMaxSuppression runner, and a timing cache makes its
ahead-of-time builder query a GPU. `BuilderFlag` integer values differ between the flavours: flags are
always looked up by name.

Module names: standard TensorRT is `tensorrt` (pip `tensorrt`, JetPack's python3-libnvinfer); TensorRT-RTX
is `tensorrt_rtx` (NVIDIA's samples) or `tensorrt_rtx_bindings` (the PyPI wheels
tensorrt-rtx-cu12-bindings + tensorrt-rtx-cu12-libs, extra `asfyolo-rt[rtx]`).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from asfyolo_rt.errors import ConfigError, EngineBuildError

RUNTIMES = ("auto", "trt", "rtx")
RTX_MODULES = ("tensorrt_rtx", "tensorrt_rtx_bindings")
_INSTALL = {
    "trt": "install TensorRT on the target device (pip install 'asfyolo-rt[trt]', or JetPack's python3-libnvinfer)",
    "rtx": "install TensorRT-RTX: pip install 'asfyolo-rt[rtx]' (tensorrt-rtx-cu12-bindings + tensorrt-rtx-cu12-libs)",
}


@dataclass(frozen=True)
class TensorRTApi:
    """An imported TensorRT flavour and its detected features (module docstring)."""

    module: Any  # the imported module (typed Any: the two flavours have different stubs)
    runtime: str  # "trt" (standard TensorRT) or "rtx" (TensorRT-RTX)
    module_name: str
    version: str
    precision_flags: bool
    strongly_typed_flag: bool
    explicit_batch_flag: bool
    aot_plugins: bool
    target_archs: bool
    dla: bool

    @property
    def name(self) -> str:
        """'TensorRT' or 'TensorRT-RTX' (what the sidecar's `runtime` field and messages say)."""
        return "TensorRT-RTX" if self.runtime == "rtx" else "TensorRT"

    @property
    def display(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def nms_runner(self) -> bool:
        """Whether ONNX NonMaxSuppression builds (TensorRT-RTX: parsed, but no runner implements it)."""
        return self.runtime != "rtx"

    @property
    def timing_cache(self) -> bool:
        """Whether a timing cache may be used (it makes TensorRT-RTX's AOT builder query a GPU)."""
        return self.runtime != "rtx"

    @property
    def needs_gpu_to_build(self) -> bool:
        """Standard TensorRT builds for the GPU it runs on; TensorRT-RTX builds ahead of time on any CPU."""
        return not self.target_archs

    def enum(self, enum_name: str, member: str) -> Any:
        """`module.<enum_name>.<member>` by name; EngineBuildError naming the flavour when absent."""
        value = getattr(getattr(self.module, enum_name, None), member, None)
        if value is None:
            raise EngineBuildError(f"{self.display} has no {enum_name}.{member}")
        return value

    def archs(self) -> dict[str, Any]:
        """Target architectures this flavour can build for: {'sm86': ComputeCapability.SM86, ...}."""
        cc = getattr(self.module, "ComputeCapability", None)
        if cc is None or not self.target_archs:
            return {}
        members = getattr(cc, "__members__", {})
        return {name.lower(): value for name, value in members.items() if name.startswith("SM")}


def detect(module: ModuleType, runtime: str, module_name: str) -> TensorRTApi:
    """Read the features of an imported TensorRT module (see the module docstring)."""
    flags = getattr(module, "NetworkDefinitionCreationFlag", None)
    builder_flags = getattr(module, "BuilderFlag", None)
    config_cls = getattr(module, "IBuilderConfig", None)
    strongly = hasattr(flags, "STRONGLY_TYPED")
    return TensorRTApi(
        module=module,
        runtime=runtime,
        module_name=module_name,
        version=str(getattr(module, "__version__", "unknown")),
        precision_flags=hasattr(builder_flags, "FP16"),
        strongly_typed_flag=strongly,
        explicit_batch_flag=hasattr(flags, "EXPLICIT_BATCH") and not strongly,
        aot_plugins=hasattr(flags, "PREFER_AOT_PYTHON_PLUGINS"),
        target_archs=hasattr(config_cls, "set_compute_capability") and hasattr(module, "ComputeCapability"),
        dla=hasattr(getattr(module, "DeviceType", None), "DLA") and hasattr(getattr(module, "Builder", None),
                                                                          "num_DLA_cores"),
    )


def _import(name: str) -> ModuleType | None:
    """The module if it is importable and a real TensorRT (has a Builder), else None."""
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except (ImportError, ValueError):  # a parent package missing, or sys.modules[name] = None
        return None
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    return module if hasattr(module, "Builder") else None  # e.g. the empty package of tensorrt-stubs


def load_tensorrt(runtime: str = "auto", what_to_run: str = "") -> TensorRTApi:
    """Import TensorRT ("trt"), TensorRT-RTX ("rtx"), or ("auto") standard TensorRT if installed, else RTX.

    Raises EngineBuildError naming the pip extra when the requested flavour is not installed.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    if runtime in ("auto", "trt"):
        module = _import("tensorrt")
        if module is not None:
            return detect(module, "trt", "tensorrt")
        if runtime == "trt":
            raise EngineBuildError(
                "TensorRT is not installed on this machine, so no engine can be built here",
                hint=f"{_INSTALL['trt']}; then run there: {what_to_run or 'asfyolo-rt build BUNDLE --runtime trt'}")
    for name in RTX_MODULES:
        module = _import(name)
        if module is not None:
            return detect(module, "rtx", name)
    if runtime == "rtx":
        raise EngineBuildError("TensorRT-RTX is not installed (no module tensorrt_rtx or tensorrt_rtx_bindings)",
                               hint=_INSTALL["rtx"])
    raise EngineBuildError(
        "TensorRT is not installed on this machine (neither standard TensorRT nor TensorRT-RTX), so no engine "
        "can be built here",
        hint=f"{_INSTALL['rtx']} (RTX GPUs, builds on any machine); or on the target device: {_INSTALL['trt']} "
             f"and run {what_to_run or 'asfyolo-rt build BUNDLE'}")


def rtx_available() -> bool:
    """Whether TensorRT-RTX imports here (no GPU needed to build its engines)."""
    return any(_import(name) is not None for name in RTX_MODULES)


def parse_archs(api: TensorRTApi, archs: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """'sm86,sm89' (or sm_86) -> ['sm86', 'sm89'] checked against this flavour's ComputeCapability members."""
    if archs is None:
        return []
    items = archs.split(",") if isinstance(archs, str) else list(archs)
    names = [a.strip().lower().replace("sm_", "sm") for a in items if a.strip()]
    if not names:
        return []
    if not api.target_archs:
        raise ConfigError(f"--arch {','.join(names)}: {api.display} builds for the GPU it runs on and has no "
                          "target-architecture option", hint="--arch is for --runtime rtx (TensorRT-RTX)")
    known = api.archs()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"--arch {','.join(unknown)}: unknown target for {api.display}; expected some of "
                          f"{', '.join(known)}", hint="e.g. --arch sm86,sm89,sm120 (Ampere, Ada, Blackwell RTX)")
    return list(dict.fromkeys(names))
