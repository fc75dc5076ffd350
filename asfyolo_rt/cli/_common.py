"""Helpers shared by CLI commands: Rich progress bound to library progress callbacks, option validation
(checked before any work starts), model-source loading."""

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
    """Results go to stdout as strict JSON: a non-finite number (NaN, Infinity) becomes null, never bare NaN."""
    import typer

    from asfyolo_rt.export.bundle_files import json_safe

    plain = json.loads(json.dumps(obj, default=_default))
    typer.echo(json.dumps(json_safe(plain), indent=2, allow_nan=False))


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
    path = resolve_weights(weights or model, option="--weights" if weights else "--model")
    img_size: int | None = None
    if path.suffix == ".safetensors":
        img_size = checkpoint_img_size(path)
    elif path.suffix == ".onnx":
        meta = {p.key: p.value for p in read_onnx(path).metadata_props}
        if "img_size" in meta:
            with contextlib.suppress(ValueError, TypeError):
                v = json.loads(meta["img_size"])  # JSON [H, W] or an int
                img_size = int(max(v) if isinstance(v, list) else v)
    return path, img_size


def checkpoint_img_size(path: Path) -> int:
    """The training image size recorded in a safetensors checkpoint, read from its JSON header alone (no tensor
    is read, no PyTorch imported); a file whose header does not parse is read whole, which names its defect."""
    import struct

    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if not 0 < n <= 100 * 2**20:
                raise ValueError(f"header of {n} bytes")
            meta = json.loads(f.read(n))["__metadata__"]
        return int(json.loads(meta["asfyolo_rt"]).get("img_size", 640))
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        from asfyolo_rt.model.weights import read_checkpoint

        return read_checkpoint(path)[1].img_size


def read_onnx(path: Path) -> Any:
    """The ONNX graph of `path` (without external data); CheckpointError naming the file when it is not one."""
    import onnx

    from asfyolo_rt.errors import CheckpointError

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, RuntimeWarning-turned-errors, OSError, ...
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise CheckpointError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {text})",
                              hint="re-export it with `asfyolo-rt export`, or re-copy it if it was cut short") from exc


def check_min(value: int | None, option: str, minimum: int = 1) -> None:
    """ConfigError naming the option when an integer option is below `minimum` (None: not given)."""
    from asfyolo_rt.errors import ConfigError

    if value is not None and value < minimum:
        raise ConfigError(f"{option} {value}: expected >= {minimum}")


# The largest --img-size: an 8192 x 8192 network input is 0.75 GiB of float32 pixels per image before the
# network's own activations (several times more); 99968 (a typo) would be 112 GiB. Larger images go in tiles.
MAX_IMG_SIZE = 8192


def check_img_size(value: int | None, option: str = "--img-size") -> None:
    """ConfigError unless `value` is None or a multiple of 32 (the model's largest stride) in 32..MAX_IMG_SIZE."""
    from asfyolo_rt.errors import ConfigError

    if value is not None and (value < 32 or value % 32 or value > MAX_IMG_SIZE):
        raise ConfigError(f"{option} {value}: expected a multiple of 32 from 32 to {MAX_IMG_SIZE} (e.g. 320 or 640)",
                          hint="larger images run at --scale native, in tiles of --img-size" if value > MAX_IMG_SIZE
                          else None)


def check_range(value: float | None, option: str, low: float, high: float, *, low_open: bool = False,
                high_open: bool = False, what: str = "a value") -> None:
    """ConfigError naming the option unless `value` is None or a number in the interval (NaN is refused)."""
    import math

    from asfyolo_rt.errors import ConfigError

    if value is None:
        return
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (math.isfinite(value) and above and below):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{option} {value}: expected {what} in {interval}")


def check_device(device: str, option: str = "--device") -> None:
    """ConfigError for a device that is not cpu / cuda / cuda:N, or a CUDA device this machine lacks."""
    import re

    from asfyolo_rt.errors import ConfigError

    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if device == "cpu":
        return
    if m is None:
        raise ConfigError(f"{option} {device!r}: expected cpu, cuda or cuda:N")
    try:
        import torch
    except ModuleNotFoundError:  # an install without PyTorch (exported models): their runtime checks the device
        return

    if not torch.cuda.is_available():
        why = "this PyTorch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ConfigError(f"{option} {device}: CUDA is not available here ({why})", hint=f"use {option} cpu")
    index = int(m.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"{option} {device}: only {torch.cuda.device_count()} CUDA device(s) here",
                          hint=f"use {option} cuda:0")


def load_labelled_split(data: Path, split: str, *, skip_bad_labels: bool) -> Any:
    """A dataset split for evaluation: refused when labels have errors (as train does), or with
    `skip_bad_labels` the affected images left out and counted on stderr."""
    from asfyolo_rt.data.dataset import load_split

    ds = load_split(data, split, on_problem="skip" if skip_bad_labels else "error")
    bad = sorted({p.path for p in ds.problems if p.severity == "error"})
    if bad:
        instances = 0
        for f in (f for f in bad if f.suffix == ".txt"):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                instances += sum(1 for line in Path(f).read_text().splitlines() if line.strip())
        stderr.print(f"--skip-bad-labels: left out {len(bad)} image(s) of split {split!r} with label errors "
                     f"({instances} label line(s)); evaluating the other {len(ds.samples)}", highlight=False, soft_wrap=True)
    return ds


def stdout_console() -> Console:
    """Console for result tables: wide when stdout is not a terminal (logs, CI), so columns are not cut."""
    import sys

    return Console() if sys.stdout.isatty() else Console(width=200)


def backend_help() -> str:
    """The registered runtimes with the files they run, for --backend's help (from the registry)."""
    from asfyolo_rt.runtime.registry import entry, runtimes

    return "; ".join(f"{n} ({'/'.join(entry(n).suffixes)})" for n in runtimes())


def precision_help() -> str:
    """Each registered runtime's precisions (the first is its default), for --precision's help."""
    from asfyolo_rt.runtime.registry import entry, runtimes

    return "; ".join(f"{n}: {'/'.join(entry(n).precisions)}" for n in runtimes() if len(entry(n).precisions) > 1)


class SignalGuard:
    """Ctrl-C (SIGINT) and SIGTERM raise `Interrupted` (exit 130 / 143) in the main thread, except inside
    `critical()`: there the signal waits until the block ends, so one image's outputs are written whole or
    not at all. Outside the main thread (signals do not reach it) it does nothing."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._deferring = False
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: Any) -> None:
        from asfyolo_rt.errors import Interrupted

        if self.signum is None:
            self.signum = signum
        if not self._deferring:
            raise Interrupted(signum)

    def __enter__(self) -> SignalGuard:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)
                         if signal.getsignal(s) is not signal.SIG_IGN}  # a signal ignored (nohup, &) stays so
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A block a signal does not cut short; a signal that came during it is raised when it ends."""
        from asfyolo_rt.errors import Interrupted

        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self.signum is not None:
            raise Interrupted(self.signum)
