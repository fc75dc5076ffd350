"""The `asfyolo-rt` command: one Typer app, sub-apps per concern, one error boundary.

Commands are thin: parse typed options, call one library function, print the result (or JSON
with --json). Logs and progress go to stderr, results to stdout.

Command modules register themselves on `app` when imported; the root group imports only the module of
the command being run (the table is `asfyolo_rt.cli.commands.COMMANDS`). The error boundary lives in
`_SafeGroup.invoke`, so it also applies under `typer.testing.CliRunner`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import sys
import threading
import traceback
from typing import Any

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from asfyolo_rt.cli import commands as _commands
from asfyolo_rt.errors import AsfYoloError, Interrupted

err_console = Console(stderr=True)
_state = {"debug": False, "finished": False}

# errno -> (verb, hint) for the file-system faults a user meets: what to do about each.
_WRITE_FAULTS = {
    errno.EROFS: "the folder is on a read-only file system: write the results elsewhere (--out)",
    errno.ENOSPC: "the disk is full: free some space, or write the results elsewhere (--out)",
    errno.EDQUOT: "the disk quota is used up: free some space, or write the results elsewhere (--out)",
    errno.EFBIG: "the file system does not take a file this large: write the results elsewhere (--out)",
    errno.EACCES: "no permission: choose a folder you can write (--out), or fix its permissions",
    errno.EPERM: "no permission: choose a folder you can write (--out), or fix its permissions",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "a folder stands where a file should go: choose another path",
}


def fault_message(exc: BaseException) -> tuple[str, str | None] | None:
    """(one-line message, hint) for an ordinary fault that is not the project's own error: an OSError
    naming its path and reason, MemoryError, OpenCV's and PyTorch's out-of-memory; None for anything else
    (a bug: its traceback is wanted)."""
    if isinstance(exc, MemoryError):
        return "out of memory (MemoryError)", "use a smaller --img-size, --batch or --max-pixels"
    name, text = type(exc).__name__, " ".join(str(exc).split())
    if name == "error" and type(exc).__module__.startswith("cv2") and re.search(
            r"Insufficient memory|Failed to allocate", text):
        m = re.search(r"Failed to allocate (\d+) bytes", text)
        size = f" {int(m.group(1)) / 2**30:.1f} GiB" if m else ""
        return (f"out of memory: OpenCV could not allocate{size}",
                "use a smaller --img-size, --batch or --max-pixels")
    if name == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA), without importing torch here
        return f"out of GPU memory: {text[:200]}", "use a smaller --batch or --img-size, or --device cpu"
    if isinstance(exc, OSError) and exc.errno is not None:
        reason = (exc.strerror or errno.errorcode.get(exc.errno, str(exc.errno))).lower()
        what = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        verb = "cannot write" if exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else "cannot access"
        return (f"{verb} {what}: {reason}" if what else f"{verb} a file: {reason}"), _WRITE_FAULTS.get(exc.errno)
    return None


class _SafeGroup(typer.core.TyperGroup):
    """Turns AsfYoloError, file-system faults and out-of-memory into one red line (+ hint) and exit code 1,
    Ctrl-C / SIGTERM into one line and exit code 130 / 143; --debug keeps the traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except AsfYoloError as exc:
            if _state["debug"]:
                raise
            _one_line(str(exc), exc.hint)
            ctx.exit(1)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Interrupted, see main())
            if _state["debug"]:
                traceback.print_exc()
            signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
            done = exc.done if isinstance(exc, Interrupted) else ""
            what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
            err_console.print(f"{what}{': ' + done if done else ''}", highlight=False, markup=False, soft_wrap=True)
            ctx.exit(128 + signum)
        except Exception as exc:  # OSError, MemoryError, cv2.error: see fault_message
            told = fault_message(exc)
            if told is None or _state["debug"]:
                raise
            _one_line(*told)
            ctx.exit(1)


class _LazyGroup(_SafeGroup):
    """The root group. Typer builds it from what is registered on `app` so far; a command missing from it is
    loaded when asked for (`get_command`), all of them when the whole list is (`commands`: `--help`, the
    did-you-mean of a typo, the docs)."""

    _known: dict[str, Any]  # the click commands built so far, by name
    _complete: bool  # every command module loaded and built

    @property  # type: ignore[override]
    def commands(self) -> dict[str, Any]:
        if not self._complete:
            _commands.load_all()
            self._add_registered()
            self._complete = True
        return self._known

    @commands.setter
    def commands(self, value: dict[str, Any]) -> None:  # called by TyperGroup.__init__
        self._known, self._complete = value, False

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self._known and _commands.load(cmd_name):
            self._add_registered()
        # a name the table lacks (a typo, or a command added without its entry): load them all
        return self._known.get(cmd_name) or self.commands.get(cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        return _commands.in_table_order(list(self.commands))

    def _add_registered(self) -> None:
        """Add the click commands of what is registered on `app` but missing here (Typer builds them)."""
        for name, command in typer.main.get_group(app)._known.items():  # type: ignore[attr-defined]
            self._known.setdefault(name, command)


def _one_line(message: str, hint: str | None) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if hint:
        err_console.print(f"[dim]hint:[/] {escape(str(hint))}", highlight=False, soft_wrap=True)
    err_console.print("[dim](run with --debug for the traceback)[/]")


app = typer.Typer(
    name="asfyolo-rt",
    cls=_LazyGroup,
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


def _terminate(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI on `argv` (default: sys.argv[1:]). SIGTERM is raised as `Interrupted` (a KeyboardInterrupt),
    like Ctrl-C, so that partial outputs are removed on the way out; the exit code is then 143."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    app(args=argv, prog_name="asfyolo-rt")


def finished() -> None:
    """Said by a command when its every output is written and closed and nothing it started (a process, a
    server, a thread that writes) still runs: `console` may then end the process without tearing down the
    interpreter."""
    _state["finished"] = True


def console() -> None:
    """The `asfyolo-rt` console script (and `python -m asfyolo_rt`): `main`, and after a command that said
    `finished()` and succeeded, the process ends at once (stdout, stderr and logging flushed, then os._exit(0))
    instead of unloading OpenVINO, OpenCV, NumPy and some hundred modules, which takes 50-100 ms (a
    twentieth of `asfyolo-rt predict` on a 2048 x 2048 frame). Errors, interrupts, --help, a command that did
    not say it, a non-daemon thread still running, and a profiler, tracer or coverage in the process all take
    the ordinary exit."""
    _state["finished"] = False
    try:
        main()
    except SystemExit as exc:
        if exc.code not in (0, None) or not _state["finished"]:
            raise
    else:
        if not _state["finished"]:
            return
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return
    if sys.getprofile() is not None or sys.gettrace() is not None or "coverage" in sys.modules:
        return  # a profiler, debugger or coverage writes its results at the ordinary exit
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":  # `python -m asfyolo_rt.cli.main`: command modules register on the imported module
    from asfyolo_rt.cli.main import console as _console

    _console()
