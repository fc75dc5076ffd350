"""The TensorRT-plugin flavour of end-to-end mask assembly: one quickly-deployable-plugin (QDP) node.

ONNX mapping (TENSORRT.md §3): op_type = the plugin name `mask_assembly`, domain and string attribute
`plugin_namespace` = `asfyolo_rt` (TensorRT < 10.10 reads only the attribute, later ones also the domain),
integer attribute `aot = 1` selects the ahead-of-time implementation (the engine then runs without Python,
in trtexec or C++). The other attributes are the `register` function's non-tensor arguments (names must
match `asfyolo_rt.export.engine.plugin`): `mask_threshold` (float; used at build time only, to pick the PTX
compiled with that threshold baked in as a constexpr: AOT kernels take integer scalars only and plugin
attributes are not serialized into AOT engines) and `nm` (int).

Inputs: protos (B, nm, Hp, Wp) float32/float16; coeffs (B, D, nm) float32; boxes (B, D, 4) float32 xyxy in
network pixels; num_dets (B,) int32. Output: masks (B, D, Hp, Wp) uint8, the same values as the pure-ONNX
subgraph of `export.end2end` (rows >= num_dets are zero).

Such a graph cannot run in ONNX Runtime (no kernel for asfyolo_rt::mask_assembly) and must not be given to a
quantizer: quantize first, then append post-processing (ModelOpt would switch calibration to the TensorRT EP
and need the plugin library).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asfyolo_rt.export.graph_builder import GraphBuilder

PLUGIN_NAMESPACE = "asfyolo_rt"
PLUGIN_NAME = "mask_assembly"
PLUGIN_ID = f"{PLUGIN_NAMESPACE}::{PLUGIN_NAME}"


def plugin_mask_node(
    g: GraphBuilder, protos: str, coeffs: str, boxes: str, num_dets: str, mask_threshold: float, nm: int = 32
) -> str:
    """Append the plugin node; returns the name of its (B, D, Hp, Wp) uint8 output."""
    return g.one(
        PLUGIN_NAME,
        [protos, coeffs, boxes, num_dets],
        base="mask_assembly_plugin",
        domain=PLUGIN_NAMESPACE,
        plugin_namespace=PLUGIN_NAMESPACE,
        aot=1,
        mask_threshold=float(mask_threshold),
        nm=int(nm),
    )
