"""Helpers shared by CLI commands: Rich progress bound to library progress callbacks, backend loading."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr = Console(stderr=True)


def rich_progress(*, info: bool = False, transient: bool = False, disable: bool = False) -> Progress:
    """The house Rich progress display on stderr; `info` adds a free-text column fed by the task field 'info'."""
    extra = (TextColumn("{task.fields[info]}"),) if info else ()
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *extra, TimeElapsedColumn(),
        TimeRemainingColumn(), console=stderr, transient=transient, disable=disable,
    )


@contextlib.contextmanager
def progress_bar(description: str, total: int | None = None, *, transient: bool = False
                 ) -> Iterator[Callable[[int, int], None]]:
    """Yields a `progress(done, total)` callback drawing a Rich bar on stderr (erased at the end if transient)."""
    with rich_progress(transient=transient) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int, total_: int) -> None:
            bar.update(task, completed=done, total=total_)

        yield update


def print_json(obj: Any) -> None:
    """Results go to stdout as JSON."""
    import typer

    typer.echo(json.dumps(obj, indent=2, default=_default))


def _default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)


def resolve_model_source(weights: str | None, model: str | None) -> tuple[Path, int | None]:
    """--weights / --model -> (path, img_size recorded with the model or None).

    Neither given: the shipped DSB2018 model. Checkpoints carry their training image size; ONNX files
    carry it in metadata.
    """
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.weights_registry import resolve_weights

    if weights and model:
        raise ConfigError("give either --weights (a checkpoint) or --model (an exported model), not both")
    path = resolve_weights(weights or model)
    img_size: int | None = None
    if path.suffix == ".safetensors":
        from asfyolo_rt.model.weights import read_checkpoint

        img_size = read_checkpoint(path)[1].img_size
    elif path.suffix == ".onnx":
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        if "img_size" in meta:
            with contextlib.suppress(ValueError, TypeError):
                v = json.loads(meta["img_size"])  # JSON [H, W] or an int
                img_size = int(max(v) if isinstance(v, list) else v)
    return path, img_size


def stdout_console() -> Console:
    """Console for result tables: wide when stdout is not a terminal (logs, CI), so columns are not cut."""
    import sys

    return Console() if sys.stdout.isatty() else Console(width=200)
