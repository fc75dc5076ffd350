"""The `asfyolo-rt` command: one Typer app, sub-apps per concern, one error boundary.

Commands are thin: parse typed options, call one library function, print the result (or JSON
with --json). Logs and progress go to stderr, results to stdout.

Command modules register themselves on `app` (see `asfyolo_rt.cli.commands`). The error boundary
lives in `_SafeGroup.invoke`, so it also applies under `typer.testing.CliRunner`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from asfyolo_rt.errors import AsfYoloError

err_console = Console(stderr=True)
_state = {"debug": False}


class _SafeGroup(typer.core.TyperGroup):
    """Turns AsfYoloError into one red line (+ hint) and exit code 1, unless --debug."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except AsfYoloError as exc:
            if _state["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            if exc.hint:
                err_console.print(f"[dim]hint:[/] {escape(str(exc.hint))}", highlight=False, soft_wrap=True)
            err_console.print("[dim](run with --debug for the traceback)[/]")
            ctx.exit(1)


app = typer.Typer(
    name="asfyolo-rt",
    cls=_SafeGroup,
    help="ASF-YOLO cell instance segmentation: train, validate, export to ONNX/TensorRT, prove parity, benchmark.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level to stderr."),
) -> None:
    _state["debug"] = debug
    level = logging.DEBUG if debug else (logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def sub_app(name: str, help: str) -> typer.Typer:
    """Create a command group `asfyolo-rt NAME ...` with the same error boundary."""
    group = typer.Typer(name=name, help=help, cls=_SafeGroup, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv, prog_name="asfyolo-rt")


# Register every command module (they import `app` from this, already initialised, module).
from asfyolo_rt.cli import commands as _commands  # noqa: E402, F401

if __name__ == "__main__":
    main()
