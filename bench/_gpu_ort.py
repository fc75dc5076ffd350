"""The ort section of bench/gpu_check.py: ONNX Runtime's CUDA execution provider vs PyTorch."""

from __future__ import annotations

import copy
import importlib.util
from typing import Any

from _gpu_common import Section, images, no_time, skipped, split_raw

# ------------------------------------------------------------------------------------------------ ort
ORT_COLUMNS = ["provider", "providers_used", "onnx", "raw_input", "boxes_max_abs", "scores_max_abs", "coeffs_max_abs",
               "protos_max_abs", "raw_within_tolerance", "images", "label_f1_min", "median_ms", "p20_ms", "p80_ms"]


def ort(ctx: Any) -> Section:
    """ONNX Runtime's CUDA execution provider vs PyTorch (smoke: the CPU provider stands in)."""
    import onnxruntime as ort_mod
    import torch
    from _common import timeit
    from asfyolo_rt.export.onnx_export import export_onnx

    from asfyolo_rt import Segmenter
    from asfyolo_rt.data.letterbox import preprocess
    from asfyolo_rt.eval.dsb import instance_f1
    from asfyolo_rt.eval.parity import raw_errors
    from asfyolo_rt.infer.backends import OrtBackend, ort_session
    from asfyolo_rt.model.weights import load_checkpoint
    from asfyolo_rt.weights_registry import shipped_weights

    available = ort_mod.get_available_providers()
    providers, summary = ["CUDAExecutionProvider"], []
    if "CUDAExecutionProvider" not in available:
        yield skipped("CUDAExecutionProvider", f"onnxruntime {ort_mod.__version__} has no CUDAExecutionProvider "
                      f"(available: {', '.join(available)}): onnxruntime-gpu is needed, and cannot be installed here")
        if not ctx.smoke:
            return "skipped: no CUDAExecutionProvider in onnxruntime " + ort_mod.__version__
        providers = ["CPUExecutionProvider"]  # the smoke run exercises the same path on the CPU provider
        summary = ["no CUDAExecutionProvider (skipped), the CPU provider stands in"]
    size = 64 if ctx.smoke else 640
    skip = no_time(ctx, 40.0, "export")
    if skip:
        yield skip
        return "skipped: no time to export"
    model, cfg = load_checkpoint(shipped_weights("dsb2018"))
    simplify = importlib.util.find_spec("onnxsim") is not None  # said in each row's `onnx` column
    onnx = export_onnx(model, ctx.scratch / "model.onnx", cfg, img_size=size, dynamic_size=True,
                       do_simplify=simplify).path
    imgs, source = images(ctx, 2 if ctx.smoke else 8, max_side=256 if ctx.smoke else None)
    x, _ = preprocess([im for _, im in imgs[:1]], (size, size), interpolation="linear")
    torch_dev = ctx.device
    ref = Segmenter("dsb2018", device="cpu")
    for provider in providers:
        session = ort_session(onnx, providers=list(dict.fromkeys([provider, "CPUExecutionProvider"])))
        used = session.get_providers()
        if used[0] != provider:
            yield skipped(provider, f"onnxruntime fell back to {used[0]} (CUDA/cuDNN libraries missing?)")
            continue
        backend = OrtBackend(onnx, session=session)
        want = split_raw(*torch_raw(model, torch_dev, x))
        raw = raw_errors(want, split_raw(*backend(x)), "fp32")
        stats = timeit(lambda b=backend: b(x), iters=1 if ctx.smoke else 50, warmup=0 if ctx.smoke else 10,
                       device=torch.device("cpu"))  # session.run returns host arrays: wall-clock timing is right
        seg = Segmenter(str(onnx))
        f1s = [instance_f1(ref.segment(im).labels, seg.segment(im).labels).f1 for _, im in imgs]
        summary.append(f"{provider}: raw max|err| {max(v['max_abs'] for v in raw.values()):.2g}, "
                       f"label F1 min {min(f1s):.4f}, {stats['median_ms']:.2f} ms per {size} input")
        how = "dynamic H/W" + ("" if simplify else ", not simplified: no onnxsim")
        yield {"case": "onnxruntime fp32 vs torch", "provider": provider, "providers_used": "+".join(used),
               "onnx": f"{onnx.name} (shipped dsb2018, {how})", "raw_input": f"{size}x{size}",
               **{f"{k}_max_abs": v["max_abs"] for k, v in raw.items()},
               "raw_within_tolerance": all(v["within_tolerance"] for v in raw.values()),
               "images": f"{len(imgs)} {source}", "label_f1_min": round(min(f1s), 6), **stats,
               "note": f"raw vs torch fp32 on {torch_dev}; labels: Segmenter(model.onnx) vs Segmenter(dsb2018, cpu)"}
    return "; ".join(summary)


def torch_raw(model: Any, device: str, x: Any) -> tuple[Any, Any]:
    """Raw (pred, protos) of an FP32 PyTorch model on `device` for the batch x."""
    from asfyolo_rt.infer.backends import TorchBackend

    return TorchBackend(copy.deepcopy(model), device=device)(x)
