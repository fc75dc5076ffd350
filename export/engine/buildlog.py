"""What TensorRT built: the parsed network's I/O and convolutions, and per-layer precision of the engine.

Without a GPU the engine cannot be deserialized (so neither its I/O nor the engine inspector can be read):
everything here comes from the parsed `INetworkDefinition` and from the builder's log.

- `CapturingLogger` (`capture_logger(api)`) collects the builder's messages. With
  `ProfilingVerbosity.DETAILED`, TensorRT-RTX logs one VERBOSE message "Layers:" listing every kernel of
  the engine, one per line: `Name: ..., LayerType: correlation, Inputs: [ { Name: ..., Datatype: Int8, ... } ],
  ..., Metadata: [ONNX Layer: /backbone/stem/conv/Conv][ONNX Layer: ...]` (`parse_log_layers`). Standard
  TensorRT on the device gives the same information through the engine inspector's JSON
  (`parse_inspector_json`).
- `network_info(network)`: inputs/outputs (name, dtype, shape; -1 = dynamic), the names of the network's
  convolution layers (= the ONNX Conv node names) and of those whose input comes from a DequantizeLinear.
- `precision_summary(layers, info)`: every ONNX Conv is mapped to the kernel that computes it (through the
  `ONNX Layer` metadata) and counted by the datatype that kernel reads: {"Int8": 66, "Half": 6, "Float": 0}.
  The kernel of a Conv is the first kernel naming it whose type is a convolution kind (correlation,
  runtime_fusion, *Convolution); kernels that only cast or quantize around it are skipped. A Conv fused
  into a generated kernel (`kgen`) that reads Int8 counts as Int8.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tensorrt as trt

    from asfyolo_rt.infer.trt_api import TensorRTApi

log = logging.getLogger(__name__)

_CONV_KINDS = ("conv", "correlation", "fusion")  # kernel types that compute convolutions (lower-case match)
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")
_DTYPE = re.compile(r"Datatype: (\w+)")
_DTYPE_WORDS = (  # (substring of a format/datatype description, normalized name); first match wins
    ("int8", "Int8"), ("fp8", "FP8"), ("bf16", "BFloat16"), ("bfloat16", "BFloat16"), ("fp16", "Half"),
    ("half", "Half"), ("fp32", "Float"), ("float", "Float"), ("int32", "Int32"), ("int64", "Int64"),
    ("bool", "Bool"), ("uint8", "UInt8"), ("int4", "Int4"), ("fp4", "FP4"),
)


def normalize_dtype(text: str) -> str:
    """'Half' / 'FP16' / 'Channel major FP16 format' -> 'Half'; unknown descriptions are returned as is."""
    low = text.lower()
    if low.startswith("uint8"):
        return "UInt8"
    for word, name in _DTYPE_WORDS:
        if word in low:
            return name
    return text


@dataclass
class LayerInfo:
    """One engine kernel: its name, type, input/output datatypes and the ONNX nodes it computes."""

    name: str
    type: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    onnx: list[str] = field(default_factory=list)


@dataclass
class BuildLog:
    """Messages of one build, by severity (0 internal error ... 4 verbose); verbose ones are kept only if useful."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    layer_messages: list[str] = field(default_factory=list)
    scale_conversions: int = 0  # "Converting conv activation scales to fp32" (one per Int8 convolution)

    def add(self, severity: int, msg: str) -> None:
        if severity <= 1:
            self.errors.append(msg)
        elif severity == 2:
            self.warnings.append(msg)
        if msg.startswith("Layers:"):
            self.layer_messages.append(msg)
        elif "Converting conv activation scales" in msg:
            self.scale_conversions += 1
        if severity <= 2:
            log.debug("TensorRT: %s", msg)


_LOGGERS: dict[int, Any] = {}  # one capturing logger per TensorRT module (see capture_logger)


def capture_logger(api: TensorRTApi) -> tuple[trt.ILogger, BuildLog]:
    """A logger of `api`'s flavour recording into a fresh BuildLog (VERBOSE included, for the layer list).

    TensorRT keeps using the first logger registered while any builder created with it is alive ("the
    current new logger is ignored"), so each module gets one logger object, pointed at the new record.
    """
    base = api.module.ILogger
    record = BuildLog()
    logger = _LOGGERS.get(id(api.module))
    if logger is None:
        class _Capturing(base):  # type: ignore[misc, valid-type]  # a class of the runtime-selected module
            def __init__(self) -> None:
                base.__init__(self)
                self.record = BuildLog()

            def log(self, severity: Any, msg: str) -> None:
                self.record.add(int(severity), str(msg))

        logger = _LOGGERS[id(api.module)] = _Capturing()
    logger.record = record
    return logger, record


def parse_log_layers(message: str) -> list[LayerInfo]:
    """Kernels of the 'Layers:' message that DETAILED profiling verbosity logs (TensorRT-RTX format)."""
    layers = []
    for line in message.splitlines():
        if not line.startswith("Name: "):
            continue
        name = line[6:].split(",", 1)[0]
        kind = re.search(r"LayerType: ([^,]+)", line)
        ins = re.search(r"Inputs: \[(.*?)\], (?:Constants|Outputs): ", line)
        outs = re.search(r"Outputs: \[(.*?)\], (?:TacticName|StreamId|Metadata)", line)
        layers.append(LayerInfo(
            name=name, type=kind.group(1).strip() if kind else "",
            inputs=[normalize_dtype(d) for d in _DTYPE.findall(ins.group(1))] if ins else [],
            outputs=[normalize_dtype(d) for d in _DTYPE.findall(outs.group(1))] if outs else [],
            onnx=_ONNX_LAYER.findall(line),
        ))
    return layers


def parse_inspector_json(text: str) -> list[LayerInfo]:
    """Kernels of `IEngineInspector.get_engine_information(LayerInformationFormat.JSON)` (standard TensorRT)."""
    doc = json.loads(text)
    layers = []
    for entry in doc.get("Layers", []) if isinstance(doc, dict) else []:
        if not isinstance(entry, dict):  # LAYER_NAMES_ONLY verbosity lists bare names
            continue

        def dtypes(key: str, e: dict[str, Any] = entry) -> list[str]:
            return [normalize_dtype(str(t.get("Format/Datatype", t.get("Datatype", "")))) for t in e.get(key, [])
                    if isinstance(t, dict)]

        layers.append(LayerInfo(name=str(entry.get("Name", "")), type=str(entry.get("LayerType", "")),
                                inputs=dtypes("Inputs"), outputs=dtypes("Outputs"),
                                onnx=_ONNX_LAYER.findall(str(entry.get("Metadata", "")))))
    return layers


@dataclass
class NetworkInfo:
    inputs: dict[str, dict[str, Any]]  # name -> {"index": 0, "dtype": "float", "shape": [1, 3, 160, 160]}
    outputs: dict[str, dict[str, Any]]
    convolutions: list[str]  # convolution layer names (the ONNX Conv node names)
    quantized_convolutions: list[str]  # ... whose input 0 is produced by a dequantize layer
    layers: int


def _tensor_entry(tensor: trt.ITensor, index: int) -> dict[str, Any]:
    """{"index": position among the network's inputs (or outputs), "dtype": "float", "shape": [1, 3, 640, 640]}."""
    return {"index": index, "dtype": str(tensor.dtype).split(".")[-1].lower(), "shape": [int(d) for d in tensor.shape]}


def network_info(api: TensorRTApi, network: trt.INetworkDefinition) -> NetworkInfo:
    """I/O and convolutions of a parsed network (no GPU needed)."""
    kinds = api.module.LayerType
    conv_kinds = {getattr(kinds, k) for k in ("CONVOLUTION", "DECONVOLUTION") if hasattr(kinds, k)}
    dq_kind = getattr(kinds, "DEQUANTIZE", None)
    producer: dict[str, Any] = {}
    convs: list[tuple[str, str]] = []  # (layer name, name of its input 0)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            producer[layer.get_output(j).name] = layer.type
        if layer.type in conv_kinds and layer.num_inputs:
            first = layer.get_input(0)
            convs.append((layer.name, first.name if first is not None else ""))
    return NetworkInfo(
        inputs={network.get_input(i).name: _tensor_entry(network.get_input(i), i) for i in range(network.num_inputs)},
        outputs={network.get_output(i).name: _tensor_entry(network.get_output(i), i)
                 for i in range(network.num_outputs)},
        convolutions=[c for c, _ in convs],
        quantized_convolutions=[c for c, src in convs if dq_kind is not None and producer.get(src) == dq_kind],
        layers=network.num_layers,
    )


def conv_precision(kernels: list[LayerInfo]) -> str | None:
    """Datatype of the kernel that computes one ONNX Conv, from the kernels that name it (module docstring)."""
    if not kernels:
        return None
    primary = [k for k in kernels if any(s in k.type.lower() for s in _CONV_KINDS)]
    if primary:
        return primary[0].inputs[0] if primary[0].inputs else None
    if any(k.inputs and k.inputs[0] == "Int8" for k in kernels):
        return "Int8"
    return kernels[0].inputs[0] if kernels[0].inputs else None


def precision_summary(layers: list[LayerInfo], info: NetworkInfo, source: str,
                      scale_conversions: int | None = None) -> dict[str, Any]:
    """Per-layer precision summary for the sidecar (module docstring); {} when no layer list was available."""
    if not layers:
        return {}
    by_onnx: dict[str, list[LayerInfo]] = {}
    for layer in layers:
        for node in layer.onnx:
            by_onnx.setdefault(node, []).append(layer)
    convs: Counter[str] = Counter({"Int8": 0, "Half": 0, "Float": 0})
    per_conv: dict[str, str] = {}
    unmatched = []
    for name in info.convolutions:
        dt = conv_precision(by_onnx.get(name, []))
        if dt is None:
            unmatched.append(name)
            continue
        convs[dt] += 1
        per_conv[name] = dt
    quantized_not_int8 = [c for c in info.quantized_convolutions if per_conv.get(c) != "Int8"]
    summary: dict[str, Any] = {
        "source": source,
        "kernels": len(layers),
        "kernel_input_dtypes": dict(sorted(Counter(k.inputs[0] for k in layers if k.inputs).items())),
        "convolutions": dict(convs),
        "onnx_convolutions": len(info.convolutions),
        "quantized_convolutions": len(info.quantized_convolutions),
        "quantized_not_int8": quantized_not_int8,
        "unmatched_convolutions": unmatched,
        "per_convolution": per_conv,
    }
    if scale_conversions is not None:
        summary["int8_scale_conversions_logged"] = scale_conversions
    return summary
