"""Raw-output comparison of an exported model against PyTorch (the parity numbers of the export report).

Runners take named arrays and return named arrays; `compare_outputs` reduces a pair of output dicts to
per-output max / mean absolute errors. Tolerances are per output (prototypes are looser than boxes in
absolute terms because `pred` holds pixel coordinates up to the image size).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asfyolo_rt.errors import ExportError

Runner = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class OutputError:
    """Error of one output of one runner against the reference, at one input shape."""

    output: str
    shape: tuple[int, int, int]  # (B, H, W) of the input
    max_abs: float
    mean_abs: float
    ref_max_abs: float  # largest |reference value|, to judge the error's scale

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def torch_runner(model: torch.nn.Module, dtype: torch.dtype = torch.float32) -> Runner:
    """Run an ASFYOLO (eval, CPU) in `dtype`; returns float32 {'pred', 'protos'}."""
    model = model.eval()

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        param = next(model.parameters())
        with torch.inference_mode():
            pred, protos = model(torch.from_numpy(x).to(param.device, dtype))
        return {"pred": pred.float().cpu().numpy(), "protos": protos.float().cpu().numpy()}

    return run


def ort_runner(path: str | Path, threads: int | None = None) -> Runner:
    """ONNX Runtime CPU session of an exported model; returns {'pred', 'protos'} as float32."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot load {path}: {exc}") from exc
    name = sess.get_inputs()[0].name
    outs = [o.name for o in sess.get_outputs()]

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        try:
            values = sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})
        except Exception as exc:
            raise ExportError(f"ONNX Runtime failed to run {Path(path).name} on input {x.shape}: {exc}",
                              hint="a static model only accepts its export shape; export with --dynamic") from exc
        return {k: np.asarray(v, dtype=np.float32) for k, v in zip(outs, values)}

    return run


def compare_outputs(
    ref: dict[str, np.ndarray], got: dict[str, np.ndarray], shape: tuple[int, int, int]
) -> list[OutputError]:
    """Per-output absolute errors of `got` against `ref` (outputs present in both)."""
    rows = []
    for name, value in ref.items():
        if name not in got:
            continue
        a, b = value.astype(np.float64), got[name].astype(np.float64)
        if a.shape != b.shape:
            raise ExportError(f"output {name!r} has shape {b.shape}, the reference {a.shape}",
                              hint="the exported graph baked a traced shape; export again with --dynamic")
        d = np.abs(a - b)
        rows.append(OutputError(name, shape, float(d.max(initial=0.0)), float(d.mean()) if d.size else 0.0,
                                float(np.abs(a).max(initial=0.0))))
    return rows


def random_inputs(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """(B, 3, H, W) float32 uniform in [0, 1] (a deterministic stand-in for letterboxed images)."""
    b, h, w = shape
    return np.random.default_rng(seed).random((b, 3, h, w), dtype=np.float32)


def compare_runners(
    reference: Runner,
    candidate: Runner,
    shapes: Sequence[tuple[int, int, int]],
    *,
    images: np.ndarray | None = None,
    seed: int = 0,
) -> list[OutputError]:
    """Errors of `candidate` vs `reference` at each (B, H, W) shape.

    images: optional real pre-processed batch (B, 3, H, W) float32 in [0, 1] used for the shapes that
    match its (H, W) (its first B images); other shapes get seeded uniform noise.
    """
    rows: list[OutputError] = []
    for i, shape in enumerate(shapes):
        if images is not None and images.shape[2:] == shape[1:] and images.shape[0] >= shape[0]:
            x = np.ascontiguousarray(images[: shape[0]], dtype=np.float32)
        else:
            x = random_inputs(shape, seed + i)
        rows.extend(compare_outputs(reference(x), candidate(x), shape))
    return rows


def worst(rows: Sequence[OutputError]) -> dict[str, dict[str, float]]:
    """{output: {max_abs, mean_abs}} over all shapes (max of maxima, mean of means)."""
    out: dict[str, dict[str, float]] = {}
    for name in sorted({r.output for r in rows}):
        mine = [r for r in rows if r.output == name]
        out[name] = {"max_abs": max(r.max_abs for r in mine), "mean_abs": float(np.mean([r.mean_abs for r in mine]))}
    return out


def check_sizes(hw: tuple[int, int], dynamic_size: bool) -> list[tuple[int, int]]:
    """The (H, W) sizes an export is checked at: the export size, plus two others when H, W are dynamic."""
    if not dynamic_size:
        return [hw]
    h, w = hw
    return [hw, (h + 64, w), (max(64, h - 32), w + 96)]
