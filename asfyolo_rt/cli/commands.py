"""Which module registers each command, so that `asfyolo-rt CMD` imports only CMD's module.

The root group (`asfyolo_rt.cli.main._LazyGroup`) imports a command's module when the command is asked
for, and every module when the whole list is (`asfyolo-rt --help`, a typo, the docs).
tests/packaging/test_cli_lazy.py proves this table against what each module registers.
"""

from __future__ import annotations

import importlib

# Top-level command or sub-app name -> the module that defines it on `asfyolo_rt.cli.main.app` (or adds the
# sub-app) at import. In `asfyolo-rt --help` order: Typer lists plain commands first, then sub-apps.
COMMANDS = {
    "info": "asfyolo_rt.cli.info",
    "env": "asfyolo_rt.cli.info",
    "train": "asfyolo_rt.cli.train",
    "val": "asfyolo_rt.cli.val",
    "predict": "asfyolo_rt.cli.predict",
    "watch": "asfyolo_rt.cli.watch",
    "export": "asfyolo_rt.cli.export",
    "build": "asfyolo_rt.cli.export",
    "parity": "asfyolo_rt.cli.parity",
    "bench": "asfyolo_rt.cli.bench",
    "view": "asfyolo_rt.cli.view",
    "weights": "asfyolo_rt.cli.weights",
    "data": "asfyolo_rt.cli.data",
    "kernels": "asfyolo_rt.cli.kernels",
}


def load(name: str) -> bool:
    """Import the module that registers command `name`; False when no module does (a typo)."""
    module = COMMANDS.get(name)
    if module is None:
        return False
    importlib.import_module(module)
    return True


def load_all() -> None:
    """Import every command module, in table order (which is the order `--help` lists them in)."""
    for module in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(module)


def in_table_order(names: list[str]) -> list[str]:
    """`names` in the table's order; a name the table lacks goes last."""
    rank = {name: i for i, name in enumerate(COMMANDS)}
    return sorted(names, key=lambda n: rank.get(n, len(rank)))
