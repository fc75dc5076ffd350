# Minimal hand-written stubs for the TensorRT Python API used by asfyolo_rt.export.engine.
#
# Written from the documented TensorRT 10.x Python API (docs.nvidia.com/deeplearning/tensorrt/latest/
# _static/python-api/). The published tensorrt-stubs (10.13) have syntax errors (parameters named `in`)
# and shadow `import tensorrt`; do not install them. These stubs describe TensorRT 10: members removed in
# TensorRT 11 (BuilderFlag.FP16/INT8, INT8 calibrators, platform_has_fast_*) are listed so legacy code behind
# a `major < 11` guard type-checks; tests/export/test_trt11_removed_apis.py forbids them elsewhere.
from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import IntEnum
from typing import Any

__version__: str

class ILogger:
    def __init__(self) -> None: ...
    def log(self, severity: Logger.Severity, msg: str) -> None: ...

class Logger(ILogger):
    class Severity(IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4
    INTERNAL_ERROR: Logger.Severity
    ERROR: Logger.Severity
    WARNING: Logger.Severity
    INFO: Logger.Severity
    VERBOSE: Logger.Severity
    min_severity: Logger.Severity
    def __init__(self, min_severity: Logger.Severity = ...) -> None: ...

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

class ProfilingVerbosity(IntEnum):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2

class BuilderFlag(IntEnum):
    FP16 = 0
    INT8 = 1
    DEBUG = 2
    GPU_FALLBACK = 3
    REFIT = 5
    DISABLE_TIMING_CACHE = 6
    TF32 = 7
    SPARSE_WEIGHTS = 8
    DIRECT_IO = 11
    VERSION_COMPATIBLE = 16
    ERROR_ON_TIMING_CACHE_MISS = 14

class NetworkDefinitionCreationFlag(IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1
    PREFER_AOT_PYTHON_PLUGINS = 2
    PREFER_JIT_PYTHON_PLUGINS = 3

class IHostMemory:
    nbytes: int
    dtype: DataType
    def __buffer__(self, flags: int) -> memoryview: ...

class ITensor:
    name: str
    shape: Dims
    dtype: DataType
    is_shape_tensor: bool

class LayerType(IntEnum):  # a subset; compare by name
    CONVOLUTION = 0
    ACTIVATION = 2
    DECONVOLUTION = 7
    TOPK = 18
    CAST = 24
    QUANTIZE = 35
    DEQUANTIZE = 36
    NMS = 45

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

class IParserError:
    def desc(self) -> str: ...
    def node(self) -> int: ...
    def node_name(self) -> str: ...

class OnnxParser:
    num_errors: int
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None: ...
    def parse(self, model: bytes, path: str | None = ...) -> bool: ...
    def parse_from_file(self, model: str) -> bool: ...
    def get_error(self, index: int) -> IParserError: ...

class IOptimizationProfile:
    def set_shape(self, input: str, min: Sequence[int], opt: Sequence[int], max: Sequence[int]) -> None: ...

class ITimingCache:
    def serialize(self) -> IHostMemory: ...

class IInt8Calibrator: ...
class IInt8EntropyCalibrator2(IInt8Calibrator): ...
class IInt8MinMaxCalibrator(IInt8Calibrator): ...

class IBuilderConfig:
    default_device_type: DeviceType
    DLA_core: int
    profiling_verbosity: ProfilingVerbosity
    builder_optimization_level: int
    int8_calibrator: IInt8Calibrator | None
    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None: ...
    def set_flag(self, flag: BuilderFlag) -> None: ...
    def clear_flag(self, flag: BuilderFlag) -> None: ...
    def get_flag(self, flag: BuilderFlag) -> bool: ...
    def add_optimization_profile(self, profile: IOptimizationProfile) -> int: ...
    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache: ...
    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool: ...
    def get_timing_cache(self) -> ITimingCache | None: ...

class Builder:
    num_DLA_cores: int
    platform_has_fast_fp16: bool
    platform_has_fast_int8: bool
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
    def infer_shapes(self) -> list[str]: ...

class LayerInformationFormat(IntEnum):
    ONELINE = 0
    JSON = 1

class IEngineInspector:
    def get_engine_information(self, format: LayerInformationFormat) -> str: ...
    def get_layer_information(self, layer_index: int, format: LayerInformationFormat) -> str: ...

class ICudaEngine:
    num_io_tensors: int
    num_optimization_profiles: int
    name: str
    def get_tensor_name(self, index: int) -> str: ...
    def get_tensor_mode(self, name: str) -> TensorIOMode: ...
    def get_tensor_shape(self, name: str) -> Dims: ...
    def get_tensor_dtype(self, name: str) -> DataType: ...
    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]: ...
    def create_execution_context(self) -> IExecutionContext: ...
    def create_engine_inspector(self) -> IEngineInspector: ...
    def serialize(self) -> IHostMemory: ...

class Runtime:
    def __init__(self, logger: ILogger) -> None: ...
    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None: ...

# DataType aliases
float32: DataType
float16: DataType
bfloat16: DataType
int8: DataType
int32: DataType
int64: DataType
uint8: DataType
