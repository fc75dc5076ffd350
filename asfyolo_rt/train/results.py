"""A run's per-epoch results: results.csv (one row per epoch) and results.png (loss and metric curves).

Both are regenerated from the full history after every epoch and written atomically, so a resumed
run's files are identical to an uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from asfyolo_rt.model.weights import atomic_write_bytes


def columns(history: list[dict[str, Any]]) -> list[str]:
    """Union of the rows' keys, in first-seen order."""
    cols: list[str] = []
    for row in history:
        cols.extend(k for k in row if k not in cols)
    if "time_s" in cols:  # keep the wall time last
        cols.remove("time_s")
        cols.append("time_s")
    return cols


def write_csv(path: Path, history: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(history), restval="", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_bytes(path, buf.getvalue().encode())


def write_plot(path: Path, history: list[dict[str, Any]]) -> None:
    """Loss curves (top row) and validation metrics (bottom row) against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys_top = [k for k in columns(history) if k.startswith("train/")]
    keys_bottom = [k for k in columns(history) if k.startswith("metrics/")]
    n = max(len(keys_top), len(keys_bottom), 1)
    fig, axes = plt.subplots(2, n, figsize=(3 * n, 5.5), squeeze=False)
    for row_axes, keys in ((axes[0], keys_top), (axes[1], keys_bottom)):
        for ax, key in zip(row_axes, keys):
            pts = [(r["epoch"], r[key]) for r in history if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None)
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in row_axes[len(keys):]:
            ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_results(run_dir: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    write_csv(run_dir / "results.csv", history)
    write_plot(run_dir / "results.png", history)
