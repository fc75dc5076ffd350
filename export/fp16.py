"""FP16 ONNX: a float16 graph with float32 inputs/outputs and explicit float32 islands.

Conversion: onnxconverter-common `convert_float_to_float16(keep_io_types=True)` with an explicit node
block list built from these rules (each kept node is named in the report with its reason):

1. head decode: every node after the head prediction convs up to `pred` (sigmoids, grid and anchor
   arithmetic, box scaling to pixels, the final concat). Box centres reach the image size (640 px and
   more), where FP16 resolves only 0.25-0.5 px, and (2·sigmoid)²·anchor overflows the FP16 mantissa
   budget before the scores are formed;
2. range: nodes whose inputs or outputs exceed `range_limit` in absolute value on sample images
   (FP16's largest finite value is 65504; the default limit 16384 keeps 4x headroom for unseen images),
   and nodes reading initializers larger than 65504;
3. user list: `extra_fp32_nodes` (exact node names) and `extra_fp32_op_types`.

`Resize` is converted too (onnxconverter-common blocks it by default); its `scales`/`roi` inputs, whose
ONNX type must stay float32, are restored by `fix_float_only_inputs`, the fix-up that TensorRT 11's strict
type inference and ONNX Runtime both need. The result passes `onnx.checker` and strict type inference.

Honesty note (TOOLCHAIN.md): ONNX Runtime's CPU provider has no FP16 kernels for Conv, Sigmoid, Mul,
Resize, ...: it computes them in FP32 between inserted casts. An FP16 ONNX run on CPU therefore checks
graph typing and weight rounding, not FP16 arithmetic; `torch_half_estimate` (PyTorch .half() on CPU on a
handful of images) is the FP16 arithmetic estimate.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from asfyolo_rt.export.graph import consumers, head_decode_nodes, remove_unused_initializers, tensor_abs_max
from asfyolo_rt.export.onnx_export import (
    OnnxArtifact,
    file_sha256,
    get_metadata,
    input_shape_of,
    save_model,
    set_metadata,
)
from onnx import TensorProto, numpy_helper

from asfyolo_rt.errors import ExportError

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

FP16_MAX = 65504.0
ORT_CPU_NOTE = (
    "ONNX Runtime's CPU execution provider has no FP16 kernels for Conv, Sigmoid, Mul, Add, pooling, Resize "
    "or MatMul: it casts to FP32 and computes in FP32. FP16 ONNX errors measured on CPU show graph typing and "
    "FP16 weight rounding, not FP16 arithmetic; see the PyTorch half-precision estimate for that."
)


@dataclass(frozen=True)
class Fp16Rules:
    """Which nodes stay in float32 (see the module docstring)."""

    keep_head_decode: bool = True
    range_limit: float = 16384.0  # |value| above this on sample images keeps the node in FP32
    extra_fp32_nodes: tuple[str, ...] = ()
    extra_fp32_op_types: tuple[str, ...] = ()


@dataclass
class Fp16Result:
    artifact: OnnxArtifact
    kept_fp32: dict[str, str] = field(default_factory=dict)  # node name -> reason
    rules: dict[str, Any] = field(default_factory=dict)
    ort_cpu_note: str = ORT_CPU_NOTE

    def to_dict(self) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for r in self.kept_fp32.values():
            reasons[r] = reasons.get(r, 0) + 1
        return {
            "artifact": self.artifact.to_dict(),
            "kept_fp32": self.kept_fp32,
            "kept_fp32_by_reason": reasons,
            "rules": self.rules,
            "ort_cpu_note": self.ort_cpu_note,
        }


def fp32_nodes_by_rule(
    model: onnx.ModelProto, rules: Fp16Rules, sample_batches: Sequence[np.ndarray] | None = None
) -> dict[str, str]:
    """node name -> reason it stays in FP32, from the rules (no conversion is done)."""
    kept: dict[str, str] = {}
    if rules.keep_head_decode:
        for name in head_decode_nodes(model):
            kept[name] = "head decode (sigmoid, grid/anchor box arithmetic, final concat)"
    cons = consumers(model)
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            peak = float(np.abs(numpy_helper.to_array(init)).max(initial=0.0))
            if peak > FP16_MAX:
                for n in cons.get(init.name, []):
                    kept.setdefault(n.name, f"reads initializer {init.name} with |value| {peak:.4g} > 65504")
    if sample_batches:
        peaks = tensor_abs_max(model, sample_batches)
        for n in model.graph.node:
            vals = [peaks.get(t, 0.0) for t in list(n.input) + list(n.output) if t]
            peak = max(vals, default=0.0)
            if peak > rules.range_limit:
                kept.setdefault(n.name, f"values up to {peak:.4g} exceed the FP16 range limit {rules.range_limit:g}")
    names = {n.name for n in model.graph.node}
    for name in rules.extra_fp32_nodes:
        if name not in names:
            raise ExportError(f"--fp32-node {name!r} is not a node of the model",
                              hint="node names are listed in the export report (kept_fp32) and by onnx tools")
        kept.setdefault(name, "user rule (extra_fp32_nodes)")
    for n in model.graph.node:
        if n.op_type in rules.extra_fp32_op_types:
            kept.setdefault(n.name, f"user rule (op type {n.op_type})")
    return kept


def fix_float_only_inputs(model: onnx.ModelProto) -> list[str]:
    """Give inputs whose ONNX type is exactly tensor(float) (Resize scales/roi, ...) float32 initializers back.

    onnxconverter-common converts every float initializer; ONNX Runtime and TensorRT 11 reject an FP16
    `scales`. Returns the names of the nodes fixed.
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
    inits = {i.name: i for i in model.graph.initializer}
    fixed = []
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx"):
            continue
        schema = onnx.defs.get_schema(n.op_type, opset, n.domain)
        formal = list(schema.inputs)
        for i, name in enumerate(n.input):
            if not name or not formal:
                continue
            f = formal[min(i, len(formal) - 1)]
            if f.type_str != "tensor(float)" or name not in inits or inits[name].data_type != TensorProto.FLOAT16:
                continue
            new = f"{name}__fp32"
            if new not in inits:
                t = numpy_helper.from_array(numpy_helper.to_array(inits[name]).astype(np.float32), new)
                model.graph.initializer.append(t)
                inits[new] = t
            n.input[i] = new
            fixed.append(n.name)
    remove_unused_initializers(model)
    return fixed


def check_types(model: onnx.ModelProto, what: str) -> None:
    """Strict ONNX type inference (what TensorRT 11's parser enforces) plus onnx.checker."""
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ExportError(f"{what} fails strict ONNX type checking: {exc}") from exc


def to_fp16(model: onnx.ModelProto, block_nodes: Sequence[str]) -> onnx.ModelProto:
    """onnxconverter-common conversion (FP32 I/O kept) with `block_nodes` in FP32, plus fix-ups."""
    from onnxconverter_common import float16

    op_block = [op for op in float16.DEFAULT_OP_BLOCK_LIST if op != "Resize"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the float32 number ... will be truncated" per weight
        try:
            converted = float16.convert_float_to_float16(
                model, keep_io_types=True, op_block_list=op_block, node_block_list=list(block_nodes),
                min_positive_val=5.96e-08, max_finite_val=FP16_MAX,
            )
        except Exception as exc:
            raise ExportError(f"FP16 conversion (onnxconverter-common) failed: {exc}") from exc
    fix_float_only_inputs(converted)
    restore_output_types(model, converted)
    return converted


def restore_output_types(original: onnx.ModelProto, converted: onnx.ModelProto) -> list[str]:
    """Make graph outputs float32 again where the converter left them float16.

    onnxconverter-common turns an output to float16 when its producer is in the block list (the final concat
    of the head decode), despite keep_io_types. A producing Cast gets `to=FLOAT`; any other producer gets a
    Cast appended. Returns the outputs fixed.
    """
    want = {o.name: o.type.tensor_type.elem_type for o in original.graph.output}
    producers = {o: n for n in converted.graph.node for o in n.output}
    fixed = []
    for out in converted.graph.output:
        if want.get(out.name) != TensorProto.FLOAT or out.type.tensor_type.elem_type != TensorProto.FLOAT16:
            continue
        node = producers.get(out.name)
        if node is not None and node.op_type == "Cast":
            for a in node.attribute:
                if a.name == "to":
                    a.i = TensorProto.FLOAT
        else:
            inner = f"{out.name}__fp16"
            if node is not None:
                node.output[list(node.output).index(out.name)] = inner
            converted.graph.node.append(onnx.helper.make_node("Cast", [inner], [out.name], name=f"{out.name}/cast_fp32",
                                                              to=TensorProto.FLOAT))
        out.type.tensor_type.elem_type = TensorProto.FLOAT
        fixed.append(out.name)
    return fixed


def convert_fp16(
    fp32_path: str | Path,
    out_path: str | Path,
    *,
    rules: Fp16Rules = Fp16Rules(),
    sample_batches: Sequence[np.ndarray] | None = None,
    progress: Progress | None = None,
) -> Fp16Result:
    """FP32 ONNX at `fp32_path` -> FP16 ONNX at `out_path` (float32 I/O, FP32 islands by `rules`).

    sample_batches: pre-processed (B, 3, H, W) float32 batches (real images preferably) for the range
    rule; without them only the structural rules apply.
    """
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    model = onnx.load(str(fp32_path))
    if progress:
        progress(0, 3)
    kept = fp32_nodes_by_rule(model, rules, sample_batches)
    if progress:
        progress(1, 3)
    converted = to_fp16(model, list(kept))
    meta = get_metadata(model)
    meta.update({"precision": "fp16", "fp32_nodes": str(len(kept))})
    set_metadata(converted, meta)
    check_types(converted, f"the FP16 model {out_path.name}")
    if progress:
        progress(2, 3)
    save_model(converted, out_path)
    if progress:
        progress(3, 3)
    opset = next((o.version for o in converted.opset_import if o.domain in ("", "ai.onnx")), 0)
    artifact = OnnxArtifact(
        path=out_path, sha256=file_sha256(out_path), precision="fp16", input_shape=input_shape_of(converted),
        opset=int(opset), exporter="onnxconverter-common", metadata=meta,
    )
    log.info("FP16 model %s: %d nodes kept in FP32", out_path, len(kept))
    return Fp16Result(artifact=artifact, kept_fp32=kept, rules={
        "keep_head_decode": rules.keep_head_decode, "range_limit": rules.range_limit,
        "extra_fp32_nodes": list(rules.extra_fp32_nodes), "extra_fp32_op_types": list(rules.extra_fp32_op_types),
        "initializer_limit": FP16_MAX, "converter": "onnxconverter-common convert_float_to_float16(keep_io_types=True)",
    })


def torch_half_estimate(
    model: Any, images: np.ndarray, *, dtypes: Sequence[str] = ("fp16", "bf16")
) -> dict[str, dict[str, dict[str, float]]]:
    """PyTorch CPU reduced-precision arithmetic vs FP32 on a few images: the FP16 arithmetic estimate.

    model: an ASFYOLO (a fused copy is used); images: (B, 3, H, W) float32 in [0, 1] (keep B small:
    model.half() on CPU is ~20x slower than FP32). Returns {dtype: {output: {max_abs, mean_abs}}}.
    """
    import copy

    import torch
    from asfyolo_rt.export.compare import compare_runners, torch_runner, worst

    base = copy.deepcopy(model).float().cpu().eval()
    if hasattr(base, "fuse"):
        base.fuse()
    shape = (int(images.shape[0]), int(images.shape[2]), int(images.shape[3]))
    out: dict[str, dict[str, dict[str, float]]] = {}
    torch_dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
    for name in dtypes:
        low = copy.deepcopy(base).to(torch_dtypes[name])
        rows = compare_runners(torch_runner(base), torch_runner(low, torch_dtypes[name]), [shape], images=images)
        out[name] = worst(rows)
    return out
