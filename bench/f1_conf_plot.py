"""One figure of several `asfyolo-rt weights tune-conf --json` curves (e.g. the train split it was tuned
on and the val split it is reported on), with the recorded threshold marked.

    asfyolo-rt weights tune-conf dsb2018 --data ../shared/datasets/DSB2018 --split train --json > train.json
    asfyolo-rt weights tune-conf dsb2018 --data ../shared/datasets/DSB2018 --split val --json > val.json
    python bench/f1_conf_plot.py train.json val.json --out f1_conf.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from asfyolo_rt.eval.conf_tune import ConfCurve, plot_curve

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("curves", nargs="+", type=Path, help="tune-conf --json outputs; the first one's best is marked")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    docs = [json.loads(p.read_text()) for p in args.curves]
    curves = [ConfCurve.from_dict(d) for d in docs]
    plot_curve(curves, args.out, mark=curves[0].best)
    for c in curves:
        print(f"{c.split}: best conf {c.best:g}, F1 {max(c.f1):.4f}")


if __name__ == "__main__":
    main()
