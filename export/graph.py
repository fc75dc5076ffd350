"""Queries on exported ASF-YOLO ONNX graphs: the head decode, the prototype branch, blocks, value ranges.

These find the numerically sensitive parts structurally (from the graph outputs backwards), so they
work on dynamo and legacy exports, simplified or not, and after node renaming:

- head decode: every node between the three head prediction convolutions and the `pred` output
  (sigmoids, grid/anchor arithmetic, reshapes, the final concat);
- prototype output: the last convolution of the prototype branch and its activation, up to `protos`;
- blocks: the model's top-level sub-modules (backbone.stage2, neck.c3_p4, ssff, cpam, head.proto, ...)
  read from node names of the form "/backbone/stage2/m/0/cv1/conv/Conv".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import onnx

from asfyolo_rt.errors import ExportError

_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """tensor name -> the node that writes it."""
    return {o: n for n in model.graph.node for o in n.output if o}


def consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """tensor name -> the nodes that read it."""
    out: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            if i:
                out[i].append(n)
    return out


def _walk_back_to_convs(model: onnx.ModelProto, output: str) -> tuple[list[onnx.NodeProto], list[onnx.NodeProto]]:
    """Nodes reached walking back from `output` without crossing a Conv; and the Convs at the border."""
    if output not in {o.name for o in model.graph.output}:
        raise ExportError(f"graph has no output named {output!r} (outputs: {[o.name for o in model.graph.output]})")
    prod = producers(model)
    seen: set[str] = set()
    inner: list[onnx.NodeProto] = []
    border: list[onnx.NodeProto] = []
    stack = [output]
    while stack:
        t = stack.pop()
        node = prod.get(t)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in ("Conv", "ConvTranspose"):
            border.append(node)
            continue
        inner.append(node)
        stack.extend(i for i in node.input if i)
    return inner, border


def head_decode_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes after the head prediction convs up to `pred` (sigmoids, box arithmetic, concat)."""
    inner, _ = _walk_back_to_convs(model, "pred")
    return sorted(n.name for n in inner)


def head_conv_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the head prediction convolutions (one per level) feeding the decode."""
    _, border = _walk_back_to_convs(model, "pred")
    return sorted(n.name for n in border)


def proto_output_nodes(model: onnx.ModelProto) -> list[str]:
    """The last convolution of the prototype branch and the nodes after it up to `protos`."""
    inner, border = _walk_back_to_convs(model, "protos")
    return sorted([n.name for n in inner] + [n.name for n in border])


def block_of(node_name: str) -> str:
    """'/backbone/stage2/m/0/cv1/conv/Conv' -> 'backbone.stage2'; '/cpam/Mul' -> 'cpam'; other -> ''."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2:
        return ""
    if parts[0] in ("backbone", "neck", "head") and len(parts) >= 3:
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def blocks(model: onnx.ModelProto, op_types: Iterable[str] | None = None) -> dict[str, list[str]]:
    """block -> node names in it (only nodes of `op_types` when given), in graph order."""
    wanted = set(op_types) if op_types is not None else None
    out: dict[str, list[str]] = defaultdict(list)
    for n in model.graph.node:
        b = block_of(n.name)
        if b and (wanted is None or n.op_type in wanted):
            out[b].append(n.name)
    return dict(out)


def float_tensor_names(model: onnx.ModelProto) -> list[str]:
    """Names of float (fp32/fp16/bf16) node outputs, using shape inference for their types."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in
             list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)}
    return [o for n in model.graph.node for o in n.output if o and types.get(o) in _FLOAT_TYPES]


def tensor_abs_max(model: onnx.ModelProto, batches: Iterable[np.ndarray]) -> dict[str, float]:
    """max |value| of every float node output over the given input batches (ONNX Runtime, CPU).

    batches: arrays (B, 3, H, W) float32 for the single graph input. Returns {tensor: max |x|}.
    """
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    names = float_tensor_names(m)
    existing = {o.name for o in m.graph.output}
    for t in names:
        if t not in existing:
            m.graph.output.add(name=t)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    inp = sess.get_inputs()[0].name
    fixed_batch = sess.get_inputs()[0].shape[0]
    result: dict[str, float] = {}
    for batch in batches:
        step = fixed_batch if isinstance(fixed_batch, int) and fixed_batch > 0 else len(batch)
        for start in range(0, len(batch) - step + 1, step):
            x = np.ascontiguousarray(batch[start : start + step], dtype=np.float32)
            for name, v in zip(out_names, sess.run(None, {inp: x})):
                if np.issubdtype(np.asarray(v).dtype, np.floating) and np.size(v):
                    result[name] = max(result.get(name, 0.0), float(np.abs(v).max()))
    return result


def remove_unused_initializers(model: onnx.ModelProto) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
