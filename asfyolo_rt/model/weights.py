"""Checkpoints: our safetensors format, and the importer for official ASF-YOLO / YOLOv5-seg `.pt` files.

Our format is one `.safetensors` file: the model's state dict plus, in the header metadata under
the key "asfyolo_rt", a JSON `ModelConfig` (variant, nc, class names, anchors in pixels, image
size, provenance). Loading never executes code. Writes are atomic (temporary file + rename).

Official checkpoints are pickles of whole modules (`models.yolo.SegmentationModel` ...). They are
read with a restricted unpickler that never imports the pickled classes: every global except the
tensor-rebuild functions becomes an inert stub that records its pickled state, from which the
layer-indexed state dict (`model.0.conv.weight` ... `model.26.proto.cv3.bn.num_batches_tracked`)
is collected and mapped onto our module names (`official_key_map`).

Official checkpoints are zip archives (torch.save): their entries' sizes and compression ratios are
checked from the zip's central directory before anything is decompressed (`asfyolo_rt.archive`, which
states the limits), so a decompression bomb is refused in bounded memory.
"""

from __future__ import annotations

import json
import pickle
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from asfyolo_rt.archive import check_zip_sizes
from asfyolo_rt.atomic import atomic_write_bytes
from asfyolo_rt.errors import CheckpointError
from asfyolo_rt.model.asfyolo import ASFYOLO, build_model
from asfyolo_rt.model.head import DEFAULT_ANCHORS

FORMAT = "asfyolo-rt/1"
_META_KEY = "asfyolo_rt"


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model and use it as trained."""

    variant: str = "l"
    nc: int = 1
    names: dict[int, str] = field(default_factory=lambda: {0: "cell"})
    anchors: tuple[tuple[float, ...], ...] = DEFAULT_ANCHORS  # pixels, per level (w0, h0, w1, h1, w2, h2)
    img_size: int = 640
    # how the model was trained: "fit" (whole images letterboxed to img_size) or "native" (img_size windows
    # at model_scale network pixels per image pixel); model_scale None = unknown (fit on mixed image sizes)
    train_scale: str = "fit"
    model_scale: float | None = None
    pixel_size_um: float | None = None  # physical pixel size of the training images, where known
    max_object_px: float | None = None  # largest training object (network px)
    # 99th percentile of the training objects' longest side (network px): the default tile overlap when
    # recorded (cells larger than the overlap are seen again in a tile centred on them), else max_object_px
    object_px_p99: float | None = None
    # node-name regexes the TensorRT-flavour INT8 (model.int8.onnx) keeps unquantized for these weights, found
    # by `export --int8-sensitivity` and recorded with `weights pack --int8-exclude`; export applies them
    int8_exclude: tuple[str, ...] = ()
    # the confidence threshold of predict's label images that maximised instance F1 on data (`weights
    # tune-conf`): predict's, napari's and the DSB score's default; None = YOLO's generic 0.25
    predict_conf: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        d["format"] = FORMAT
        d["names"] = {str(k): v for k, v in self.names.items()}
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: Path) -> ModelConfig:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{source}: the checkpoint's config metadata is not valid JSON ({exc})") from exc
        if d.pop("format", None) != FORMAT:
            raise CheckpointError(f"{source}: not an {FORMAT} checkpoint (format field missing or different)")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise CheckpointError(f"{source}: unknown config keys {sorted(unknown)} (written by a newer asfyolo-rt?)")
        d["names"] = {int(k): v for k, v in d.get("names", {}).items()}
        d["anchors"] = tuple(tuple(float(v) for v in row) for row in d.get("anchors", DEFAULT_ANCHORS))
        d["int8_exclude"] = tuple(str(v) for v in d.get("int8_exclude", ()))
        return cls(**d)


def config_of(model: ASFYOLO, **kwargs: Any) -> ModelConfig:
    """A ModelConfig describing `model` (anchors read from the model), with extra fields from kwargs."""
    anchors = tuple(tuple(round(float(v), 4) for v in row.flatten()) for row in model.head.anchors_px())
    return ModelConfig(variant=model.variant, nc=model.nc, anchors=anchors, **kwargs)


def save_checkpoint(model: ASFYOLO, path: str | Path, config: ModelConfig, *, half: bool = False) -> Path:
    """Save weights + config as one safetensors file, atomically. `half` stores float tensors as FP16."""
    from safetensors.torch import save

    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if half and v.is_floating_point():
            v = v.half()
        state[k] = v.contiguous()
    path = Path(path)
    atomic_write_bytes(path, save(state, metadata={_META_KEY: config.to_json()}))
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """State dict and config of one of our checkpoints (no code is executed)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist",
                              hint="give an existing .safetensors file, or a shipped name (dsb2018, bcc)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: not a readable safetensors checkpoint ({exc})",
            hint="official ASF-YOLO .pt files are imported with `asfyolo-rt weights import`",
        ) from exc
    if _META_KEY not in meta:
        raise CheckpointError(f"{path}: safetensors file without asfyolo-rt config metadata")
    check_finite(state, path)
    return state, ModelConfig.from_json(meta[_META_KEY], path)


def check_finite(state: dict[str, torch.Tensor], source: str | Path) -> None:
    """CheckpointError naming the file and the first tensor when any floating tensor holds NaN or Infinity."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        v = state[bad[0]]
        n = int((~torch.isfinite(v)).sum())
        more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
        raise CheckpointError(f"{source}: tensor {bad[0]!r} has {n} of {v.numel()} values NaN or infinite{more}",
                              hint="the training run diverged or the file is damaged; use an earlier checkpoint")


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load `state` strictly, with an error listing missing/unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        def head(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {head(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {head(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {head(mismatched)}")
        raise CheckpointError(f"{source}: does not fit the model; " + "; ".join(parts),
                              hint="check --model (size) and --nc against the checkpoint")
    ref = next(iter(own.values()))
    model.load_state_dict({k: v.to(dtype=own[k].dtype, device=ref.device) for k, v in state.items()}, strict=True)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[ASFYOLO, ModelConfig]:
    """Rebuild the model from one of our checkpoints; returned in eval mode, float32."""
    state, cfg = read_checkpoint(path)
    model = _build(path, cfg.variant, cfg.nc, cfg.anchors)
    load_state(model, state, path)
    return model.to(device).eval(), cfg


def _build(path: str | Path, variant: str, nc: int, anchors: tuple[tuple[float, ...], ...] | None = None) -> ASFYOLO:
    """build_model, with errors from the checkpoint's recorded config (unknown size, bad nc) naming the file."""
    from asfyolo_rt.errors import AsfYoloError

    try:
        return build_model(variant, nc, anchors)
    except (AsfYoloError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: its recorded config does not describe a model ({exc})",
                              hint="the file was written by another tool or edited; re-create it") from exc


# --------------------------------------------------------------------------- official checkpoints

# upstream layer index -> our module path (ASF-YOLO.md §2.2); 12, 16, 19, 22 have no parameters.
OFFICIAL_LAYERS: dict[int, str] = {
    0: "backbone.stem", 1: "backbone.down1", 2: "backbone.stage1", 3: "backbone.down2", 4: "backbone.stage2",
    5: "backbone.down3", 6: "backbone.stage3", 7: "backbone.down4", 8: "backbone.stage4", 9: "backbone.sppf",
    10: "neck.lateral_p5", 11: "neck.tfe1_large", 13: "neck.c3_p4", 14: "neck.lateral_p4", 15: "neck.tfe2_large",
    17: "neck.c3_p3", 18: "neck.down_p3", 20: "neck.c3_out_p4", 21: "neck.down_p4", 23: "neck.c3_out_p5",
    24: "ssff", 25: "cpam", 26: "head",
}
# renames inside CPAM (upstream attention_model = channel_att + local_att)
_CPAM_RENAMES = {
    "channel_att.conv.": "eca.",
    "local_att.conv_1x1.": "reduce.",
    "local_att.bn.": "reduce_bn.",
    "local_att.F_h.": "proj_h.",
    "local_att.F_w.": "proj_w.",
}


def official_key_map(key: str) -> str:
    """'model.25.local_att.conv_1x1.weight' -> 'cpam.reduce.weight'. Raises KeyError for unknown keys."""
    parts = key.split(".", 2)
    if len(parts) < 3 or parts[0] != "model" or not parts[1].isdigit() or int(parts[1]) not in OFFICIAL_LAYERS:
        raise KeyError(key)
    idx, rest = int(parts[1]), parts[2]
    if idx == 25:
        for old, new in _CPAM_RENAMES.items():
            if rest.startswith(old):
                rest = new + rest[len(old):]
                break
        else:
            raise KeyError(key)
    return f"{OFFICIAL_LAYERS[idx]}.{rest}"


def official_key_unmap(ours: str) -> str:
    """Inverse of `official_key_map` (used to write official-layout test fixtures)."""
    for idx, prefix in OFFICIAL_LAYERS.items():
        if ours.startswith(prefix + "."):
            rest = ours[len(prefix) + 1:]
            if idx == 25:
                for old, new in _CPAM_RENAMES.items():
                    if rest.startswith(new):
                        rest = old + rest[len(new):]
                        break
            return f"model.{idx}.{rest}"
    raise KeyError(ours)


class _Stub:
    """Inert stand-in for any pickled global: records constructor args and pickled state."""

    _qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args

    def __setstate__(self, state: Any) -> None:
        self._state = state

    def __call__(self, *args: Any, **kwargs: Any) -> _Stub:  # a stubbed function used in a REDUCE
        return _Stub(*args)


_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("collections", "OrderedDict"),
    ("torch", "Size"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("__builtin__", "set"),  # protocol-2 pickles name builtins this way
    ("__builtin__", "frozenset"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and name.endswith("Storage"):
            return super().find_class(module, name)
        if module == "torch" and name in ("float32", "float16", "bfloat16", "float64", "int64", "uint8", "bool"):
            return getattr(torch, name)
        return type(name, (_Stub,), {"_qualname": f"{module}.{name}"})


class _RestrictedPickleModule:
    """The `pickle_module` handed to torch.load: only the Unpickler differs."""

    Unpickler = _RestrictedUnpickler
    __name__ = "asfyolo_rt_restricted_pickle"

    @staticmethod
    def load(f: Any, **kw: Any) -> Any:
        return _RestrictedUnpickler(f, **kw).load()


def _module_state(stub: Any) -> dict[str, Any]:
    state = getattr(stub, "_state", None)
    if not isinstance(state, dict):
        raise CheckpointError(f"a pickled module ({getattr(stub, '_qualname', type(stub).__name__)}) has no "
                              "recognisable state")
    return state


def _collect_state_dict(stub: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    state = _module_state(stub)
    out: dict[str, torch.Tensor] = {}
    for name, p in (state.get("_parameters") or {}).items():
        if p is not None:
            out[prefix + name] = p.detach() if isinstance(p, torch.Tensor) else p
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for name, b in (state.get("_buffers") or {}).items():
        if b is not None and name not in non_persistent:
            out[prefix + name] = b
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(_collect_state_dict(child, f"{prefix}{name}."))
    return out


def read_official(path: str | Path, *, max_unzipped_bytes: int | None = None
                  ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Layer-indexed state dict and attributes (nc, names, stride) of an official `.pt` checkpoint.

    Every failure is a CheckpointError naming the file, including pathological pickles (modules nested
    thousands deep: RecursionError) and zip bombs (`asfyolo_rt.archive.check_zip_sizes`, before any decompression;
    `max_unzipped_bytes` raises its limits for a genuine file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"official checkpoint {path} does not exist")
    hint = "only official ASF-YOLO / YOLOv5-seg training checkpoints (best.pt, last.pt) can be imported"
    check_zip_sizes(path, max_unzipped_bytes)
    try:
        ckpt = torch.load(path, map_location="cpu", pickle_module=_RestrictedPickleModule, weights_only=False)
        return _official_contents(path, ckpt)
    except CheckpointError as exc:
        msg = str(exc)
        raise CheckpointError(msg if msg.startswith(str(path)) else f"{path}: {msg}", hint=exc.hint or hint) from exc
    except RecursionError as exc:
        raise CheckpointError(f"{path}: its pickled modules are nested too deeply to be a model checkpoint",
                              hint=hint) from exc
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint ({type(exc).__name__}: {text})",
                              hint=hint) from exc


def _official_contents(path: Path, ckpt: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    root = ckpt
    if isinstance(ckpt, dict):
        root = ckpt.get("ema") or ckpt.get("model")
        if root is None:
            raise CheckpointError(f"{path}: no 'model' or 'ema' entry (keys: {sorted(ckpt)[:10]})")
    if not isinstance(root, _Stub):
        raise CheckpointError(f"{path}: the 'model' entry is not a pickled module")
    state = _collect_state_dict(root)
    attrs = _module_state(root)
    seq = (attrs.get("_modules") or {}).get("model")
    head_attrs: dict[str, Any] = {}
    if seq is not None:
        layers = _module_state(seq).get("_modules") or {}
        if layers:
            head_attrs = _module_state(list(layers.values())[-1])
    names = attrs.get("names")
    meta = {
        "nc": head_attrs.get("nc"),
        "names": names if isinstance(names, (dict, list)) else None,
        "class": type(root)._qualname,
        "stride": attrs.get("stride"),
    }
    return state, meta


def import_official(path: str | Path, variant: str = "l", *, max_unzipped_bytes: int | None = None
                    ) -> tuple[ASFYOLO, ModelConfig]:
    """Build our model from an official ASF-YOLO checkpoint (layers 0-26 of asf-yolo.yaml).

    Raises CheckpointError listing missing/unexpected keys when the file is not an ASF-YOLO
    checkpoint of this size (e.g. stock YOLOv5l-seg, whose layer 24 is the head); zip limits: read_official.
    """
    state, meta = read_official(path, max_unzipped_bytes=max_unzipped_bytes)
    mapped: dict[str, torch.Tensor] = {}
    unknown = []
    for k, v in state.items():
        try:
            mapped[official_key_map(k)] = v.float() if v.is_floating_point() else v
        except KeyError:
            unknown.append(k)
    if unknown:
        raise CheckpointError(
            f"{path}: {len(unknown)} keys do not belong to an ASF-YOLO model: {', '.join(unknown[:8])}",
            hint="only asf-yolo.yaml checkpoints (layers 0-26, Segment head at 26) can be imported",
        )
    anchors_grid = mapped.get("head.anchors")
    nc = meta["nc"]
    if nc is None and "head.m.0.weight" in mapped:
        nc = mapped["head.m.0.weight"].shape[0] // 3 - 5 - 32
    if nc is None:
        raise CheckpointError(f"{path}: cannot determine the number of classes")
    model = _build(path, variant, int(nc))
    load_state(model, mapped, path)
    names = meta["names"]
    if isinstance(names, list):
        names = dict(enumerate(names))
    if anchors_grid is None:
        raise CheckpointError(f"{path}: no anchors buffer in the Segment head")
    cfg = config_of(
        model,
        names={int(k): str(v) for k, v in (names or {i: f"class{i}" for i in range(int(nc))}).items()},
        provenance={"source": "official", "file": str(path), "class": meta["class"]},
    )
    return model.eval(), cfg


def state_dict_to_official(model: ASFYOLO) -> OrderedDict[str, torch.Tensor]:
    """Our state dict under official layer-indexed names (for interoperability tests and exports)."""
    return OrderedDict((official_key_unmap(k), v) for k, v in model.state_dict().items())
