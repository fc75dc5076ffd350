"""The ONNX graph of the bioimage.io package: one grey image in, one instance label image out.

Built around an exported model (outputs pred, protos; dynamic H, W) in pure ONNX ops:

1. input `raw` (B, 1, H, W) float32 in [0, 1] (the package's pre-processing scales the image there) is
   repeated into the model's three input channels (the model takes RGB; grey images are replicated, as
   `asfyolo_rt.data.io.to_uint8_rgb` does);
1b. for a model trained at a model scale s != 1 (network px per image px, recorded in the checkpoint),
   resized bilinearly to (ceil(H s / 32) * 32, ceil(W s / 32) * 32), the pixel scale `predict` runs it at
   (it resizes by s and pads tiles to multiples of 32; here the rounding up stretches by < 32 px per side);
2. the end-to-end post-processing of `export.end2end` (score filter, top-k, NMS, masks at prototype
   resolution, instance label map) with `label_map=True`;
3. the (B, Hs/4, Ws/4) label map (Hs, Ws: the network input's size) is brought to (B, 1, H, W) by
   nearest-neighbour resizing (output pixel y, x takes prototype pixel floor(y Hs / 4H), floor(x Ws / 4W);
   at scale 1, floor(y/4), floor(x/4)), cast to int32: output `labels`.

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


def build_label_graph(model: onnx.ModelProto, cfg: End2EndConfig, *, model_scale: float = 1.0) -> onnx.ModelProto:
    """A grey image -> instance labels model around `model` (module docstring); `model_scale`: the
    checkpoint's network px per image px (the input is resized by it before the network)."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or any(d.HasField("dim_value") for d in list(dims)[2:]):
        raise ExportError("the bioimage.io graph needs a model exported with dynamic H and W (--dynamic)")
    if not 0.0 < model_scale <= 8.0:
        raise ExportError(f"model scale {model_scale}: expected a factor in (0, 8]")
    m = build_end2end(model, replace(cfg, label_map=True))
    images = m.graph.input[0].name
    g = GraphBuilder(prefix="/bioimageio")
    rgb = images if model_scale == 1.0 else "/bioimageio/rgb"
    pre = [helper.make_node("Concat", [INPUT, INPUT, INPUT], [rgb], name="/bioimageio/grey_to_rgb", axis=1)]
    if model_scale != 1.0:  # network size per side: ceil(side * s / 32) * 32
        shape = g.one("Shape", [rgb])
        hw = g.one("Cast", [g.one("Slice", [shape, g.i64([2]), g.i64([4])])], to=TensorProto.FLOAT)
        scaled = g.one("Div", [g.one("Mul", [hw, g.const([model_scale])]), g.const([32.0])])
        net_hw = g.one("Mul", [g.one("Cast", [g.one("Ceil", [scaled])], to=TensorProto.INT64), g.i64([32])])
        sizes = g.one("Concat", [g.one("Slice", [shape, g.i64([0]), g.i64([2])]), net_hw], axis=0)
        pre += g.nodes
        g.nodes = []
        pre.append(helper.make_node("Resize", [rgb, "", "", sizes], [images], name="/bioimageio/model_scale",
                                    mode="linear", coordinate_transformation_mode="half_pixel"))
    lm = g.one("Unsqueeze", [g.one("Cast", ["label_map"], to=TensorProto.FLOAT), g.i64([1])])  # (B, 1, Hp, Wp)
    up = g.one("Resize", [lm, "", "", g.one("Shape", [INPUT])], mode="nearest",
               coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    g.nodes.append(helper.make_node("Cast", [up], [OUTPUT], name="/bioimageio/output/labels", to=TensorProto.INT32))
    nodes = [*pre, *m.graph.node, *g.nodes]
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
