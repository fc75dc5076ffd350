"""The README's CPU table (markdown) from bench/results/cpu_v2.csv and cpu_frames_v2.csv (bench/run_cpu.sh).

One line per row of the given git SHA (default: the newest SHA in the file): per-input rows (ms per stage,
FPS, GFLOPs, achieved GFLOP/s, % of the measured GEMM peak, CPU/wall, noisy) and whole-frame rows
(ms per frame, megapixels/s). Ratios are against ONNX Runtime FP32 of the same model, input and run.

    python bench/cpu_table.py [--sha abc1234 | --since 2026-12-01T23:00:00]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _rows(path: Path, sha: str | None, since: str | None) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    rows = list(csv.DictReader(path.open()))
    if since:  # rows of one run_cpu.sh run (timestamps are ISO UTC: they sort as strings)
        return [r for r in rows if r["timestamp"][:19] >= since[:19]]
    sha = sha or (rows[-1]["git_sha"] if rows else None)
    return [r for r in rows if r["git_sha"] == sha]


def _f(v: str, fmt: str = "{:.1f}") -> str:
    try:
        return fmt.format(float(v))
    except (TypeError, ValueError):
        return "-"


def _ratio(r: dict[str, str], ref: dict[str, str] | None, key: str, inverse: bool = False) -> str:
    if ref is None:
        return "-"
    a, b = float(r[key]), float(ref[key])
    return f"{(b / a if inverse else a / b):.2f}x" if a and b else "-"


def per_input(rows: list[dict[str, str]]) -> list[str]:
    out = ["| model [backend precision ISA] | input | cells | pre ms | infer ms | post ms | p50 ms | FPS | vs ORT FP32 | "
           "GFLOPs | GFLOP/s | % peak | CPU/wall | noisy |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        refs = [x for x in rows if x["backend"] == "onnxruntime" and x["precision"] == "fp32"
                and x["img_size"] == r["img_size"] and x["label"].split(" [")[0] == r["label"].split(" [")[0]]
        ref = next((x for x in refs if x["cells_per_image"] == r["cells_per_image"]), refs[0] if refs else None)
        cpu_wall = float(r["cpu_s"]) / float(r["wall_s"]) if float(r["wall_s"] or 0) else 0.0
        out.append(f"| {r['label']} | {r['img_size']} | {_f(r['cells_per_image'], '{:.0f}')} | {_f(r['pre_ms'])} | "
                   f"{_f(r['infer_ms'])} | {_f(r['post_ms'])} | {_f(r['latency_p50_ms'])} | {_f(r['fps'], '{:.2f}')} | "
                   f"{_ratio(r, ref, 'latency_p50_ms', inverse=True)} | {_f(r['gflops'], '{:.2f}')} | "
                   f"{_f(r['achieved_gflops_per_s'])} | {_f(r['pct_of_peak'], '{:.0f}')} | {cpu_wall:.2f} | "
                   f"{'**noisy**' if r['noisy'] == 'True' else 'quiet'} |")
    return out


def frames(rows: list[dict[str, str]]) -> list[str]:
    out = ["| frame | model [backend precision ISA] | tiles | cells | ms / frame | MP/s | vs ORT FP32 | GFLOP/s | % peak | noisy |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        ref = next((x for x in rows if x["backend"] == "onnxruntime" and x["precision"] == "fp32"
                    and x["frame"] == r["frame"]), None)
        out.append(f"| {r['frame']} | {r['label']} | {r['tiles']} | {r['cells']} | {_f(r['frame_p50_ms'], '{:.0f}')} | "
                   f"{_f(r['mpix_per_s'], '{:.3f}')} | {_ratio(r, ref, 'mpix_per_s')} | "
                   f"{_f(r['achieved_gflops_per_s'])} | {_f(r['pct_of_peak'], '{:.0f}')} | "
                   f"{'**noisy**' if r['noisy'] == 'True' else 'quiet'} |")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sha", default=None, help="rows of this git SHA (default: the newest in the file)")
    ap.add_argument("--since", default=None, help="rows timestamped at or after this ISO UTC time (run_cpu.sh's start)")
    ap.add_argument("--rows", type=Path, default=RESULTS / "cpu_v2.csv")
    ap.add_argument("--frames", type=Path, default=RESULTS / "cpu_frames_v2.csv")
    args = ap.parse_args(argv)
    rows, fr = _rows(args.rows, args.sha, args.since), _rows(args.frames, args.sha, args.since)
    if rows:
        r0 = rows[0]
        print(f"CPU: {r0['device']}, ISA {r0['isa']}, {r0['threads']} threads; GEMM peak {r0['peak_gflops_per_s']} "
              f"GFLOP/s ({r0['peak_kind']}); load average before {r0['load_before']}\n")
        print("\n".join(per_input(rows)))
    if fr:
        print()
        print("\n".join(frames(fr)))


if __name__ == "__main__":
    main()
