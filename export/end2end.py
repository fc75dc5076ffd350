"""End-to-end ONNX: the model plus score filter, top-k, NMS, coefficient gather and mask assembly.

Appended to any of our exported models (FP32, FP16, INT8: quantize before appending, plugin nodes
last), working on its `pred` (B, N, 5 + nc + 32) and `protos` (B, 32, Hp, Wp) outputs:

1. confidence = objectness x class probability of the best class; class = its index (ArgMax);
2. top-k of the confidence per image (k = min(topk, N); TensorRT's TopK takes K <= 3840: the old default
   5000 is clamped to 3840 with a warning, an explicit larger value is an error);
3. NMS on xyxy boxes shifted by class x 7680 px (class-aware, as `non_max_suppression`; `agnostic=True`
   drops the shift), score threshold `conf_threshold` (strictly greater), IoU threshold (suppression when
   strictly greater), at most `max_det` boxes per image, by one of
   - `nms="onnx"`: ONNX NonMaxSuppression (standard TensorRT maps it to INMSLayer, TensorRT >= 8.6);
   - `nms="cluster"`: Cluster-NMS made of basic ops (MatMul, comparisons) for TensorRT-RTX, which has no
     NonMaxSuppression runner (see `_cluster_nms` for the iteration count);
4. the selected detections are put into fixed-size outputs (padding is zeros);
5. mask assembly at prototype resolution, exactly the validation masks of
   `asfyolo_rt.infer.masks.process_masks_proto`: sigmoid(coeffs @ protos) > mask_threshold, cropped to
   box / 4 (pixel c kept if x1 <= c < x2); either pure ONNX ops (MatMul, Sigmoid, comparisons) or one
   TensorRT quickly-deployable-plugin node (`export.end2end_masks`);
6. optionally the instance label map: each proto pixel holds 1 + the index of the highest-scoring
   detection whose mask covers it, 0 for background.

No uint8 intermediate tensor (TensorRT rejects them): `masks` is cast to uint8 as the graph output itself.

Outputs (fixed size): num_dets (B,) int32; boxes (B, max_det, 4) float32 xyxy in network pixels;
scores (B, max_det) float32; classes (B, max_det) int32; masks (B, max_det, Hp, Wp) uint8 in {0, 1};
[label_map (B, Hp, Wp) int32]; then coeffs (B, max_det, nm) float32, the raw mask coefficients of the same
rows, and protos (B, nm, Hp, Wp) float32, the model's prototypes: with these two a host assembles the masks
at full image resolution and stitches tiles exactly as for the plain model (`asfyolo_rt.infer.end2end.
OrtEnd2EndBackend`, `predict --model model.end2end.onnx`). Equivalent Python: `non_max_suppression(pred, conf_threshold=...,
iou_threshold=..., max_det=..., max_nms=topk)` then `process_masks_proto` per image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from asfyolo_rt.export.graph_builder import GraphBuilder
from asfyolo_rt.export.onnx_export import (
    OnnxArtifact,
    file_sha256,
    get_metadata,
    input_shape_of,
    save_model,
    set_metadata,
)
from onnx import TensorProto, helper

from asfyolo_rt.errors import ConfigError, ExportError

log = logging.getLogger(__name__)

MAX_WH = 7680.0  # class offset of class-aware NMS (asfyolo_rt.infer.nms.MAX_WH)
TRT_NMS_LIMIT = 5000  # INMSLayer considers at most this many boxes per image
TRT_TOPK_LIMIT = 3840  # TensorRT's (and TensorRT-RTX's) TopK: "K exceeds the maximum value allowed (3840)"
LEGACY_DEFAULT_TOPK = 5000  # the earlier default (`--topk` 5000): clamped to TRT_TOPK_LIMIT with a warning
IOU_EPS = 1e-7  # = asfyolo_rt.boxes.IOU_EPS (added to unions)
# Cluster-NMS iterations unrolled into the graph; odd, so that an unconverged result can only miss boxes
# greedy NMS keeps, never keep one it removes. Measured need (at most 19) and reasoning: `_cluster_nms`.
CLUSTER_NMS_ITERATIONS = 25
E2E_OUTPUTS = ("num_dets", "boxes", "scores", "classes", "masks")  # then [label_map], coeffs, protos
E2E_RAW_OUTPUTS = ("coeffs", "protos")  # what a host needs to assemble full-resolution masks and stitch tiles


@dataclass(frozen=True)
class End2EndConfig:
    conf_threshold: float = 0.25
    iou_threshold: float = 0.6
    max_det: int = 300
    topk: int = TRT_TOPK_LIMIT
    mask_threshold: float = 0.5
    agnostic: bool = False
    label_map: bool = False
    masks: str = "onnx"  # "onnx" (pure ONNX ops) or "plugin" (TensorRT AOT plugin node)
    nms: str = "onnx"  # "onnx" (NonMaxSuppression: standard TensorRT) or "cluster" (basic ops: TensorRT-RTX)
    nms_iterations: int = CLUSTER_NMS_ITERATIONS  # unrolled Cluster-NMS iterations (nms="cluster")

    def __post_init__(self) -> None:
        if not 0.0 <= self.conf_threshold < 1.0:
            raise ConfigError(f"conf_threshold={self.conf_threshold}; expected [0, 1)")
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ConfigError(f"iou_threshold={self.iou_threshold}; expected [0, 1]")
        if self.topk == LEGACY_DEFAULT_TOPK:
            log.warning("end-to-end top-k %d clamped to %d, the largest K TensorRT's TopK takes",
                        self.topk, TRT_TOPK_LIMIT)
            object.__setattr__(self, "topk", TRT_TOPK_LIMIT)
        if not 1 <= self.topk <= TRT_TOPK_LIMIT:
            raise ConfigError(f"topk={self.topk}; TensorRT's TopK takes K in 1..{TRT_TOPK_LIMIT}",
                              hint=f"pass --topk {TRT_TOPK_LIMIT} or less")
        if not 1 <= self.max_det <= self.topk:
            raise ConfigError(f"max_det={self.max_det}; expected 1..topk ({self.topk})")
        if not 0.0 < self.mask_threshold < 1.0:
            raise ConfigError(f"mask_threshold={self.mask_threshold}; expected (0, 1)")
        if self.masks not in ("onnx", "plugin"):
            raise ConfigError(f"masks={self.masks!r}; expected 'onnx' or 'plugin'")
        if self.nms not in ("onnx", "cluster"):
            raise ConfigError(f"nms={self.nms!r}; expected 'onnx' (NonMaxSuppression) or 'cluster' (Cluster-NMS)")
        if self.nms_iterations < 1:
            raise ConfigError(f"nms_iterations={self.nms_iterations}; expected >= 1")


def _detections(g: GraphBuilder, pred: str, images: str, nc: int, nm: int, cfg: End2EndConfig) -> dict[str, str]:
    """Score filter, top-k, NMS, fixed (B, max_det, F) rows. Returns named tensors."""
    xywh = g.slice_last(pred, 0, 4)
    obj = g.slice_last(pred, 4, 5)
    cls_p = g.slice_last(pred, 5, 5 + nc)
    coeffs = g.slice_last(pred, 5 + nc, 5 + nc + nm)
    conf_all = g.one("Mul", [cls_p, obj])
    conf = g.one("ReduceMax", [conf_all, g.i64([2])], keepdims=0)  # (B, N)
    cls_id = g.one("ArgMax", [conf_all], axis=2, keepdims=0)  # (B, N) int64, first max
    xy, wh = g.slice_last(xywh, 0, 2), g.slice_last(xywh, 2, 4)
    half = g.one("Div", [wh, g.const(2.0)])
    boxes = g.one("Concat", [g.one("Sub", [xy, half]), g.one("Add", [xy, half])], axis=2)  # (B, N, 4) xyxy
    n_anchor = g.one("Slice", [g.one("Shape", [conf]), g.i64([1]), g.i64([2])])
    k = g.one("Min", [n_anchor, g.i64([cfg.topk])])
    top_v, top_i = g.op("TopK", [conf, k], n_out=2, axis=1, largest=1, sorted=1)  # (B, K)
    feat = g.one("Concat", [boxes, g.one("Unsqueeze", [conf, g.i64([2])]),
                            g.one("Unsqueeze", [g.one("Cast", [cls_id], to=TensorProto.FLOAT), g.i64([2])]),
                            coeffs], axis=2)  # (B, N, 6 + nm): x1 y1 x2 y2 score class coeffs...
    width = 6 + nm
    idx = g.one("Unsqueeze", [top_i, g.i64([2])])
    idx = g.one("Expand", [idx, g.one("Concat", [g.one("Shape", [top_i]), g.i64([width])], axis=0)])
    feat_k = g.one("GatherElements", [feat, idx], axis=1)  # (B, K, F)
    boxes_k = g.slice_last(feat_k, 0, 4)
    if not cfg.agnostic:
        offset = g.one("Mul", [g.slice_last(feat_k, 5, 6), g.const(MAX_WH)])
        boxes_k = g.one("Add", [boxes_k, offset])
    batch = g.one("Slice", [g.one("Shape", [images]), g.i64([0]), g.i64([1])])
    if cfg.nms == "cluster":
        dets, num = _cluster_nms(g, feat_k, boxes_k, top_v, k, batch, width, cfg)
    else:
        dets, num = _onnx_nms(g, feat_k, boxes_k, top_v, batch, width, cfg)
    return {
        "num_dets": num,
        "boxes": g.slice_last(dets, 0, 4),
        "scores": g.one("Squeeze", [g.slice_last(dets, 4, 5), g.i64([2])]),
        "classes": g.one("Cast", [g.one("Squeeze", [g.slice_last(dets, 5, 6), g.i64([2])])], to=TensorProto.INT32),
        "coeffs": g.slice_last(dets, 6, width),
    }


def _onnx_nms(g: GraphBuilder, feat_k: str, boxes_k: str, top_v: str, batch: str, width: int,
              cfg: End2EndConfig) -> tuple[str, str]:
    """ONNX NonMaxSuppression, selected rows scattered into (B, max_det, F); returns (dets, num_dets int32)."""
    scores_k = g.one("Unsqueeze", [top_v, g.i64([1])])  # (B, 1, K)
    selected = g.one("NonMaxSuppression", [boxes_k, scores_k, g.i64([cfg.max_det]),
                                           g.const([cfg.iou_threshold]), g.const([cfg.conf_threshold])],
                     center_point_box=0)  # (S, 3) int64 [batch, class, box]
    b_idx = g.one("Gather", [selected, g.i64(0)], axis=1)  # (S,)
    k_idx = g.one("Gather", [selected, g.i64(2)], axis=1)
    bk = g.one("Concat", [g.one("Unsqueeze", [b_idx, g.i64([1])]), g.one("Unsqueeze", [k_idx, g.i64([1])])], axis=1)
    rows = g.one("GatherND", [feat_k, bk])  # (S, F)
    # position of each selected row within its image: earlier rows of the same image (CumSum, exclusive)
    ar_b = g.one("Range", [g.i64(0), g.one("Squeeze", [batch, g.i64([0])]), g.i64(1)])  # (B,)
    onehot = g.one("Cast", [g.one("Equal", [g.one("Unsqueeze", [b_idx, g.i64([1])]),
                                            g.one("Unsqueeze", [ar_b, g.i64([0])])])], to=TensorProto.INT64)  # (S, B)
    before = g.one("CumSum", [onehot, g.i64(0)], exclusive=1)
    pos = g.one("ReduceSum", [g.one("Mul", [before, onehot]), g.i64([1])], keepdims=0)  # (S,)
    counts = g.one("ReduceSum", [onehot, g.i64([0])], keepdims=0)  # (B,)
    where = g.one("Concat", [g.one("Unsqueeze", [b_idx, g.i64([1])]), g.one("Unsqueeze", [pos, g.i64([1])])], axis=1)
    shape = g.one("Concat", [batch, g.i64([cfg.max_det]), g.i64([width])], axis=0)
    zeros = g.one("ConstantOfShape", [shape], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]))
    dets = g.one("ScatterND", [zeros, where, rows])  # (B, max_det, F)
    return dets, g.one("Cast", [counts], to=TensorProto.INT32)


def _cluster_nms(g: GraphBuilder, feat_k: str, boxes_k: str, top_v: str, k: str, batch: str, width: int,
                 cfg: End2EndConfig) -> tuple[str, str]:
    """Greedy NMS as Cluster-NMS iterations on the K x K IoU matrix, from basic ops (TensorRT-RTX).

    Candidates are sorted by score (TopK). With S[i, j] = 1 if i < j and IoU(i, j) > iou_threshold, greedy
    NMS keeps j iff no kept i suppresses it: keep = F(keep), F(x)_j = [sum_i x_i S[i, j] == 0]. The greedy
    result is the unique fixed point of F (keep_j only depends on earlier entries). Cluster-NMS (Zheng et
    al., "Enhancing Geometric Factors in Model Learning and Inference for Object Detection and Instance
    Segmentation", 2021) iterates x_{t+1} = F(x_t) from x_0 = all kept; one iteration is one
    (B, 1, K) x (B, K, K) MatMul of 0/1 values (exact in float32: counts <= 3840 < 2^24) and a comparison.

    Convergence: entry j is final once every candidate overlapping it from above is final, so T iterations
    are exact whenever no chain of "flips" is longer than T; F is antitone, so odd iterates are subsets of
    the greedy result growing towards it and even iterates supersets shrinking towards it (x_1 is Fast-NMS).
    With `nms_iterations` odd, an unconverged result only misses boxes greedy would keep (each one
    suppressed by a duplicate that greedy itself removes); it never keeps a duplicate.

    Iteration count (CLUSTER_NMS_ITERATIONS = 25), measured with the shipped models on their val images at
    the most demanding settings, conf 0.001 and K = 3840 (up to 3840 candidates per image): first exact odd
    iterate at most 13 (DSB2018, 320 px, 134 images) and 19 (BCC, 512 px, 32 images, IoU 0.6); 15 iterations
    missed 6 of 32134 boxes there, 21 were exact everywhere. At the default conf 0.25, 5 sufficed. 25 leaves
    a margin of 6 over the worst case seen; the cost is 25 GEMVs of K x K, small next to the model. A chain
    of more than 25 candidates each overlapping the next (constructed in tests/export/test_export_end2end.py)
    needs more: pass a larger `nms_iterations`.
    """
    valid = g.one("Greater", [top_v, g.const(cfg.conf_threshold)])  # (B, K) sorted: a prefix is valid
    x1, y1, x2, y2 = (g.slice_last(boxes_k, i, i + 1) for i in range(4))  # (B, K, 1)

    def t(v: str) -> str:
        return g.one("Transpose", [v], perm=[0, 2, 1])  # (B, 1, K)

    iw = g.one("Relu", [g.one("Sub", [g.one("Min", [x2, t(x2)]), g.one("Max", [x1, t(x1)])])])  # (B, K, K)
    ih = g.one("Relu", [g.one("Sub", [g.one("Min", [y2, t(y2)]), g.one("Max", [y1, t(y1)])])])
    inter = g.one("Mul", [iw, ih])
    area = g.one("Mul", [g.one("Sub", [x2, x1]), g.one("Sub", [y2, y1])])  # (B, K, 1)
    union = g.one("Add", [g.one("Sub", [g.one("Add", [area, t(area)]), inter]), g.const(IOU_EPS)])
    over = g.one("Greater", [g.one("Div", [inter, union]), g.const(cfg.iou_threshold)])  # (B, K, K)
    r = g.one("Range", [g.i64(0), g.one("Squeeze", [k, g.i64([0])]), g.i64(1)])  # (K,)
    upper = g.one("Less", [g.one("Unsqueeze", [r, g.i64([1])]), g.one("Unsqueeze", [r, g.i64([0])])])  # i < j
    sup = g.one("Cast", [g.one("And", [over, upper])], to=TensorProto.FLOAT)  # (B, K, K) S[i, j]
    keep = g.one("Cast", [g.one("Unsqueeze", [valid, g.i64([1])])], to=TensorProto.FLOAT)  # (B, 1, K) x_0
    for _ in range(cfg.nms_iterations):
        hits = g.one("MatMul", [keep, sup])  # (B, 1, K): kept candidates suppressing each one
        keep = g.one("Cast", [g.one("Less", [hits, g.const(0.5)])], to=TensorProto.FLOAT)
    kept = g.one("And", [g.one("Squeeze", [g.one("Cast", [keep], to=TensorProto.BOOL), g.i64([1])]), valid])
    # the first max_det kept candidates in score order: TopK of kept * (K - index), > 0 for kept ones
    rank = g.one("Sub", [g.one("Cast", [k], to=TensorProto.FLOAT), g.one("Cast", [r], to=TensorProto.FLOAT)])
    key = g.one("Mul", [g.one("Cast", [kept], to=TensorProto.FLOAT), rank])  # (B, K)
    d = g.one("Min", [k, g.i64([cfg.max_det])])
    sel_v, sel_i = g.op("TopK", [key, d], n_out=2, axis=1, largest=1, sorted=1)  # (B, D')
    real = g.one("Unsqueeze", [g.one("Cast", [g.one("Greater", [sel_v, g.const(0.0)])], to=TensorProto.FLOAT),
                               g.i64([2])])  # (B, D', 1)
    idx = g.one("Expand", [g.one("Unsqueeze", [sel_i, g.i64([2])]),
                           g.one("Concat", [g.one("Shape", [sel_i]), g.i64([width])], axis=0)])
    rows = g.one("Mul", [g.one("GatherElements", [feat_k, idx], axis=1), real])  # (B, D', F), zero padding
    zeros = g.one("ConstantOfShape", [g.one("Concat", [batch, g.i64([cfg.max_det]), g.i64([width])], axis=0)],
                  value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]))
    dets = g.one("Slice", [g.one("Concat", [rows, zeros], axis=1), g.i64([0]), g.i64([cfg.max_det]), g.i64([1])])
    num = g.one("ReduceSum", [g.one("Squeeze", [real, g.i64([2])]), g.i64([1])], keepdims=0)  # (B,)
    return dets, g.one("Cast", [num], to=TensorProto.INT32)


def _masks_onnx(g: GraphBuilder, protos: str, images: str, coeffs: str, boxes: str, nm: int,
                threshold: float) -> str:
    """(B, D, Hp, Wp) bool masks at prototype resolution from pure ONNX ops (cast to uint8 as the output)."""
    flat = g.one("Reshape", [protos, g.i64([0, nm, -1])])  # (B, nm, Hp*Wp)
    prob = g.one("Sigmoid", [g.one("MatMul", [coeffs, flat])])  # (B, D, Hp*Wp)
    pshape = g.one("Shape", [protos])
    hp_wp = g.one("Slice", [pshape, g.i64([2]), g.i64([4])])
    out_shape = g.one("Concat", [g.one("Slice", [g.one("Shape", [coeffs]), g.i64([0]), g.i64([2])]), hp_wp], axis=0)
    prob = g.one("Reshape", [prob, out_shape])  # (B, D, Hp, Wp)
    size = g.one("Cast", [hp_wp], to=TensorProto.FLOAT)
    net = g.one("Cast", [g.one("Slice", [g.one("Shape", [images]), g.i64([2]), g.i64([4])])], to=TensorProto.FLOAT)
    scale_hw = g.one("Div", [size, net])  # (2,) [Hp/H, Wp/W]
    scale = g.one("Concat", [g.one("Slice", [scale_hw, g.i64([1]), g.i64([2])]),
                             g.one("Slice", [scale_hw, g.i64([0]), g.i64([1])])] * 2, axis=0)  # [sx, sy, sx, sy]
    b = g.one("Unsqueeze", [g.one("Mul", [boxes, scale]), g.i64([3])])  # (B, D, 4, 1)
    hp = g.one("Squeeze", [g.one("Slice", [hp_wp, g.i64([0]), g.i64([1])]), g.i64([0])])
    wp = g.one("Squeeze", [g.one("Slice", [hp_wp, g.i64([1]), g.i64([2])]), g.i64([0])])
    cols = g.one("Cast", [g.one("Range", [g.i64(0), wp, g.i64(1)])], to=TensorProto.FLOAT)  # (Wp,)
    rows = g.one("Unsqueeze", [g.one("Cast", [g.one("Range", [g.i64(0), hp, g.i64(1)])], to=TensorProto.FLOAT),
                               g.i64([1])])  # (Hp, 1)

    def coord(i: int) -> str:
        return g.one("Slice", [b, g.i64([i]), g.i64([i + 1]), g.i64([2])])  # (B, D, 1, 1)

    x1, y1, x2, y2 = (coord(i) for i in range(4))
    inside_x = g.one("And", [g.one("GreaterOrEqual", [cols, x1]), g.one("Less", [cols, x2])])  # (B, D, 1, Wp)
    inside_y = g.one("And", [g.one("GreaterOrEqual", [rows, y1]), g.one("Less", [rows, y2])])  # (B, D, Hp, 1)
    on = g.one("Greater", [prob, g.const(threshold)])
    return g.one("And", [on, g.one("And", [inside_y, inside_x])])


def _label_map(g: GraphBuilder, masks: str, max_det: int) -> str:
    """(B, Hp, Wp) int32: 1 + index of the first (highest-scoring) detection covering each pixel, else 0.

    masks: (B, D, Hp, Wp) bool (pure-ONNX masks) or uint8 (the plugin's output)."""
    m = g.one("Cast", [masks], to=TensorProto.FLOAT)
    weights = g.const(np.arange(max_det, 0, -1, dtype=np.float32).reshape(1, max_det, 1, 1))
    first = g.one("ArgMax", [g.one("Mul", [m, weights])], axis=1, keepdims=0)  # (B, Hp, Wp)
    covered = g.one("Greater", [g.one("ReduceMax", [m, g.i64([1])], keepdims=0), g.const(0.0)])
    label = g.one("Where", [covered, g.one("Add", [first, g.i64(1)]), g.i64(0)])
    return g.one("Cast", [label], to=TensorProto.INT32)


def _output_info(name: str, elem: int, dims: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, dims)


def build_end2end(model: onnx.ModelProto, cfg: End2EndConfig = End2EndConfig()) -> onnx.ModelProto:
    """A copy of `model` (outputs pred, protos) with the post-processing appended (module docstring)."""
    outs = [o.name for o in model.graph.output]
    if outs != ["pred", "protos"]:
        raise ExportError(f"end-to-end graphs are built on models with outputs ['pred', 'protos'], got {outs}")
    meta = get_metadata(model)
    nc = int(meta.get("nc", "1"))
    nm = int(meta.get("nm", "32"))
    m = onnx.ModelProto()
    m.CopyFrom(model)
    images = m.graph.input[0].name
    g = GraphBuilder()
    det = _detections(g, "pred", images, nc, nm, cfg)
    named = {k: det[k] for k in ("num_dets", "boxes", "scores", "classes")}
    if cfg.masks == "plugin":
        from asfyolo_rt.export.end2end_masks import plugin_mask_node

        named["masks"] = plugin_mask_node(g, "protos", det["coeffs"], det["boxes"], det["num_dets"],
                                          cfg.mask_threshold)
        if cfg.label_map:
            named["label_map"] = _label_map(g, named["masks"], cfg.max_det)
        bool_masks = None
    else:
        bool_masks = _masks_onnx(g, "protos", images, det["coeffs"], det["boxes"], nm, cfg.mask_threshold)
        if cfg.label_map:
            named["label_map"] = _label_map(g, bool_masks, cfg.max_det)
    named["coeffs"] = det["coeffs"]
    for out_name, tensor in named.items():  # rename via Identity so outputs have stable names
        g.nodes.append(helper.make_node("Identity", [tensor], [out_name], name=f"/post/output/{out_name}"))
    if bool_masks is not None:  # the uint8 cast writes the output itself: no uint8 intermediate tensor
        g.nodes.append(helper.make_node("Cast", [bool_masks], ["masks"], name="/post/output/masks",
                                        to=TensorProto.UINT8))
    m.graph.node.extend(g.nodes)
    m.graph.initializer.extend(g.inits)
    # pred becomes internal: its output type becomes value_info (replacing a stale converter entry); protos
    # stays a graph output (last), beside the coeffs
    old_outputs = {o.name: o for o in m.graph.output}
    stale = [v for v in m.graph.value_info if v.name in ("pred", "protos")]
    for v in stale:
        m.graph.value_info.remove(v)
    m.graph.value_info.append(old_outputs["pred"])
    protos_info = onnx.ValueInfoProto()
    protos_info.CopyFrom(old_outputs["protos"])
    del m.graph.output[:]
    b: int | str = "batch"
    dims = m.graph.input[0].type.tensor_type.shape.dim
    if dims and dims[0].HasField("dim_value"):
        b = dims[0].dim_value
    pshape = [d.dim_value if d.HasField("dim_value") else "proto_" + str(i)
              for i, d in enumerate(model.graph.output[1].type.tensor_type.shape.dim)][2:]
    d = cfg.max_det
    m.graph.output.extend([
        _output_info("num_dets", TensorProto.INT32, [b]),
        _output_info("boxes", TensorProto.FLOAT, [b, d, 4]),
        _output_info("scores", TensorProto.FLOAT, [b, d]),
        _output_info("classes", TensorProto.INT32, [b, d]),
        _output_info("masks", TensorProto.UINT8, [b, d, *pshape]),
    ] + ([_output_info("label_map", TensorProto.INT32, [b, *pshape])] if cfg.label_map else []) + [
        _output_info("coeffs", TensorProto.FLOAT, [b, d, nm]),
        protos_info,
    ])
    if cfg.masks == "plugin":
        m.opset_import.append(helper.make_opsetid("asfyolo_rt", 1))
    meta.update({
        "end2end": "true", "e2e_conf_threshold": repr(cfg.conf_threshold), "e2e_iou_threshold": repr(cfg.iou_threshold),
        "e2e_max_det": str(cfg.max_det), "e2e_topk": str(cfg.topk), "e2e_mask_threshold": repr(cfg.mask_threshold),
        "e2e_agnostic": str(cfg.agnostic).lower(), "e2e_masks": cfg.masks, "e2e_mask_resolution": "prototype",
        "e2e_nms": cfg.nms, "e2e_label_map": str(cfg.label_map).lower(), "e2e_raw_outputs": ",".join(E2E_RAW_OUTPUTS),
    })
    if cfg.nms == "cluster":
        meta["e2e_nms_iterations"] = str(cfg.nms_iterations)
    set_metadata(m, meta)
    return m


def config_from_metadata(meta: dict[str, str], **overrides: object) -> End2EndConfig:
    """The End2EndConfig an end-to-end model was built with (its e2e_* metadata), with `overrides` applied."""
    if meta.get("end2end") != "true":
        raise ExportError("not an end-to-end model (no end2end metadata)")
    try:
        values: dict[str, object] = {
            "conf_threshold": float(meta["e2e_conf_threshold"]), "iou_threshold": float(meta["e2e_iou_threshold"]),
            "max_det": int(meta["e2e_max_det"]), "topk": int(meta["e2e_topk"]),
            "mask_threshold": float(meta["e2e_mask_threshold"]), "agnostic": meta.get("e2e_agnostic") == "true",
            "masks": meta.get("e2e_masks", "onnx"), "nms": meta.get("e2e_nms", "onnx"),
            "label_map": meta.get("e2e_label_map") == "true",
        }
    except (KeyError, ValueError) as exc:
        raise ExportError(f"end-to-end metadata incomplete or malformed ({exc})",
                          hint="re-export with `asfyolo-rt export --end2end`") from exc
    if "e2e_nms_iterations" in meta:
        values["nms_iterations"] = int(meta["e2e_nms_iterations"])
    values.update(overrides)
    return End2EndConfig(**values)  # type: ignore[arg-type]


def export_end2end(source: str | Path, out_path: str | Path, cfg: End2EndConfig = End2EndConfig()) -> OnnxArtifact:
    """Load an exported model, append the post-processing, check and write it. Returns the artifact."""
    source, out_path = Path(source), Path(out_path)
    m = build_end2end(onnx.load(str(source)), cfg)
    set_metadata(m, {"e2e_source": source.name, "e2e_source_sha256": file_sha256(source)})
    if cfg.masks == "onnx":
        try:
            onnx.checker.check_model(m, full_check=True)
        except Exception as exc:
            raise ExportError(f"the end-to-end graph {out_path.name} fails onnx.checker: {exc}") from exc
    else:  # custom-domain plugin nodes: structural check only (no schema for asfyolo_rt::mask_assembly)
        onnx.checker.check_model(m, full_check=False)
    save_model(m, out_path)
    meta = get_metadata(m)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxArtifact(path=out_path, sha256=file_sha256(out_path), precision=f"end2end-{meta.get('precision', '')}",
                        input_shape=input_shape_of(m), opset=int(opset), exporter=f"end2end ({cfg.masks} masks)",
                        metadata=meta)
