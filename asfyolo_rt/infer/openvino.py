"""OpenVINO on the CPU (`--backend openvino`): our ONNX files or an OpenVINO IR, same protocol as OrtBackend.

`OpenVinoBackend(path, precision=...)` reads `model.onnx` directly (OpenVINO's ONNX frontend) or an IR
(`model.int8-openvino.xml` + `.bin`, written by `asfyolo-rt export --int8`) and compiles it for the CPU
plugin in throughput mode (CPU streams, `parallel` infer requests used from as many threads; `mode=
"latency"` puts every core on one request) with an explicit `INFERENCE_PRECISION_HINT`:

- fp32: hint f32. OpenVINO otherwise picks bf16 by itself on CPUs with AVX512-BF16/AMX: never silently.
- bf16: hint bf16, only where the CPU has native BF16 (`avx512_bf16` or `amx_bf16`); elsewhere a
  ConfigError saying which flags are missing (OpenVINO would emulate it slower, or run f32 anyway).
- int8: an IR quantized by NNCF (the INT8 layers run in INT8 whatever the hint; the rest in f32).

`isa` records what the CPU offers ("avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx") so every bench
and parity row says what ran. Input: (B, 3, H, W) float32 in [0, 1]; output: (pred, protos) as CPU torch
tensors (`__call__`, the PyTorch pipeline) or NumPy arrays (`run_numpy`, the PyTorch-free one); torch is
imported only by the first.

A model whose H and W are dynamic is compiled once per tile shape it is given (reshaped to it: a static
shape runs faster than a dynamic one), each with its own pool of infer requests. The models asfyolo-rt keeps in
the user cache folder (the fast CPU path's) are compiled once per machine: OpenVINO's CACHE_DIR,
`asfyolo_rt.env.user_cache_dir("openvino")`, lets a second process load them (`_cache_config`). One `ov.Core`
serves the process (`shared_core`).
"""

from __future__ import annotations

import queue
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asfyolo_rt.errors import ConfigError, ExportError
from asfyolo_rt.infer.protocol import PlainBackend, json_or

PRECISIONS = ("fp32", "bf16", "int8")
# throughput: CPU streams with one infer request each, several tiles at once (a frame's tiles, a stream of
# images); latency: all cores on one request (one small image at a time)
MODES = ("throughput", "latency")
INSTALL_HINT = "pip install 'asfyolo-rt[openvino]' (openvino, nncf)"
if TYPE_CHECKING:
    import torch

MAX_SHAPES = 8  # compiled tile shapes kept per dynamic model (least recently compiled go first)
META_SECTION = "asfyolo_rt"  # IR rt_info section holding the ONNX metadata (names, nc, precision, ...)


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_isa(flags: frozenset[str] | None = None) -> str:
    """The most capable matrix ISA of the CPU, as bench rows report it."""
    f = cpu_flags() if flags is None else flags
    for name, need in (("amx", "amx_bf16"), ("avx512_bf16", "avx512_bf16"), ("avx512_vnni", "avx512_vnni"),
                       ("avx512", "avx512f"), ("avx_vnni", "avx_vnni"), ("avx2", "avx2")):
        if need in f:
            return name
    return "sse"


def has_bf16(flags: frozenset[str] | None = None) -> bool:
    f = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & f)


def has_int8_dot(flags: frozenset[str] | None = None) -> bool:
    """Native INT8 dot products (VNNI or AMX): where INT8 can beat FP32 by more than the memory it saves."""
    f = cpu_flags() if flags is None else flags
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & f)


def import_openvino() -> Any:
    """The `openvino` module, with its usage telemetry off (asfyolo_rt.privacy); ConfigError when missing."""
    from asfyolo_rt.privacy import disable_telemetry

    disable_telemetry()
    try:
        import openvino as ov
    except ImportError as exc:
        raise ConfigError(f"--backend openvino: OpenVINO is not installed ({exc})", hint=INSTALL_HINT) from None
    return ov


@lru_cache(maxsize=1)
def shared_core() -> Any:
    """The process's one `ov.Core`. Each Core loads its own CPU plugin, and each CPU plugin installs an alternate
    signal stack on the thread that loads it and, when unloaded, puts back the stack it found, even one an
    older plugin has since unmapped (OpenVINO's SigAltStackSetup): two Cores freed oldest first leave the main
    thread's signal stack dangling, and the next Ctrl-C / SIGTERM / faulthandler signal is a segfault. One Core
    that lives as long as the process loads the plugin once and never unloads it."""
    return import_openvino().Core()


def error_line(exc: BaseException) -> str:
    """OpenVINO's message as one line: its text without the "Exception from <file>:<line>:" and "Check '...'
    failed at ..." lines that come before the reason (the exception's type where nothing else is left)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    told = [ln for ln in lines if not ln.startswith(("Exception from ", "Check '"))]
    return (" ".join(told) or type(exc).__name__)[:300]


def read_model(path: str | Path) -> Any:
    """`ov.Model` of an ONNX file or IR, read once per file version in this process: predict reads a model's
    metadata (`asfyolo_rt.runtime.info`), then its backend reads the model (an INT8 IR: ~30 ms each). Shared:
    callers never change it (a reshape goes to a clone)."""
    resolved = Path(path).resolve()
    st = resolved.stat()
    return _read_model(str(resolved), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=4)
def _read_model(path: str, mtime_ns: int, size: int) -> Any:
    return shared_core().read_model(path)


def check_precision(precision: str, flags: frozenset[str] | None = None) -> None:
    """ConfigError for an unknown precision, or bf16 on a CPU without native BF16."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r} for OpenVINO: expected one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and not has_bf16(flags):
        raise ConfigError(f"--precision bf16: this CPU ({cpu_isa(flags)}) has no native BF16 (avx512_bf16 or "
                          "amx_bf16 in /proc/cpuinfo)", hint="use --precision fp32 or int8 on this machine")


def pick_precision(model: str | Path, flags: frozenset[str] | None = None) -> tuple[Path, str, str]:
    """What `--backend openvino` runs when no --precision is given: (file, precision, why).

    BF16 on `model` where the CPU has native BF16 (within 1 % of FP32's cells, with no calibration loss; a
    little slower than the bundle's INT8 IR on the shipped model, `bench --levers`); else the bundle's INT8 IR
    (`model.int8-openvino.xml` beside `model`, or `model` itself) where the CPU has INT8 dot products
    (VNNI/AMX); else FP32."""
    path = Path(model)
    ir = path if path.suffix.lower() == ".xml" else path.with_name("model.int8-openvino.xml")
    isa = cpu_isa(flags)
    if path.suffix.lower() == ".xml" and (model_metadata(path).get("precision") == "int8"):
        return path, "int8", f"{path.name} is an INT8 IR"
    if has_bf16(flags):
        return path, "bf16", f"this CPU ({isa}) has native BF16"
    if has_int8_dot(flags) and ir.is_file():
        return ir, "int8", f"this CPU ({isa}) has INT8 dot products and the bundle has {ir.name}"
    return path, "fp32", f"this CPU ({isa}) has neither native BF16 nor INT8 dot products" + (
        "" if ir.is_file() else f" (and there is no {ir.name})")


def model_metadata(path: str | Path) -> dict[str, str]:
    """The asfyolo-rt metadata of an exported .onnx (metadata_props) or IR .xml (rt_info); {} when unreadable."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        try:
            return ir_metadata(read_model(path))
        except Exception:
            return {}
    from asfyolo_rt.infer.onnx_header import ProtoError, read_onnx_header

    try:
        return read_onnx_header(path).metadata
    except (OSError, ProtoError):
        return {}


def ir_metadata(model: Any) -> dict[str, str]:
    """The ONNX metadata an exported IR carries in rt_info[asfyolo_rt] (see calib.openvino_int8)."""
    if not model.has_rt_info([META_SECTION]):
        return {}
    info = model.get_rt_info()[META_SECTION]
    if not hasattr(info, "items"):
        return {}
    return {str(k): str(v.astype(str) if hasattr(v, "astype") else v) for k, v in info.items()}


class OpenVinoBackend(PlainBackend):
    """OpenVINO CPU inference of an ONNX file or IR (module docstring)."""

    name = "openvino"
    per_image_tiles = True  # a dynamic model is compiled once per tile shape (each image gets its own tile)

    def __init__(self, path: str | Path, *, precision: str | None = None, threads: int | None = None,
                 mode: str = "throughput") -> None:
        if mode not in MODES:
            raise ConfigError(f"OpenVINO mode {mode!r}: expected one of {', '.join(MODES)}")
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"model {self.path} does not exist", hint="export one with `asfyolo-rt export`")
        core = shared_core()
        try:
            model = read_model(self.path)
        except Exception as exc:
            raise ExportError(f"OpenVINO cannot read {self.path}: {error_line(exc)}",
                              hint="pass a model.onnx or an OpenVINO IR .xml with its .bin beside it") from None
        meta = ir_metadata(model) if self.path.suffix.lower() == ".xml" else model_metadata(self.path)
        recorded = meta.get("precision", "fp32")
        quantized = recorded == "int8" or _has_fake_quantize(model)
        precision = precision or ("int8" if quantized else "fp32")
        check_precision(precision)
        if precision == "int8" and not quantized:
            raise ConfigError(f"--precision int8: {self.path.name} is not quantized",
                              hint="use BUNDLE/model.int8-openvino.xml (asfyolo-rt export --int8)")
        if quantized and precision == "bf16":
            raise ConfigError(f"{self.path.name} is an INT8 model; --precision bf16 does not apply",
                              hint="leave out --precision or pass --precision int8")
        precision = "int8" if quantized else precision  # fp32 (a command's default) on an INT8 IR: its f32 remainder
        self.precision = precision
        self.isa = cpu_isa()
        inputs, outputs = model.inputs, [o.get_any_name() for o in model.outputs]
        if len(inputs) != 1 or "pred" not in outputs or "protos" not in outputs:
            raise ConfigError(f"{self.path}: expected one input and outputs 'pred' and 'protos', got outputs {outputs}",
                              hint="end-to-end (--end2end) models have a different interface; use the plain model")
        shape = inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape]
        self.max_batch = dims[0]
        if len(dims) != 4 or (dims[2] is None) != (dims[3] is None):
            raise ConfigError(f"{self.path}: input {dims} has one dynamic side; expected N x 3 x H x W with H and W "
                              "both fixed or both dynamic", hint="re-export it with `asfyolo-rt export`")
        self.input_shape = (dims[2], dims[3]) if dims[2] is not None and dims[3] is not None else None
        self.names = {int(k): v for k, v in json_or(meta.get("names"), {"0": "cell"}).items()}
        self.nc = int(meta.get("nc", len(self.names)))
        self._config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": mode.upper(),
        }
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
        self.mode = mode
        self._config.update(_cache_config(self.path))
        self._core, self._model, self._batch_dim = core, model, shape[0]
        self._pools: dict[tuple[int, int] | None, _Pool] = {}
        self._lock = threading.Lock()
        if self.input_shape is not None:  # a static model compiles now; a dynamic one per tile shape (`prepare`)
            self._pool(None)

    def prepare(self, hw: tuple[int, int]) -> None:
        """Compile the model for tiles of `hw` (H, W) now, if not done: a dynamic model's first call of a new
        shape otherwise pays it. Thread-safe; `Segmenter.warm` calls it on a thread while the image is read."""
        self._pool(None if self.input_shape is not None else (int(hw[0]), int(hw[1])))

    def _latest(self) -> _Pool:
        """The most recently compiled shape's pool (one being compiled, `prepare` on a thread: waited for; a
        dynamic model not yet given a shape: compiled at 640 x 640)."""
        pools = list(self._pools.values())
        if not pools:
            with self._lock:  # a compile in flight holds it
                pools = list(self._pools.values())
        return pools[-1] if pools else self._pool(self.input_shape or (640, 640))

    @property
    def hint(self) -> str:
        """What OpenVINO runs: f32 or bf16."""
        hint = self._latest().compiled.get_property("INFERENCE_PRECISION_HINT")
        return str(hint.get_type_name() if hasattr(hint, "get_type_name") else hint)

    @property
    def parallel(self) -> int:
        """Infer requests OpenVINO runs at once (the stages keep this many batches in flight)."""
        return self._latest().parallel

    def _pool(self, hw: tuple[int, int] | None) -> _Pool:
        """The compiled model and infer requests for tiles of `hw` (None: the model as read)."""
        pool = self._pools.get(hw)
        if pool is not None:
            return pool
        with self._lock:
            if hw not in self._pools:
                try:
                    compiled = self._compile(hw)
                except Exception as exc:
                    raise ExportError(f"OpenVINO cannot compile {self.path} for the CPU"
                                      f"{f' at tiles of {hw[0]}x{hw[1]}' if hw else ''}: {error_line(exc)}") from None
                self._pools[hw] = _Pool(compiled)
                shapes = [k for k in self._pools if k is not None]
                while len(shapes) > MAX_SHAPES:  # a folder of many image sizes: the oldest shapes go (in-flight
                    del self._pools[shapes.pop(0)]  # requests keep their own references until they finish)
            return self._pools[hw]

    def run_numpy(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pred, protos) float32 arrays of one (B, 3, H, W) float32 batch on a free infer request of its
        shape: `parallel` calls from as many threads run at once (the stages keep that many in flight)."""
        x = np.ascontiguousarray(x, np.float32)
        pool = self._pool(None if self.input_shape is not None else (int(x.shape[2]), int(x.shape[3])))
        request = pool.requests.get()
        try:
            with pool.dispatch:  # one thread at a time hands its inputs over; the requests then run at once
                request.start_async({0: x})
            request.wait()
            # copies: the request's output buffers are reused by its next call
            return np.array(request.get_tensor(pool.pred).data), np.array(request.get_tensor(pool.protos).data)
        finally:
            pool.requests.put(request)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`run_numpy` for the PyTorch pipeline: CPU tensors in and out."""
        import torch

        pred, protos = self.run_numpy(images.detach().cpu().float().numpy())
        return torch.from_numpy(pred), torch.from_numpy(protos)


    def _compile(self, hw: tuple[int, int] | None) -> Any:
        """The model compiled for tiles of `hw` (a dynamic model reshaped to it first)."""
        if hw is None or self.input_shape is not None:
            return self._core.compile_model(self._model, "CPU", self._config)
        model = self._model.clone()
        model.reshape({model.inputs[0]: import_openvino().PartialShape([self._batch_dim, 3, hw[0], hw[1]])})
        return self._core.compile_model(model, "CPU", self._config)


class _Pool:
    """One compiled model and its infer requests (as many as OpenVINO runs at once)."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.parallel = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.dispatch = threading.Lock()
        for _ in range(self.parallel):
            self.requests.put(compiled.create_infer_request())
        self.pred, self.protos = compiled.output("pred"), compiled.output("protos")


def _cache_config(model: Path) -> dict[str, str]:
    """Compiled models cached on disk (a second process loads them), in the user cache folder
    (`asfyolo_rt.env.user_cache_dir("openvino")`), for the models asfyolo-rt keeps there itself (the fast CPU
    path's exports): a model file the user names leaves nothing in their home. ASFYOLO_RT_OV_CACHE=1 caches
    every model, =0 none."""
    import os

    from asfyolo_rt.env import user_cache_dir

    flag = os.environ.get("ASFYOLO_RT_OV_CACHE", "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return {}
    if not (_ours(model) or flag in ("1", "true", "yes", "on")):
        return {}
    try:
        folder = user_cache_dir("openvino")
        folder.mkdir(parents=True, exist_ok=True)
        prune_cache(folder)
    except OSError:  # a read-only home: compile every time
        return {}
    return {"CACHE_DIR": str(folder)}  # per compile: the Core is shared (`shared_core`)


def _ours(model: Path) -> bool:
    """Whether `model` lies in asfyolo-rt's user cache folder (made by asfyolo-rt, not named by the user)."""
    from asfyolo_rt.env import user_cache_dir

    try:
        return model.resolve().is_relative_to(user_cache_dir("").resolve())
    except OSError:
        return False


MAX_CACHED_BLOBS = 48  # compiled models kept on disk (one per model, precision and tile shape; ~7 MB each for n)


def prune_cache(folder: Path, keep: int = MAX_CACHED_BLOBS) -> int:
    """Remove all but the `keep` most recently written compiled models of `folder`; returns how many went. A
    removed one is compiled again when next needed."""
    blobs = sorted(folder.glob("*.blob"), key=lambda p: p.stat().st_mtime, reverse=True)
    gone = 0
    for old in blobs[keep:]:
        try:
            old.unlink()
            gone += 1
        except OSError:
            pass
    return gone


def _has_fake_quantize(model: Any) -> bool:
    return any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())

