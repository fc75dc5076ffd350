"""The ONNX graph of the bioimage.io package: one grey image in, one instance label image out.

Built around an exported model (outputs pred, protos; dynamic H, W) in pure ONNX ops:

1. input `raw` (B, 1, H, W) float32 in [0, 1] (the package's pre-processing scales the image there) is
   repeated into the model's three input channels (the model takes RGB; grey images are replicated, as
   `asfyolo_rt.data.io.to_uint8_rgb` does);
2. the end-to-end post-processing of `export.end2end` (score filter, top-k, NMS, masks at prototype
   resolution, instance label map) with `label_map=True`;
3. the (B, H/4, W/4) label map is brought to (B, 1, H, W) by nearest-neighbour upsampling (output pixel
   y, x takes prototype pixel floor(y/4), floor(x/4)), cast to int32: output `labels`.

The label map is the prototype-resolution one (1/4 of the input per side, as the paper's validation
masks); `asfyolo-rt predict` assembles full-resolution masks and also drops mostly covered duplicates
(`--min-visible`), so its label images have finer edges than this graph's.
"""

from __future__ import annotations

from dataclasses import replace

import onnx
from asfyolo_rt.export.end2end import End2EndConfig, GraphBuilder, build_end2end
from onnx import TensorProto, helper

from asfyolo_rt.errors import ExportError

INPUT = "raw"
OUTPUT = "labels"


def build_label_graph(model: onnx.ModelProto, cfg: End2EndConfig) -> onnx.ModelProto:
    """A grey image -> instance labels model around `model` (module docstring)."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or any(d.HasField("dim_value") for d in list(dims)[2:]):
        raise ExportError("the bioimage.io graph needs a model exported with dynamic H and W (--dynamic)")
    m = build_end2end(model, replace(cfg, label_map=True))
    images = m.graph.input[0].name
    g = GraphBuilder(prefix="/bioimageio")
    pre = helper.make_node("Concat", [INPUT, INPUT, INPUT], [images], name="/bioimageio/grey_to_rgb", axis=1)
    lm = g.one("Unsqueeze", [g.one("Cast", ["label_map"], to=TensorProto.FLOAT), g.i64([1])])  # (B, 1, Hp, Wp)
    up = g.one("Resize", [lm, "", "", g.one("Shape", [INPUT])], mode="nearest",
               coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    g.nodes.append(helper.make_node("Cast", [up], [OUTPUT], name="/bioimageio/output/labels", to=TensorProto.INT32))
    nodes = [pre, *m.graph.node, *g.nodes]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    m.graph.initializer.extend(g.inits)
    batch: int | str = dims[0].dim_value if dims[0].HasField("dim_value") else (dims[0].dim_param or "batch")
    del m.graph.input[:]
    m.graph.input.append(helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [batch, 1, "height", "width"]))
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.INT32, [batch, 1, "height", "width"]))
    try:
        onnx.checker.check_model(m, full_check=True)
    except Exception as exc:
        raise ExportError(f"the bioimage.io label graph fails onnx.checker: {exc}") from exc
    return m
