"""A ctypes binding of the C runtime (cpp/include/asfyolo.h) for tests and benchmarks.

It drives the C ABI exactly as a foreign runtime (C#, Java, MATLAB) would: plain structs, opaque handles,
status codes and the per-handle last error. The library is `ASFYOLO_NATIVE_LIB` when set, else
``build/cpp/libasfyolo.so`` of this checkout (`make cpp`).

Example:
    >>> from asfyolo_rt.native import NativeSegmenter
    >>> with NativeSegmenter("runs/demo-bundle") as seg:          # doctest: +SKIP
    ...     labels, cells, timing = seg.segment(image)
"""

from __future__ import annotations

import ctypes as C
import os
from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt.errors import ConfigError, DataError

ABI_VERSION = 1
STATUS = {0: "ok", 1: "argument", 2: "file", 3: "model_info", 4: "backend", 5: "unsupported", 6: "memory",
          7: "internal"}
FORMATS = {"gray8": 0, "gray16": 1, "rgb8": 2, "bgr8": 3}
CELL_COLUMNS = ("id", "class", "score", "x1", "y1", "x2", "y2", "area_px", "centroid_x", "centroid_y",
                "equivalent_diameter_px")


class Image(C.Structure):
    _fields_ = [("data", C.c_void_p), ("width", C.c_int32), ("height", C.c_int32), ("stride_bytes", C.c_int64),
                ("format", C.c_int), ("pixel_size_um", C.c_double), ("data_bytes", C.c_int64)]


class Options(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("backend", C.c_char_p), ("device", C.c_char_p),
                ("precision", C.c_char_p), ("model_file", C.c_char_p), ("threads", C.c_int32),
                ("requests", C.c_int32), ("conf", C.c_double), ("iou", C.c_double), ("max_det", C.c_int32),
                ("min_visible", C.c_double), ("mask_threshold", C.c_double), ("tile_overlap", C.c_int32),
                ("tile_size", C.c_int32), ("batch", C.c_int32), ("fit", C.c_int32),
                ("skip_empty", C.c_int32)]


class Cell(C.Structure):
    _fields_ = [("id", C.c_uint32), ("class_id", C.c_int32), ("score", C.c_float), ("x1", C.c_float),
                ("y1", C.c_float), ("x2", C.c_float), ("y2", C.c_float), ("area_px", C.c_int64),
                ("centroid_x", C.c_double), ("centroid_y", C.c_double), ("equivalent_diameter_px", C.c_double)]


class Timing(C.Structure):
    _fields_ = [("read_ms", C.c_double), ("preprocess_ms", C.c_double), ("inference_ms", C.c_double),
                ("postprocess_ms", C.c_double), ("total_ms", C.c_double)]


class NativeError(ConfigError):
    """A failed C call: `status` is the asfyolo_status name ("argument", "file", "model_info", ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = STATUS.get(status, str(status))


def library_path() -> Path:
    """The C runtime's shared library: $ASFYOLO_NATIVE_LIB, else build/cpp/libasfyolo.so of this checkout."""
    env = os.environ.get("ASFYOLO_NATIVE_LIB")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "build" / "cpp" / "libasfyolo.so"


_LIB: C.CDLL | None = None


def load_library(path: str | Path | None = None) -> C.CDLL:
    """The C runtime loaded with its prototypes declared; ConfigError when it is not built or of another ABI."""
    global _LIB
    if _LIB is not None and path is None:
        return _LIB
    p = Path(path) if path is not None else library_path()
    if not p.is_file():
        raise ConfigError(f"C runtime library {p} does not exist", hint="build it with `make cpp`, or set "
                          "ASFYOLO_NATIVE_LIB to a built libasfyolo.so")
    lib = C.CDLL(str(p))
    sig: dict[str, tuple[Any, list[Any]]] = {
        "asfyolo_version": (C.c_char_p, []), "asfyolo_abi_version": (C.c_int, []),
        "asfyolo_build_info": (C.c_char_p, []), "asfyolo_options_init": (None, [C.POINTER(Options)]),
        "asfyolo_segmenter_open": (C.c_int, [C.c_char_p, C.POINTER(Options), C.POINTER(C.c_void_p)]),
        "asfyolo_segmenter_clone": (C.c_int, [C.c_void_p, C.POINTER(C.c_void_p)]),
        "asfyolo_segmenter_free": (None, [C.c_void_p]), "asfyolo_last_error": (C.c_char_p, [C.c_void_p]),
        "asfyolo_segmenter_info": (C.c_char_p, [C.c_void_p]),
        "asfyolo_segment": (C.c_int, [C.c_void_p, C.POINTER(Image), C.POINTER(C.c_void_p)]),
        "asfyolo_segment_device": (C.c_int, [C.c_void_p, C.POINTER(Image), C.POINTER(C.c_void_p)]),
        "asfyolo_result_free": (None, [C.c_void_p]), "asfyolo_result_width": (C.c_int32, [C.c_void_p]),
        "asfyolo_result_height": (C.c_int32, [C.c_void_p]), "asfyolo_result_count": (C.c_int64, [C.c_void_p]),
        "asfyolo_result_tiles": (C.c_int32, [C.c_void_p]),
        "asfyolo_result_labels": (C.POINTER(C.c_uint32), [C.c_void_p]),
        "asfyolo_result_copy_labels": (C.c_int, [C.c_void_p, C.c_void_p, C.c_int64, C.c_int64]),
        "asfyolo_result_cell": (C.c_int, [C.c_void_p, C.c_int64, C.POINTER(Cell)]),
        "asfyolo_result_polygon": (C.c_int, [C.c_void_p, C.c_int64, C.c_void_p, C.c_int64, C.POINTER(C.c_int64)]),
        "asfyolo_result_timing": (C.c_int, [C.c_void_p, C.POINTER(Timing)]),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    if lib.asfyolo_abi_version() != ABI_VERSION:
        raise ConfigError(f"{p}: ABI version {lib.asfyolo_abi_version()}, this binding speaks {ABI_VERSION}",
                          hint="rebuild the library from this checkout (`make cpp`)")
    if path is None:
        _LIB = lib
    return lib


def _image(image: np.ndarray, pixel_size: float | None) -> tuple[Image, np.ndarray]:
    """The asfyolo_image of an (H, W) uint8/uint16 or (H, W, 3) uint8 RGB array (kept alive by the caller)."""
    a = np.asarray(image)
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3:
        fmt = FORMATS["rgb8"]
    elif a.ndim == 2 and a.dtype in (np.uint8, np.uint16):
        fmt = FORMATS["gray8" if a.dtype == np.uint8 else "gray16"]
    else:
        raise DataError(f"image array {a.shape} {a.dtype}: expected (H, W) uint8/uint16 or (H, W, 3) uint8 RGB")
    rows_packed = a.strides[1] == (3 if a.ndim == 3 else a.itemsize) and (a.ndim == 2 or a.strides[2] == 1)
    if not rows_packed or a.strides[0] <= 0:  # the C side takes packed rows at any positive row stride
        a = np.ascontiguousarray(a)
    nbytes = (a.shape[0] - 1) * a.strides[0] + a.shape[1] * (3 if a.ndim == 3 else a.itemsize)
    im = Image(a.ctypes.data, a.shape[1], a.shape[0], a.strides[0], fmt, float(pixel_size or 0.0), nbytes)
    return im, a


class NativeSegmenter:
    """The C runtime's segmenter (`asfyolo_segmenter_open`) behind a Python object.

    model_path: a bundle folder or model file; backend: "auto", "openvino", "tensorrt"; threads: worker
    threads (None: all cores); overrides: model_file, precision, device, requests, conf, iou, max_det,
    min_visible, mask_threshold, tile_overlap, tile_size, batch. A dynamic-size model without tile_size gets each
    frame's own tile (OpenVINO; `asfyolo_rt.runtime.tiles.fit_tile`), as `Segmenter` without img_size.
    """

    def __init__(self, model_path: str | Path, backend: str = "auto", threads: int | None = None,
                 **overrides: Any) -> None:
        self._lib = load_library()
        self._handle = C.c_void_p()
        opt = Options()
        self._lib.asfyolo_options_init(C.byref(opt))
        opt.backend = backend.encode()
        opt.threads = int(threads or 0)
        for key, value in overrides.items():
            if value is None:
                continue
            if key not in {f[0] for f in Options._fields_} or key in ("struct_size", "backend", "threads"):
                raise ConfigError(f"NativeSegmenter: unknown option {key!r}")
            setattr(opt, key, value.encode() if isinstance(value, str) else value)
        self._opt = opt
        status = self._lib.asfyolo_segmenter_open(str(model_path).encode(), C.byref(opt), C.byref(self._handle))
        if status != 0:
            msg = (self._lib.asfyolo_last_error(self._handle) or b"").decode()
            self._lib.asfyolo_segmenter_free(self._handle)
            self._handle = C.c_void_p()
            raise NativeError(status, msg)

    @property
    def info(self) -> str:
        """The effective settings and model info as JSON (asfyolo_segmenter_info)."""
        return (self._lib.asfyolo_segmenter_info(self._handle) or b"").decode()

    def segment(self, image: np.ndarray, pixel_size: float | None = None
                ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """(labels (H, W) uint32, cells: structured array of predict's cells.csv columns, timing_ms)."""
        if not self._handle:
            raise ConfigError("NativeSegmenter is closed")
        im, keep = _image(image, pixel_size)
        res = C.c_void_p()
        status = self._lib.asfyolo_segment(self._handle, C.byref(im), C.byref(res))
        del keep
        if status != 0:
            raise NativeError(status, (self._lib.asfyolo_last_error(self._handle) or b"").decode())
        try:
            return self._read(res)
        finally:
            self._lib.asfyolo_result_free(res)

    def _read(self, res: C.c_void_p) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        lib = self._lib
        h, w, n = lib.asfyolo_result_height(res), lib.asfyolo_result_width(res), lib.asfyolo_result_count(res)
        labels = np.empty((h, w), np.uint32)
        st = lib.asfyolo_result_copy_labels(res, labels.ctypes.data, labels.strides[0], labels.nbytes)
        if st != 0:
            raise NativeError(st, (lib.asfyolo_last_error(None) or b"").decode())
        dtype = np.dtype([("id", np.int32), ("class", np.int32), ("score", np.float32), ("x1", np.float32),
                          ("y1", np.float32), ("x2", np.float32), ("y2", np.float32), ("area_px", np.int64),
                          ("centroid_x", np.float64), ("centroid_y", np.float64),
                          ("equivalent_diameter_px", np.float64)])
        table = np.zeros(n, dtype)
        cell = Cell()
        for i in range(n):
            lib.asfyolo_result_cell(res, i, C.byref(cell))
            table[i] = (cell.id, cell.class_id, cell.score, cell.x1, cell.y1, cell.x2, cell.y2, cell.area_px,
                        cell.centroid_x, cell.centroid_y, cell.equivalent_diameter_px)
        t = Timing()
        lib.asfyolo_result_timing(res, C.byref(t))
        timing = {"read": t.read_ms, "preprocess": t.preprocess_ms, "inference": t.inference_ms,
                  "postprocess": t.postprocess_ms, "total": t.total_ms,
                  "tiles": float(lib.asfyolo_result_tiles(res))}
        return labels, table, timing

    def close(self) -> None:
        if self._handle:
            self._lib.asfyolo_segmenter_free(self._handle)
            self._handle = C.c_void_p()

    def __enter__(self) -> NativeSegmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
