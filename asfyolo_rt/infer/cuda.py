"""Thin, checked wrappers over the CUDA runtime of cuda-python (no torch needed to run an engine).

cuda-python 12.6+ exposes the runtime as `cuda.bindings.runtime`, older releases as `cuda.cudart`; both
return `(error, value...)` tuples. Every call here raises EngineBuildError with the CUDA error name.
Importing this module never touches a GPU; `device_info()` probes one (and fails cleanly without).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from asfyolo_rt.errors import EngineBuildError

_HINT = "install cuda-python (pip install 'asfyolo-rt[trt]') on a machine with an NVIDIA GPU and driver"


def cudart() -> ModuleType:
    """The CUDA runtime module of cuda-python; EngineBuildError if cuda-python is missing."""
    try:
        from cuda.bindings import runtime

        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart as legacy  # cuda-python < 12.6

        return legacy  # type: ignore[no-any-return]
    except ImportError as exc:
        raise EngineBuildError("cuda-python is not installed: TensorRT engines need it for device memory",
                               hint=_HINT) from exc


def check(result: Any, what: str) -> Any:
    """Unpack a cuda-python `(err, *values)` result; raise on a non-success error code."""
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != 0:
        name = getattr(err, "name", str(err))
        raise EngineBuildError(f"CUDA error in {what}: {name}", hint=_HINT)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    compute_capability: str  # "8.7"
    total_memory: int


def device_info(index: int = 0) -> DeviceInfo:
    """Name and compute capability of CUDA device `index`; EngineBuildError without a usable GPU."""
    rt = cudart()
    try:
        count = check(rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
    except EngineBuildError as exc:
        raise EngineBuildError(f"no CUDA GPU is usable here ({exc})",
                               hint="build and run engines on the target device (Jetson/RTX) itself") from exc
    except Exception as exc:  # no driver: some cuda-python versions raise instead of returning an error
        raise EngineBuildError(f"no CUDA driver here ({type(exc).__name__}: {exc})",
                               hint="build and run engines on the target device (Jetson/RTX) itself") from exc
    if not count or index >= int(count):
        raise EngineBuildError(f"CUDA device {index} requested, {count or 0} present",
                               hint="build and run engines on the target device (Jetson/RTX) itself")
    props = check(rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    return DeviceInfo(index, name, f"{props.major}.{props.minor}", int(props.totalGlobalMem))


class DeviceBuffer:
    """cudaMalloc'ed memory of `nbytes` bytes, freed by `free()` (or garbage collection)."""

    def __init__(self, nbytes: int) -> None:
        self.rt = cudart()
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(check(self.rt.cudaMalloc(self.nbytes), "cudaMalloc"))

    def free(self) -> None:
        if self.ptr:
            check(self.rt.cudaFree(self.ptr), "cudaFree")
            self.ptr = 0

    def __del__(self) -> None:
        with contextlib.suppress(EngineBuildError, AttributeError, TypeError):  # interpreter shutdown
            self.free()


class Stream:
    """A CUDA stream with async copies, synchronization and optional CUDA-graph capture."""

    def __init__(self) -> None:
        self.rt = cudart()
        self.handle = check(self.rt.cudaStreamCreate(), "cudaStreamCreate")
        self.graph_exec: Any = None

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def h2d(self, dst: int, host: Any, nbytes: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(self.rt.cudaMemcpyAsync(dst, host.ctypes.data, nbytes, kind, self.handle), "cudaMemcpyAsync H2D")

    def d2h(self, host: Any, src: int, nbytes: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(self.rt.cudaMemcpyAsync(host.ctypes.data, src, nbytes, kind, self.handle), "cudaMemcpyAsync D2H")

    def synchronize(self) -> None:
        check(self.rt.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def begin_capture(self) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        check(self.rt.cudaStreamBeginCapture(self.handle, mode), "cudaStreamBeginCapture")

    def end_capture(self) -> None:
        graph = check(self.rt.cudaStreamEndCapture(self.handle), "cudaStreamEndCapture")
        self.graph_exec = check(self.rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    def launch_graph(self) -> None:
        check(self.rt.cudaGraphLaunch(self.graph_exec, self.handle), "cudaGraphLaunch")

    def destroy(self) -> None:
        if self.handle is not None:
            check(self.rt.cudaStreamDestroy(self.handle), "cudaStreamDestroy")
            self.handle = None
