"""Accuracy parity across backends and precisions (`asfyolo-rt parity`).

Every backend sees the same images, letterboxed into the same input shape, and the same
post-processing; the reference is PyTorch FP32. Three layers of evidence, Polygraphy-style:

1. raw outputs per tensor (boxes, scores, mask coefficients, prototypes): max/mean absolute error and
   cosine similarity against the reference, with per-output tolerances (prototypes looser than boxes);
2. detection agreement per image: instances matched at box IoU >= 0.5 (score >= `agree_conf`),
   unmatched counts, mask IoU of matched pairs, count error;
3. task metrics (box/mask mAP50, mAP50-95, DSB score) and their deltas to the reference, gated by
   per-precision thresholds on mask mAP50 (defaults: FP32 0.1, FP16 0.3, BF16/INT8 1.0 points).

Candidates marked `estimate` (PyTorch BF16/FP16: what low precision might cost, not a file anyone
deploys) are reported with their verdict but decide the overall result only with `gate_estimates`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asfyolo_rt.boxes import box_iou
from asfyolo_rt.data.dataset import DatasetSplit
from asfyolo_rt.data.io import read_image
from asfyolo_rt.data.letterbox import preprocess
from asfyolo_rt.eval.validate import ImagePrediction, ValConfig, validate
from asfyolo_rt.infer.backends import Backend
from asfyolo_rt.infer.protocol import RawBackend

# Points of mask mAP50 a precision may lose against PyTorch FP32 before parity fails. BF16 keeps 8
# significant bits (FP16: 11), so it gets the INT8 budget; measured on the shipped model it loses ~0.9.
DEFAULT_THRESHOLDS = {"fp32": 0.1, "fp16": 0.3, "bf16": 1.0, "int8": 1.0, "int8-cpu": 1.0}


@dataclass(frozen=True)
class Tolerance:
    """Raw-output tolerance of one output tensor (informational; the gate is the metric delta)."""

    max_abs: float
    min_cosine: float


# Per output and precision family. Boxes are in network pixels (a 0.5 px error is harmless); scores are
# probabilities; coefficients and prototypes feed a sigmoid, so their absolute errors matter less.
TOLERANCES: dict[str, dict[str, Tolerance]] = {
    "fp32": {"boxes": Tolerance(1e-2, 0.99999), "scores": Tolerance(1e-3, 0.99999),
             "coeffs": Tolerance(1e-2, 0.99999), "protos": Tolerance(1e-2, 0.99999)},
    "fp16": {"boxes": Tolerance(1.0, 0.9999), "scores": Tolerance(1e-2, 0.9999),
             "coeffs": Tolerance(0.1, 0.999), "protos": Tolerance(0.1, 0.999)},
    "int8": {"boxes": Tolerance(8.0, 0.99), "scores": Tolerance(0.15, 0.98),
             "coeffs": Tolerance(1.0, 0.95), "protos": Tolerance(1.0, 0.95)},
}


def _family(precision: str) -> str:
    return "int8" if precision.startswith("int8") else ("fp16" if precision in ("fp16", "bf16") else "fp32")


@dataclass
class Candidate:
    """One backend under test with a human label ('onnxruntime fp32 model.onnx')."""

    label: str
    backend: RawBackend  # parity compares raw outputs: plain models (end-to-end graphs have none)
    estimate: bool = False  # an estimate (PyTorch low precision), not an exported artifact


@dataclass
class BackendParity:
    label: str
    name: str
    precision: str
    metrics: dict[str, float]
    deltas: dict[str, float]  # metric - reference metric, in points (x100)
    raw: dict[str, dict[str, float]]  # output -> max_abs, mean_abs, cosine, within_tolerance
    agreement: dict[str, Any]
    threshold: float | None  # allowed mask mAP50 loss in points (None for the reference)
    passed: bool
    gated: bool = True  # False: an estimate row, reported but not part of the overall verdict

    def verdict(self) -> str:
        return ("PASS" if self.passed else "FAIL") + ("" if self.gated else " (estimate, not gated)")


@dataclass
class ParityReport:
    reference: str
    n_images: int
    input_shape: tuple[int, int]
    results: list[BackendParity] = field(default_factory=list)
    protocol: str = "fit"

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results if r.gated)

    def failed_gates(self) -> list[str]:
        """'label (mask mAP50 -1.06 pts, allowed -1.0)' for every gated row that failed."""
        return [f"{r.label} (mask mAP50 {r.deltas.get('mask_map50', float('nan')):+.2f} pts, allowed {-(r.threshold or 0.0):+.1f})"
                for r in self.results if r.gated and not r.passed]

    def verdict(self) -> str:
        """One line: every failed gate, or that all passed (and which rows were not gated)."""
        gated = [r for r in self.results[1:] if r.gated]
        loose = [r for r in self.results[1:] if not r.gated]
        note = (f"; not gated: {', '.join(f'{r.label} {r.verdict().split()[0]}' for r in loose)} "
                "(--gate-estimates to gate them)") if loose else ""
        failed = self.failed_gates()
        if failed:
            return f"parity FAILED {len(failed)} of {len(gated)} gates: {'; '.join(failed)}{note}"
        if not gated:
            return f"parity passed: no gated rows (no exported model was compared){note}"
        return f"parity passed: all {len(gated)} gates passed{note}"

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "n_images": self.n_images, "input_shape": list(self.input_shape),
                "protocol": self.protocol, "passed": self.passed, "failed_gates": self.failed_gates(),
                "verdict": self.verdict(), "results": [asdict(r) for r in self.results]}

    def to_markdown(self) -> str:
        lines = [
            f"# Parity report\n\nReference: **{self.reference}**; {self.n_images} images "
            + ("letterboxed into " if self.protocol == "fit" else "at native scale in tiles of ")
            + f"{self.input_shape[0]}x{self.input_shape[1]}; same NMS and mask post-processing for every backend.\n",
            "| backend | box mAP50 | mask mAP50 | mask mAP50-95 | DSB | Δ mask mAP50 (pts) | allowed | matched | "
            "mean mask IoU | verdict |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in self.results:
            m, a = r.metrics, r.agreement
            lines.append(
                f"| {r.label} | {m['box_map50']:.4f} | {m['mask_map50']:.4f} | {m['mask_map']:.4f} | "
                f"{m.get('dsb_score', float('nan')):.4f} | {r.deltas.get('mask_map50', 0.0):+.2f} | "
                f"{'-' if r.threshold is None else f'{r.threshold:.1f}'} | {a.get('match_rate', 1.0):.3f} | "
                f"{a.get('mask_iou_mean', 1.0):.3f} | {r.verdict() if r.passed or not r.gated else '**FAIL**'} |")
        lines.append("\n## Raw outputs vs reference\n")
        lines.append("| backend | output | max abs | mean abs | cosine | within tolerance |")
        lines.append("| --- | --- | ---: | ---: | ---: | --- |")
        for r in self.results[1:]:
            for out, v in r.raw.items():
                lines.append(f"| {r.label} | {out} | {v['max_abs']:.3g} | {v['mean_abs']:.3g} | {v['cosine']:.6f} | "
                             f"{'yes' if v['within_tolerance'] else 'no'} |")
        lines.append(f"\n**{self.verdict()}**")
        return "\n".join(lines) + "\n"


def backend_label(b: Backend, path: Path) -> str:
    """'onnxruntime int8 model.int8.onnx'; OpenVINO rows also say the CPU's ISA ('openvino bf16 [avx512_bf16] ...')."""
    isa = getattr(b, "isa", None)
    return f"{b.name} {b.precision}{f' [{isa}]' if isa else ''} {path.name}"


def openvino_candidates(files: Sequence[Path], threads: int | None = None) -> tuple[list[Candidate], list[str]]:
    """OpenVINO rows for a bundle's model.onnx: FP32, and BF16 where the CPU has it (else a note saying why
    not). The INT8 IR (model.int8-openvino.xml) comes through load_backend like every other file."""
    from asfyolo_rt.calib.openvino_int8 import openvino_available
    from asfyolo_rt.infer.openvino import OpenVinoBackend, cpu_isa, has_bf16

    fp32 = [f for f in files if f.name == "model.onnx"]
    if not fp32 or not openvino_available():
        return [], ([] if not fp32 else ["openvino rows (not installed: pip install 'asfyolo-rt[openvino]')"])
    out, notes = [], []
    for prec in ("fp32", "bf16"):
        if prec == "bf16" and not has_bf16():
            notes.append(f"openvino bf16 {fp32[0].name} (this CPU, {cpu_isa()}, has no avx512_bf16/amx_bf16)")
            continue
        b = OpenVinoBackend(fp32[0], precision=prec, threads=threads)
        out.append(Candidate(backend_label(b, fp32[0]), b))
    return out, notes


def _split_outputs(pred: torch.Tensor, protos: torch.Tensor, nm: int = 32) -> dict[str, torch.Tensor]:
    return {"boxes": pred[..., :4], "scores": pred[..., 4:-nm], "coeffs": pred[..., -nm:], "protos": protos}


def raw_errors(ref: dict[str, torch.Tensor], other: dict[str, torch.Tensor], precision: str) -> dict[str, dict[str, float]]:
    """Per output: max/mean absolute error, cosine similarity, and whether it is within TOLERANCES."""
    tol = TOLERANCES[_family(precision)]
    out = {}
    for k, r in ref.items():
        o = other[k].to(r.device, torch.float64)
        r = r.to(torch.float64)
        diff = (o - r).abs()
        cos = torch.nn.functional.cosine_similarity(o.flatten(), r.flatten(), dim=0).item() if r.numel() else 1.0
        mx = diff.max().item() if diff.numel() else 0.0
        out[k] = {"max_abs": mx, "mean_abs": diff.mean().item() if diff.numel() else 0.0, "cosine": cos,
                  "within_tolerance": bool(mx <= tol[k].max_abs and cos >= tol[k].min_cosine)}
    return out


def match_instances(a: Any, b: Any, conf: float = 0.25, iou: float = 0.5
                    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, float]]]:
    """One image's instances of two backends (score >= conf) matched greedily at box IoU >= iou.

    Returns (reference boxes, candidate boxes, [(i, j, mask IoU)] for the matched pairs)."""
    sa, ba, mask_a = _instances(a)
    sb, bb, mask_b = _instances(b)
    ka, kb = sa >= conf, sb >= conf
    ba, bb = ba[ka], bb[kb]
    ia, ib = torch.nonzero(ka).reshape(-1).tolist(), torch.nonzero(kb).reshape(-1).tolist()
    pairs: list[tuple[int, int, float]] = []
    if ba.shape[0] and bb.shape[0]:
        ious = box_iou(ba.float(), bb.float())
        used = torch.zeros(bb.shape[0], dtype=torch.bool)
        for i in range(ba.shape[0]):  # reference sorted by score: greedy, COCO-style
            row = ious[i].clone()
            row[used] = -1
            j = int(row.argmax())
            if row[j] >= iou:
                used[j] = True
                pairs.append((i, j, _pair_mask_iou(mask_a(ia[i]), mask_b(ib[j]))))
    return ba, bb, pairs


def disagreeing_boxes(a: Any, b: Any, conf: float = 0.25, iou: float = 0.5, low_iou: float = 0.5) -> torch.Tensor:
    """(k, 4) boxes (original pixels) of one image's disagreements: unmatched reference and candidate
    instances, and the union box of matched pairs whose masks overlap at IoU < low_iou."""
    ba, bb, pairs = match_instances(a, b, conf, iou)
    ma = {i for i, _, _ in pairs}
    mb = {j for _, j, _ in pairs}
    out = [ba[i] for i in range(ba.shape[0]) if i not in ma] + [bb[j] for j in range(bb.shape[0]) if j not in mb]
    out += [torch.cat([torch.minimum(ba[i, :2], bb[j, :2]), torch.maximum(ba[i, 2:], bb[j, 2:])])
            for i, j, m in pairs if m < low_iou]
    return torch.stack(out).float() if out else torch.zeros((0, 4))


def agreement(ref: Sequence[ImagePrediction], other: Sequence[ImagePrediction], conf: float = 0.25,
              iou: float = 0.5) -> dict[str, Any]:
    """Instance-level agreement of two backends' detections on the same images."""
    matched = unmatched_ref = unmatched_other = 0
    mask_ious: list[float] = []
    count_err: list[int] = []
    per_image: list[int] = []
    for a, b in zip(ref, other):
        ba, bb, pairs = match_instances(a, b, conf, iou)
        na, nb, m = ba.shape[0], bb.shape[0], len(pairs)
        count_err.append(nb - na)
        mask_ious += [p[2] for p in pairs]
        matched += m
        unmatched_ref += na - m
        unmatched_other += nb - m
        per_image.append((na - m) + (nb - m))
    total = matched + unmatched_ref
    arr = np.asarray(mask_ious) if mask_ious else np.ones(1)
    return {
        "conf": conf, "iou": iou, "matched": matched, "unmatched_reference": unmatched_ref,
        "unmatched_candidate": unmatched_other, "match_rate": matched / total if total else 1.0,
        "mask_iou_mean": float(arr.mean()), "mask_iou_p05": float(np.percentile(arr, 5)),
        "mask_iou_min": float(arr.min()), "count_error_mean_abs": float(np.mean(np.abs(count_err))) if count_err else 0.0,
        "count_error_max_abs": int(np.max(np.abs(count_err))) if count_err else 0,
        "disagreement_per_image": per_image,
    }


def _instances(p: Any) -> tuple[torch.Tensor, torch.Tensor, Callable[[int], Any]]:
    """(scores, boxes in original pixels, mask getter) of a fit (ImagePrediction) or tiled prediction."""
    if isinstance(p, ImagePrediction):
        return p.det.scores, p.boxes_orig, lambda i: ("dense", p.masks_proto[i])
    r = p.result
    return r.scores, r.boxes, lambda i: ("window", r.masks.windows[i].numpy(), r.masks.mask(i).numpy())


def _pair_mask_iou(a: Any, b: Any) -> float:
    if a[0] == "dense":
        inter = (a[1] & b[1]).sum().item()
        union = (a[1] | b[1]).sum().item()
        return inter / union if union else 1.0
    from asfyolo_rt.boxes import window_mask_iou

    return float(window_mask_iou(a[1][None], [a[2]], b[1][None], [b[2]])[0, 0])


def _metric_dict(res: Any) -> dict[str, float]:
    s = res.summary()
    return {k: float(v) for k, v in s.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}


def run_parity(
    candidates: Sequence[Candidate],
    split: DatasetSplit,
    *,
    input_shape: tuple[int, int],
    n_images: int = 50,
    thresholds: dict[str, float] | None = None,
    conf: float = 0.001,
    iou: float = 0.6,
    dsb: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    protocol: str = "fit",
    model_scale: float = 1.0,
    max_object_px: float | None = None,
    gate_estimates: bool = False,
) -> tuple[ParityReport, dict[str, list[Any]]]:
    """Evaluate candidates[0] (the reference) and every other candidate on the same first `n_images`.

    Candidates marked `estimate` get a verdict but count for `report.passed` only with gate_estimates.

    protocol "fit": every image letterboxed into input_shape; "tiled": every image at native scale in
    input_shape tiles (asfyolo_rt.runtime.stages), the deployment path."""
    thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    samples = split.samples[:n_images]
    sub = DatasetSplit(root=split.root, split=split.split, names=split.names, samples=samples, problems=[])
    images = [read_image(s.image_path) for s in samples[: min(8, len(samples))]]
    x, _ = preprocess(images, input_shape)
    cfg = ValConfig(img_size=max(input_shape), batch_size=8, conf=conf, iou=iou, dsb=dsb, fixed_shape=input_shape,
                    protocol=protocol, model_scale=model_scale, max_object_px=max_object_px)
    report = ParityReport(reference=candidates[0].label, n_images=len(samples), input_shape=input_shape,
                          protocol=protocol)
    preds: dict[str, list[ImagePrediction]] = {}
    ref_raw: dict[str, torch.Tensor] | None = None
    ref_metrics: dict[str, float] = {}
    for idx, cand in enumerate(candidates):
        b = cand.backend
        raw = _run_raw(b, x)
        cb = (lambda d, t, lab=cand.label: progress(lab, d, t)) if progress else None
        res = validate(b, sub, cfg, progress=cb, keep_predictions=True)
        preds[cand.label] = res.predictions  # type: ignore[attr-defined]
        metrics = _metric_dict(res)
        if idx == 0:
            ref_raw, ref_metrics = raw, metrics
            report.results.append(BackendParity(cand.label, b.name, b.precision, metrics, {}, {}, {}, None, True))
            continue
        assert ref_raw is not None
        deltas = {k: 100.0 * (metrics[k] - ref_metrics[k]) for k in metrics if k in ref_metrics}
        thr = thresholds.get(b.precision, thresholds.get(_family(b.precision), 1.0))
        passed = deltas.get("mask_map50", 0.0) >= -thr
        report.results.append(BackendParity(
            cand.label, b.name, b.precision, metrics, deltas, raw_errors(ref_raw, raw, b.precision),
            agreement(preds[candidates[0].label], preds[cand.label]), thr, passed,
            gated=gate_estimates or not cand.estimate))
    return report, preds


def _run_raw(backend: RawBackend, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Raw outputs for the batch x, respecting a static batch size."""
    bs = backend.max_batch or x.shape[0]
    preds, protos = [], []
    for i in range(0, x.shape[0], bs):
        chunk = x[i : i + bs]
        n = chunk.shape[0]
        if n < bs:
            chunk = torch.cat([chunk, chunk.new_zeros((bs - n, *chunk.shape[1:]))])
        p, q = backend(chunk)
        preds.append(p[:n].cpu())
        protos.append(q[:n].cpu())
    return _split_outputs(torch.cat(preds), torch.cat(protos))


def write_report(report: ParityReport, preds: dict[str, list[ImagePrediction]], out_dir: Path, max_images: int = 4) -> None:
    """parity.json, parity.md, and disagreement PNGs: per candidate its most disagreeing images, reference
    boxes green, candidate boxes red, disagreements (unmatched instances, matched pairs of mask IoU < 0.5)
    outlined yellow."""
    from asfyolo_rt.eval.plots import plot_val_mosaic
    from asfyolo_rt.model.weights import atomic_write_bytes

    out_dir.mkdir(parents=True, exist_ok=True)
    from asfyolo_rt.export.bundle_files import json_safe

    atomic_write_bytes(out_dir / "parity.json", json.dumps(json_safe(report.to_dict()), indent=2, allow_nan=False).encode())
    atomic_write_bytes(out_dir / "parity.md", report.to_markdown().encode())
    ref = preds[report.reference]
    for r in report.results[1:]:
        dis = r.agreement.get("disagreement_per_image", [])
        worst = sorted(range(len(dis)), key=lambda i: -dis[i])[:max_images]
        if not worst:
            continue
        other = preds[r.label]
        images = [read_image(ref[i].sample.image_path) for i in worst]
        gts = [_View(ref[i]) for i in worst]
        dts = [_View(other[i]) for i in worst]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in r.label)
        marks = [disagreeing_boxes(ref[i], other[i]) for i in worst]
        plot_val_mosaic(images, gts, dts, out_dir / f"disagreement_{safe}.png", min_score=0.25,
                        legend=("reference", "candidate"), highlights=marks)


class _View:
    """Detections of one image as plot_val_mosaic reads them (score-filtered boxes in original pixels)."""

    def __init__(self, p: Any, conf: float = 0.25) -> None:
        scores, boxes, _ = _instances(p)
        keep = scores >= conf
        self.boxes = boxes[keep]
        self.scores = scores[keep]
        self.image_id = Path(p.sample.image_path).name  # written on the mosaic tile
