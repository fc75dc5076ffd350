"""The C ABI driven directly from a foreign runtime (Python ctypes): versions, the error contract (a status and
one message naming the file or argument, never a crash) for bad bundles and bad frames, clones on threads,
label copies and outlines."""

from __future__ import annotations

import ctypes as C
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from asfyolo_rt.native import Image, NativeError, NativeSegmenter, Options, load_library


def _open_status(lib: C.CDLL, path: Path | str, **opt: object) -> tuple[str, str]:
    """(status name, message) of asfyolo_segmenter_open; the error handle freed."""
    from asfyolo_rt.native import STATUS

    o = Options()
    lib.asfyolo_options_init(C.byref(o))
    for k, v in opt.items():
        setattr(o, k, v)
    h = C.c_void_p()
    st = lib.asfyolo_segmenter_open(str(path).encode(), C.byref(o), C.byref(h))
    msg = (lib.asfyolo_last_error(h) or b"").decode()
    lib.asfyolo_segmenter_free(h)
    return STATUS[st], msg


def test_versions(native_lib):
    lib = load_library(native_lib)
    assert lib.asfyolo_abi_version() == 1
    assert lib.asfyolo_version().decode().count(".") == 2
    assert "openvino" in lib.asfyolo_build_info().decode()


def _bundle(tmp_path: Path, onnx: Path, info: dict | str | None) -> Path:
    b = tmp_path / "bundle"
    b.mkdir(parents=True)
    shutil.copy(onnx, b / "model.onnx")
    if info is not None:
        (b / "model.json").write_text(info if isinstance(info, str) else json.dumps(info))
    return b


def test_bad_bundles_are_errors_naming_the_file(native_lib, shipped_onnx, tmp_path):
    from asfyolo_rt.runtime import read_model_info

    lib = load_library(native_lib)
    info = json.loads(read_model_info(shipped_onnx).to_json())
    assert _open_status(lib, tmp_path / "missing") == ("file", f"{tmp_path / 'missing'}: no such file or folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    st, msg = _open_status(lib, empty)
    assert st == "file" and "without model.json" in msg
    st, msg = _open_status(lib, _bundle(tmp_path / "a", shipped_onnx, "{not json"))
    assert st == "model_info" and "model.json" in msg and "not valid JSON" in msg
    st, msg = _open_status(lib, _bundle(tmp_path / "b", shipped_onnx, {**info, "schema_version": "2.0"}))
    assert st == "model_info" and "schema version 2.0" in msg and "model.json" in msg
    st, msg = _open_status(lib, _bundle(tmp_path / "c", shipped_onnx, {**info, "schema": "someone-else/v1"}))
    assert st == "model_info" and "someone-else" in msg
    st, msg = _open_status(lib, _bundle(tmp_path / "d", shipped_onnx, info), model_file=b"model.int8.onnx")
    assert st == "file" and "model.int8.onnx" in msg
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x0a\xff\xff\xff\xff\xff\xff" * 50)
    st, msg = _open_status(lib, garbage)
    assert st in ("file", "model_info") and "garbage.onnx" in msg
    st, msg = _open_status(lib, tmp_path / "d" / "bundle" / "model.json")
    assert st == "file" and "model info file alone" in msg


def test_foreign_onnx_and_engines_are_refused(native_lib, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    lib = load_library(native_lib)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 32, 32])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(g), foreign)
    st, msg = _open_status(lib, foreign)
    assert st == "model_info" and "no model_info metadata" in msg and "foreign.onnx" in msg
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not a plan")
    st, msg = _open_status(lib, engine)
    assert st == "file" and "sidecar" in msg
    (tmp_path / "model.engine.json").write_text(json.dumps({"model_info": {
        "schema": "asfyolo-rt/model-info", "schema_version": "1.1", "names": {"0": "cell"}}}))
    st, msg = _open_status(lib, engine)
    if "tensorrt" not in lib.asfyolo_build_info().decode():
        assert st == "unsupported" and "built without TensorRT" in msg
    st, msg = _open_status(lib, foreign, backend=b"onnxruntime")
    assert st in ("argument", "model_info")


def _segment_status(seg: NativeSegmenter, im: Image) -> tuple[str, str]:
    from asfyolo_rt.native import STATUS

    lib = load_library()
    res = C.c_void_p()
    st = lib.asfyolo_segment(seg._handle, C.byref(im), C.byref(res))
    if st == 0:
        lib.asfyolo_result_free(res)
    return STATUS[st], (lib.asfyolo_last_error(seg._handle) or b"").decode()


@pytest.fixture(scope="module")
def segmenter(native_lib, shipped_onnx):
    with NativeSegmenter(shipped_onnx, threads=2) as seg:
        yield seg


def test_bad_frames_are_argument_errors(segmenter):
    buf = np.zeros((64, 80), np.uint8)
    p = buf.ctypes.data
    cases = {
        "image.data is NULL": Image(None, 80, 64, 80, 0, 0.0, 0),
        "stride_bytes 79 is smaller than a row": Image(p, 80, 64, 79, 0, 0.0, 0),
        "stride_bytes 159 is smaller than a row": Image(p, 80, 64, 159, 1, 0.0, 0),
        "image size 0x64": Image(p, 0, 64, 80, 0, 0.0, 0),
        "image size 80x-2": Image(p, 80, -2, 80, 0, 0.0, 0),
        "image size 100000x100000": Image(p, 100000, 100000, 100000, 0, 0.0, 0),
        "image.format 7": Image(p, 80, 64, 80, 7, 0.0, 0),
        "image.data_bytes 5119": Image(p, 80, 64, 80, 0, 0.0, 64 * 80 - 1),
        "image.pixel_size_um": Image(p, 80, 64, 80, 0, float("nan"), 0),
    }
    for expected, im in cases.items():
        st, msg = _segment_status(segmenter, im)
        assert st == "argument", expected
        assert expected in msg
    assert _segment_status(segmenter, Image(p, 80, 64, 80, 0, 0.0, buf.nbytes)) == ("ok", "")


def test_segment_device_is_refused_on_cpu(segmenter):
    buf = np.zeros((32, 32), np.uint8)
    lib = load_library()
    res = C.c_void_p()
    st = lib.asfyolo_segment_device(segmenter._handle, C.byref(Image(buf.ctypes.data, 32, 32, 32, 0, 0.0, 0)),
                                    C.byref(res))
    assert st == 5 and b"host memory" in lib.asfyolo_last_error(segmenter._handle)


def test_clones_on_threads_give_the_same_cells(segmenter, nuclei_frame):
    lib = load_library()
    want, _, _ = segmenter.segment(nuclei_frame)
    clones = []
    for _ in range(2):
        h = C.c_void_p()
        assert lib.asfyolo_segmenter_clone(segmenter._handle, C.byref(h)) == 0
        clones.append(h)
    got: list[np.ndarray] = []

    def work(h: C.c_void_p) -> None:
        seg = object.__new__(NativeSegmenter)
        seg._lib, seg._handle = lib, h
        got.append(seg.segment(nuclei_frame)[0])
        seg.close()

    threads = [threading.Thread(target=work, args=(h,)) for h in clones]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 2 and all(np.array_equal(g, want) for g in got)


def test_labels_copy_and_outlines(segmenter, nuclei_frame):
    lib = load_library()
    h, w = nuclei_frame.shape
    a = np.ascontiguousarray(nuclei_frame)
    im = Image(a.ctypes.data, w, h, a.strides[0], 1, 0.0, a.nbytes)
    res = C.c_void_p()
    assert lib.asfyolo_segment(segmenter._handle, C.byref(im), C.byref(res)) == 0
    try:
        n = lib.asfyolo_result_count(res)
        view = np.ctypeslib.as_array(lib.asfyolo_result_labels(res), shape=(h, w)).copy()
        padded = np.zeros((h, w + 7), np.uint32)
        assert lib.asfyolo_result_copy_labels(res, padded.ctypes.data, padded.strides[0], padded.nbytes) == 0
        assert np.array_equal(padded[:, :w], view)
        assert lib.asfyolo_result_copy_labels(res, padded.ctypes.data, 4 * w - 4, padded.nbytes) == 1
        npts = C.c_int64()
        for i in range(n):
            assert lib.asfyolo_result_polygon(res, i, None, 0, C.byref(npts)) == 0
            xy = np.zeros((npts.value, 2), np.float32)
            assert lib.asfyolo_result_polygon(res, i, xy.ctypes.data, npts.value, C.byref(npts)) == 0
            if i < 5 and npts.value:  # the ring's area is the visible mask's when the cell has no hole
                x, y = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
                area = abs((x * np.roll(y, -1) - np.roll(x, -1) * y).sum() / 2)
                assert area <= (view == i + 1).sum() + 1e-6 and area > 0
        assert lib.asfyolo_result_polygon(res, n, None, 0, C.byref(npts)) == 1
    finally:
        lib.asfyolo_result_free(res)


def test_wrong_use_is_an_error_not_a_crash(native_lib, shipped_onnx):
    lib = load_library(native_lib)
    assert lib.asfyolo_segmenter_open(b"x", None, None) == 1
    assert lib.asfyolo_segment(None, None, None) == 1
    lib.asfyolo_segmenter_free(None)
    lib.asfyolo_result_free(None)
    assert lib.asfyolo_result_count(None) == 0
    with pytest.raises(NativeError, match="options.conf 1.5"):
        NativeSegmenter(shipped_onnx, conf=1.5)
    with pytest.raises(NativeError, match="options.backend 'cuda'"):
        NativeSegmenter(shipped_onnx, backend="cuda")
    with pytest.raises(NativeError, match="precision bf16|precision 'int4'"):
        NativeSegmenter(shipped_onnx, precision="int4")
