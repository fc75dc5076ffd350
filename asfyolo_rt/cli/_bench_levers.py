"""`asfyolo-rt bench --frame N --levers`: the throughput levers one after another (asfyolo_rt.bench_levers)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.table import Table

from asfyolo_rt.cli._common import print_json, stderr, stdout_console


def levers_command(models: list[str] | None, frame: int | None, image: Path | None, data: Path | None,
                   default_data: Path, *, iters: int, warmup: int, val: bool, peak: bool,
                   json_out: Path | None, as_json: bool) -> None:
    from asfyolo_rt.bench_levers import plan_levers, rescore, run_levers
    from asfyolo_rt.bench_machine import best_peak, measure_peak
    from asfyolo_rt.env import cpu_name, environment
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.infer.openvino import cpu_flags, cpu_isa

    if frame is None and image is None:
        raise ConfigError("--levers times whole frames: give --frame N (e.g. 2048) or --image PATH")
    weights: str = "dsb2018"
    bundle: Path | None = None
    for m in models or []:
        if Path(m).is_dir():
            bundle = Path(m)
        else:
            weights = m
    src = data if data is not None else (default_data if default_data.exists() else None)
    if val and src is None:
        raise ConfigError("--levers-val needs the DSB2018 dataset", hint="pass --data ../shared/datasets/DSB2018")
    img, truth, desc = _frame(frame, image, src)
    levers = plan_levers(weights, bundle, log=lambda s: stderr.print(s, highlight=False, markup=False))
    machine = measure_peak() if peak else None
    split = None
    if val and src is not None:
        from asfyolo_rt.data.dataset import load_split

        split = load_split(src, "val", on_problem="warn")
    rows = run_levers(levers, img, truth, iters=iters, warmup=warmup, peak=machine, val_split=split,
                      progress=lambda s: stderr.print(s, highlight=False, markup=False))
    if machine is not None:  # measured again after the rows: a peak halved by a passing load is not the machine's
        machine = best_peak(machine, measure_peak())
        rows = [rescore(r, machine) for r in rows]
    from asfyolo_rt.atomic import file_sha256
    from asfyolo_rt.weights_registry import resolve_weights

    flags = cpu_flags()
    doc: dict[str, Any] = {
        "frame": desc, "weights": weights, "bundle": str(bundle) if bundle else None,
        "weights_sha256": file_sha256(resolve_weights(weights, option="--weights")),
        "cpu": cpu_name(), "isa": cpu_isa(), "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx"))),
        "peak": machine.__dict__ if machine else None, "env": {k: environment().get(k) for k in
                                                               ("onnxruntime", "openvino", "torch", "git_sha")},
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "iters": iters,
        "rows": [r.to_dict() for r in rows],
    }
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(doc, indent=2) + "\n")
    if as_json:
        print_json(doc)
        return
    t = Table(title=f"{doc['cpu']} ({doc['isa']}) - {desc}")
    for c in ("lever", "tiles run", "cells", "frame p50 ms", "x", "MP/s", "GFLOP/s", "% peak", "frame F1",
              "val mask mAP50"):
        t.add_column(c, justify="left" if c == "lever" else "right")
    for r in rows:
        t.add_row(r.lever, f"{r.tiles_run}/{r.tiles} of {r.tile}", str(r.cells), f"{r.frame_p50_ms:.0f}", f"{r.speedup:.2f}",
                  f"{r.mpix_per_s:.2f}", "" if r.gflop_per_s is None else f"{r.gflop_per_s:.0f}",
                  "" if r.pct_of_peak is None else f"{r.pct_of_peak:.0f} ({r.peak_kind})",
                  "" if r.frame_f1 is None else f"{r.frame_f1:.4f}",
                  "" if r.val_mask_map50 is None else f"{r.val_mask_map50:.4f}")
    stdout_console().print(t)


def _frame(size: int | None, image: Path | None, src: Path | None) -> tuple[Any, Any, str]:
    """(RGB uint8 frame, its ground-truth label map or None, description)."""
    from asfyolo_rt.data.io import read_image, to_uint8_rgb

    if image is not None:
        return read_image(image), None, str(image)
    assert size is not None
    if src is not None:
        from asfyolo_rt.data.dataset import load_split
        from asfyolo_rt.data.frames import camera_frame

        fr = camera_frame(load_split(src, "val", on_problem="warn"), size)
        return (to_uint8_rgb(fr.image), fr.index_map(),
                f"{size}x{size} 16-bit frame of {src} val nuclei ({len(fr.polygons)} nuclei)")
    from asfyolo_rt.data.synth import make_nuclei

    img, lab = make_nuclei(0, shape=(size, size))
    return to_uint8_rgb(img), lab, f"synthetic nuclei {size}x{size}"
