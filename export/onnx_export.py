"""FP32 ONNX export of an ASF-YOLO model: fused, simplified, checked, one file, with metadata.

Graph contract (what `asfyolo_rt.infer.backends.OrtBackend` and the engine builder expect):
- one input `images`: (B, 3, H, W) float32 in [0, 1], RGB, letterboxed (H, W multiples of 32);
- outputs `pred`: (B, N, 5 + nc + 32) float32 (cx, cy, w, h in network pixels, objectness and class
  probabilities, raw mask coefficients) and `protos`: (B, 32, H/4, W/4) float32;
- custom metadata (strings): names (JSON {"0": "cell"}), nc, precision, img_size (JSON [H, W]),
  stride (JSON), anchors (JSON, pixels), nm, dynamic_batch, dynamic_size, exporter, asfyolo_rt.

Export path: Conv+BN fused on a copy of the model, then the default (dynamo) exporter of torch at
opset >= 18 with `external_data=False`; if it fails, the legacy TorchScript exporter (recorded in the
artifact). Node names are rewritten to module paths ("/backbone/stem/conv/Conv", "/head/Sigmoid_3") so
include/exclude lists in quantization reports are readable; the exporter's bulky per-node debug
metadata (stack traces) is dropped. Then onnxsim, `onnx.checker` (full check), metadata, atomic write.

TOOLCHAIN.md: the dynamo exporter can bake shapes silently; `asfyolo_rt.export.compare` checks ONNX
Runtime against PyTorch at sizes different from the traced one.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch

from asfyolo_rt.atomic import file_sha256  # noqa: F401  (re-exported)
from asfyolo_rt.errors import CheckpointError, ConfigError, ExportError
from asfyolo_rt.model.weights import ModelConfig, atomic_write_bytes

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

INPUT_NAME = "images"
OUTPUT_NAMES = ("pred", "protos")
DEFAULT_OPSET = 18  # dynamo exporter minimum; TensorRT >= 8.6 parses it
MAX_SIDE = 4096  # upper bound of a dynamic H or W (pixels); the engine profile narrows it


@dataclass(frozen=True)
class OnnxArtifact:
    """An ONNX file written by this package and what it contains."""

    path: Path
    sha256: str
    precision: str  # "fp32", "fp16", "int8" (TensorRT Q/DQ), "int8-cpu" (ONNX Runtime U8S8), "end2end-..."
    input_shape: tuple[int | str, ...]  # (B, 3, H, W); strings for dynamic axes
    opset: int
    exporter: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["input_shape"] = list(self.input_shape)
        return d


def as_hw(img_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """An int or (H, W) -> (H, W), both positive multiples of 32 (else ConfigError)."""
    hw = (int(img_size), int(img_size)) if isinstance(img_size, int) else (int(img_size[0]), int(img_size[1]))
    if any(s <= 0 or s % 32 for s in hw):
        raise ConfigError(
            f"image size {hw} is not a pair of positive multiples of 32",
            hint="ASF-YOLO downsamples by 32: use e.g. --img-size 320 or 640",
        )
    return hw


def load_weights(path: str | Path) -> tuple[torch.nn.Module, ModelConfig]:
    """Our `.safetensors` checkpoint or an official ASF-YOLO `.pt` -> (model in eval mode, config)."""
    from asfyolo_rt.model.weights import import_official, load_checkpoint

    p = Path(path)
    if p.suffix.lower() == ".safetensors":
        return load_checkpoint(p)
    if p.suffix.lower() == ".pt":
        return import_official(p)
    raise CheckpointError(
        f"--weights {p}: unknown checkpoint type {p.suffix!r}",
        hint="expected an asfyolo-rt .safetensors checkpoint or an official ASF-YOLO .pt",
    )


def model_metadata(
    config: ModelConfig,
    *,
    precision: str,
    img_size: tuple[int, int],
    dynamic_batch: bool,
    dynamic_size: bool,
    exporter: str,
    stride: list[float] | None = None,
) -> dict[str, str]:
    """The custom metadata written into every exported ONNX file (all values are strings)."""
    from asfyolo_rt import __version__
    from asfyolo_rt.runtime.info import META_KEY, info_from_config

    info = info_from_config(config, precision=precision, fmt="onnx",
                            input_shape=None if dynamic_size else (int(img_size[0]), int(img_size[1])))
    return {
        # the versioned contract every runtime reads (asfyolo_rt.runtime.info; C runtime, sidecars, bundles)
        META_KEY: info.to_json(),
        "names": json.dumps({str(k): v for k, v in sorted(config.names.items())}),
        "nc": str(config.nc),
        "nm": "32",
        "precision": precision,
        "img_size": json.dumps(list(img_size)),
        "stride": json.dumps(stride or [8, 16, 32]),
        "anchors": json.dumps([list(a) for a in config.anchors]),
        "variant": config.variant,
        "dynamic_batch": str(dynamic_batch).lower(),
        "dynamic_size": str(dynamic_size).lower(),
        "exporter": exporter,
        "preprocess": json.dumps(
            {"letterbox": "asfyolo_rt.data.letterbox.preprocess", "color": 114, "range": [0, 1], "order": "RGB",
             "layout": "NCHW"}
        ),
        "asfyolo_rt": __version__,
        # how the model was trained, for tiled inference (older readers; asfyolo_rt.runtime.info reads model_info first)
        "geometry": json.dumps({"train_scale": config.train_scale, "model_scale": config.model_scale,
                                "max_object_px": config.max_object_px, "object_px_p99": config.object_px_p99,
                                "pixel_size_um": config.pixel_size_um,
                                "train_img_size": config.img_size, "predict_conf": config.predict_conf}),
    }


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace (or add) custom metadata entries in place."""
    keep = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in metadata.items():
        model.metadata_props.add(key=k, value=v)


def get_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _scope_name(node: onnx.NodeProto) -> str | None:
    """Module path of a dynamo-exported node from its name_scopes metadata ('backbone.stem.conv')."""
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [s for s in json.loads(p.value.replace("'", '"')) if s]
            except json.JSONDecodeError:
                return None
            # the last entry is the aten op (e.g. 'conv2d'); the one before is the module path
            scope = scopes[-2] if len(scopes) >= 2 else ""
            return "" if scope.startswith("_") else scope  # exporter-internal scopes -> the root
    return None


def rename_nodes(model: onnx.ModelProto) -> None:
    """Give dynamo-exported nodes module-path names ("/neck/c3_p4/cv1/conv/Conv"), drop debug metadata.

    Nodes without scope metadata keep their names. Names stay unique (suffix _1, _2, ...).
    """
    used: dict[str, int] = {}
    taken = {n.name for n in model.graph.node if _scope_name(n) is None}
    for node in model.graph.node:
        scope = _scope_name(node)
        if scope is not None:
            base = "/" + "/".join(scope.split(".")) + "/" + node.op_type if scope else "/" + node.op_type
            base = base.replace("//", "/")
            k = used.get(base, 0)
            name = base if k == 0 else f"{base}_{k}"
            while name in taken:
                k += 1
                name = f"{base}_{k}"
            used[base] = k + 1
            taken.add(name)
            node.name = name
        del node.metadata_props[:]
    for fn in model.functions:
        for node in fn.node:
            del node.metadata_props[:]


def _export_dynamo(
    model: torch.nn.Module, dummy: torch.Tensor, opset: int, dynamic_batch: bool, dynamic_size: bool
) -> onnx.ModelProto:
    dynamic_shapes = None
    if dynamic_batch or dynamic_size:
        axes: dict[int, Any] = {}
        if dynamic_batch:
            axes[0] = torch.export.Dim("batch", min=1, max=256)
        if dynamic_size:
            axes[2] = 32 * torch.export.Dim("h", min=1, max=MAX_SIDE // 32)
            axes[3] = 32 * torch.export.Dim("w", min=1, max=MAX_SIDE // 32)
        dynamic_shapes = {"x": axes}
    with tempfile.TemporaryDirectory(prefix="asfyolo-export-") as tmp:
        out = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            (dummy,),
            str(out),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamo=True,
            external_data=False,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
        return onnx.load(str(out))


def _export_legacy(
    model: torch.nn.Module, dummy: torch.Tensor, opset: int, dynamic_batch: bool, dynamic_size: bool
) -> onnx.ModelProto:
    axes: dict[str, dict[int, str]] = {INPUT_NAME: {}, "pred": {}, "protos": {}}
    if dynamic_batch:
        for spec in axes.values():
            spec[0] = "batch"
    if dynamic_size:
        axes[INPUT_NAME].update({2: "height", 3: "width"})
        axes["pred"][1] = "anchors"
        axes["protos"].update({2: "proto_height", 3: "proto_width"})
    buf = io.BytesIO()
    torch.onnx.export(
        model,
        (dummy,),
        buf,
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        opset_version=opset,
        dynamo=False,
        dynamic_axes={k: v for k, v in axes.items() if v} or None,
        do_constant_folding=True,
    )
    return onnx.load_from_string(buf.getvalue())


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxsim with its own output check switched off (we compare against PyTorch afterwards)."""
    try:
        import onnxsim
    except ImportError as exc:  # a dependency of the project; only a broken install gets here
        raise ExportError("onnxsim is not installed", hint="pip install onnxsim") from exc
    try:
        simplified, ok = onnxsim.simplify(model, check_n=0)
    except Exception as exc:
        raise ExportError(f"onnxsim failed on the exported graph: {exc}",
                          hint="re-run with simplify=False to keep the unsimplified graph") from exc
    if not ok:
        raise ExportError("onnxsim could not validate the simplified model")
    return simplified


def _interrupted(exc: BaseException) -> bool:
    """True when `exc` or anything in its cause/context chain is a KeyboardInterrupt."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def check_model(model: onnx.ModelProto, what: str) -> None:
    """onnx.checker (full check, with shape inference) with an ExportError naming `what`."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ExportError(f"{what} does not pass onnx.checker: {exc}") from exc


def save_model(model: onnx.ModelProto, path: Path) -> None:
    """Serialize as one file (no external data; models here are far below 2 GB), atomically."""
    data = model.SerializeToString()
    atomic_write_bytes(path, data)
    publish(path)


def publish(path: Path) -> None:
    """Kept for callers: files written by atomic_write_bytes already have the usual permissions."""
    del path
def input_shape_of(model: onnx.ModelProto) -> tuple[int | str, ...]:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    config: ModelConfig,
    *,
    img_size: int | tuple[int, int] = 640,
    batch: int = 1,
    dynamic_batch: bool = False,
    dynamic_size: bool = False,
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
    do_simplify: bool = True,
    extra_metadata: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> OnnxArtifact:
    """Export `model` (an ASFYOLO) to a single FP32 ONNX file at `path`.

    img_size: traced (H, W) (an int for a square), multiples of 32; batch: traced batch size.
    dynamic_batch / dynamic_size: make the batch axis / the H and W axes symbolic (H, W then accept any
    multiple of 32 up to MAX_SIDE). exporter: "auto" (dynamo, legacy on failure), "dynamo" or "legacy".
    extra_metadata: more custom metadata (the bundle records the source checkpoint's `weights_sha256`);
    FP16, INT8 and end-to-end models derived from the file carry it on.
    The caller's model is not modified (a fused copy is exported).
    """
    if opset < 18:
        raise ConfigError(f"opset {opset} is below 18, the minimum of the default (dynamo) exporter")
    if exporter not in ("auto", "dynamo", "legacy"):
        raise ConfigError(f"exporter={exporter!r}; expected auto, dynamo or legacy")
    if batch < 1:
        raise ConfigError(f"batch={batch}; expected >= 1")
    hw = as_hw(img_size)
    path = Path(path)
    steps = 4
    if progress:
        progress(0, steps)
    m = copy.deepcopy(model).float().cpu().eval()
    if hasattr(m, "fuse"):
        m.fuse()
    if hasattr(m, "set_kernel_impl"):
        m.set_kernel_impl("torch")
    dummy = torch.rand(batch, 3, *hw, generator=torch.Generator().manual_seed(0))
    notes: list[str] = []
    used = exporter
    proto: onnx.ModelProto | None = None
    with torch.no_grad(), contextlib.redirect_stdout(sys.stderr):  # exporters print progress to stdout
        if exporter in ("auto", "dynamo"):
            try:
                proto = _export_dynamo(m, dummy, opset, dynamic_batch, dynamic_size)
                used = "dynamo"
            except Exception as exc:
                if _interrupted(exc):  # the exporter wraps what it caught: a Ctrl-C must stop, not fall back
                    raise KeyboardInterrupt from exc
                if exporter == "dynamo":
                    raise ExportError(f"the dynamo ONNX exporter failed: {exc}",
                                      hint="try exporter='legacy'") from exc
                log.warning("dynamo exporter failed (%s); falling back to the legacy exporter", exc)
                notes.append(f"dynamo exporter failed ({type(exc).__name__}: {str(exc)[:200]}); legacy exporter used")
        if proto is None:
            try:
                proto = _export_legacy(m, dummy, opset, dynamic_batch, dynamic_size)
                used = "legacy"
            except Exception as exc:
                raise ExportError(f"the legacy ONNX exporter failed: {exc}") from exc
    if progress:
        progress(1, steps)
    rename_nodes(proto)
    if do_simplify:
        proto = simplify(proto)
    if progress:
        progress(2, steps)
    stride = [float(s) for s in getattr(model, "stride", torch.tensor([8.0, 16.0, 32.0])).tolist()]
    meta = model_metadata(config, precision="fp32", img_size=hw, dynamic_batch=dynamic_batch,
                          dynamic_size=dynamic_size, exporter=used, stride=stride)
    meta.update(extra_metadata or {})
    set_metadata(proto, meta)
    proto.producer_name = "asfyolo-rt"
    check_model(proto, f"the exported model {path.name}")
    outputs = [o.name for o in proto.graph.output]
    if [i.name for i in proto.graph.input] != [INPUT_NAME] or outputs != list(OUTPUT_NAMES):
        raise ExportError(f"exported graph has inputs {[i.name for i in proto.graph.input]} and outputs "
                          f"{outputs}; expected ['{INPUT_NAME}'] and {list(OUTPUT_NAMES)}")
    if progress:
        progress(3, steps)
    save_model(proto, path)
    if progress:
        progress(4, steps)
    opset_used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    return OnnxArtifact(
        path=path, sha256=file_sha256(path), precision="fp32", input_shape=input_shape_of(proto),
        opset=int(opset_used), exporter=used, metadata=meta, notes=notes,
    )
