# Minimal hand-written stubs for the TensorRT-RTX 1.x Python API used by asfyolo_rt.export.engine.
#
# Written from the installed bindings (tensorrt-rtx-cu12-bindings 1.7.1.116: members listed with dir(),
# signatures from the docstrings) and NVIDIA's TensorRT-RTX documentation. The module is `tensorrt_rtx`
# (NVIDIA's samples) or `tensorrt_rtx_bindings` (the PyPI wheels; typings/tensorrt_rtx_bindings re-exports
# this file). What differs from standard TensorRT, on purpose:
# - strongly typed only: no BuilderFlag.FP16/INT8/BF16/FP8, no calibrators, no platform_has_fast_*;
#   NetworkDefinitionCreationFlag has only STRONGLY_TYPED (and every network is strongly typed anyway);
# - BuilderFlag integer values differ from TensorRT's (compare by name);
# - ahead-of-time targets: IBuilderConfig.num_compute_capabilities / set_compute_capability(ComputeCapability);
# - no plugin layers (add_plugin_v2/v3 absent) and no `tensorrt_rtx.plugin`; no EXPLICIT_BATCH,
#   PREFER_AOT_PYTHON_PLUGINS; Runtime.get_engine_validity.
from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import IntEnum
from typing import Any

__version__: str

class ILogger:
    class Severity(IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4
    def __init__(self) -> None: ...
    def log(self, severity: ILogger.Severity, msg: str) -> None: ...

class Logger(ILogger):
    INTERNAL_ERROR: ILogger.Severity
    ERROR: ILogger.Severity
    WARNING: ILogger.Severity
    INFO: ILogger.Severity
    VERBOSE: ILogger.Severity
    min_severity: ILogger.Severity
    def __init__(self, min_severity: ILogger.Severity = ...) -> None: ...

class DataType(IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8
    INT4 = 9
    FP4 = 10
    E8M0 = 11

def nptype(trt_type: DataType) -> type: ...

class Dims(Sequence[int]):
    def __init__(self, shape: Sequence[int] = ...) -> None: ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: Any) -> Any: ...
    def __iter__(self) -> Iterator[int]: ...

class TensorIOMode(IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2

class DeviceType(IntEnum):
    GPU = 0
    DLA = 1

class MemoryPoolType(IntEnum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3
    TACTIC_DRAM = 4
    TACTIC_SHARED_MEMORY = 5

class ProfilingVerbosity(IntEnum):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2

class BuilderFlag(IntEnum):
    DEBUG = 2
    GPU_FALLBACK = 3
    REFIT = 4
    DISABLE_TIMING_CACHE = 5
    TF32 = 6
    SPARSE_WEIGHTS = 7
    SAFETY_SCOPE = 8
    DIRECT_IO = 11
    VERSION_COMPATIBLE = 12
    EXCLUDE_LEAN_RUNTIME = 13
    ERROR_ON_TIMING_CACHE_MISS = 15
    DISABLE_COMPILATION_CACHE = 17
    STRIP_PLAN = 18
    REFIT_IDENTICAL = 19
    WEIGHT_STREAMING = 20
    REFIT_INDIVIDUAL = 22
    STRICT_NANS = 23
    MONITOR_MEMORY = 24
    EDITABLE_TIMING_CACHE = 26
    DISTRIBUTIVE_INDEPENDENCE = 27
    REQUIRE_USER_ALLOCATION = 28

class NetworkDefinitionCreationFlag(IntEnum):
    STRONGLY_TYPED = 0

class ComputeCapability(IntEnum):
    NONE = 0
    CURRENT = 1
    SM75 = 75
    SM80 = 80
    SM86 = 86
    SM89 = 89
    SM120 = 120
    SM121 = 121

class HardwareCompatibilityLevel(IntEnum):
    NONE = 0
    AMPERE_PLUS = 1
    SAME_COMPUTE_CAPABILITY = 2

class TilingOptimizationLevel(IntEnum):
    NONE = 0
    FAST = 1
    MODERATE = 2
    FULL = 3

class IHostMemory:
    nbytes: int
    dtype: DataType
    def __buffer__(self, flags: int) -> memoryview: ...

class ITensor:
    name: str
    shape: Dims
    dtype: DataType
    is_shape_tensor: bool

class LayerType(IntEnum):  # a subset (values of 1.7); compare by name
    CONVOLUTION = 0
    CAST = 1
    ACTIVATION = 2
    DECONVOLUTION = 7
    TOPK = 15
    QUANTIZE = 32
    DEQUANTIZE = 33
    NMS = 43

class ILayer:
    name: str
    type: LayerType
    num_inputs: int
    num_outputs: int
    metadata: str
    def get_input(self, index: int) -> ITensor | None: ...
    def get_output(self, index: int) -> ITensor: ...

class INetworkDefinition:
    num_inputs: int
    num_outputs: int
    num_layers: int
    def get_input(self, index: int) -> ITensor: ...
    def get_output(self, index: int) -> ITensor: ...
    def get_layer(self, index: int) -> ILayer: ...
    def get_flag(self, flag: NetworkDefinitionCreationFlag) -> bool: ...

class ParserError:
    def desc(self) -> str: ...
    def node(self) -> int: ...
    def node_name(self) -> str: ...
    def node_operator(self) -> str: ...

class OnnxParser:
    num_errors: int
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None: ...
    def parse(self, model: bytes, path: str | None = ...) -> bool: ...
    def parse_from_file(self, model: str) -> bool: ...
    def get_error(self, index: int) -> ParserError: ...
    def supports_operator(self, op_name: str) -> bool: ...

class IOptimizationProfile:
    def set_shape(self, input: str, min: Sequence[int], opt: Sequence[int], max: Sequence[int]) -> None: ...

class ITimingCache:
    def serialize(self) -> IHostMemory: ...

class IBuilderConfig:
    default_device_type: DeviceType
    DLA_core: int
    profiling_verbosity: ProfilingVerbosity
    builder_optimization_level: int
    num_compute_capabilities: int
    hardware_compatibility_level: HardwareCompatibilityLevel
    tiling_optimization_level: TilingOptimizationLevel
    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None: ...
    def set_flag(self, flag: BuilderFlag) -> None: ...
    def clear_flag(self, flag: BuilderFlag) -> None: ...
    def get_flag(self, flag: BuilderFlag) -> bool: ...
    def add_optimization_profile(self, profile: IOptimizationProfile) -> int: ...
    def set_compute_capability(self, compute_capability: ComputeCapability, index: int) -> bool: ...
    def get_compute_capability(self, index: int) -> ComputeCapability: ...
    # timing caches exist but make the ahead-of-time builder query a GPU: not used
    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache: ...
    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool: ...
    def get_timing_cache(self) -> ITimingCache | None: ...

class Builder:
    num_DLA_cores: int
    def __init__(self, logger: ILogger) -> None: ...
    def create_network(self, flags: int = ...) -> INetworkDefinition: ...
    def create_builder_config(self) -> IBuilderConfig: ...
    def create_optimization_profile(self) -> IOptimizationProfile: ...
    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory | None: ...

class IExecutionContext:
    def set_input_shape(self, name: str, shape: Sequence[int]) -> bool: ...
    def get_tensor_shape(self, name: str) -> Dims: ...
    def set_tensor_address(self, name: str, memory: int) -> bool: ...
    def execute_async_v3(self, stream_handle: int) -> bool: ...

class ICudaEngine:
    num_io_tensors: int
    name: str
    def get_tensor_name(self, index: int) -> str: ...
    def get_tensor_mode(self, name: str) -> TensorIOMode: ...
    def get_tensor_shape(self, name: str) -> Dims: ...
    def get_tensor_dtype(self, name: str) -> DataType: ...
    def create_execution_context(self) -> IExecutionContext: ...

class EngineValidity(IntEnum):
    VALID = 0
    SUBOPTIMAL = 1
    INVALID = 2

class Runtime:
    def __init__(self, logger: ILogger) -> None: ...
    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None: ...
    def get_engine_validity(self, buffer: bytes) -> tuple[EngineValidity, int]: ...

float32: DataType
float16: DataType
bfloat16: DataType
int8: DataType
int32: DataType
int64: DataType
uint8: DataType
