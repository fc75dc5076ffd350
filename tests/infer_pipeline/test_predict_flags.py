"""predict --recursive and --skip-bad; export --force (the CLI ends of the library's input and bundle rules)."""

from __future__ import annotations

import json

import numpy as np

from asfyolo_rt.data.io import to_uint8_rgb, write_image
from asfyolo_rt.data.synth import make_nuclei


def _folder(tmp_path):
    root = tmp_path / "plate"
    (root / "sub").mkdir(parents=True)
    for k, p in enumerate((root / "a.png", root / "sub" / "b.png")):
        img, _ = make_nuclei(k, (96, 96), n_cells=(4, 4))
        write_image(p, to_uint8_rgb(img))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a PNG cut after its magic
    return root


def test_recursive_and_skip_bad(cli, tmp_path):
    root = _folder(tmp_path)
    fast = ["--scale", "fit", "--img-size", "96", "--no-overlays", "--no-coco"]
    r = cli("predict", root, "--out", tmp_path / "o1", *fast)
    assert r.exit_code == 1 and "broken.png" in r.stderr and not (tmp_path / "o1").exists()
    r = cli("predict", root, "--out", tmp_path / "o2", "--skip-bad", "--json", *fast)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [i["image"] for i in doc["images"]] == ["a"]  # sub/ is not searched without --recursive
    assert [s["path"].endswith("broken.png") for s in doc["skipped"]] == [True]
    assert "skipped 1 file(s)" in r.stderr
    r = cli("predict", root, "--out", tmp_path / "o3", "--skip-bad", "--recursive", "--json", *fast)
    assert r.exit_code == 0, r.stderr
    assert sorted(i["image"] for i in json.loads(r.stdout)["images"]) == ["a", "b"]
    assert np.asarray([(tmp_path / "o3" / "labels" / f"{n}.tif").is_file() for n in "ab"]).all()
