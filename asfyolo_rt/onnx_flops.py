"""GFLOPs of an exported ONNX graph, counted from the graph itself (what `bench` divides by time).

2 x multiply-accumulates of every Conv/ConvTranspose (output elements x input channels per group x kernel
area, + 1 per output element for a bias) and MatMul/Gemm (2 x M x N x K per batch). Shapes come from ONNX
shape inference on the static input (a dynamic input is fixed to `input_shape` first). Weights reached
through DequantizeLinear (INT8 Q/DQ files) are followed to their initializer, so a quantized file counts the
same operations as its FP32 source. Element-wise work (activations, adds, the head decode) is not counted:
it is memory-bound and small next to the convolutions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

from asfyolo_rt.errors import ConfigError


@dataclass(frozen=True)
class GraphFlops:
    conv_gflops: float
    matmul_gflops: float

    @property
    def gflops(self) -> float:
        return self.conv_gflops + self.matmul_gflops


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    out = {}
    vis = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
    for v in vis:
        dims = v.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            out[v.name] = [int(d.dim_value) for d in dims]
    for init in model.graph.initializer:
        out[init.name] = list(init.dims)
    return out


def onnx_gflops(path: str | Path, input_shape: tuple[int, int] | None = None, batch: int = 1) -> GraphFlops:
    """GFLOPs per image of the ONNX file at `path` (input (batch, 3, H, W); module docstring)."""
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise ConfigError(f"cannot read {path} as ONNX: {exc}") from None
    inp = model.graph.input[0].type.tensor_type.shape.dim
    if input_shape is not None or not all(d.HasField("dim_value") for d in inp):
        if input_shape is None:
            raise ConfigError(f"{path} has a dynamic input; give input_shape=(H, W)")
        for d, v in zip(inp, (batch, 3, *input_shape)):
            d.ClearField("dim_param")
            d.dim_value = v
    model = shape_inference.infer_shapes(model, data_prop=True)
    shapes = _shapes(model)
    dq = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    n_batch = shapes.get(model.graph.input[0].name, [batch])[0] or 1
    conv = mm = 0
    for n in model.graph.node:
        if n.op_type in ("Conv", "ConvTranspose") and n.output[0] in shapes:
            w = shapes.get(dq.get(n.input[1], n.input[1]))
            if w is None:
                continue
            out_elems = int(np.prod(shapes[n.output[0]]))
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            per_out = w[1] * int(np.prod(w[2:])) if n.op_type == "Conv" else w[0] // group * int(np.prod(w[2:]))
            conv += 2 * out_elems * per_out + (out_elems if len(n.input) > 2 and n.input[2] else 0)
        elif n.op_type in ("MatMul", "Gemm") and n.output[0] in shapes:
            a = shapes.get(dq.get(n.input[0], n.input[0]))
            if a is None:
                continue
            k = a[-1] if not (n.op_type == "Gemm" and any(x.name == "transA" and x.i for x in n.attribute)) else a[-2]
            mm += 2 * int(np.prod(shapes[n.output[0]])) * k
    return GraphFlops(conv / 1e9 / n_batch, mm / 1e9 / n_batch)
