"""DSB2018 val, tiled protocol, with the protocol's 640 tiles and with each image's own tile
(`asfyolo_rt.runtime.tiles.fit_tile`, what predict's fast path does on a dynamic-shape model): does the
per-image tile change accuracy?

Runs the fast CPU path's model (`asfyolo_rt.fastpath.fast_choice`, made once) on the whole val split twice:
mask / box mAP50, mask mAP50-95 and the label images' instance F1 at the model's tuned confidence.

    python bench/val_tile_choice.py --data ../shared/datasets/DSB2018 --json-out bench/results/val_tile_choice.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run(data: Path, weights: str, own_tile: bool) -> dict[str, Any]:
    import asfyolo_rt.runtime.stages as stages
    from asfyolo_rt.data.dataset import load_split
    from asfyolo_rt.eval.results import ValConfig
    from asfyolo_rt.eval.validate import validate
    from asfyolo_rt.fastpath import fast_choice
    from asfyolo_rt.runtime.info import read_model_info
    from asfyolo_rt.runtime.registry import BackendSpec

    choice = fast_choice(weights)
    backend = BackendSpec(choice.model, runtime=choice.runtime, precision=choice.precision).open()
    info = read_model_info(choice.model)
    cfg = ValConfig(protocol="tiled", model_scale=info.model_scale, max_object_px=info.overlap_object_px, img_size=640,
                    dsb=True, dsb_conf=info.default_conf)
    geometry = stages.Geometry
    if own_tile:  # the protocol names a tile side; drop it so that the Runner plans each image's own
        stages.Geometry = lambda *a, **k: geometry(*a, **{**k, "img_size": None})  # type: ignore[misc]
    try:
        res = validate(backend, load_split(data, "val"), cfg)
    finally:
        stages.Geometry = geometry  # type: ignore[misc]
    m = res.metrics
    return {"tiles": "each image's own" if own_tile else "640", "runtime": choice.label,
            "box_map50": round(float(m.box_map50), 4), "mask_map50": round(float(m.mask_map50), 4),
            "mask_map50_95": round(float(m.mask_map), 4), "label_f1": res.label_f1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/datasets/DSB2018"))
    ap.add_argument("--weights", default="dsb2018")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    rows = [run(args.data, args.weights, own) for own in (False, True)]
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    for r in rows:
        print(json.dumps(r))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"git_sha": sha, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
