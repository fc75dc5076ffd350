"""TensorRT and TensorRT-RTX engines: one API layer (api.py), build (build.py), run (runner.py), sidecar JSON.

Nothing here imports TensorRT, TensorRT-RTX or CUDA at package import: `load_tensorrt`, `build_engine` and
`TensorRTBackend` do it when called and raise EngineBuildError naming what to install (or the command to run
on the target device) when they are missing.
"""

from __future__ import annotations

from asfyolo_rt.export.engine.build import (
    BuildConfig,
    EngineArtifact,
    build_command,
    build_engine,
    trtexec_command,
)
from asfyolo_rt.export.engine.onnx_facts import ShapeProfile

from asfyolo_rt.infer.sidecar import EngineSidecar, read_sidecar, sidecar_path, write_sidecar
from asfyolo_rt.infer.trt_api import RUNTIMES, TensorRTApi, load_tensorrt, parse_archs, rtx_available

__all__ = [
    "RUNTIMES",
    "BuildConfig",
    "EngineArtifact",
    "EngineSidecar",
    "ShapeProfile",
    "TensorRTApi",
    "build_command",
    "build_engine",
    "load_tensorrt",
    "parse_archs",
    "read_sidecar",
    "rtx_available",
    "sidecar_path",
    "trtexec_command",
    "write_sidecar",
]
