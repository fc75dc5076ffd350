"""ModelInfo: what a model needs to be run right, read by one function from any artifact.

One record for every runnable artifact (a checkpoint, a shipped name, an exported ONNX file, an OpenVINO
IR, a TensorRT engine with its sidecar, a bundle folder, or a ModelInfo JSON file itself):

* the classes, the input the network takes (a static H x W and batch, or any multiple of 32), its
  pre-processing (RGB, NCHW, float32 in [0, 1], pad value 114) and whether NMS is inside the graph;
* the inference geometry it was trained for: network pixels per image pixel (``model_scale``), the
  largest training object and the tile overlap that follows from it, the training pixel size;
* the post-processing it is meant to be run with: the confidence tuned on data (``conf``), NMS IoU,
  detections per tile, mask threshold, the label image's ``min_visible``;
* the precision and provenance (weights SHA-256, the asfyolo-rt version that wrote it).

Its JSON form (`ModelInfo.to_json`, schema ``model_info.schema.json`` beside this module) is the
contract of every non-Python runtime: it is written into exported ONNX metadata (key ``model_info``,
which OpenVINO IR inherit), engine sidecars (key ``model_info``) and a bundle's ``model.json``. A reader
refuses an unknown major ``schema_version`` with a clear error instead of guessing; a newer minor
version may add keys, which older readers ignore.

Reading touches only the metadata: no session, no network is built (a checkpoint's header, an ONNX
file's metadata, an IR's rt_info, a sidecar).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from asfyolo_rt.errors import ConfigError

SCHEMA = "asfyolo-rt/model-info"
SCHEMA_VERSION = "1.1"  # 1.1: object_px_p99  # major.minor: readers refuse another major, accept (and ignore keys of) a newer minor
SCHEMA_FILE = Path(__file__).with_name("model_info.schema.json")
META_KEY = "model_info"  # ONNX metadata / IR rt_info / sidecar key holding the JSON

DEFAULT_CONF = 0.25  # confidence of label images when the model records no tuned one (YOLO's default)
DEFAULT_IOU = 0.45
DEFAULT_MAX_DET = 1000  # per tile (native) or per image (fit); DSB2018 images hold up to 382 cells
DEFAULT_MASK_THRESHOLD = 0.5
DEFAULT_MIN_VISIBLE = 0.5
DEFAULT_OVERLAP = 128  # network px, when the model records no largest training object
PAD_VALUE = 114
FORMATS = ("checkpoint", "onnx", "openvino", "tensorrt", "unknown")
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int8-cpu")


def overlap_for(max_object_px: float | None) -> int:
    """The default tile overlap (network px): a multiple of 16 larger than the largest training object."""
    if max_object_px is None:
        return DEFAULT_OVERLAP
    return int(16 * math.ceil((float(max_object_px) + 1) / 16))


@dataclass(frozen=True)
class ModelInfo:
    """What a model needs to be run right (module docstring). Every field has a JSON twin of the same name.

    Example:
        >>> from asfyolo_rt.runtime import read_model_info
        >>> info = read_model_info("dsb2018")
        >>> info.names, info.model_scale, info.tile_overlap, info.default_conf
        ({0: 'cell'}, 1.5, 112, 0.45)
    """

    names: dict[int, str] = field(default_factory=lambda: {0: "cell"})
    format: str = "unknown"  # checkpoint | onnx | openvino | tensorrt
    precision: str = "fp32"
    input_shape: tuple[int, int] | None = None  # static (H, W) of the network input; None: any multiple of 32
    batch: int | None = None  # static batch; None: dynamic
    end2end: bool = False  # NMS inside the graph (export --end2end): rows out, not raw predictions
    e2e_thresholds: dict[str, float] = field(default_factory=dict)  # conf_threshold, iou_threshold, max_det baked in
    # geometry: how the model was trained, hence how images must reach it
    train_scale: str = "fit"  # "native" (windows at model_scale) or "fit" (whole images letterboxed)
    train_img_size: int | None = None
    model_scale: float = 1.0  # network px per image px (native inference)
    max_object_px: float | None = None  # largest training object, network px
    object_px_p99: float | None = None  # 99th percentile of the training objects' longest side, network px
    tile_overlap: int = DEFAULT_OVERLAP  # network px shared by neighbouring tiles (from object_px_p99, else max)
    pixel_size_um: float | None = None  # physical pixel size of the training images, where known
    # post-processing
    conf: float | None = None  # tuned on data (`weights tune-conf`); None: DEFAULT_CONF
    iou: float = DEFAULT_IOU
    max_det: int = DEFAULT_MAX_DET
    mask_threshold: float = DEFAULT_MASK_THRESHOLD
    min_visible: float = DEFAULT_MIN_VISIBLE
    preprocess: dict[str, Any] = field(default_factory=lambda: {
        "order": "RGB", "layout": "NCHW", "dtype": "float32", "range": [0, 1], "pad_value": PAD_VALUE, "stride": 32})
    variant: str | None = None  # n | s | m | l | x
    provenance: dict[str, Any] = field(default_factory=dict)  # file, weights_sha256, asfyolo_rt, notes
    schema_version: str = SCHEMA_VERSION

    # --------------------------------------------------------------------------------------- derived
    @property
    def nc(self) -> int:
        return len(self.names)

    @property
    def default_conf(self) -> float:
        """The label images' confidence threshold when none is given: the tuned one, else 0.25."""
        return float(self.conf) if self.conf is not None else DEFAULT_CONF

    @property
    def overlap_object_px(self) -> float | None:
        """The object size the tile overlap must exceed: the 99th percentile where recorded (larger cells are
        seen again in a tile centred on them, `asfyolo_rt.runtime.stages.rescue_tile`), else the largest."""
        return self.object_px_p99 if self.object_px_p99 is not None else self.max_object_px

    @property
    def static(self) -> bool:
        return self.input_shape is not None

    def geometry(self) -> dict[str, Any]:
        """What decides how images reach this model and which detections become cells: equal for a checkpoint
        and every file exported or built from it (their format, precision, input and provenance differ)."""
        keys = ("names", "train_scale", "train_img_size", "model_scale", "max_object_px", "object_px_p99", "tile_overlap",
                "pixel_size_um", "conf", "iou", "max_det", "mask_threshold", "min_visible")
        return {k: getattr(self, k) for k in keys}

    # ------------------------------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d = {"schema": SCHEMA, **d}
        d["names"] = {str(k): v for k, v in sorted(self.names.items())}
        d["input_shape"] = list(self.input_shape) if self.input_shape else None
        return d

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, doc: Any, source: str = "model info") -> ModelInfo:
        """Validated: a ConfigError naming `source` for another major schema version or a malformed field."""
        if not isinstance(doc, dict):
            raise ConfigError(f"{source}: model info is not a JSON object")
        if doc.get("schema", SCHEMA) != SCHEMA:
            raise ConfigError(f"{source}: schema {doc.get('schema')!r}, expected {SCHEMA!r}")
        version = str(doc.get("schema_version", ""))
        major = version.split(".")[0]
        if major != SCHEMA_VERSION.split(".")[0]:
            raise ConfigError(
                f"{source}: model info schema version {version or '(none)'} is not readable by this asfyolo-rt "
                f"(reads {SCHEMA_VERSION.split('.')[0]}.x)",
                hint="upgrade asfyolo-rt, or re-export the model with this version")
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in doc.items() if k in known}  # a newer minor version's keys are ignored
        try:
            kw["names"] = {int(k): str(v) for k, v in dict(kw.get("names", {"0": "cell"})).items()}
            if kw.get("input_shape") is not None:
                h, w = (int(v) for v in kw["input_shape"])
                kw["input_shape"] = (h, w)
            for k in ("batch", "train_img_size", "max_det", "tile_overlap"):
                if kw.get(k) is not None:
                    kw[k] = int(kw[k])
            for k in ("model_scale", "iou", "mask_threshold", "min_visible"):
                if k in kw:
                    kw[k] = float(kw[k])
            for k in ("max_object_px", "object_px_p99", "pixel_size_um", "conf"):
                if kw.get(k) is not None:
                    kw[k] = float(kw[k])
            kw["end2end"] = bool(kw.get("end2end", False))
            kw["e2e_thresholds"] = {str(k): float(v) for k, v in dict(kw.get("e2e_thresholds") or {}).items()}
            kw["schema_version"] = SCHEMA_VERSION if version == SCHEMA_VERSION else version
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: malformed model info ({exc})") from exc
        info = cls(**kw)
        info.check(source)
        return info

    @classmethod
    def from_json(cls, text: str, source: str = "model info") -> ModelInfo:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: model info is not valid JSON ({exc})") from exc
        return cls.from_dict(doc, source)

    def check(self, source: str = "model info") -> None:
        """ConfigError naming `source` for a value no runtime can use."""
        bad = []
        if self.format not in FORMATS:
            bad.append(f"format {self.format!r}")
        if self.precision not in PRECISIONS:
            bad.append(f"precision {self.precision!r}")
        if self.train_scale not in ("native", "fit"):
            bad.append(f"train_scale {self.train_scale!r}")
        if not (math.isfinite(self.model_scale) and 0.01 <= self.model_scale <= 100):
            bad.append(f"model_scale {self.model_scale}")
        if self.input_shape is not None and any(v < 32 or v % 32 for v in self.input_shape):
            bad.append(f"input_shape {list(self.input_shape)}")
        if self.batch is not None and self.batch < 1:
            bad.append(f"batch {self.batch}")
        if self.conf is not None and not 0.0 <= self.conf < 1.0:
            bad.append(f"conf {self.conf}")
        if not 0.0 < self.iou <= 1.0:
            bad.append(f"iou {self.iou}")
        if self.max_det < 1 or self.tile_overlap < 0:
            bad.append(f"max_det {self.max_det} / tile_overlap {self.tile_overlap}")
        if not 0.0 <= self.min_visible <= 1.0 or not 0.0 < self.mask_threshold < 1.0:
            bad.append(f"min_visible {self.min_visible} / mask_threshold {self.mask_threshold}")
        if not self.names:
            bad.append("no class names")
        if bad:
            raise ConfigError(f"{source}: invalid model info: {', '.join(bad)}")


# ------------------------------------------------------------------------------------------- readers
def read_model_info(source: str | Path) -> ModelInfo:
    """The ModelInfo of a shipped name ('dsb2018', 'bcc'), a checkpoint (.safetensors, official .pt), an ONNX
    file, an OpenVINO IR (.xml), a TensorRT engine (.engine/.plan with its sidecar), a bundle folder (its
    model.json, else its model.onnx) or a ModelInfo .json file. ConfigError/CheckpointError naming the file
    when it is none of these or unreadable.

    Example:
        >>> read_model_info("bcc").train_scale
        'fit'
    """
    from asfyolo_rt.weights_registry import resolve_weights

    path = resolve_weights(str(source), option="model")
    if path.is_dir():
        if (path / "model.json").is_file():
            return _from_json_file(path / "model.json")
        if (path / "model.onnx").is_file():
            return read_model_info(path / "model.onnx")
        raise ConfigError(f"{path} is a folder without model.json or model.onnx",
                          hint="give a bundle written by `asfyolo-rt export`, or a model file")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _from_json_file(path)
    if suffix == ".safetensors":
        from asfyolo_rt.model.weights import read_checkpoint

        cfg = read_checkpoint(path)[1]
        return info_from_config(cfg, source=path, fmt="checkpoint")
    if suffix == ".pt":
        from asfyolo_rt.model.weights import import_official

        cfg = import_official(path)[1]
        return info_from_config(cfg, source=path, fmt="checkpoint")
    if suffix == ".onnx":
        return _from_onnx(path)
    if suffix == ".xml":
        return _from_ir(path)
    if suffix in (".engine", ".plan"):
        return _from_sidecar(path)
    raise ConfigError(f"don't know how to read {path}: expected .safetensors, .pt (official), .onnx, .xml (OpenVINO), "
                      ".engine/.plan (TensorRT), a bundle folder or a model info .json")


def info_from_config(cfg: Any, *, source: str | Path | None = None, fmt: str = "checkpoint", precision: str = "fp32",
                     input_shape: tuple[int, int] | None = None, batch: int | None = None,
                     provenance: dict[str, Any] | None = None) -> ModelInfo:
    """The ModelInfo of a `asfyolo_rt.model.weights.ModelConfig` (a checkpoint, or what an export writes)."""
    from asfyolo_rt import __version__

    prov = {"asfyolo_rt": __version__}
    if source is not None:
        prov["file"] = Path(source).name
    notes = getattr(cfg, "provenance", None) or {}
    if isinstance(notes, dict):
        prov.update({k: v for k, v in notes.items() if isinstance(v, str | int | float | bool)})
    prov.update(provenance or {})
    return ModelInfo(
        names={int(k): str(v) for k, v in cfg.names.items()}, format=fmt, precision=precision,
        input_shape=input_shape, batch=batch, train_scale=cfg.train_scale, train_img_size=cfg.img_size,
        model_scale=float(cfg.model_scale) if cfg.model_scale else 1.0, max_object_px=cfg.max_object_px,
        object_px_p99=cfg.object_px_p99, tile_overlap=overlap_for(
            cfg.object_px_p99 if cfg.object_px_p99 is not None else cfg.max_object_px), pixel_size_um=cfg.pixel_size_um, conf=cfg.predict_conf,
        variant=cfg.variant, provenance=prov)


def _from_json_file(path: Path) -> ModelInfo:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return ModelInfo.from_json(text, str(path))


def _json(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return default


def from_metadata(meta: dict[str, str], *, source: Path, fmt: str, input_shape: tuple[int, int] | None,
                  batch: int | None, end2end: bool) -> ModelInfo:
    """The ModelInfo of exported-model metadata: its `model_info` JSON where present (validated), else the
    older per-key metadata (names, precision, geometry, e2e_*) of files exported before the schema."""
    e2e = {k[4:]: float(v) for k, v in meta.items() if k in ("e2e_conf_threshold", "e2e_iou_threshold",
                                                            "e2e_max_det")}
    precision = meta.get("precision", "fp32")
    precision = precision if precision in PRECISIONS else "fp32"
    if META_KEY in meta:
        info = ModelInfo.from_json(meta[META_KEY], f"{source} ({META_KEY} metadata)")
        # the file is what it is: its real input, format, precision and baked NMS win over what the FP32
        # export wrote (FP16/INT8 conversion and the end-to-end graph rewrite only their own keys)
        return replace(info, format=fmt, input_shape=input_shape, batch=batch, end2end=end2end, precision=precision,
                       e2e_thresholds=e2e if end2end else {}, provenance={**info.provenance, "file": source.name})
    g = _json(meta.get("geometry"), {}) or {}
    size = _json(meta.get("img_size"), None)
    train_size = g.get("train_img_size") or (int(max(size) if isinstance(size, list) else size) if size else None)
    names = {int(k): str(v) for k, v in (_json(meta.get("names"), {"0": "cell"}) or {"0": "cell"}).items()}
    info = ModelInfo(
        names=names, format=fmt, precision=precision,
        input_shape=input_shape, batch=batch, end2end=end2end, e2e_thresholds=e2e,
        train_scale=g.get("train_scale", "fit"), train_img_size=train_size,
        model_scale=float(g.get("model_scale") or 1.0), max_object_px=g.get("max_object_px"),
        object_px_p99=g.get("object_px_p99"), tile_overlap=overlap_for(g.get("object_px_p99") or g.get("max_object_px")), pixel_size_um=g.get("pixel_size_um"),
        conf=g.get("predict_conf"), variant=meta.get("variant"),
        provenance={k: meta[k] for k in ("asfyolo_rt", "weights_sha256", "exporter") if k in meta} | {
            "file": source.name})
    info.check(str(source))
    return info


def _static(dims: list[Any]) -> tuple[tuple[int, int] | None, int | None]:
    """(input_shape, batch) of an NCHW input's dims (ints, or names/None/-1 where dynamic)."""
    def num(v: Any) -> int | None:
        return int(v) if isinstance(v, int) and v > 0 else None

    b = num(dims[0]) if dims else None
    h, w = (num(dims[2]), num(dims[3])) if len(dims) == 4 else (None, None)
    return ((h, w) if h and w else None), b


def _from_onnx(path: Path) -> ModelInfo:
    from asfyolo_rt.errors import CheckpointError
    from asfyolo_rt.infer.onnx_header import ProtoError, read_onnx_header

    try:
        head = read_onnx_header(path)
    except (OSError, ProtoError) as exc:
        raise CheckpointError(f"{path}: not a readable ONNX file ({str(exc).splitlines()[0][:200]})",
                              hint="export one with `asfyolo-rt export`") from exc
    shape, batch = _static(list(head.input_dims))
    e2e = "num_dets" in head.outputs
    return from_metadata(head.metadata, source=path, fmt="onnx", input_shape=shape, batch=batch, end2end=e2e)


def _from_ir(path: Path) -> ModelInfo:
    from asfyolo_rt.infer.openvino import error_line, ir_metadata, read_model

    try:
        model = read_model(path)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{path}: OpenVINO cannot read this IR ({error_line(exc)})") from exc
    ps = model.inputs[0].get_partial_shape()
    dims = [int(d.get_length()) if d.is_static else None for d in ps]
    shape, batch = _static(dims)
    e2e = any("num_dets" in o.get_names() for o in model.outputs)
    return from_metadata(ir_metadata(model), source=path, fmt="openvino", input_shape=shape, batch=batch, end2end=e2e)


def _from_sidecar(path: Path) -> ModelInfo:
    from asfyolo_rt.infer.sidecar import read_sidecar

    sc = read_sidecar(path)
    inp = next(iter(sc.inputs.values()), {}) if sc.inputs else {}
    dims = list(inp.get("shape") or [])
    shape, batch = _static(dims)
    if shape is None and sc.img_size:
        shape = (int(sc.img_size[0]), int(sc.img_size[-1]))
    prov = {"asfyolo_rt": sc.asfyolo_rt, "onnx": sc.onnx, "onnx_sha256": sc.onnx_sha256, "runtime": sc.runtime,
            "runtime_version": sc.tensorrt_version, "file": path.name}
    if sc.model_info:
        info = ModelInfo.from_dict(sc.model_info, f"{path} (sidecar model_info)")
        return replace(info, format="tensorrt", precision=sc.precision, input_shape=shape, batch=batch,
                       end2end=sc.end2end, provenance={**info.provenance, **prov})
    g = sc.geometry or {}
    e2e = {k: float(v) for k, v in (sc.thresholds or {}).items()
           if k in ("conf_threshold", "iou_threshold", "max_det")} if sc.end2end else {}
    info = ModelInfo(
        names={int(k): str(v) for k, v in (sc.names or {"0": "cell"}).items()}, format="tensorrt",
        precision=sc.precision, input_shape=shape, batch=batch, end2end=sc.end2end, e2e_thresholds=e2e,
        train_scale=g.get("train_scale", "fit"),
        train_img_size=g.get("train_img_size") or (max(sc.img_size) if sc.img_size else None),
        model_scale=float(g.get("model_scale") or 1.0), max_object_px=g.get("max_object_px"),
        object_px_p99=g.get("object_px_p99"), tile_overlap=overlap_for(g.get("object_px_p99") or g.get("max_object_px")), pixel_size_um=g.get("pixel_size_um"),
        conf=g.get("predict_conf"), provenance=prov)
    info.check(str(path))
    return info


def write_model_info(path: str | Path, info: ModelInfo) -> Path:
    """Write `info` as JSON (atomically): a bundle's model.json."""
    from asfyolo_rt.atomic import atomic_write_bytes

    atomic_write_bytes(path, (info.to_json(indent=2) + "\n").encode())
    return Path(path)
