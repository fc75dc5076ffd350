"""What this machine has: library versions, CUDA devices, TensorRT availability (`asfyolo-rt env`)."""

from __future__ import annotations

import importlib
import platform
import subprocess
from pathlib import Path
from typing import Any


def _version(module: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except Exception:
        return None
    return str(getattr(mod, "__version__", "unknown"))


def user_cache_dir(kind: str) -> Path:
    """Where asfyolo-rt keeps what it makes once per machine (bench exports, the fast CPU path):
    $ASFYOLO_RT_CACHE/<kind>, else ($XDG_CACHE_HOME, else ~/.cache)/asfyolo-rt/<kind>. Never the working directory."""
    import os

    root = os.environ.get("ASFYOLO_RT_CACHE")
    if root:
        return Path(root) / kind
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "asfyolo-rt" / kind


def git_sha(repo: Path | None = None) -> str | None:
    """The git commit of this checkout (None outside a git checkout)."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
    except Exception:
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def tensorrt_version() -> str | None:
    """The TensorRT version, or None when real TensorRT (with a Builder) is not importable."""
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except Exception:
        return None
    return str(trt.__version__) if hasattr(trt, "Builder") else None


def environment() -> dict[str, Any]:
    """A JSON-able description of the software and hardware, recorded in every run folder and bench row."""
    import os

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "asfyolo_rt": _version("asfyolo_rt"),
        "git_sha": git_sha(),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime"),
        "triton": _version("triton"),
        "opencv": _version("cv2"),
        "tensorrt": tensorrt_version(),
        "modelopt": _version("modelopt"),
        "cuda_available": False,
        "cuda_devices": [],
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda_available"] = True
            info["cuda_version"] = torch.version.cuda
            info["cuda_devices"] = [
                {
                    "index": i,
                    "name": torch.cuda.get_device_name(i),
                    "capability": "sm_{}{}".format(*torch.cuda.get_device_capability(i)),
                    "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
                }
                for i in range(torch.cuda.device_count())
            ]
    except Exception:
        pass
    try:
        import onnxruntime as ort

        info["onnxruntime_providers"] = ort.get_available_providers()
    except Exception:
        pass
    return info


def device_name() -> str:
    """'NVIDIA H100 80GB HBM3' or the CPU model, for benchmark rows."""
    env = environment()
    return env["cuda_devices"][0]["name"] if env["cuda_devices"] else env["cpu"]
