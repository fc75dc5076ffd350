"""Import layers: the contracts of pyproject.toml's [tool.importlinter], run by lint-imports.

Contract "layers": higher layers import lower ones, never the reverse. Contract "acyclic": no import
cycle between the modules of any package. Function-level (lazy) and TYPE_CHECKING imports count.

kernels/, export/ and calib/ sit at the top of the repository and install as asfyolo_rt.kernels,
asfyolo_rt.export and asfyolo_rt.calib ([tool.setuptools] package-dir). import-linter's graph builder
(grimp) finds a package's modules by walking its one folder, so run on the repository it would not see
those three at all. The contracts are therefore checked on the installed layout: a temporary asfyolo_rt/
of links to every entry of the real one plus one link per mapped folder, first on the path of a
lint-imports subprocess (grimp reads the files; nothing is imported).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # standard library from Python 3.11, as import-linter 2.17 needs
pytest.importorskip("importlinter")

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"

# Violations known when these contracts were added, in files that change did not touch: each test xfails
# while it finds only these and fails on any other. Delete an entry once it is fixed.
KNOWN_LAYER_BREACHES: dict[tuple[str, str], str] = {}
KNOWN_CYCLES: dict[tuple[str, str, str], str] = {}

_BREACH = re.compile(r"^(\S+) is not allowed to import (\S+):$")
_CYCLE_PACKAGE = re.compile(r"^No cycles are allowed in (\S+)\.$")
_CYCLE_IMPORT = re.compile(r"^- \.(\S+) -> \.(\S+) \(\d+ imports?\)$")
_CYCLE_MORE = re.compile(r"^\(and (\d+) more\)\.$")


def installed_layout(repo: Path, dest: Path) -> Path:
    """Lay asfyolo_rt out under `dest` as setuptools installs it, from pyproject's package-dir; returns dest.

    Links, not copies: grimp walks them (os.walk follows links) and reports the repository's line numbers.
    """
    package_dir: dict[str, str] = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    root = dest / "asfyolo_rt"
    root.mkdir(parents=True)
    for entry in (repo / package_dir["asfyolo_rt"]).iterdir():
        (root / entry.name).symlink_to(entry)
    for name, folder in package_dir.items():
        if name == "asfyolo_rt":
            continue
        parent, _, child = name.rpartition(".")
        if parent != "asfyolo_rt":
            raise AssertionError(f"package-dir maps {name!r}: only asfyolo_rt.<name> is laid out here; extend this")
        if (root / child).exists():
            raise AssertionError(f"asfyolo_rt/{child} exists and package-dir also maps {name!r} to {folder}/")
        (root / child).symlink_to(repo / folder, target_is_directory=True)
    return dest


def lint_imports(config: Path, path_root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """lint-imports on `config` (only `contracts`, by id, if given) with `path_root` first on sys.path."""
    args = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
            "--no-cache", "--no-logo", str(config)]
    for contract in contracts:
        args += ["--contract", contract]
    python_path = os.pathsep.join(p for p in (str(path_root), os.environ.get("PYTHONPATH")) if p)
    # lint-imports puts its working directory first on sys.path; wide columns keep report lines unwrapped.
    env = {**os.environ, "PYTHONPATH": python_path, "COLUMNS": "400", "NO_COLOR": "1"}
    return subprocess.run(args, cwd=path_root, env=env, capture_output=True, text=True, timeout=600)


def layer_breaches(report: str) -> set[tuple[str, str]]:
    """(lower layer, higher layer) of every "X is not allowed to import Y" in a lint-imports report."""
    return {(m.group(1), m.group(2)) for m in map(_BREACH.match, report.splitlines()) if m}


def cycles(report: str) -> set[tuple[str, ...]]:
    """(package, child, child) of every import an acyclic_siblings report would remove to break a cycle."""
    found: set[tuple[str, ...]] = set()
    package = ""
    for line in report.splitlines():
        if m := _CYCLE_PACKAGE.match(line):
            package = m.group(1)
        elif m := _CYCLE_IMPORT.match(line):
            found.add((package, *m.groups()))
        elif m := _CYCLE_MORE.match(line):  # not listed, so not known: fail rather than pass them
            found.add((package, f"{m.group(1)} more", "(not listed)"))
    return found


def check_report(run: subprocess.CompletedProcess[str], parse: Callable[[str], set], known: dict) -> None:
    """Pass if lint-imports passed; xfail if it found only `known` violations; fail otherwise."""
    report = run.stdout + run.stderr
    if run.returncode == 0:
        return
    found = parse(run.stdout)
    assert found, f"lint-imports failed without reporting a violation (config or setup error):\n{report}"
    new = found - known.keys()
    assert not new, f"new import violations {sorted(new)}:\n{report}"
    pytest.xfail("known violations remain: " + "; ".join(known[k] for k in sorted(found)))


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed_layout(REPO, tmp_path_factory.mktemp("installed"))


def test_layout_holds_the_mapped_packages(layout: Path) -> None:
    for package in ("kernels", "export", "calib"):
        assert (layout / "asfyolo_rt" / package / "__init__.py").is_file(), package


def test_layers_contract(layout: Path) -> None:
    check_report(lint_imports(PYPROJECT, layout, "layers"), layer_breaches, KNOWN_LAYER_BREACHES)


def test_no_cycles_inside_packages(layout: Path) -> None:
    check_report(lint_imports(PYPROJECT, layout, "acyclic"), cycles, KNOWN_CYCLES)


# A throwaway package whose low layer imports its high layer lazily (inside a function): the same runner
# must report both the upward import and the cycle it closes, and pass once the import is gone.
_TOY_CONFIG = """
[tool.importlinter]
root_packages = ["toy"]

[[tool.importlinter.contracts]]
id = "layers"
name = "toy layers"
type = "layers"
containers = ["toy"]
layers = ["high", "low"]

[[tool.importlinter.contracts]]
id = "acyclic"
name = "toy acyclic"
type = "acyclic_siblings"
ancestors = ["toy"]
"""


@pytest.mark.parametrize("upward_import", [True, False], ids=["lazy-upward-import", "clean"])
def test_checker_reports_a_lazy_upward_import_and_its_cycle(tmp_path: Path, upward_import: bool) -> None:
    toy = tmp_path / "toy"
    toy.mkdir()
    (toy / "__init__.py").write_text("")
    (toy / "high.py").write_text("from toy import low\n\nVALUE = low.VALUE + 1\n")
    lazy = "\n\ndef higher():\n    from toy import high\n\n    return high.VALUE\n" if upward_import else ""
    (toy / "low.py").write_text("VALUE = 1\n" + lazy)
    config = tmp_path / "importlinter.toml"
    config.write_text(_TOY_CONFIG)

    run = lint_imports(config, tmp_path)

    report = run.stdout + run.stderr
    if upward_import:
        assert run.returncode == 1, report
        assert layer_breaches(run.stdout) == {("toy.low", "toy.high")}, report
        assert "toy.low -> toy.high (l.5)" in run.stdout, report
        assert {(p, *sorted(pair)) for p, *pair in cycles(run.stdout)} == {("toy", "high", "low")}, report
    else:
        assert run.returncode == 0, report
        assert not layer_breaches(run.stdout) and not cycles(run.stdout), report
