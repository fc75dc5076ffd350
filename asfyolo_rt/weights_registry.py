"""The shipped (embedded) models: CPU-trained ASF-YOLO weights inside the package.

`default_weights()` is what `predict`, `val`, `export` and `bench` use when no --weights is given.
"""

from __future__ import annotations

from pathlib import Path

from asfyolo_rt.errors import CheckpointError

ASSETS = Path(__file__).resolve().parent / "assets"

# name -> file inside asfyolo_rt/assets (FP16 safetensors; model card beside it as <stem>.md)
SHIPPED: dict[str, str] = {
    "dsb2018": "asfyolo-n-dsb2018.safetensors",
    "bcc": "asfyolo-n-bcc.safetensors",
}
DEFAULT = "dsb2018"


def shipped_weights(name: str = DEFAULT) -> Path:
    """Path of a shipped checkpoint ('dsb2018' is the default model)."""
    if name not in SHIPPED:
        raise CheckpointError(f"no shipped model named {name!r}; available: {', '.join(SHIPPED)}")
    path = ASSETS / SHIPPED[name]
    if not path.is_file():
        raise CheckpointError(
            f"the shipped {name} model ({path.name}) is not in this installation",
            hint="pass --weights PATH (a .safetensors checkpoint from `asfyolo-rt train` or an official .pt)",
        )
    return path


def default_weights() -> Path:
    return shipped_weights(DEFAULT)


def resolve_weights(weights: str | Path | None, option: str = "--weights") -> Path:
    """--weights value -> a path: None means the default shipped model; 'dsb2018'/'bcc' name shipped ones.

    option: how the value was given, for the error message (e.g. --model, or PATH for an argument)."""
    if weights is None:
        return default_weights()
    if str(weights) in SHIPPED:
        return shipped_weights(str(weights))
    path = Path(weights)
    if not path.exists():
        raise CheckpointError(f"{option} {path} does not exist",
                              hint=f"give an existing file or a shipped name: {', '.join(SHIPPED)}")
    return path
