"""`asfyolo-rt bench` helpers: OpenVINO runs, model GFLOPs, the machine's peak, perf columns, noisy warnings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape

from asfyolo_rt.cli._common import stderr

ORT_PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu")
OV_PRECISIONS = ("fp32", "bf16", "int8")
PERF_COLUMNS = ("GFLOPs", "GFLOP/s", "% peak", "CPU/wall", "noisy")


def split_precisions(precisions: list[str], backends: list[str]) -> tuple[list[str], list[str]]:
    """--precision -> (ONNX Runtime precisions, OpenVINO precisions); ConfigError for one no backend knows."""
    from asfyolo_rt.errors import ConfigError

    known = set(ORT_PRECISIONS if "onnxruntime" in backends else ()) | set(OV_PRECISIONS if "openvino" in backends else ())
    bad = [p for p in precisions if p not in known and ("onnxruntime" in backends or "openvino" in backends)]
    if bad:
        raise ConfigError(f"--precision {', '.join(bad)}: expected {', '.join(sorted(known))} for --backend "
                          f"{','.join(backends)}")
    return [p for p in precisions if p in ORT_PRECISIONS], [p for p in precisions if p in OV_PRECISIONS]


def openvino_runs(label: str, src: Path, int8: Callable[[], Path] | None, precisions: Sequence[str | None],
                  threads: int | None) -> list[tuple[str, Any]]:
    """(label, backend) per OpenVINO precision of `src`; bf16 on a CPU without it: a warning, no row.

    int8: makes the NNCF INT8 IR of `src` (None: `src` is run as it is, e.g. an INT8 .xml)."""
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.infer.openvino import OpenVinoBackend, check_precision, cpu_isa

    runs: list[tuple[str, Any]] = []
    for prec in precisions:
        if prec == "bf16":
            try:
                check_precision(prec)
            except ConfigError as exc:
                stderr.print(f"[yellow]openvino bf16 skipped:[/] {escape(str(exc))}")
                continue
        path = src
        if prec == "int8":  # made from an architecture/checkpoint, or the INT8 IR beside a bundle's model.onnx
            path = int8() if int8 is not None else (src if src.suffix == ".xml" else src.with_name("model.int8-openvino.xml"))
            if not path.is_file():
                raise ConfigError(f"--precision int8 for OpenVINO: {path} does not exist",
                                  hint="export the bundle with `asfyolo-rt export --int8`, or pass the .xml itself")
        b = OpenVinoBackend(path, precision=prec, threads=threads)
        runs.append((f"{label} [openvino {b.precision} {cpu_isa()}]", b))
    return runs


def openvino_int8_variant(fp32: Path, size: int, data: Path | None, default_data: Path) -> Path:
    """The NNCF INT8 IR beside the benchmark's cached model.onnx (made once; 32 calibration images)."""
    from asfyolo_rt.calib.dataset import build_calibration_set
    from asfyolo_rt.calib.openvino_int8 import quantize_openvino

    target = fp32.with_name("model.int8-openvino.xml")
    if not target.exists():
        stderr.print(f"making {target} ...")
        src = data if data is not None else (default_data if default_data.exists() else None)
        quantize_openvino(fp32, target, build_calibration_set(src, (size, size), n=32))
    return target


def net_gflops(net: Any, size: int) -> float:
    """GFLOPs per image of a PyTorch model at size x size (Conv+BN fused, as exported)."""
    import copy

    import torch

    from asfyolo_rt.model.summary import count_flops

    fused = copy.deepcopy(net).float().eval()
    fused = fused.fuse() if hasattr(fused, "fuse") else fused
    return count_flops(fused, torch.zeros(1, 3, size, size))


def file_gflops(path: Path, size: int) -> float | None:
    """GFLOPs per image counted on the ONNX graph (an .xml: its bundle's model.onnx); None when unknown."""
    from asfyolo_rt.errors import AsfYoloError
    from asfyolo_rt.onnx_flops import onnx_gflops

    onnx_path = path if path.suffix == ".onnx" else path.with_name("model.onnx")
    if not onnx_path.is_file():
        return None
    try:
        return onnx_gflops(onnx_path, (size, size)).gflops
    except (AsfYoloError, Exception):  # noqa: BLE001 - a count we cannot make leaves the column empty
        return None


def measure_peak(threads: int | None) -> Any:
    from asfyolo_rt.bench_machine import measure_peak as measure

    stderr.print("measuring the machine's GEMM peak (FP32 torch, INT8 ONNX Runtime) ...")
    return measure(threads)


def peak_dict(peak: Any) -> dict[str, Any] | None:
    from dataclasses import asdict

    return None if peak is None else asdict(peak)


def peak_line(peak: Any) -> None:
    if peak is None:
        return
    i8 = f"{peak.int8_gops:.0f} GOP/s INT8 (ONNX Runtime MatMulInteger)" if peak.int8_gops else "no INT8 GEMM"
    stderr.print(f"peak on this machine ({peak.isa}, {peak.n}^3 GEMM): {peak.fp32_gflops:.0f} GFLOP/s FP32 (torch), {i8}")


def perf_cells(r: Any) -> list[str]:
    p = r.perf
    if p is None:
        return ["-"] * len(PERF_COLUMNS)
    ratio = p.cpu_s / p.wall_s if p.wall_s else 0.0
    return [f"{p.gflops:.2f}" if p.gflops else "-", f"{p.achieved_gflops_per_s:.1f}" if p.achieved_gflops_per_s else "-",
            f"{p.pct_of_peak:.0f}" if p.pct_of_peak is not None else "-", f"{ratio:.2f}",
            "[yellow]noisy[/]" if p.noisy else "quiet"]


def noise_warnings(rows: Sequence[Any]) -> None:
    for r in rows:
        if r.perf is not None and r.perf.noisy:
            stderr.print(f"[yellow]warning: noisy:[/] {escape(r.label)} b{r.batch}: {escape(r.perf.noise_reason)}; "
                         "rerun on a quiet machine before quoting it")
