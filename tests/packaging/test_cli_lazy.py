"""`asfyolo-rt CMD` imports CMD's module only; the table that makes this possible is right.

The root group finds a command's module in `asfyolo_rt.cli.commands.COMMANDS`; a command the table lacks
still runs, but only after every command module was imported (the slow start the table exists to avoid).
So each module is imported alone, in a fresh interpreter, and what it registers is compared with the table.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

import asfyolo_rt.cli
from asfyolo_rt.cli.commands import COMMANDS

REPO = Path(__file__).resolve().parents[2]
TABLE = "COMMANDS in asfyolo_rt/cli/commands.py"

# Every module of the CLI package but the entry point itself (command modules and their helpers).
CLI_MODULES = sorted(f"asfyolo_rt.cli.{m.name}" for m in pkgutil.iter_modules(asfyolo_rt.cli.__path__)
                     if m.name != "main")

# Runs in a fresh interpreter: imports the modules named in argv, in order; prints the top-level names then
# registered on the root app, in the order Typer lists them (plain commands, then sub-apps).
_REGISTERED = """
import importlib, json, sys
import typer.main
from asfyolo_rt.cli.main import app
for module in sys.argv[1:]:
    importlib.import_module(module)
names = [c.name or typer.main.get_command_name(c.callback.__name__) for c in app.registered_commands]
print(json.dumps(names + [g.name for g in app.registered_groups]))
"""

# Runs in a fresh interpreter: runs the CLI on argv; prints the exit code and the command modules loaded.
_LOADED = """
import json, sys
from asfyolo_rt.cli.commands import COMMANDS
from asfyolo_rt.cli.main import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"exit": code, "modules": sorted(set(COMMANDS.values()) & set(sys.modules))}))
"""


def _python(code: str, *args: str) -> Any:
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", CLI_MODULES)
def test_a_module_registers_what_the_table_says(module: str) -> None:
    registered = _python(_REGISTERED, module)
    expected = [name for name, owner in COMMANDS.items() if owner == module]
    missing = [f'"{n}": "{module}"' for n in registered if COMMANDS.get(n) != module]
    assert not missing, f"{module} registers commands the table does not give it: add {', '.join(missing)} to {TABLE}"
    stale = [n for n in expected if n not in registered]
    assert not stale, f"{TABLE} says {module} registers {stale}, but importing it alone does not: fix the entries"


def test_the_table_is_the_eager_app_in_help_order() -> None:
    # Typer's own order when every module is imported up front (as the CLI did before it was lazy).
    registered = _python(_REGISTERED, *CLI_MODULES)
    assert sorted(registered) == sorted(COMMANDS), f"{TABLE} differs from what the command modules register"
    eager = _python(_REGISTERED, *dict.fromkeys(COMMANDS.values()))
    assert eager == list(COMMANDS), f"{TABLE} must list the commands in `asfyolo-rt --help` order: {eager}"


@pytest.mark.parametrize(("argv", "module"), [
    pytest.param(["predict", "--help"], "asfyolo_rt.cli.predict", id="predict --help"),
    pytest.param(["--debug", "build", "--help"], "asfyolo_rt.cli.export", id="--debug build --help"),
    pytest.param(["data", "frame", "--help"], "asfyolo_rt.cli.data", id="data frame --help"),
    pytest.param(["weights"], "asfyolo_rt.cli.weights", id="weights"),  # no command: the sub-app's help, exit 2
])
def test_a_command_loads_its_module_only(argv: list[str], module: str) -> None:
    found = _python(_LOADED, *argv)
    assert found == {"exit": 0 if "--help" in argv else 2, "modules": [module]}


@pytest.mark.parametrize("argv", [["--help"], ["predcit"]], ids=" ".join)
def test_the_list_and_a_typo_load_every_module(argv: list[str]) -> None:
    found = _python(_LOADED, *argv)
    assert found == {"exit": 0 if argv == ["--help"] else 2, "modules": sorted(set(COMMANDS.values()))}


def test_the_app_sees_every_command_in_process() -> None:
    from asfyolo_rt.cli.main import app

    assert set(typer.main.get_command(app).commands) == set(COMMANDS)  # type: ignore[attr-defined]
    result = CliRunner().invoke(app, ["predcit"])
    assert result.exit_code == 2
    assert "No such command 'predcit'. Did you mean 'predict'" in result.output


def test_the_error_boundary_covers_a_lazily_loaded_command(tmp_path: Path) -> None:
    image = tmp_path / "frame.tif"
    image.write_bytes(b"not read: the missing --weights is found first")
    run = subprocess.run([sys.executable, "-c", "import sys; from asfyolo_rt.cli.main import main; main(sys.argv[1:])",
                          "predict", str(image), "--weights", str(tmp_path / "none.safetensors"),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith("error: --weights") and "Traceback" not in run.stderr, run.stderr
