"""TensorRT engines: build on the target device (build.py), run (runner.py), sidecar JSON, AOT plugin.

Nothing here imports TensorRT or CUDA at package import: `build_engine` and `TensorRTBackend` do it when
called and raise EngineBuildError with the command to run on the target device when they are missing.
"""

from __future__ import annotations

from asfyolo_rt.export.engine.build import (
    BuildConfig,
    EngineArtifact,
    ShapeProfile,
    build_command,
    build_engine,
    trtexec_command,
)
from asfyolo_rt.export.engine.sidecar import EngineSidecar, read_sidecar, sidecar_path, write_sidecar

__all__ = [
    "BuildConfig",
    "EngineArtifact",
    "EngineSidecar",
    "ShapeProfile",
    "build_command",
    "build_engine",
    "read_sidecar",
    "sidecar_path",
    "trtexec_command",
    "write_sidecar",
]
