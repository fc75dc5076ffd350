"""Shared helpers of bench/gpu_check.py's sections: rows for skipped/failed steps, the time-box check, the
benchmark images, raw-output splitting, peak GPU memory, and importing the package from a bare checkout."""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

Section = Generator[dict[str, Any], None, str]
NM = 32  # mask coefficients per detection


def make_importable(repo: Path) -> None:
    """Import `asfyolo_rt` from this checkout when it is not installed (a GPU machine's own python): the
    package maps kernels/, export/ and calib/ into its namespace (pyproject's package-dir), done here by
    adding the repository root to the package's search path."""
    import importlib.util

    try:
        if importlib.util.find_spec("asfyolo_rt.kernels") is not None:
            return
    except ImportError:
        pass
    sys.path.insert(0, str(repo))
    import asfyolo_rt

    if str(repo) not in asfyolo_rt.__path__:
        asfyolo_rt.__path__.append(str(repo))


def skipped(case: str, why: str) -> dict[str, Any]:
    return {"status": "skipped", "case": case, "note": why}


def failed(case: str, exc: BaseException) -> dict[str, Any]:
    """An error row for one step (the section goes on with its other steps)."""
    return {"status": "error", "case": case, "note": f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500]}


def no_time(ctx: Any, need_s: float, case: str) -> dict[str, Any] | None:
    """A skipped row when `need_s` seconds do not fit in what is left of the section's box."""
    if ctx.left() >= need_s:
        return None
    return skipped(case, f"time box: {ctx.left():.0f} s left, about {need_s:.0f} s needed")


def images(ctx: Any, n: int, max_side: int | None = None) -> tuple[list[tuple[str, np.ndarray]], str]:
    """(name, RGB uint8 image) of the first n DSB2018 val images (no side above max_side), else synthetic nuclei."""
    from asfyolo_rt.data.io import read_image, to_uint8_rgb

    if ctx.data is not None:
        from asfyolo_rt.data.dataset import load_split
        from asfyolo_rt.data.header import image_size

        out = []
        for s in load_split(ctx.data, "val", on_problem="warn").samples:
            if max_side is None or max(image_size(s.image_path)) <= max_side:
                out.append((s.image_path.name, read_image(s.image_path)))
            if len(out) == n:
                break
        return out, "DSB2018 val"
    from asfyolo_rt.data.synth import make_nuclei

    return [(f"synth{i}", to_uint8_rgb(make_nuclei(i, shape=(256, 256))[0])) for i in range(n)], "synthetic nuclei"


def split_raw(pred: Any, protos: Any) -> dict[str, Any]:
    """The raw outputs by meaning, as asfyolo_rt.eval.parity.raw_errors takes them."""
    return {"boxes": pred[..., :4], "scores": pred[..., 4:-NM], "coeffs": pred[..., -NM:], "protos": protos}


def peak_mb(device: str) -> float | str:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.startswith("cuda") else ""


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
