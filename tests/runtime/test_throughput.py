"""Throughput levers change the speed, never the cells: pipelined tiles, OpenVINO's parallel infer requests,
empty tiles skipped, and predict's cached fast CPU path (checked against PyTorch when it is made)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

from asfyolo_rt.errors import ConfigError


def _labels(model, frame, **kw) -> np.ndarray:
    from asfyolo_rt import Segmenter

    return Segmenter(model, **kw).segment(frame).labels


@pytest.mark.parametrize("backend", [None, "openvino"])
def test_pipelined_tiles_give_the_same_cells(backend, shipped_onnx, nuclei_frame):
    """Worker threads running the next tiles (2 OpenVINO requests at once) while masks are assembled: the
    label image is identical to one batch after another."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    from asfyolo_rt import Segmenter

    seg = Segmenter(shipped_onnx, backend=backend, pipeline=True)
    if backend == "openvino":
        assert seg.backend.parallel >= 1 and seg.backend.mode == "throughput"
    big = np.tile(nuclei_frame, (2, 2))  # 576 x 512: 9 tiles of 320 at scale 1.5
    piped = seg.segment(big).labels
    plain = seg.with_settings(pipeline=False).segment(big).labels
    assert piped.max() > 60
    assert np.array_equal(piped, plain)


def test_openvino_requests_serve_threads_at_once(shipped_onnx):
    """`parallel` calls from as many threads, each on its own infer request, give each caller its own output."""
    pytest.importorskip("openvino")
    import torch

    from asfyolo_rt.infer.openvino import OpenVinoBackend

    be = OpenVinoBackend(shipped_onnx, mode="throughput")
    xs = [torch.rand(1, 3, 320, 320, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    expected = [be(x)[0] for x in xs]
    got: dict[int, torch.Tensor] = {}

    def run(i: int) -> None:
        got[i] = be(xs[i])[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert torch.equal(got[i], expected[i])
    with pytest.raises(ConfigError, match="mode"):
        OpenVinoBackend(shipped_onnx, mode="fastest")


def _tile(h=320, w=320):
    from asfyolo_rt.runtime.tiles import Tile

    return Tile(0, 0, h, w, (0.0, 0.0, float(w), float(h)))


def test_empty_tile_is_background_only():
    from asfyolo_rt.runtime.stages import is_empty_tile

    rng = np.random.default_rng(0)
    noise = np.clip(rng.normal(30, 6, (320, 320)), 0, 255).astype(np.uint8)  # camera background
    img = np.repeat(noise[..., None], 3, axis=2)
    assert is_empty_tile(img, _tile())
    dot = img.copy()
    yy, xx = np.mgrid[:320, :320]
    dot[(yy - 200) ** 2 + (xx - 100) ** 2 <= 25] = 90  # one small cell: ~80 px, 60 grey levels above
    assert not is_empty_tile(dot, _tile())
    faint = img.copy()
    faint[(yy - 200) ** 2 + (xx - 100) ** 2 <= 49] = 30 + 40  # faint: 40 levels, over 5 sigma of the noise
    assert not is_empty_tile(faint, _tile())
    dark = np.full((320, 320, 3), 200, np.uint8)  # brightfield: a dark cell on a bright field counts too
    dark[(yy - 50) ** 2 + (xx - 50) ** 2 <= 36] = 120
    assert not is_empty_tile(dark, _tile())
    assert is_empty_tile(np.full((320, 320, 3), 200, np.uint8), _tile())
    crowded = np.zeros((320, 320, 3), np.uint8)  # dim cells of many intensities covering most of the tile
    levels = iter(rng.integers(10, 60, 400))  # (DSB2018 f29fd9c52e04): the spread of its pixels is the cells',
    for cy in range(10, 320, 22):  # not noise, so a spread-based noise estimate would call it empty
        for cx in range(10, 320, 22):
            crowded[(yy - cy) ** 2 + (xx - cx) ** 2 <= 100] = next(levels)
    assert (crowded[..., 0] > 0).mean() > 0.5 and not is_empty_tile(crowded, _tile())
    tissue = np.clip(rng.normal(170, 30, (320, 320, 3)), 0, 255).astype(np.uint8)  # textured H&E-like stroma
    assert not is_empty_tile(tissue, _tile())
    he = np.full((320, 320, 3), 235, np.uint8)  # pale pink field with purple nuclei: dark in red and green only
    for cy, cx in ((60, 60), (200, 150), (250, 260)):
        he[(yy - cy) ** 2 + (xx - cx) ** 2 <= 64] = (120, 80, 235)
    assert not is_empty_tile(he, _tile())


def test_sparse_frame_skips_tiles_and_keeps_every_cell(shipped_onnx, nuclei_frame):
    """Nuclei in one corner of a dark frame: most tiles are not run, and the label image is identical."""
    from asfyolo_rt import Segmenter

    frame = np.full((800, 800), 100, np.uint16)
    frame += np.random.default_rng(1).integers(0, 30, frame.shape, dtype=np.uint16)
    frame[:288, :256] = nuclei_frame
    seg = Segmenter(shipped_onnx)
    fast = seg.with_settings(skip_empty=True)
    got = fast.segment(frame).labels
    assert fast._pipe.runner(fast.config.model_scale).skipped >= 9  # of the 5 x 5 grid
    assert np.array_equal(got, seg.with_settings(skip_empty=False).segment(frame).labels)
    assert got.max() > 20


# ------------------------------------------------------------------------------------------- fast path
@pytest.fixture
def fast_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ASFYOLO_RT_FAST", "1")
    monkeypatch.setenv("ASFYOLO_RT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "fast"


def test_fast_path_is_made_once_checked_and_reused(fast_env, monkeypatch, cli, tmp_path, nuclei_frame):
    from asfyolo_rt import fastpath

    msgs: list[str] = []
    choice = fastpath.fast_choice("dsb2018", log=msgs.append)
    assert "once for this machine" in msgs[0] and len(msgs) == 1 + len(fastpath.candidates())
    rows = {(m["runtime"], m["precision"]): m for m in choice.measured}
    assert rows[("onnxruntime", "fp32")]["f1"] >= 0.99 and rows[("onnxruntime", "fp32")]["passed"]
    chosen = rows[(choice.runtime, choice.precision)]
    assert chosen["passed"] and chosen["ms"] == min(m["ms"] for m in choice.measured if m.get("passed"))
    on_disk = json.loads((Path(choice.model).parent / "choice.json").read_text())
    assert on_disk["runtime"] == choice.runtime and on_disk["weights_sha256"] == choice.weights_sha256

    # a second run reads the record: nothing exported or measured again
    monkeypatch.setattr("asfyolo_rt.fastpath._make", lambda *a, **k: pytest.fail("remade"))
    again = fastpath.fast_choice("dsb2018")
    assert again.model == choice.model and again.runtime == choice.runtime

    # predict with no options takes it, says which, and gives PyTorch's cells within the gate
    p = tmp_path / "frame.tif"
    tifffile.imwrite(p, nuclei_frame)
    r = cli("predict", str(p), "--out", str(tmp_path / "fast"), "--no-overlays", "--no-coco")
    assert r.exit_code == 0, r.stderr
    assert "fast CPU path: " + choice.label in r.stderr
    r = cli("predict", str(p), "--out", str(tmp_path / "torch"), "--no-overlays", "--no-coco", "--backend", "torch")
    assert r.exit_code == 0 and "fast CPU path" not in r.stderr
    from asfyolo_rt.eval.dsb import instance_f1

    f1 = instance_f1(tifffile.imread(tmp_path / "torch/labels/frame.tif"),
                     tifffile.imread(tmp_path / "fast/labels/frame.tif")).f1
    assert f1 >= fastpath.PARITY_GATE


def _without_int8(monkeypatch) -> None:
    """The fast path's candidates but INT8 (its NNCF calibration takes ~20 s; the first test makes it)."""
    from asfyolo_rt import fastpath

    found = [c for c in fastpath.candidates() if c.precision != "int8"]
    monkeypatch.setattr(fastpath, "candidates", lambda: found)


def test_fast_path_refuses_what_fails_parity_and_remakes_a_broken_record(fast_env, monkeypatch):
    from asfyolo_rt import fastpath

    _without_int8(monkeypatch)
    monkeypatch.setattr(fastpath, "_f1", lambda ref, got, threshold=0.5: (0.5, 10, 20))
    with pytest.raises(ConfigError, match="matches PyTorch") as exc:
        fastpath.fast_choice("dsb2018")
    assert "--backend torch" in exc.value.hint
    assert not list(fast_env.glob("*/choice.json"))  # nothing recorded for a failed check

    monkeypatch.undo()
    monkeypatch.setenv("ASFYOLO_RT_FAST", "1")
    monkeypatch.setenv("ASFYOLO_RT_CACHE", str(fast_env.parent))
    _without_int8(monkeypatch)
    (folder,) = fast_env.iterdir()
    (folder / "choice.json").write_text("{ cut short")
    made = fastpath.fast_choice("dsb2018")
    assert json.loads((folder / "choice.json").read_text())["runtime"] == made.runtime


@pytest.fixture
def quick_candidates(fast_env, monkeypatch):
    """The fast path with PyTorch's reference and the runtimes' timing replaced by a fixed label map (the ONNX
    export still runs): `times` sets each candidate's ms; INT8 first, then FP32."""
    from asfyolo_rt import fastpath

    ref = np.zeros((fastpath.CHECK_SIDE, fastpath.CHECK_SIDE), np.int32)
    for k in range(300):
        y, x = divmod(k, 20)
        ref[y * 40 + 5 : y * 40 + 15, x * 40 + 5 : x * 40 + 15] = k + 1
    times = {"int8": 10.0, "fp32": 20.0}
    monkeypatch.setattr(fastpath, "_segment", lambda *a: ref)
    monkeypatch.setattr(fastpath, "_timed", lambda model, cand, frame: (ref, times[cand.precision]))
    monkeypatch.setattr(fastpath, "candidates", lambda: [fastpath.Candidate("openvino", "int8"),
                                                         fastpath.Candidate("openvino", "fp32")])
    return times


def test_fast_path_goes_on_without_int8_when_nncf_fails(quick_candidates, monkeypatch):
    from asfyolo_rt import fastpath

    def broken(*a, **k):
        raise RuntimeError("NNCF broke\nsecond line")

    monkeypatch.setattr("asfyolo_rt.calib.openvino_int8.quantize_openvino", broken)
    msgs: list[str] = []
    choice = fastpath.fast_choice("dsb2018", log=msgs.append)
    assert (choice.runtime, choice.precision, Path(choice.model).name) == ("openvino", "fp32", "model.onnx")
    int8 = next(m for m in choice.measured if m["precision"] == "int8")
    assert int8["error"] == "RuntimeError: NNCF broke second line" and "ms" not in int8
    assert "  OpenVINO INT8: not made (RuntimeError: NNCF broke second line)" in msgs


def test_fast_path_keeps_only_the_chosen_model_and_refuses_an_ir_without_its_weights(quick_candidates, monkeypatch):
    from asfyolo_rt import fastpath

    def fake_ir(onnx_path, cfg, ref):  # an "INT8 IR" that is timed slower than FP32
        xml = onnx_path.with_name("model.int8-openvino.xml")
        xml.write_text("<net/>")
        xml.with_suffix(".bin").write_bytes(b"0")
        return xml

    monkeypatch.setattr(fastpath, "_int8_model", fake_ir)
    quick_candidates["int8"] = 30.0
    choice = fastpath.fast_choice("dsb2018")
    folder = Path(choice.model).parent
    assert choice.precision == "fp32" and not list(folder.glob("model.int8-openvino.*"))

    quick_candidates["int8"] = 5.0  # made again (a new cache): INT8 is chosen and kept, with its weights
    (folder / "choice.json").unlink()
    choice = fastpath.fast_choice("dsb2018")
    assert choice.precision == "int8" and Path(choice.model).with_suffix(".bin").is_file()
    assert fastpath._read_choice(folder / "choice.json") is not None
    Path(choice.model).with_suffix(".bin").unlink()
    assert fastpath._read_choice(folder / "choice.json") is None  # remade, not run without its weights


def test_fast_path_applies_to_checkpoints_on_the_cpu_only(monkeypatch):
    from asfyolo_rt import fastpath

    monkeypatch.setenv("ASFYOLO_RT_FAST", "1")
    ok = dict(backend=None, device="cpu", precision=None, scale="native")
    assert fastpath.applies(Path("w.safetensors"), **ok)
    assert not fastpath.applies(Path("m.onnx"), **ok)
    for k, v in (("backend", "torch"), ("device", "cuda"), ("precision", "fp32"), ("precision", "fp16"),
                 ("scale", "fit")):
        assert not fastpath.applies(Path("w.safetensors"), **{**ok, k: v})
    monkeypatch.setenv("ASFYOLO_RT_FAST", "0")
    assert not fastpath.applies(Path("w.safetensors"), **ok)


def test_fast_path_int8_is_not_calibrated_for_a_model_blind_to_synthetic_nuclei(tmp_path):
    from types import SimpleNamespace

    from asfyolo_rt import fastpath

    few = np.zeros((fastpath.CHECK_SIDE, fastpath.CHECK_SIDE), np.int32)
    few[:40, :40] = np.arange(1, 1601).reshape(40, 40) % fastpath.INT8_MIN_CELLS  # INT8_MIN_CELLS - 1 cells
    with pytest.raises(ConfigError, match=f"not calibrated: PyTorch finds {fastpath.INT8_MIN_CELLS - 1} of"):
        fastpath._int8_model(tmp_path / "model.onnx", SimpleNamespace(model_scale=1.5), few)
    assert not list(tmp_path.iterdir())


def test_fast_path_key_reads_the_runtimes_versions_as_their_metadata_says(tmp_path, monkeypatch):
    from importlib.metadata import version

    from asfyolo_rt import fastpath

    for name in ("openvino", "onnxruntime", "numpy"):
        fastpath._dist_version.cache_clear()
        assert fastpath._dist_version(name) == version(name)
    fastpath._dist_version.cache_clear()
    assert fastpath._dist_version("no_such_package_here") is None
    # the dist-info folder beside the package; a package without one is not installed as a distribution
    site = tmp_path / "site"
    for pkg in ("fake_runtime_a", "fake_runtime_b"):
        (site / pkg).mkdir(parents=True)
        (site / pkg / "__init__.py").write_text("")
    (site / "fake_runtime_a-2031.1.0.dist-info").mkdir()
    monkeypatch.syspath_prepend(str(site))
    fastpath._dist_version.cache_clear()
    assert fastpath._dist_version("fake_runtime_a") == "2031.1.0"
    assert fastpath._dist_version("fake_runtime_b") is None
    fastpath._dist_version.cache_clear()


def test_openvino_precision_follows_the_cpu(tmp_path):
    from asfyolo_rt.infer.openvino import pick_precision

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"")
    bf16 = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"})
    vnni = frozenset({"avx2", "avx512f", "avx512_vnni"})
    avx2 = frozenset({"avx2"})
    assert pick_precision(onnx, bf16)[:2] == (onnx, "bf16")
    assert pick_precision(onnx, vnni)[:2] == (onnx, "fp32")  # no INT8 IR beside it
    ir = tmp_path / "model.int8-openvino.xml"
    ir.write_bytes(b"")
    assert pick_precision(onnx, vnni)[:2] == (ir, "int8")
    path, prec, why = pick_precision(onnx, avx2)
    assert (path, prec) == (onnx, "fp32") and "avx2" in why


def test_predict_openvino_without_precision_says_what_it_picked(cli, shipped_onnx, nuclei_frame, tmp_path):
    pytest.importorskip("openvino")
    from asfyolo_rt.infer.openvino import pick_precision

    p = tmp_path / "frame.tif"
    tifffile.imwrite(p, nuclei_frame)
    r = cli("predict", str(p), "--model", str(shipped_onnx), "--backend", "openvino", "--out", str(tmp_path / "o"),
            "--no-overlays", "--no-coco")
    assert r.exit_code == 0, r.stderr
    _, prec, why = pick_precision(shipped_onnx)
    assert f"OpenVINO {prec.upper()} of model.onnx: {why}" in " ".join(r.stderr.split())
