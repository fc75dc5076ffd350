"""The project's error hierarchy.

Every error a user can cause (bad file, bad option, missing library) is one of these; the CLI turns
them into one line plus a hint and exit code 1. Messages say what was received, what was expected,
and how to fix it.
"""

from __future__ import annotations


class AsfYoloError(Exception):
    """Base class of every error asfyolo-rt raises on purpose."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class DataError(AsfYoloError):
    """Unreadable or malformed images, labels or dataset layouts."""


class ConfigError(AsfYoloError):
    """Invalid option values, unknown config keys, inconsistent settings."""


class CheckpointError(AsfYoloError):
    """Checkpoints that cannot be read, or whose tensors do not fit the model."""


class ExportError(AsfYoloError):
    """ONNX export, simplification, FP16 conversion or graph assembly failed."""


class CalibrationError(AsfYoloError):
    """INT8 calibration failed or its cache does not match its inputs."""


class EngineBuildError(AsfYoloError):
    """TensorRT is missing, or building/loading an engine failed."""


class KernelUnavailableError(AsfYoloError):
    """A Triton kernel was requested explicitly but cannot run here."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM, raised as a KeyboardInterrupt so that clean-up runs on the way out.

    `signum` is the signal's number; the CLI exits with 128 + signum (130 for Ctrl-C, 143 for SIGTERM), the
    shell's convention for a process stopped by a signal. `done` says what was finished before it came.
    """

    def __init__(self, signum: int = 2, done: str = "") -> None:
        super().__init__(signum)
        self.signum, self.done = signum, done

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
