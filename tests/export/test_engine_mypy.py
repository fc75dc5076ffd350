"""export/engine type-checks with mypy against the vendored TensorRT stubs in typings/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _mypy(*targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
                           "--follow-imports=silent", *targets], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


def test_engine_code_passes_mypy():
    r = _mypy("export/engine")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success" in r.stdout


def test_stubs_are_in_effect_and_parse(tmp_path):
    snippet = tmp_path / "uses_trt.py"
    snippet.write_text("import tensorrt as trt\n\n"
                       "def f(config: trt.IBuilderConfig) -> None:\n"
                       "    config.set_flag(trt.BuilderFlag.NOT_A_FLAG)\n"
                       "    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)\n")
    r = _mypy(str(snippet))
    assert r.returncode == 1 and "NOT_A_FLAG" in r.stdout, r.stdout  # the stub (not Any) answered
    assert "typings/tensorrt" not in r.stdout  # the stubs themselves have no errors


def test_tensorrt_is_not_importable_from_stubs():
    """The stubs are for mypy only: they must not make `import tensorrt` succeed at runtime."""
    r = subprocess.run([sys.executable, "-c", "import tensorrt"], cwd=REPO, capture_output=True, text=True, check=False)
    if r.returncode == 0:  # a real TensorRT install: it must have a Builder
        r2 = subprocess.run([sys.executable, "-c", "import tensorrt; assert hasattr(tensorrt, 'Builder')"], cwd=REPO,
                            check=False)
        assert r2.returncode == 0
