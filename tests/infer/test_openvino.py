"""OpenVINO backend: same detections as ONNX Runtime FP32 on the shipped model, explicit precision, dispatch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("openvino")

IMG = 160


@pytest.fixture(scope="module")
def shipped_onnx(tmp_path_factory) -> Path:
    from asfyolo_rt.export.onnx_export import export_onnx, load_weights

    from asfyolo_rt.weights_registry import default_weights

    model, cfg = load_weights(default_weights())
    return export_onnx(model, tmp_path_factory.mktemp("ov") / "model.onnx", cfg, img_size=(IMG, IMG)).path


@pytest.fixture(scope="module")
def nuclei() -> torch.Tensor:
    from asfyolo_rt.data.io import to_uint8_rgb
    from asfyolo_rt.data.letterbox import preprocess
    from asfyolo_rt.data.synth import make_nuclei

    imgs = [to_uint8_rgb(make_nuclei(i, shape=(IMG, IMG))[0]) for i in range(2)]
    return preprocess(imgs, IMG)[0]


def test_openvino_fp32_gives_the_detections_of_onnxruntime(shipped_onnx: Path, nuclei: torch.Tensor) -> None:
    from asfyolo_rt.infer.backends import OrtBackend
    from asfyolo_rt.infer.nms import non_max_suppression
    from asfyolo_rt.infer.openvino import OpenVinoBackend
    from asfyolo_rt.runtime.registry import load_backend

    ov = load_backend(shipped_onnx, backend="openvino")
    assert isinstance(ov, OpenVinoBackend)
    assert (ov.name, ov.precision, ov.hint, ov.input_shape, ov.names) == ("openvino", "fp32", "f32", (IMG, IMG), {0: "cell"})
    ort = OrtBackend(shipped_onnx)
    n_total = 0
    for i in range(nuclei.shape[0]):
        x = nuclei[i : i + 1]
        (a,), (b,) = non_max_suppression(ort(x)[0]), non_max_suppression(ov(x)[0])
        n_total += len(a)
        assert len(a) == len(b)
        torch.testing.assert_close(b.boxes, a.boxes, atol=0.05, rtol=0)
        torch.testing.assert_close(b.scores, a.scores, atol=1e-4, rtol=0)
        torch.testing.assert_close(b.coeffs, a.coeffs, atol=1e-3, rtol=0)
    assert n_total > 0  # the comparison compared something
    protos_a, protos_b = ort(nuclei[:1])[1], ov(nuclei[:1])[1]
    assert protos_b.shape == (1, 32, IMG // 4, IMG // 4)
    torch.testing.assert_close(protos_b, protos_a, atol=1e-3, rtol=0)


def test_bf16_only_where_the_cpu_has_it() -> None:
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.infer.openvino import check_precision, cpu_isa, has_bf16, has_int8_dot

    zen4 = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"})
    epyc_vm = frozenset({"avx2", "fma"})
    check_precision("bf16", zen4)
    with pytest.raises(ConfigError, match="no native BF16"):
        check_precision("bf16", epyc_vm)
    with pytest.raises(ConfigError, match="expected one of"):
        check_precision("fp16", zen4)
    assert (cpu_isa(zen4), cpu_isa(epyc_vm), cpu_isa(frozenset({"amx_bf16", "avx512_bf16"}))) == ("avx512_bf16", "avx2", "amx")
    assert has_bf16(zen4) and not has_bf16(epyc_vm)
    assert has_int8_dot(zen4) and not has_int8_dot(epyc_vm)


def test_openvino_precision_errors_name_the_file(shipped_onnx: Path) -> None:
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.runtime.registry import load_backend
    from asfyolo_rt.weights_registry import default_weights

    with pytest.raises(ConfigError, match="model.onnx is not quantized"):
        load_backend(shipped_onnx, backend="openvino", precision="int8")
    with pytest.raises(ConfigError, match="runs ONNX files and OpenVINO IR"):
        load_backend(default_weights(), backend="openvino")
    with pytest.raises(ConfigError, match="--backend 'ov'"):
        load_backend(shipped_onnx, backend="ov")


def test_parity_adds_openvino_rows_for_model_onnx(shipped_onnx: Path) -> None:
    from asfyolo_rt.eval.parity import openvino_candidates
    from asfyolo_rt.infer.openvino import cpu_isa, has_bf16

    cands, notes = openvino_candidates([shipped_onnx])
    precs = [c.backend.precision for c in cands]
    assert precs == (["fp32", "bf16"] if has_bf16() else ["fp32"])
    assert all(f"[{cpu_isa()}]" in c.label and c.label.startswith("openvino ") for c in cands)
    assert has_bf16() or any("bf16" in n for n in notes)
    assert openvino_candidates([shipped_onnx.with_name("model.int8.onnx")]) == ([], [])


def test_a_model_file_is_read_once_per_version(shipped_onnx: Path, tmp_path: Path) -> None:
    import os
    import shutil

    from asfyolo_rt.infer.openvino import OpenVinoBackend, read_model
    from asfyolo_rt.runtime.info import read_model_info

    path = shutil.copy(shipped_onnx, tmp_path / "model.onnx")
    first = read_model(path)
    assert read_model(tmp_path / "." / "model.onnx") is first  # the same file, however named
    assert OpenVinoBackend(path)._model is first
    read_model_info(path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))  # a new version of the file: read again
    again = read_model(path)
    assert again is not first and [o.get_any_name() for o in again.outputs] == ["pred", "protos"]


def test_an_ir_without_its_weights_is_refused_in_one_line_saying_so(shipped_onnx: Path, tmp_path: Path) -> None:
    import openvino as ov

    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.infer.openvino import error_line
    from asfyolo_rt.runtime.info import read_model_info

    xml = tmp_path / "model.xml"
    ov.save_model(ov.Core().read_model(str(shipped_onnx)), str(xml))
    xml.with_suffix(".bin").unlink()
    with pytest.raises(ConfigError) as exc:
        read_model_info(xml)
    text = str(exc.value)
    assert "\n" not in text and "bin file cannot be found" in text and "Exception from" not in text
    assert error_line(RuntimeError("Exception from a.cpp:1:\nCheck 'x' failed at b.cpp:2:\n\n")) == "RuntimeError"
