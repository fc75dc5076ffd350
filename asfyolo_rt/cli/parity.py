"""`asfyolo-rt parity`: PyTorch vs ONNX Runtime vs TensorRT, every precision, same images, one verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from asfyolo_rt.cli._common import (
    check_device,
    check_img_size,
    print_json,
    progress_bar,
    stderr,
    stdout_console,
)
from asfyolo_rt.cli.main import app

console = stdout_console()

# Files of a deployment bundle, in report order (see `asfyolo-rt export`).
BUNDLE_FILES = ["model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8-cpu.onnx", "model.int8-openvino.xml"]


def _can_run_engines() -> bool:
    """TensorRT engines run only with a CUDA GPU and cuda-python."""
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("cuda") is not None


def discover(paths: list[Path]) -> tuple[list[Path], Path | None]:
    """Model files to test, and the checkpoint a bundle was exported from (if its bundle.json says)."""
    from asfyolo_rt.errors import ConfigError

    files: list[Path] = []
    weights: Path | None = None
    for p in paths:
        if p.is_dir():
            meta = p / "bundle.json"
            if meta.is_file():
                w = (json.loads(meta.read_text()).get("model") or {}).get("weights")
                if w:  # the checkpoint the bundle was exported from (absolute, or relative to the bundle)
                    cand = Path(w) if Path(w).is_absolute() else p / w
                    weights = cand if cand.exists() else weights
            engines = sorted(p.glob("*.engine")) + sorted(p.glob("*.plan"))
            if not _can_run_engines():  # engines built ahead of time (TensorRT-RTX) cannot run on this machine
                engines = []
            found = [p / f for f in BUNDLE_FILES if (p / f).is_file()] + engines
            if not found:
                raise ConfigError(f"{p} holds none of {', '.join(BUNDLE_FILES)} or *.engine",
                                  hint="create a bundle with `asfyolo-rt export --int8 --out DIR`")
            from asfyolo_rt.export.bundle_files import verify_bundle_file

            for f in found:
                if f.suffix in (".onnx", ".xml"):
                    verify_bundle_file(f)  # one model per bundle: listed, unchanged, same source weights
                if f.suffix == ".xml":
                    verify_bundle_file(f.with_suffix(".bin"))  # the IR's weights
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(f"{p} does not exist")
    return files, weights


@app.command()
def parity(
    paths: Annotated[list[Path] | None, typer.Argument(help="Bundle folders and/or model files (.onnx, .engine).")] = None,
    data: Annotated[Path, typer.Option("--data", "-d", help="Dataset folder or YAML; its val split is used.")] = Path("../shared/datasets/DSB2018"),
    weights: Annotated[str | None, typer.Option("--weights", "-w", help="Reference checkpoint (default: the bundle's source, else the shipped DSB2018 model).")] = None,
    images: Annotated[int, typer.Option("--images", "-n", help="Number of val images.")] = 50,
    img_size: Annotated[int | None, typer.Option("--img-size", help="Square input (fit) or tile (tiled) when no model is static.")] = None,
    protocol: Annotated[str, typer.Option("--protocol", help="fit: every image letterboxed into the models' input; tiled: every image at native scale in tiles of that input (what predict does).")] = "fit",
    split: Annotated[str, typer.Option(help="Dataset split.")] = "val",
    threshold: Annotated[list[str] | None, typer.Option("--threshold", help="Allowed mask mAP50 loss in points, e.g. --threshold int8=0.5 (defaults fp32=0.1 fp16=0.3 bf16=1.0 int8=1.0).")] = None,
    torch_lowp: Annotated[bool, typer.Option("--torch-lowp/--no-torch-lowp", help="Also evaluate PyTorch bf16 (CPU) / fp16 (CUDA): an estimate row, reported but not gated.")] = True,
    gate_estimates: Annotated[bool, typer.Option("--gate-estimates", help="Let the PyTorch bf16/fp16 estimate rows decide the exit code too (default: only exported files do).")] = False,
    device: Annotated[str, typer.Option(help="Device of the PyTorch reference.")] = "cpu",
    report: Annotated[Path | None, typer.Option("--report", help="Write parity.json, parity.md and disagreement PNGs here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Accuracy parity: same images, same post-processing, metric deltas vs PyTorch FP32; exit 1 when an
    exported file misses its gate (the last line names every failed gate).

    Examples:
      asfyolo-rt parity bundle/ --data ../shared/datasets/DSB2018 --images 50 --json
      asfyolo-rt parity bundle/model.int8.onnx --threshold int8=0.5 --report parity/
      asfyolo-rt parity bundle/ --protocol tiled --images 20
    """
    from asfyolo_rt.data.dataset import load_split
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.eval.parity import Candidate, backend_label, openvino_candidates, run_parity, write_report
    from asfyolo_rt.infer.backends import TorchBackend
    from asfyolo_rt.infer.protocol import RawBackend
    from asfyolo_rt.model.weights import load_checkpoint
    from asfyolo_rt.runtime.info import read_model_info
    from asfyolo_rt.runtime.registry import load_backend
    from asfyolo_rt.weights_registry import resolve_weights

    if protocol not in ("fit", "tiled"):
        raise ConfigError(f"--protocol {protocol!r}: expected fit or tiled")
    if images < 1:
        raise ConfigError(f"--images {images}: expected >= 1")
    check_img_size(img_size)
    check_device(device)
    files, bundle_weights = discover(list(paths or []))
    ref_path = resolve_weights(weights) if weights else (bundle_weights or resolve_weights(None))
    from asfyolo_rt.model.weights import import_official

    model, cfg = load_checkpoint(ref_path) if ref_path.suffix == ".safetensors" else import_official(ref_path)
    cands = [Candidate(f"torch fp32 {ref_path.name}", TorchBackend(model, device=device, names=cfg.names))]
    if torch_lowp:
        import copy

        lowp = "fp16" if device.startswith("cuda") else "bf16"
        cands.append(Candidate(f"torch {lowp}", TorchBackend(copy.deepcopy(model), device=device, precision=lowp,
                                                            names=cfg.names), estimate=True))
    skipped = []
    for f in files:
        try:
            b = load_backend(f)
        except ConfigError as exc:
            if "end-to-end" in str(exc.hint or ""):
                skipped.append(f"{f.name} (end-to-end graph)")
                continue
            raise
        if b.end2end or not isinstance(b, RawBackend):  # NMS inside: no raw outputs to compare
            skipped.append(f"{f.name} (end-to-end graph)")
            continue
        cands.append(Candidate(backend_label(b, f), b))
    folders = {p for p in paths or [] if p.is_dir()}  # bundles: their model.onnx also on OpenVINO FP32 (+ BF16)
    ov_cands, ov_skipped = openvino_candidates([f for f in files if f.parent in folders])
    cands += ov_cands
    skipped += ov_skipped
    shapes = {c.backend.input_shape for c in cands if c.backend.input_shape is not None}
    if len(shapes) > 1:
        raise ConfigError(f"the static models have different input shapes {sorted(shapes)}",
                          hint="compare models exported at the same --img-size")
    size = img_size or cfg.img_size
    shape = shapes.pop() if shapes else (size, size)
    thresholds = {}
    for t in threshold or []:
        k, _, v = t.partition("=")
        try:
            thresholds[k.strip()] = float(v)
        except ValueError:
            raise ConfigError(f"--threshold {t!r}: expected PRECISION=POINTS, e.g. int8=1.0") from None
    ds = load_split(data, split, on_problem="warn")
    n = min(images, len(ds.samples))
    with progress_bar("parity", n * len(cands)) as cb:
        order = {c.label: i for i, c in enumerate(cands)}
        rec = read_model_info(ref_path)
        rep, preds = run_parity(cands, ds, input_shape=shape, n_images=n, thresholds=thresholds,
                                progress=lambda lab, d, t: cb(order[lab] * n + d, n * len(cands)), protocol=protocol,
                                model_scale=rec.model_scale, max_object_px=rec.overlap_object_px,
                                gate_estimates=gate_estimates)
    if report:
        write_report(rep, preds, report)
    out = rep.to_dict()
    out["skipped"] = skipped
    if as_json:
        print_json(out)
        stderr.print(rep.verdict(), highlight=False, soft_wrap=True)
    else:
        how = "letterboxed into" if protocol == "fit" else "native scale, tiles of"
        table = Table(title=f"parity on {n} images of {data} ({how} {shape[0]}x{shape[1]})")
        for col in ("backend", "box mAP50", "mask mAP50", "mask mAP50-95", "DSB", "Δ mask mAP50 (pts)", "allowed", "verdict"):
            table.add_column(col)
        for r in rep.results:
            m = r.metrics
            table.add_row(escape(r.label), f"{m['box_map50']:.4f}", f"{m['mask_map50']:.4f}", f"{m['mask_map']:.4f}",
                          f"{m.get('dsb_score', float('nan')):.4f}", f"{r.deltas.get('mask_map50', 0.0):+.2f}",
                          "-" if r.threshold is None else f"{r.threshold:.1f}",
                          ("[green]" if r.passed else "[red]" if r.gated else "[yellow]") + f"{r.verdict()}[/]")
        console.print(table)
        for s in skipped:
            console.print(f"[dim]skipped {s}[/]")
        console.print(("[green]" if rep.passed else "[bold red]") + escape(rep.verdict()) + "[/]", soft_wrap=True)
    if not rep.passed:
        raise typer.Exit(1)
