"""kernels/, export/ and calib/ install inside the asfyolo_rt namespace, in editable and regular installs."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUBPACKAGES = {"asfyolo_rt.kernels": "kernels", "asfyolo_rt.export": "export", "asfyolo_rt.calib": "calib"}


@pytest.mark.parametrize("module,folder", sorted(SUBPACKAGES.items()))
def test_editable_install_maps_subpackages_to_this_repo(module: str, folder: str) -> None:
    mod = importlib.import_module(module)
    assert Path(mod.__file__).resolve().parent == REPO / folder


def test_top_level_names_do_not_shadow_other_distributions() -> None:
    """`import kernels` must not resolve to our folder (a PyPI package already imports as `kernels`)."""
    code = "import importlib.util as u, json; print(json.dumps({n: bool(u.find_spec(n)) for n in ('kernels', 'export', 'calib')}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True)
    assert json.loads(out.stdout) == {"kernels": False, "export": False, "calib": False}


@pytest.mark.slow
def test_regular_wheel_install(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("asfyolo_rt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in SUBPACKAGES:
        assert f"{module.replace('.', '/')}/__init__.py" in names
    assert not any(n.startswith(("kernels/", "export/", "calib/")) for n in names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import json, importlib; print(json.dumps({m: importlib.import_module(m).__file__ for m in "
            f"{sorted(SUBPACKAGES)!r}}}))")
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    if out.returncode != 0 and "No module named" in out.stderr and "torch" in out.stderr:
        pytest.skip("subpackage import needs torch from the venv")
    files = json.loads(out.stdout)
    for module, path in files.items():
        assert Path(path).resolve().is_relative_to(target.resolve()), (module, path)
