"""INT8 layer sensitivity: per-block Q/DQ variants, ranking and the suggested exclude list."""

from __future__ import annotations

import onnx
from asfyolo_rt.calib.quantize import QuantConfig, exclusions
from asfyolo_rt.calib.sensitivity import BlockScore, keep_only_block, suggest
from asfyolo_rt.export.graph import block_of


def _int8_nodes(m: onnx.ModelProto) -> set[str]:
    dq_out = {n.output[0] for n in m.graph.node if n.op_type == "DequantizeLinear"}
    return {n.name for n in m.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and any(i in dq_out for i in n.input)}


def test_keep_only_block(trt_int8):
    full = onnx.load(str(trt_int8.artifact.path))
    variant, n = keep_only_block(full, "backbone.stage2")
    fed = _int8_nodes(variant)
    assert n > 0 and fed and all(block_of(x) == "backbone.stage2" for x in fed)
    assert len(variant.graph.node) < len(full.graph.node)
    onnx.checker.check_model(variant)
    none, zero = keep_only_block(full, "no.such_block")
    assert zero == 0 and not _int8_nodes(none)


def test_suggest_covers_half_the_damage():
    ranking = [BlockScore("neck.c3_p4", 5, 0.5), BlockScore("cpam", 3, 0.3), BlockScore("ssff", 2, 0.1),
               BlockScore("backbone.stem", 1, 0.0)]
    pats = suggest(ranking)
    assert pats == ["/neck/c3_p4/.*"]
    assert suggest([BlockScore("a.b", 1, 0.0)]) == []


def test_suggestions_are_valid_exclude_patterns(fp32_onnx):
    m = onnx.load(str(fp32_onnx))
    pats = suggest([BlockScore("neck.c3_p4", 5, 1.0)])
    ex = exclusions(m, QuantConfig(exclude=tuple(pats)))
    assert "/neck/c3_p4/cv1/conv/Conv" in ex


def test_layer_sensitivity_ranks_blocks(fp32_onnx, calib_set, trt_int8):
    from asfyolo_rt.calib.sensitivity import layer_sensitivity

    res = layer_sensitivity(fp32_onnx, calib_set, n_images=2, cache_path=trt_int8.cache_path)
    scores = [b.score for b in res.ranking]
    assert len(res.ranking) > 10 and scores == sorted(scores, reverse=True)
    assert res.all_quantized["output_error"] > 0 and scores[0] > 0
    assert res.to_dict()["suggested_exclude"] == res.suggested_exclude
