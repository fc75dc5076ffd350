"""Every command through a table of bad inputs: a non-zero exit, no traceback, one error line naming the
input; and each formerly silent case of issue 12 is no longer silent.

Fast: the shipped n model, synthetic 64 px images in tmp_path, files that only pretend to be big.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

NAMES = ["dsb2018"]


def huge_png(path: Path, width: int = 40000, height: int = 40000) -> Path:
    """A 70-byte PNG whose header declares width x height pixels (an 8x8 image with its IHDR patched)."""
    import cv2

    ok, enc = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    data = enc.tobytes()
    body = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    path.write_bytes(data[:12] + body + struct.pack(">I", zlib.crc32(body)) + data[33:])
    return path


class _Node:
    """A pickled 'module' whose only child is another _Node (an official checkpoint's state layout)."""

    def __init__(self, child: _Node | None) -> None:
        self.child = child

    def __getstate__(self) -> dict:
        return {"_parameters": {}, "_buffers": {}, "_modules": {"m": self.child} if self.child else {}}


class _ListState:
    """A pickled 'module' whose state is not a module's dict."""

    def __getstate__(self) -> list:
        return [1, 2]


def deep_pt(path: Path, depth: int = 5000) -> Path:
    """A .pt file holding `depth` nested modules (pickled in a thread with a large stack)."""
    import torch

    node = None
    for _ in range(depth):
        node = _Node(node)

    def save() -> None:
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(100_000)
        try:
            torch.save({"model": node}, path)
        finally:
            sys.setrecursionlimit(old)

    threading.stack_size(512 << 20)
    try:
        t = threading.Thread(target=save)
        t.start()
        t.join()
    finally:
        threading.stack_size(0)
    assert path.is_file()
    return path


def nan_checkpoint(path: Path) -> Path:
    """The shipped model with one tensor set to NaN, config metadata kept."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from asfyolo_rt.weights_registry import shipped_weights

    with safe_open(str(shipped_weights()), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    key = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 4)
    state[key] = state[key].clone().fill_(float("nan"))
    save_file(state, str(path), metadata=meta)
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Named bad inputs, plus a good synthetic dataset and copies of it damaged in one place."""
    import shutil

    from asfyolo_rt.data.synth import write_synth_dataset

    d = tmp_path_factory.mktemp("bad")
    ds = write_synth_dataset(d / "ds", 2, 3, kind="nuclei", shape=(64, 64), seed=3)
    huge_ds = d / "ds_huge"
    shutil.copytree(ds, huge_ds)
    first_val = sorted((huge_ds / "images" / "val").iterdir())[0]
    huge_png(first_val)  # same name, so its label file still matches
    labels_ds = d / "ds_labels"
    shutil.copytree(ds, labels_ds)
    bad_label = sorted((labels_ds / "labels" / "val").iterdir())[0]
    bad_label.write_text("0 0.1 0.1 0.2\n0 0.3 0.3 0.4 0.3 0.4 0.5\n")  # a 2-vertex polygon
    sorted((labels_ds / "labels" / "train").iterdir())[0].write_text("0 0.1 0.1 0.2\n")  # train refuses it too
    small = d / "small.png"
    import cv2

    cv2.imwrite(str(small), np.full((64, 64, 3), 30, np.uint8))
    rand = d / "random.onnx"
    rand.write_bytes(np.random.default_rng(0).bytes(4096))
    corrupt_tif = d / "corrupt.tif"
    corrupt_tif.write_bytes(b"II*\x00" + np.random.default_rng(1).bytes(300))
    (d / "empty").mkdir()
    return {"dir": d, "ds": ds, "ds_huge": huge_ds, "ds_labels": labels_ds, "bad_label": bad_label,
            "huge": huge_png(d / "huge.png"), "small": small, "random_onnx": rand, "corrupt_tif": corrupt_tif,
            "deep_pt": deep_pt(d / "deep.pt"), "nan": nan_checkpoint(d / "nan.safetensors"),
            "missing": d / "missing.png", "out": d / "out", "empty": d / "empty"}


# (id, argv with {name} placeholders from the `bad` fixture, text the error line must contain)
CASES: list[tuple[str, list[str], str]] = [
    # item 3: images that decode to gigapixels, corrupt TIFFs, missing files
    ("predict-huge-png", ["predict", "{huge}", "--out", "{out}/a"], "huge.png"),
    ("predict-huge-png-max-pixels", ["predict", "{huge}", "--out", "{out}/a"], "--max-pixels"),
    ("val-huge-png", ["val", "--data", "{ds_huge}", "--img-size", "64", "--no-coco", "--no-dsb"], "--max-pixels"),
    ("predict-corrupt-tif", ["predict", "{corrupt_tif}", "--out", "{out}/b"], "corrupt.tif"),
    ("predict-missing", ["predict", "{missing}", "--out", "{out}/c"], "missing.png"),
    ("predict-max-pixels-0", ["predict", "{small}", "--max-pixels", "0", "--out", "{out}/d"], "--max-pixels"),
    ("data-check-max-pixels-0", ["data", "check", "{ds}", "--max-pixels", "0"], "--max-pixels"),
    # item 4: numeric options, devices, unreadable model files, pathological pickles
    ("val-batch-0", ["val", "--data", "{ds}", "--batch", "0"], "--batch 0"),
    ("bench-batch-0", ["bench", "--batch", "0"], "--batch"),
    ("bench-batch-text", ["bench", "--batch", "two"], "--batch"),
    ("predict-batch-0", ["predict", "{small}", "--batch", "0", "--out", "{out}/e"], "--batch 0"),
    ("predict-img-size-33", ["predict", "{small}", "--img-size", "33", "--out", "{out}/f"], "--img-size 33"),
    ("predict-img-size-0", ["predict", "{small}", "--img-size", "0", "--out", "{out}/f"], "--img-size 0"),
    ("predict-img-size-100", ["predict", "{small}", "--img-size", "100", "--out", "{out}/f"], "--img-size 100"),
    ("val-img-size-33", ["val", "--data", "{ds}", "--img-size", "33"], "--img-size 33"),
    ("val-max-images-0", ["val", "--data", "{ds}", "--max-images", "0"], "--max-images 0"),
    ("parity-img-size-33", ["parity", "--data", "{ds}", "--img-size", "33"], "--img-size 33"),
    ("export-img-size-33", ["export", "--img-size", "33", "--out", "{out}/g"], "--img-size 33"),
    ("predict-device-typo", ["predict", "{small}", "--device", "gpu", "--out", "{out}/h"], "--device 'gpu'"),
    ("val-device-typo", ["val", "--data", "{ds}", "--device", "cuda:x"], "--device"),
    ("predict-random-onnx", ["predict", "{small}", "--model", "{random_onnx}", "--out", "{out}/i"], "random.onnx"),
    ("val-random-onnx", ["val", "--data", "{ds}", "--model", "{random_onnx}"], "random.onnx"),
    ("build-random-onnx", ["build", "{random_onnx}"], "random.onnx"),
    ("parity-random-onnx", ["parity", "{random_onnx}", "--data", "{ds}"], "random.onnx"),
    ("bench-random-onnx", ["bench", "{random_onnx}", "--iters", "1"], "random.onnx"),
    ("predict-deep-pt", ["predict", "{small}", "--weights", "{deep_pt}", "--out", "{out}/j"], "deep.pt"),
    ("import-deep-pt", ["weights", "import", "{deep_pt}", "--out", "{out}/k.safetensors"], "deep.pt"),
    ("val-deep-pt", ["val", "--data", "{ds}", "--weights", "{deep_pt}"], "deep.pt"),
    # item 2: non-finite weights
    ("predict-nan-weights", ["predict", "{small}", "--weights", "{nan}", "--out", "{out}/l"], "nan.safetensors"),
    ("val-nan-weights", ["val", "--data", "{ds}", "--weights", "{nan}"], "nan.safetensors"),
    ("export-nan-weights", ["export", "--weights", "{nan}", "--out", "{out}/m"], "nan.safetensors"),
    ("weights-show-nan", ["weights", "show", "{nan}"], "nan.safetensors"),
    # item 6: bad labels refused, the hint names the CLI flag
    ("val-bad-labels", ["val", "--data", "{ds_labels}", "--img-size", "64"], "error(s) in split 'val'"),
    ("val-bad-labels-hint", ["val", "--data", "{ds_labels}", "--img-size", "64"], "--skip-bad-labels"),
    ("train-bad-labels-hint", ["train", "--data", "{ds_labels}", "--img-size", "64", "--epochs", "1",
                               "--out", "{out}/train"], "--skip-bad-labels"),
    # item 10: missing files and names
    ("weights-show-missing", ["weights", "show", "{missing}"], "missing.png"),
    ("weights-show-unknown-name", ["weights", "show", "dsb2019"], "dsb2019"),
    ("val-missing-data", ["val", "--data", "{missing}"], "missing.png"),
    ("data-check-missing", ["data", "check", "{missing}"], "missing.png"),
    ("weights-pack-missing", ["weights", "pack", "{missing}", "--out", "{out}/p.safetensors"], "missing.png"),
    # more of the same kind: every numeric option and name checked before any work
    ("predict-empty-folder", ["predict", "{empty}", "--out", "{out}/q"], "has no images"),
    ("predict-conf-1.5", ["predict", "{small}", "--conf", "1.5", "--out", "{out}/r"], "--conf 1.5"),
    ("predict-video-stride-0", ["predict", "{small}", "--video-stride", "0", "--out", "{out}/s"], "--video-stride 0"),
    ("val-unknown-split", ["val", "--data", "{ds}", "--split", "nope"], "'nope'"),
    ("data-check-unknown-split", ["data", "check", "{ds}", "--split", "nope"], "'nope'"),
    ("parity-images-0", ["parity", "--data", "{ds}", "--images", "0"], "--images 0"),
    ("bench-iters-0", ["bench", "--iters", "0"], "--iters 0"),
    ("info-unknown-size", ["info", "--model", "q"], "'q'"),
]

if not __import__("torch").cuda.is_available():  # item 4: --device cuda on a machine without CUDA
    CASES += [(f"{cmd[0]}-cuda-without-cuda", [*cmd, "--device", "cuda"], "--device cuda") for cmd in (
        ["predict", "{small}", "--out", "{out}/n"], ["val", "--data", "{ds}"], ["bench", "--iters", "1"],
        ["parity", "--data", "{ds}"], ["train", "--data", "{ds}", "--epochs", "1", "--out", "{out}/t2"])]


def _error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize(("argv", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_naming_it(cli, bad, argv, needle):
    args = [a.format(**{k: str(v) for k, v in bad.items()}) for a in argv]
    r = cli(*args)
    out = r.stdout + r.stderr
    assert r.exit_code not in (0, None), out
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)  # no escaped exception
    assert "Traceback" not in out
    text = out if needle.startswith("--skip") or needle == "--max-pixels" else _error_line(out)
    assert needle in text, out


def test_library_errors_name_the_file(bad, tmp_path):
    """The same refusals at the API level (what the CLI lines are made of)."""
    from asfyolo_rt.data.io import pixel_limit, read_image_raw
    from asfyolo_rt.errors import CheckpointError, DataError
    from asfyolo_rt.model.weights import import_official

    with pytest.raises(DataError, match=r"huge\.png: 40000x40000 = 1,600,000,000 pixels, above the limit"):
        read_image_raw(bad["huge"])
    with pixel_limit(100), pytest.raises(DataError, match="small.png: 64x64"):
        read_image_raw(bad["small"])
    assert read_image_raw(bad["small"]).shape == (64, 64, 3)  # the limit is back to the default
    with pytest.raises(CheckpointError, match="deep.pt: its pickled modules are nested too deeply"):
        import_official(bad["deep_pt"])
    import torch

    torch.save({"model": _ListState()}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=r"odd\.pt: a pickled module \(.*_ListState\) has no recognisable state"):
        import_official(tmp_path / "odd.pt")


def test_raised_pixel_limit_reaches_the_decoder(bad):
    """--max-pixels above OpenCV's own 2**30 limit: still one DataError naming the file, never cv2.error."""
    from asfyolo_rt.data.io import pixel_limit, read_image_raw
    from asfyolo_rt.errors import DataError

    with pixel_limit(2_000_000_000), pytest.raises(DataError, match="huge.png: OpenCV cannot decode"):
        read_image_raw(bad["huge"])


def test_data_check_lists_oversized_images_and_goes_on(cli, bad):
    r = cli("data", "check", bad["ds_huge"], "--json")
    assert r.exit_code == 1 and "Traceback" not in r.stdout + r.stderr
    rep = json.loads(r.stdout)
    errors = [p for p in rep["problems"] if p["severity"] == "error"]
    assert len(errors) == 1 and errors[0]["path"].endswith(".png") and "--max-pixels" in errors[0]["message"]
    val = next(s for s in rep["splits"] if s["split"] == "val")
    assert val["n_images"] == 3 and sum(val["size_histogram"].values()) == 2  # the other two were measured
    assert cli("data", "check", bad["ds_huge"], "--max-pixels", "2000000000", "--no-decode").exit_code == 0


def test_val_skip_bad_labels_says_what_it_left_out(cli, bad):
    """Item 6: formerly exit 0 with metrics from fewer images and no summary."""
    r = cli("val", "--data", bad["ds_labels"], "--img-size", "64", "--no-coco", "--no-dsb", "--json",
            "--skip-bad-labels")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "left out 1 image(s) of split 'val' with label errors (2 label line(s)); evaluating the other 2" \
        in " ".join(r.stderr.split())
    assert json.loads(r.stdout)["n_images"] == 2


def test_weights_show_accepts_shipped_names(cli):
    """Item 10: predict/val accept 'dsb2018'; so does weights show."""
    r = cli("weights", "show", "dsb2018")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["variant"] == "n"


def test_checkpoint_config_errors_name_the_file(tmp_path):
    """Item 10: an unknown model size recorded in a checkpoint names the checkpoint."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from asfyolo_rt.errors import CheckpointError
    from asfyolo_rt.model.weights import load_checkpoint
    from asfyolo_rt.weights_registry import shipped_weights

    with safe_open(str(shipped_weights()), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    cfg = json.loads(meta["asfyolo_rt"])
    cfg["variant"] = "z"
    save_file(state, str(tmp_path / "z.safetensors"), metadata={"asfyolo_rt": json.dumps(cfg)})
    with pytest.raises(CheckpointError, match=r"z\.safetensors: .*unknown model size 'z'"):
        load_checkpoint(tmp_path / "z.safetensors")


def _usual_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}


def test_outputs_get_the_usual_mode(cli, bad, tmp_path):
    """Item 10: val plots, predict's COCO JSON and parity reports were 0600; now like every other file."""
    plots = tmp_path / "plots"
    r = cli("val", "--data", bad["ds"], "--img-size", "64", "--no-dsb", "--no-coco", "--plots", plots, "--json")
    assert r.exit_code == 0, r.stderr
    pred = tmp_path / "pred"
    r = cli("predict", bad["small"], "--out", pred)
    assert r.exit_code == 0, r.stderr
    assert any(line.startswith("small.png: ") and " cells, " in line and line.endswith(" ms")
               for line in r.stderr.splitlines()), r.stderr  # the per-image log line
    modes = _modes(plots) | {f"pred/{k}": v for k, v in _modes(pred).items()}
    assert any(k.endswith(".png") for k in modes) and "pred/predictions.coco.json" in modes
    assert {k: v for k, v in modes.items() if v != _usual_mode()} == {}


def test_atomic_target_mode_and_cleanup(tmp_path):
    from asfyolo_rt.atomic import atomic_target

    with atomic_target(tmp_path / "a.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == _usual_mode()
    with pytest.raises(RuntimeError), atomic_target(tmp_path / "b.png") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no b.png, no temporary left


def test_parity_gates_exported_files_only_and_names_failed_gates(cli, bad, tmp_path):
    """Item 8: the PyTorch bf16 estimate row no longer fails parity by itself; the last line says why."""
    common = ["parity", "--data", bad["ds"], "--images", "2", "--img-size", "64", "--threshold", "bf16=-1000"]
    r = cli(*common, "--report", tmp_path / "rep")
    assert r.exit_code == 0, r.stdout + r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("parity passed: no gated rows (no exported model was compared); not gated: torch bf16 "
                           "FAIL"), r.stdout
    assert "FAIL (estimate, not gated)" in r.stdout
    rep = json.loads((tmp_path / "rep" / "parity.json").read_text())
    assert rep["passed"] is True and rep["failed_gates"] == [] and rep["results"][1]["gated"] is False
    assert stat.S_IMODE((tmp_path / "rep" / "parity.json").stat().st_mode) == _usual_mode()
    pngs = list((tmp_path / "rep").glob("disagreement_*.png"))
    assert all(stat.S_IMODE(p.stat().st_mode) == _usual_mode() for p in pngs)
    r = cli(*common, "--gate-estimates")
    assert r.exit_code == 1
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("parity FAILED 1 of 1 gates: torch bf16 (mask mAP50"), r.stdout


def test_disagreement_marks_unmatched_and_low_iou_instances():
    """Item 8: the instances that disagree are the ones outlined (not every instance, not none)."""
    from types import SimpleNamespace

    import torch

    from asfyolo_rt.eval.parity import disagreeing_boxes
    from asfyolo_rt.eval.validate import ImagePrediction

    def P(boxes, masks):  # noqa: N802  (a fit-protocol prediction: only what matching reads)
        return ImagePrediction(sample=None, transform=None, det=SimpleNamespace(scores=torch.full((len(boxes),), 0.9)),
                               boxes_orig=torch.tensor(boxes, dtype=torch.float32),
                               masks_proto=torch.from_numpy(np.stack(masks)))

    full = np.ones((8, 8), bool)
    half = np.zeros((8, 8), bool)
    half[:2] = True
    ref = P([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], [full, full, full])
    cand = P([[0, 0, 10, 10], [20, 20, 30, 31], [70, 70, 80, 80]], [full, half, full])
    marks = disagreeing_boxes(ref, cand).tolist()
    # pair 1 agrees (not marked); pair 2 matches by box but its masks overlap at IoU 0.25 (union box);
    # the third reference instance and the third candidate instance are unmatched
    assert sorted(marks) == sorted([[40, 40, 50, 50], [70, 70, 80, 80], [20, 20, 30, 31]])


def test_mosaic_legend_names_both_sides(tmp_path):
    """Item 8: the legend is the caller's (reference / candidate), and highlights are drawn in yellow."""
    import cv2

    from asfyolo_rt.eval.plots import plot_val_mosaic

    class V:
        def __init__(self, boxes):
            self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
            self.scores = np.ones(len(self.boxes), np.float32)

    img = np.zeros((200, 200, 3), np.uint8)
    out = plot_val_mosaic([img], [V([])], [V([])], tmp_path / "m.png", legend=("reference", "candidate"),
                          highlights=[np.array([[100, 100, 150, 150]], np.float32)])
    m = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    yellow = (m[..., 0] > 200) & (m[..., 1] > 200) & (m[..., 2] < 60)
    assert yellow[300:500, 300:500].any()  # the highlight (scaled x3.2 into the 640 tile)
    plain = plot_val_mosaic([img], [V([])], [V([])], tmp_path / "p.png")
    p = cv2.cvtColor(cv2.imread(str(plain)), cv2.COLOR_BGR2RGB)
    assert not ((p[..., 0] > 200) & (p[..., 1] > 200) & (p[..., 2] < 60)).any()  # no highlight, no 'disagree'
    green_width = [int(((x[:30, :, 1] > 150) & (x[:30, :, 0] < 80)).any(0).nonzero()[0].max()) for x in (m, p)]
    assert green_width[0] > green_width[1]  # "reference" is written, not "GT"


def test_cli_json_is_strict(capsys):
    """Item 2: no --json output carries bare NaN/Infinity (invalid JSON for jq, JavaScript, ...)."""
    from asfyolo_rt.cli._common import print_json

    print_json({"map": float("nan"), "rows": [np.float32("inf"), np.array([1.5, np.nan])], "ok": 1})

    def bad(c: str) -> None:
        raise AssertionError(f"bare {c} in JSON output")

    assert json.loads(capsys.readouterr().out, parse_constant=bad) == {"map": None, "rows": [None, [1.5, None]],
                                                                         "ok": 1}


def test_parity_verdict_names_every_failed_gate():
    """Item 8: the verdict line lists each failed gated row; estimate rows never flip the exit code."""
    from asfyolo_rt.eval.parity import BackendParity, ParityReport

    def row(label: str, delta: float, thr: float, gated: bool = True) -> BackendParity:
        m = {"box_map50": 0.9, "mask_map50": 0.9, "mask_map": 0.5}
        return BackendParity(label, "x", "fp16", m, {"mask_map50": delta}, {}, {}, thr, delta >= -thr, gated=gated)

    rep = ParityReport("torch fp32", 5, (64, 64), [row("torch fp32", 0.0, 0.0), row("ort fp32 model.onnx", -0.05, 0.1),
                                                   row("ort fp16 model.fp16.onnx", -0.5, 0.3),
                                                   row("ort int8 model.int8.onnx", -2.0, 1.0),
                                                   row("torch bf16", -1.06, 1.0, gated=False)])
    assert not rep.passed
    assert rep.verdict() == ("parity FAILED 2 of 3 gates: ort fp16 model.fp16.onnx (mask mAP50 -0.50 pts, allowed -0.3); "
                             "ort int8 model.int8.onnx (mask mAP50 -2.00 pts, allowed -1.0); "
                             "not gated: torch bf16 FAIL (--gate-estimates to gate them)")
    rep.results = [rep.results[0], rep.results[1], rep.results[4]]
    assert rep.passed and rep.verdict().startswith("parity passed: all 1 gates passed; not gated: torch bf16 FAIL")
    assert "parity passed" in rep.to_markdown().splitlines()[-1]
