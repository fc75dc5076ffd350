"""TensorRT engine runner implementing the backend protocol (`asfyolo_rt.infer.backends`).

`TensorRTBackend(path)` deserializes a plain plan with the runtime its sidecar names (standard TensorRT,
or TensorRT-RTX for engines `asfyolo-rt build --runtime rtx` built ahead of time), reads its sidecar
(`<name>.engine.json`: class names, precision, pre-processing), and runs it with `execute_async_v3`, binding tensors by name. Device memory
and the stream come from cuda-python: running an engine needs no torch on the device. When the caller
passes a contiguous float32 torch CUDA tensor, its memory is bound directly (no copy) and the outputs are
returned as torch CUDA tensors; otherwise inputs are copied from host memory and outputs returned as CPU
tensors. `cuda_graph=True` captures the host-buffer path in a CUDA graph once per input shape (static
shapes; engines with data-dependent outputs such as the end-to-end NMS cannot be captured).

Plain models (outputs `pred` and `protos`) are backends; engines of end-to-end models (NMS inside) are
`TensorRTEnd2EndBackend`s: tile batches through the engine, its rows to the Runner as detections, stitching
and full-resolution masks on the host, as for the end-to-end ONNX (`asfyolo_rt.infer.end2end`). Any engine
also runs with `run_named` (named arrays in, named arrays out).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asfyolo_rt.errors import ConfigError, EngineBuildError
from asfyolo_rt.infer.cuda import DeviceBuffer, Stream, device_info
from asfyolo_rt.infer.e2e_rows import ROW_OUTPUTS, End2EndRows, rows_to_detections
from asfyolo_rt.infer.protocol import PlainBackend
from asfyolo_rt.infer.sidecar import read_sidecar
from asfyolo_rt.infer.trt_api import load_tensorrt

if TYPE_CHECKING:
    import tensorrt as trt_types  # the common API of both flavours (TensorRT-RTX's runtime mirrors it)


class TensorRTBackend(PlainBackend):
    """A TensorRT engine as a backend: images (B, 3, H, W) float32 in [0, 1] -> (pred, protos)."""

    name = "tensorrt"

    def __init__(self, path: str | Path, *, cuda_graph: bool = False, device: int = 0) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"engine {self.path} does not exist", hint="build one with `asfyolo-rt build BUNDLE`")
        self.sidecar = read_sidecar(self.path)
        rtx = self.sidecar.runtime == "TensorRT-RTX"
        api = load_tensorrt("rtx" if rtx else "trt", f"asfyolo-rt val {self.path}")
        self.api = api
        trt = api.module

        self.device = device_info(device)
        cc = self.device.compute_capability
        if rtx:
            arch = "sm" + cc.replace(".", "")
            if self.sidecar.targets and arch not in self.sidecar.targets:
                raise EngineBuildError(
                    f"{self.path.name} was built for {', '.join(self.sidecar.targets)}; this GPU ({self.device.name}) "
                    f"is {arch}", hint=f"rebuild it: asfyolo-rt build BUNDLE --runtime rtx --arch {arch}")
        elif self.sidecar.compute_capability != cc:
            raise EngineBuildError(
                f"{self.path.name} was built for compute capability {self.sidecar.compute_capability}, this GPU "
                f"({self.device.name}) is {cc}",
                hint="engines are tied to the GPU architecture and TensorRT version: rebuild with `asfyolo-rt build`")
        if self.sidecar.tensorrt_version != api.version:
            raise EngineBuildError(
                f"{self.path.name} was built with {api.name} {self.sidecar.tensorrt_version}, this is {api.display}",
                hint="rebuild the engine here with `asfyolo-rt build`")
        self.logger: trt_types.ILogger = trt.Logger(trt.Logger.WARNING)
        self.runtime: trt_types.Runtime = trt.Runtime(self.logger)
        engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise EngineBuildError(f"{api.display} cannot deserialize {self.path}")
        self.engine: trt_types.ICudaEngine = engine
        self.context: trt_types.IExecutionContext = engine.create_execution_context()
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        for i in range(engine.num_io_tensors):
            n = engine.get_tensor_name(i)
            (self.inputs if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT else self.outputs).append(n)
        if len(self.inputs) != 1:
            raise EngineBuildError(f"{self.path.name}: expected one input, found {self.inputs}")
        self.input_name = self.inputs[0]
        shape = list(engine.get_tensor_shape(self.input_name))
        self.max_batch: int | None = shape[0] if shape[0] > 0 else None
        self.input_shape: tuple[int, int] | None = (shape[2], shape[3]) if min(shape[2:]) > 0 else None
        self.names = {int(k): v for k, v in self.sidecar.names.items()} or {0: "cell"}
        self.nc = self.sidecar.nc
        self.precision = self.sidecar.precision
        self.cuda_graph = cuda_graph
        self.stream = Stream()
        self._buffers: dict[str, DeviceBuffer] = {}
        self._graph_shape: tuple[int, ...] | None = None

    # ------------------------------------------------------------------ named arrays (any engine)

    def _dtype(self, name: str) -> np.dtype[Any]:
        return np.dtype(self.api.module.nptype(self.engine.get_tensor_dtype(name)))

    def _buffer(self, name: str, nbytes: int) -> DeviceBuffer:
        buf = self._buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                buf.free()
            buf = self._buffers[name] = DeviceBuffer(nbytes)
            self._graph_shape = None  # addresses changed: a captured graph is stale
        return buf

    def run_named(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Host path: (B, 3, H, W) float32 array in, every output as a host array out."""
        x = np.ascontiguousarray(images, dtype=self._dtype(self.input_name))
        if not self.context.set_input_shape(self.input_name, x.shape):
            raise ConfigError(f"{self.path.name} does not accept input shape {x.shape}",
                              hint=f"the engine's input is {list(self.engine.get_tensor_shape(self.input_name))} "
                              "(see the optimization profile in the sidecar)")
        inp = self._buffer(self.input_name, x.nbytes)
        self.context.set_tensor_address(self.input_name, inp.ptr)
        host: dict[str, np.ndarray] = {}
        for n in self.outputs:
            shp = tuple(self.context.get_tensor_shape(n))
            if any(s < 0 for s in shp):
                raise EngineBuildError(f"output {n} has a data-dependent shape {shp}: not supported by this runner")
            host[n] = np.empty(shp, dtype=self._dtype(n))
            self.context.set_tensor_address(n, self._buffer(n, host[n].nbytes).ptr)
        self.stream.h2d(inp.ptr, x, x.nbytes)
        if self.cuda_graph and self.input_shape is not None:
            if self._graph_shape != x.shape:
                self._execute()  # warm-up outside the capture (lazy allocations)
                self.stream.begin_capture()
                self._execute()
                self.stream.end_capture()
                self._graph_shape = x.shape
            self.stream.launch_graph()
        else:
            self._execute()
        for n, arr in host.items():
            self.stream.d2h(arr, self._buffers[n].ptr, arr.nbytes)
        self.stream.synchronize()
        return host

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.stream.ptr):
            raise EngineBuildError(f"TensorRT execution of {self.path.name} failed (see the TensorRT log)")

    # ------------------------------------------------------------------ backend protocol

    def __call__(self, images: Any) -> tuple[Any, Any]:
        if "pred" not in self.outputs or "protos" not in self.outputs:
            raise ConfigError(f"{self.path.name} has outputs {self.outputs}; the backend protocol needs pred and "
                              "protos", hint="end-to-end engines are run with run_named()")
        if _is_cuda_tensor(images):
            return self._call_torch_cuda(images)
        import torch

        x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        out = self.run_named(x)
        return torch.from_numpy(out["pred"]).float(), torch.from_numpy(out["protos"]).float()

    def _call_torch_cuda(self, images: Any) -> tuple[Any, Any]:
        """Zero-copy path for torch CUDA tensors: bind their memory, allocate outputs with torch."""
        import torch

        x = images if images.is_contiguous() and images.dtype == torch.float32 else images.contiguous().float()
        if not self.context.set_input_shape(self.input_name, tuple(x.shape)):
            raise ConfigError(f"{self.path.name} does not accept input shape {tuple(x.shape)}")
        self.context.set_tensor_address(self.input_name, int(x.data_ptr()))
        outs = {}
        dtypes = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16}
        for n in self.outputs:
            shp = tuple(self.context.get_tensor_shape(n))
            outs[n] = torch.empty(shp, dtype=dtypes.get(self._dtype(n), torch.float32), device=x.device)
            self.context.set_tensor_address(n, int(outs[n].data_ptr()))
        torch_stream = torch.cuda.current_stream(x.device)
        if not self.context.execute_async_v3(int(torch_stream.cuda_stream)):
            raise EngineBuildError(f"TensorRT execution of {self.path.name} failed")
        return outs["pred"].float(), outs["protos"].float()

    def close(self) -> None:
        for b in self._buffers.values():
            b.free()
        self._buffers.clear()
        self.stream.destroy()


class TensorRTEnd2EndBackend(End2EndRows, TensorRTBackend):
    """An engine built from an end-to-end ONNX: `detect` (rows of its own NMS) instead of `__call__`."""

    def __init__(self, path: str | Path, *, cuda_graph: bool = False, device: int = 0) -> None:
        super().__init__(path, cuda_graph=False, device=device)  # data-dependent rows: no graph capture
        missing = [n for n in ROW_OUTPUTS if n not in self.outputs]
        if missing:
            raise ConfigError(
                f"{self.path.name}: an end-to-end engine without the outputs {missing} (built from an earlier "
                "export): its masks exist only at 1/4 resolution, so it cannot be tiled",
                hint="re-export with `asfyolo-rt export --end2end` and rebuild, or build the plain model.onnx")
        self.set_thresholds({k: str(v) for k, v in self.sidecar.thresholds.items()})

    def __call__(self, images: Any) -> tuple[Any, Any]:
        raise ConfigError(f"{self.path.name} is an end-to-end engine (NMS inside): it gives detections, not raw "
                          "predictions", hint="use it with predict or val --protocol tiled, or build the plain model")

    def rows(self, images: Any, conf: float) -> tuple[list[Any], Any]:
        """Detections per image (score-sorted, scores > max(conf, the engine's)) and protos (B, nm, Hp, Wp)."""
        x = images.detach().cpu().float().numpy() if hasattr(images, "detach") else np.asarray(images, np.float32)
        return rows_to_detections(self.run_named(np.ascontiguousarray(x)), conf, self.conf)


def _is_cuda_tensor(x: Any) -> bool:
    return bool(getattr(x, "is_cuda", False)) and hasattr(x, "data_ptr")
