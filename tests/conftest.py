"""Shared fixtures: paths to the shared datasets, a CLI runner, hardware markers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # shared helpers: `from testing_models import ...`
# predict's default fast CPU path (asfyolo_rt.fastpath) exports and caches a model per weights: the suite runs
# checkpoints in PyTorch unless a test turns it on (tests/runtime/test_fastpath.py, with its own cache folder)
os.environ.setdefault("ASFYOLO_RT_FAST", "0")
os.environ.setdefault("ASFYOLO_RT_OV_CACHE", "0")  # compiled OpenVINO models of test files stay out of ~/.cache (tested apart)
SHARED_DATASETS = Path(os.environ.get("ASFYOLO_DATASETS", REPO.parent / "shared" / "datasets"))


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # type: ignore[import-not-found]

        return hasattr(tensorrt, "Builder")
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_trt = pytest.mark.skip(reason="needs TensorRT")
    skip_data = pytest.mark.skip(reason=f"needs the shared datasets at {SHARED_DATASETS}")
    cuda, trt, data = _has_cuda(), _has_tensorrt(), SHARED_DATASETS.is_dir()
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)
        if "trt" in item.keywords and not trt:
            item.add_marker(skip_trt)
        if "datasets" in item.keywords and not data:
            item.add_marker(skip_data)


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    """../shared/datasets (tests using it carry the `datasets` marker)."""
    return SHARED_DATASETS


@pytest.fixture
def cli():
    """Run the CLI in-process: `result = cli("info", "--json")`; result.exit_code/stdout/stderr."""
    from typer.testing import CliRunner

    from asfyolo_rt.cli.main import app

    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return run
