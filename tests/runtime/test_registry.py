"""The backend registry: runtimes by name and suffix, picklable specs opened inside worker processes."""

from __future__ import annotations

import multiprocessing as mp
import pickle

import numpy as np
import pytest
import torch

from asfyolo_rt.errors import AsfYoloError, ConfigError
from asfyolo_rt.infer.protocol import Backend
from asfyolo_rt.runtime.registry import BackendSpec, entry, runtimes


def test_every_runtime_is_registered_with_its_files():
    assert runtimes() == ["onnxruntime", "onnxruntime-rtx", "openvino", "tensorrt", "torch"]
    assert entry("openvino").suffixes == (".xml", ".onnx") and "bf16" in entry("openvino").precisions
    assert BackendSpec("dsb2018").resolved_runtime() == "torch"
    with pytest.raises(ConfigError, match="--backend 'ov': expected one of onnxruntime, onnxruntime-rtx"):
        BackendSpec("dsb2018", runtime="ov").resolved_runtime()
    with pytest.raises(ConfigError, match=r"--backend openvino runs \.xml/\.onnx files, not"):
        BackendSpec("dsb2018", runtime="openvino").resolved_runtime()


def test_auto_runtime_follows_the_suffix(shipped_onnx, tmp_path):
    assert BackendSpec(str(shipped_onnx)).resolved_runtime() == "onnxruntime"
    xml = tmp_path / "m.xml"
    xml.write_text("<net/>")
    assert BackendSpec(str(xml)).resolved_runtime() == "openvino"
    (tmp_path / "m.engine").touch()
    assert BackendSpec(str(tmp_path / "m.engine")).resolved_runtime() == "tensorrt"
    with pytest.raises(AsfYoloError, match="does not exist"):
        BackendSpec(str(tmp_path / "missing.onnx")).open()


def _detect_in_worker(spec_bytes: bytes, x: np.ndarray) -> tuple[int, list[np.ndarray], int]:
    """Runs in a spawned process: the spec arrives as bytes, the backend is opened there."""
    spec = pickle.loads(spec_bytes)
    backend = spec.open()
    dets, protos, _ = backend.detect(torch.from_numpy(x), conf=0.25, iou=0.45, max_det=300)
    return len(dets[0]), [d.boxes.numpy() for d in dets], int(protos.shape[1])


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_spec_opens_in_a_spawned_worker_with_the_same_detections(shipped_onnx, nuclei_frame, runtime):
    from asfyolo_rt.data.io import to_uint8_rgb
    from asfyolo_rt.runtime.stages import preprocess

    if runtime == "openvino":
        pytest.importorskip("openvino")
    spec = BackendSpec(str(shipped_onnx), runtime=runtime, threads=1)
    here = spec.open()
    assert isinstance(here, Backend) and here.end2end is False and here.input_shape == (320, 320)
    x = preprocess([to_uint8_rgb(np.tile(nuclei_frame, (2, 2)))[:320, :320]]).numpy()
    n_here, boxes_here, nm = _detect_in_worker(pickle.dumps(spec), x)
    with mp.get_context("spawn").Pool(1) as pool:
        n_there, boxes_there, nm_there = pool.apply(_detect_in_worker, (pickle.dumps(spec), x))
    assert n_here == n_there > 5 and nm == nm_there == 32
    np.testing.assert_allclose(boxes_there[0], boxes_here[0], atol=1e-3)
