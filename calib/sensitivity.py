"""INT8 layer sensitivity: quantize one block at a time, rank blocks by the damage, suggest excludes.

One calibration (ModelOpt, TensorRT flavour, FP32 remainder so only INT8 effects are measured) gives the
fully quantized graph; for each block (a top-level sub-module such as backbone.stage2, neck.c3_p4, ssff,
cpam, head.proto) a copy keeps only the Q/DQ pairs that feed nodes of that block (the others are bypassed).
Each variant runs in ONNX Runtime on a few calibration images and is scored against FP32 by
`output_error` = mean |confidence error| / mean FP32 confidence + mean |protos error| / mean |FP32 protos|
(confidence = objectness x best class probability); with a dataset split, by the drop of mask mAP50 through
`validate` on a few images instead. Blocks are ranked by the score; the suggested exclude list is the
smallest set of top blocks that covers half of the summed damage (at most 5), as `--int8-exclude` regexes.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from asfyolo_rt.calib.dataset import CalibrationSet
from asfyolo_rt.calib.quantize import QuantConfig, quantize_tensorrt
from asfyolo_rt.export.graph import block_of, blocks, consumers
from asfyolo_rt.export.onnx_export import save_model

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass
class BlockScore:
    block: str
    n_quantized_nodes: int
    score: float  # output error, or mask mAP50 drop with a dataset
    details: dict[str, float] = field(default_factory=dict)


@dataclass
class SensitivityResult:
    metric: str
    reference: dict[str, float]
    all_quantized: dict[str, float]
    ranking: list[BlockScore]
    suggested_exclude: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "reference": self.reference,
            "all_quantized": self.all_quantized,
            "ranking": [{"block": b.block, "quantized_nodes": b.n_quantized_nodes, "score": b.score, **b.details}
                        for b in self.ranking],
            "suggested_exclude": self.suggested_exclude,
        }


def keep_only_block(qdq: onnx.ModelProto, block: str) -> tuple[onnx.ModelProto, int]:
    """A copy of a Q/DQ model in which only Q/DQ pairs feeding nodes of `block` remain.

    Returns the copy and the number of nodes of `block` that still read dequantized (INT8) inputs.
    """
    m = onnx.ModelProto()
    m.CopyFrom(qdq)
    cons = consumers(m)
    by_out = {o: n for n in m.graph.node for o in n.output}
    rewire: dict[str, str] = {}
    kept_users: set[str] = set()
    for dq in m.graph.node:
        q = by_out.get(dq.input[0]) if dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear":
            continue
        users = cons.get(dq.output[0], [])
        inside = [u.name for u in users if block_of(u.name) == block]
        if inside:
            kept_users.update(inside)
        else:
            rewire[dq.output[0]] = q.input[0]
    for n in m.graph.node:
        for i, t in enumerate(n.input):
            if t in rewire:
                n.input[i] = rewire[t]
    nodes = list(m.graph.node)
    while True:  # drop Q/DQ nodes whose outputs nobody reads any more
        used = {t for n in nodes for t in n.input} | {o.name for o in m.graph.output}
        keep = [n for n in nodes if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or n.output[0] in used]
        if len(keep) == len(nodes):
            break
        nodes = keep
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m, len(kept_users)


def _run(model: onnx.ModelProto, images: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]
    step = fixed if isinstance(fixed, int) and fixed > 0 else len(images)
    outs: dict[str, list[np.ndarray]] = {"pred": [], "protos": []}
    for s in range(0, len(images) - step + 1, step):
        pred, protos = sess.run(["pred", "protos"], {name: images[s : s + step]})
        outs["pred"].append(pred)
        outs["protos"].append(protos)
    return {k: np.concatenate(v) for k, v in outs.items()}


def output_error(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], nc: int) -> dict[str, float]:
    """Normalised confidence and prototype errors (see the module docstring)."""
    def conf(p: np.ndarray) -> np.ndarray:
        return p[..., 4:5] * p[..., 5 : 5 + nc].max(-1, keepdims=True)

    c_ref, c_got = conf(ref["pred"]), conf(got["pred"])
    conf_err = float(np.abs(c_ref - c_got).mean() / max(float(np.abs(c_ref).mean()), 1e-12))
    proto_err = float(np.abs(ref["protos"] - got["protos"]).mean() / max(float(np.abs(ref["protos"]).mean()), 1e-12))
    return {"conf_rel_err": conf_err, "protos_rel_err": proto_err, "output_error": conf_err + proto_err}


def suggest(ranking: list[BlockScore], max_blocks: int = 5) -> list[str]:
    total = sum(max(b.score, 0.0) for b in ranking)
    out: list[str] = []
    acc = 0.0
    for b in ranking:
        if total <= 0 or acc >= 0.5 * total or len(out) >= max_blocks or b.score <= 0:
            break
        out.append("/" + "/".join(re.escape(p) for p in b.block.split(".")) + "/.*")
        acc += b.score
    return out


def layer_sensitivity(
    fp32_path: str | Path,
    calib: CalibrationSet,
    cfg: QuantConfig | None = None,
    *,
    n_images: int = 4,
    evaluate: Callable[[Path], float] | None = None,
    cache_path: str | Path | None = None,
    progress: Progress | None = None,
) -> SensitivityResult:
    """Rank blocks by INT8 damage (module docstring). `evaluate(onnx_path) -> mask mAP50` enables the mAP metric."""
    cfg = cfg or QuantConfig()
    fp32_path = Path(fp32_path)
    source = onnx.load(str(fp32_path))
    nc = int({p.key: p.value for p in source.metadata_props}.get("nc", "1"))
    images = calib.float_images(0, min(n_images, len(calib)))
    with tempfile.TemporaryDirectory(prefix="asfyolo-sens-") as tmp:
        full = quantize_tensorrt(fp32_path, Path(tmp) / "all.onnx",
                                 calib, QuantConfig(**{**cfg.__dict__, "high_precision": "fp32"}),
                                 cache_path=cache_path)
        qdq = onnx.load(str(full.artifact.path))
        names = [b for b, nodes in blocks(qdq, op_types=("Conv",)).items() if nodes]
        total = len(names) + 2
        if evaluate is not None:
            ref_score = evaluate(fp32_path)
            all_score = evaluate(full.artifact.path)
            reference = {"mask_map50": ref_score}
            all_q = {"mask_map50": all_score, "drop": ref_score - all_score}
        else:
            ref = _run(source, images)
            reference = {"output_error": 0.0}
            all_q = output_error(ref, _run(qdq, images), nc)
        if progress:
            progress(2, total)
        ranking: list[BlockScore] = []
        for i, block in enumerate(names):
            variant, n_q = keep_only_block(qdq, block)
            if n_q == 0:
                continue
            if evaluate is not None:
                path = Path(tmp) / "variant.onnx"
                save_model(variant, path)
                s = evaluate(path)
                ranking.append(BlockScore(block, n_q, ref_score - s, {"mask_map50": s}))
            else:
                err = output_error(ref, _run(variant, images), nc)
                ranking.append(BlockScore(block, n_q, err["output_error"], err))
            if progress:
                progress(i + 3, total)
    ranking.sort(key=lambda b: -b.score)
    return SensitivityResult("mask_map50_drop" if evaluate else "output_error", reference, all_q, ranking,
                             suggest(ranking))
