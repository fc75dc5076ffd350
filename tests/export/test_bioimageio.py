"""bioimage.io package: the label graph against the end-to-end graph, rdf.yaml validated by bioimageio.spec,
and (slow) `bioimageio test` of the package the CLI writes for the shipped model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from asfyolo_rt.export.bioimageio import CITATION, BioimageioOptions, _preprocess, write_package
from asfyolo_rt.export.bioimageio_graph import build_label_graph
from asfyolo_rt.export.end2end import End2EndConfig, build_end2end


@pytest.fixture(scope="module")
def raw_model(tmp_path_factory: pytest.TempPathFactory) -> onnx.ModelProto:
    """A small untrained model (objectness biased up: many detections), dynamic H, W (legacy exporter: fast)."""
    from asfyolo_rt.export.onnx_export import export_onnx

    from asfyolo_rt.model import build_model
    from asfyolo_rt.model.weights import config_of

    torch.manual_seed(0)
    m = build_model("n").eval()
    with torch.no_grad():
        for conv in m.head.m:
            conv.bias.view(3, -1)[:, 4] += 8
    path = tmp_path_factory.mktemp("onnx") / "raw.onnx"
    export_onnx(m, path, config_of(m, img_size=64), img_size=64, dynamic_batch=True, dynamic_size=True,
                exporter="legacy", do_simplify=False)
    return onnx.load(str(path))


def test_label_graph_is_upsampled_end2end_label_map(raw_model: onnx.ModelProto) -> None:
    cfg = End2EndConfig(conf_threshold=0.25, iou_threshold=0.45, max_det=50)
    graph = build_label_graph(raw_model, cfg)
    ref = build_end2end(raw_model, End2EndConfig(conf_threshold=0.25, iou_threshold=0.45, max_det=50, label_map=True))
    x = np.random.default_rng(0).random((2, 1, 96, 64), dtype=np.float32)
    labels = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"raw": x})
    assert len(labels) == 1 and labels[0].shape == (2, 1, 96, 64) and labels[0].dtype == np.int32
    sess = ort.InferenceSession(ref.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": np.repeat(x, 3, axis=1)})))
    expected = np.repeat(np.repeat(outs["label_map"], 4, axis=1), 4, axis=2)[:, None]  # nearest x4
    assert np.array_equal(labels[0], expected)
    assert labels[0].max() > 0 and int(outs["num_dets"][0]) >= labels[0][0].max()


def test_package_rdf_validates(raw_model: onnx.ModelProto, tmp_path: Path) -> None:
    from bioimageio.spec import load_description
    from bioimageio.spec.model.v0_5 import ModelDescr

    out = tmp_path / "pkg"
    res = write_package(raw_model, BioimageioOptions(out=out, test_size=64, max_det=50), {0: "cell"}, "random")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "asfyolo.onnx", "cover.png", "rdf.yaml",
                                                     "sample_input.tif", "sample_output.tif", "test_input.npy",
                                                     "test_output.npy"]
    doc = yaml.safe_load((out / "rdf.yaml").read_text())
    assert doc["cite"][0]["doi"] == CITATION["doi"] == "10.1016/j.imavis.2024.105057"
    assert [a["type"] for a in doc["inputs"][0]["axes"]] == ["batch", "channel", "space", "space"]
    assert doc["config"]["asfyolo_rt"]["model_scale"] == 1.0  # write_package without a scale: none in the graph
    descr = load_description(out / "rdf.yaml")  # sha256 of every file checked
    assert isinstance(descr, ModelDescr), descr.validation_summary.display() or descr
    assert descr.validation_summary.status == "valid-format"
    # the test output is what the package's own ONNX makes of the pre-processed test input
    x, y = np.load(out / "test_input.npy"), np.load(out / "test_output.npy")
    again = ort.InferenceSession(str(out / "asfyolo.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"raw": _preprocess(x)})[0]
    assert np.array_equal(again, y) and y.shape == x.shape and res.test_cells == len(np.unique(y)) - 1 > 0
    with pytest.raises(Exception, match="already exists"):
        write_package(raw_model, BioimageioOptions(out=out, test_size=64), {0: "cell"}, "random")


@pytest.mark.slow
def test_cli_package_passes_bioimageio_test(tmp_path: Path, cli) -> None:
    out = tmp_path / "bioimageio"
    r = cli("export", "--bioimageio", out, "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    # the shipped model runs at its recorded x1.5 (predict's scale), inside the graph
    assert yaml.safe_load((out / "rdf.yaml").read_text())["config"]["asfyolo_rt"]["model_scale"] == 1.5
    assert any(n.name == "/bioimageio/model_scale" for n in onnx.load(str(out / "asfyolo.onnx")).graph.node)
    bioimageio = Path(sys.executable).with_name("bioimageio")
    run = subprocess.run([str(bioimageio), "test", str(out / "rdf.yaml")], capture_output=True, text=True,
                         cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "passed" in run.stdout


def test_label_graph_runs_the_network_at_the_model_scale(raw_model: onnx.ModelProto) -> None:
    """A x1.5 model: the network sees the image resized to ceil(side * 1.5 / 32) * 32 (96x64 -> 160x96),
    and the label map comes back to the input's 96x64 grid."""
    cfg = End2EndConfig(conf_threshold=0.25, iou_threshold=0.45, max_det=50)
    graph = build_label_graph(raw_model, cfg, model_scale=1.5)
    ref = build_end2end(raw_model, End2EndConfig(conf_threshold=0.25, iou_threshold=0.45, max_det=50, label_map=True))
    x = np.random.default_rng(1).random((1, 1, 96, 64), dtype=np.float32)
    labels = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"raw": x})[0]
    assert labels.shape == (1, 1, 96, 64)
    big = torch.nn.functional.interpolate(torch.from_numpy(np.repeat(x, 3, axis=1)), size=(160, 96), mode="bilinear",
                                          align_corners=False).numpy()
    sess = ort.InferenceSession(ref.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": big})))
    lm = outs["label_map"][0]
    assert lm.shape == (40, 24)
    expected = lm[(np.arange(96) * 40) // 96][:, (np.arange(64) * 24) // 64]
    assert labels[0, 0].max() > 0
    assert (labels[0, 0] == expected).mean() > 0.999  # bilinear rounding may flip a border pixel
    unscaled = ort.InferenceSession(build_label_graph(raw_model, cfg).SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, {"raw": x})[0]
    assert not np.array_equal(unscaled, labels)
