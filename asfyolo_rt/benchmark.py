"""What an application sees: latency and FPS of pre-processing + inference + post-processing.

`bench_backend` times, per batch size, the whole pipeline of `asfyolo_rt.infer.predict` on real
images: letterbox pre-processing, the backend's forward pass, and post-processing (NMS + mask
assembly of an instance label map at the original resolution). `cells=N` replaces the detections
by a synthetic load of N cell-sized boxes, so post-processing can be measured at 50, 300 or 1,000
cells whatever the model predicts. Each result is one flat row (environment included) so runs on
several devices append to one CSV/JSON table.

`bench_frame` times what a microscope frame costs: a whole image (e.g. 2048 x 2048) through
`asfyolo_rt.runtime.stages.Runner` (native-scale tiles, `batch` tiles per call, stitching, full-
resolution label map): ms per frame and megapixels per second.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

from asfyolo_rt.data.letterbox import LetterboxTransform, preprocess
from asfyolo_rt.infer.backends import Backend
from asfyolo_rt.infer.nms import Detections, non_max_suppression
from asfyolo_rt.infer.predict import assemble
from asfyolo_rt.infer.protocol import RawBackend
from asfyolo_rt.runtime.pipeline import PredictConfig


@dataclass(frozen=True)
class BenchConfig:
    img_size: int = 640  # square network input (static models use their own)
    batches: tuple[int, ...] = (1,)
    warmup: int = 3
    iters: int = 20
    seconds: float | None = None  # run each batch size for this long instead of `iters`
    cells: int | None = None  # synthetic post-processing load (cells per image)
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 1000


@dataclass
class BenchRow:
    label: str
    backend: str
    precision: str
    batch: int
    img_size: str  # "HxW"
    cells_per_image: float
    iters: int
    latency_p50_ms: float  # end-to-end per batch
    latency_p90_ms: float
    latency_p99_ms: float
    fps: float  # images per second, end-to-end (batch / mean latency)
    infer_fps: float  # images per second, forward pass only
    pre_ms: float  # per batch, median
    infer_ms: float
    post_ms: float
    post_share: float  # post / end-to-end
    peak_host_mb: float
    peak_device_mb: float | None
    device: str
    threads: int
    torch: str
    onnxruntime: str | None
    tensorrt: str | None
    git_sha: str | None
    timestamp: str
    perf: RowPerf | None = None  # GFLOPs vs peak, CPU time, load and the noisy verdict (flattened in to_dict)

    def to_dict(self) -> dict[str, Any]:
        return _flat(self)


@dataclass
class RowPerf:
    """Per row: the work (model GFLOPs), how fast it ran against the machine's measured peak, and the noise."""

    isa: str = ""  # the CPU's best matrix ISA (avx2, avx512_vnni, avx512_bf16, amx)
    gflops: float | None = None  # model GFLOPs per network input (image or tile), from the graph
    achieved_gflops_per_s: float | None = None  # gflops x images / forward time
    peak_gflops_per_s: float | None = None  # measured GEMM peak that applies (INT8 GOP/s for int8 rows)
    peak_kind: str = ""  # "fp32 gemm" or "int8 gemm"
    pct_of_peak: float | None = None
    wall_s: float = 0.0  # timed loop, wall clock
    cpu_s: float = 0.0  # CPU time of this process over the same loop (user + system)
    load_before: float | None = None  # 1-minute load average before the command's first row
    load_during: float | None = None  # 1-minute load average at the end of the row
    others_cores: float | None = None  # cores used by other processes during the row (/proc/stat)
    spread: float = 0.0  # (p90 - p10) / p50 of the per-iteration times
    noisy: bool = False
    noise_reason: str = ""


@dataclass(frozen=True)
class PerfContext:
    """What bench measured once per command: model GFLOPs (per image), the peaks, the load before."""

    gflops: float | None = None
    peak: Any = None  # asfyolo_rt.bench_machine.Peak
    load_before: float | None = None
    busy_before: float | None = None  # cores other processes used in the second before (bench_machine.busy_before)


def _flat(row: Any) -> dict[str, Any]:
    d = asdict(row)
    perf = d.pop("perf", None) or asdict(RowPerf())
    return {**d, **perf}


def peak_for(peak: Any, precision: str) -> tuple[float | None, str]:
    """The measured GEMM peak (`bench_machine.Peak`) a row of `precision` is compared with, and its name."""
    if peak is None:
        return None, ""
    if precision.startswith("int8") and peak.int8_gops:
        return peak.int8_gops, "int8 gemm"
    if precision == "bf16" and getattr(peak, "bf16_gflops", None):
        return peak.bf16_gflops, "bf16 gemm"
    return peak.fp32_gflops, "fp32 gemm"


def row_perf(ctx: PerfContext | None, precision: str, work_gflops: float | None, forward_s: float,
             probe: Any, times: Sequence[float]) -> RowPerf:
    """RowPerf of one row: `work_gflops` done in `forward_s` seconds of forward time; probe: a LoadSample."""
    from asfyolo_rt.bench_machine import cores, noise_verdict
    from asfyolo_rt.infer.openvino import cpu_isa

    ctx = ctx or PerfContext()
    achieved = work_gflops / forward_s if work_gflops and forward_s > 0 else None
    peak, kind = peak_for(ctx.peak, precision)
    noisy, reason = noise_verdict(ctx.busy_before, probe.others_cores, cores(), times)
    return RowPerf(
        isa=cpu_isa(), gflops=None if ctx.gflops is None else round(ctx.gflops, 3),
        achieved_gflops_per_s=None if achieved is None else round(achieved, 2), peak_gflops_per_s=peak,
        peak_kind=kind, pct_of_peak=None if achieved is None or not peak else round(100 * achieved / peak, 1),
        wall_s=round(probe.wall_s, 3), cpu_s=round(probe.cpu_s, 3),
        load_before=None if ctx.load_before is None else round(ctx.load_before, 2),
        load_during=round(probe.load_during, 2),
        others_cores=None if probe.others_cores is None else round(probe.others_cores, 2),
        spread=round(float(_spread(times)), 3), noisy=noisy, noise_reason=reason)


def _spread(times: Sequence[float]) -> float:
    from asfyolo_rt.bench_machine import spread

    return spread(times)


def synthetic_detections(n: int, shape: tuple[int, int], nm: int = 32, seed: int = 0,
                         median_size: float | None = None) -> Detections:
    """N cell-sized boxes in network pixels (DSB2018-like sizes: log-normal around 26 px at 640)."""
    g = torch.Generator().manual_seed(seed)
    h, w = shape
    med = median_size or 26.0 * max(h, w) / 640
    size = (torch.randn(n, 2, generator=g) * 0.45).exp() * med
    cx = torch.rand(n, generator=g) * w
    cy = torch.rand(n, generator=g) * h
    boxes = torch.stack([cx - size[:, 0] / 2, cy - size[:, 1] / 2, cx + size[:, 0] / 2, cy + size[:, 1] / 2], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    scores = torch.rand(n, generator=g).sort(descending=True).values * 0.7 + 0.3
    return Detections(boxes=boxes, scores=scores, classes=torch.zeros(n, dtype=torch.int64),
                      coeffs=torch.randn(n, nm, generator=g))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _percentiles(x: Sequence[float]) -> tuple[float, float, float]:
    a = np.asarray(x)
    return float(np.percentile(a, 50)), float(np.percentile(a, 90)), float(np.percentile(a, 99))


def bench_backend(
    label: str,
    backend: RawBackend,
    images: Sequence[np.ndarray],
    cfg: BenchConfig,
    *,
    device: str = "cpu",
    env: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    perf: PerfContext | None = None,
) -> list[BenchRow]:
    """Time the full pipeline of `backend` on `images` for every batch size in cfg.batches."""
    from asfyolo_rt.bench_machine import LoadProbe
    from asfyolo_rt.env import environment

    env = env or environment()
    pcfg = PredictConfig(img_size=cfg.img_size, conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det)
    shape = backend.input_shape or (cfg.img_size, cfg.img_size)
    rows = []
    batches = [b for b in cfg.batches if not backend.max_batch or b == backend.max_batch] or [backend.max_batch or 1]
    for bs in batches:
        pre_t, inf_t, post_t, tot_t, cells = [], [], [], [], []
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        n_warm, it, start = cfg.warmup, 0, time.perf_counter()
        step = 0
        probe = LoadProbe().__enter__()
        while True:
            batch_imgs = [images[(step * bs + i) % len(images)] for i in range(bs)]  # cycle through the images
            step += 1
            t0 = time.perf_counter()
            x, transforms = preprocess(batch_imgs, shape, interpolation="linear")  # what predict --scale fit does
            t1 = time.perf_counter()
            pred, protos = backend(x)
            _sync(device)
            t2 = time.perf_counter()
            n_cells = _postprocess(pred, protos, transforms, pcfg, cfg.cells, device)
            _sync(device)
            t3 = time.perf_counter()
            if n_warm > 0:
                n_warm -= 1
                start = time.perf_counter()
                probe = LoadProbe().__enter__()  # the timed loop only
                continue
            pre_t.append(t1 - t0)
            inf_t.append(t2 - t1)
            post_t.append(t3 - t2)
            tot_t.append(t3 - t0)
            cells.append(n_cells / bs)
            it += 1
            if progress:
                progress(it, cfg.iters)
            if (cfg.seconds is not None and time.perf_counter() - start >= cfg.seconds) or (
                cfg.seconds is None and it >= cfg.iters
            ):
                break
        probe.__exit__(None, None, None)
        p50, p90, p99 = _percentiles([1e3 * t for t in tot_t])
        mean_tot = float(np.mean(tot_t))
        post_med = 1e3 * float(np.median(post_t))
        rows.append(BenchRow(
            label=label, backend=backend.name, precision=backend.precision, batch=bs,
            img_size=f"{shape[0]}x{shape[1]}", cells_per_image=round(float(np.mean(cells)), 1), iters=it,
            latency_p50_ms=round(p50, 3), latency_p90_ms=round(p90, 3), latency_p99_ms=round(p99, 3),
            fps=round(bs / mean_tot, 3), infer_fps=round(bs / float(np.mean(inf_t)), 3),
            pre_ms=round(1e3 * float(np.median(pre_t)), 3), infer_ms=round(1e3 * float(np.median(inf_t)), 3),
            post_ms=round(post_med, 3), post_share=round(float(np.sum(post_t) / np.sum(tot_t)), 4),
            peak_host_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            peak_device_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.startswith("cuda") else None,
            device=_device_name(env, device), threads=torch.get_num_threads(), torch=env.get("torch") or "",
            onnxruntime=env.get("onnxruntime"), tensorrt=env.get("tensorrt"), git_sha=env.get("git_sha"),
            timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            # repeats are judged on the forward times: the input shape is fixed, while end-to-end times follow
            # the cells of each image cycled through (5 to 300 per DSB2018 image)
            perf=row_perf(perf, backend.precision, perf.gflops * bs if perf and perf.gflops else None,
                          float(np.median(inf_t)), probe.sample, inf_t),
        ))
    return rows


def _device_name(env: dict[str, Any], device: str) -> str:
    if device.startswith("cuda") and env.get("cuda_devices"):
        return str(env["cuda_devices"][0]["name"])
    return f"{env.get('cpu')} ({env.get('cpu_count')} cores)"


def _postprocess(pred: torch.Tensor, protos: torch.Tensor, transforms: list[LetterboxTransform], pcfg: PredictConfig,
                 cells: int | None, device: str) -> int:
    """NMS + label-map mask assembly at the original resolution for every image of the batch; returns #cells."""
    if cells is None:
        dets = non_max_suppression(pred, conf_threshold=pcfg.conf, iou_threshold=pcfg.iou, max_det=pcfg.max_det)
    else:
        # the synthetic load still pays for NMS over the real candidates, then assembles `cells` masks
        non_max_suppression(pred, conf_threshold=pcfg.conf, iou_threshold=pcfg.iou, max_det=pcfg.max_det)
        dets = [synthetic_detections(cells, t.net_shape, seed=i) for i, t in enumerate(transforms)]
    total = 0
    for i, (det, t) in enumerate(zip(dets, transforms)):
        assemble(protos[i], det, t, mask_threshold=pcfg.mask_threshold, kernel_impl=pcfg.kernel_impl)
        total += len(det)
    return total


def write_csv(rows: Sequence[Any], path: str) -> None:
    """Append rows (BenchRow or FrameRow, one kind per file) to a CSV (header written when the file is new)."""
    import csv
    from pathlib import Path

    from asfyolo_rt.errors import ConfigError

    if not rows:
        return
    fields = list(rows[0].to_dict())
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    new = not p.exists() or p.stat().st_size == 0
    if not new:
        with open(p, newline="") as f:
            header = next(csv.reader(f), [])
        if header != fields:
            raise ConfigError(f"--csv {p} holds rows of another kind (columns {header[:4]}...)",
                              hint="write whole-frame rows (--frame/--image) and per-input rows to different files")
    with open(p, "a", newline="") as f:
        w = csv.DictWriter(f, fields)
        if new:
            w.writeheader()
        for r in rows:
            w.writerow(r.to_dict())


def append_json(rows: Sequence[Any], path: str) -> None:
    """Append rows to a JSON list file (created when missing)."""
    import json
    from pathlib import Path

    from asfyolo_rt.model.weights import atomic_write_bytes

    p = Path(path)
    old = json.loads(p.read_text()) if p.exists() and p.stat().st_size else []
    atomic_write_bytes(p, json.dumps(old + [r.to_dict() for r in rows], indent=1).encode())


def plot_rows(rows: Sequence[dict[str, Any]], path: str) -> None:
    """Bar charts: end-to-end FPS and the pre/infer/post split of p50 latency, per backend/precision/batch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = [f"{r['label']}\nb{r['batch']}" for r in rows]
    fig = Figure(figsize=(max(8, 1.3 * len(rows)), 8), tight_layout=True)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    x = np.arange(len(rows))
    ax1.bar(x, [r["fps"] for r in rows], color="#3b7dd8", label="end-to-end")
    ax1.bar(x, [r["infer_fps"] for r in rows], color="none", edgecolor="k", linestyle="--", label="inference only")
    ax1.set_ylabel("images / s")
    ax1.set_xticks(x, labels, fontsize=7)
    ax1.legend()
    ax1.set_title(f"{rows[0]['device']}" if rows else "")
    bottom = np.zeros(len(rows))
    for key, colour in (("pre_ms", "#9ccc65"), ("infer_ms", "#3b7dd8"), ("post_ms", "#ef6c00")):
        vals = np.array([r[key] for r in rows]) / np.array([r["batch"] for r in rows])
        ax2.bar(x, vals, bottom=bottom, color=colour, label=key.replace("_ms", ""))
        bottom += vals
    ax2.set_ylabel("ms per image (median)")
    ax2.set_xticks(x, labels, fontsize=7)
    ax2.legend()
    fig.savefig(path, dpi=150)


@dataclass
class FrameRow:
    label: str
    backend: str
    precision: str
    frame: str  # "HxW" of the image
    tile: str  # "HxW" of the network input
    tile_overlap: int
    tiles: int
    batch: int
    iters: int
    cells: int
    frame_p50_ms: float
    frame_p90_ms: float
    mpix_per_s: float  # megapixels of the frame per second, end to end
    pre_ms: float  # per frame, median
    infer_ms: float
    post_ms: float
    peak_host_mb: float
    device: str
    threads: int
    torch: str
    onnxruntime: str | None
    git_sha: str | None
    timestamp: str
    load_warning: str = ""  # the noisy verdict's reason (perf.noise_reason), kept for older readers
    perf: RowPerf | None = None  # GFLOPs per frame (x tiles) vs peak, CPU time, load, noisy

    def to_dict(self) -> dict[str, Any]:
        return _flat(self)


def bench_frame(label: str, backend: Backend, image: np.ndarray, *, batch: int = 1, img_size: int | None = None,
                tile_overlap: int | None = None, model_scale: float = 1.0, max_object_px: float | None = None,
                warmup: int = 1, iters: int = 5, device: str = "cpu", env: dict[str, Any] | None = None,
                progress: Callable[[int, int], None] | None = None, perf: PerfContext | None = None) -> FrameRow:
    """End-to-end time of one whole frame with tiling, batching, stitching and the label map."""
    from asfyolo_rt.bench_machine import LoadProbe
    from asfyolo_rt.env import environment
    from asfyolo_rt.runtime.stages import Geometry, PostConfig, Runner

    env = env or environment()
    runner = Runner(backend, Geometry("native", img_size=img_size, tile_overlap=tile_overlap, model_scale=model_scale,
                                      batch=batch), PostConfig(), max_object_px=max_object_px)
    tot, pre, inf, post = [], [], [], []
    cells = tiles = 0
    probe = LoadProbe()
    for i in range(warmup + iters):
        if i == warmup:
            probe.__enter__()
        t0 = time.perf_counter()
        res = runner(image)
        res.label_map()
        _sync(device)
        t1 = time.perf_counter()
        if i < warmup:
            continue
        tot.append(t1 - t0)
        pre.append(res.timing_ms["preprocess"])
        inf.append(res.timing_ms["inference"])
        post.append(1e3 * (t1 - t0) - res.timing_ms["preprocess"] - res.timing_ms["inference"])
        cells, tiles = len(res), res.tiles
        if progress:
            progress(i + 1 - warmup, iters)
    probe.__exit__(None, None, None)
    p50, p90, _ = _percentiles([1e3 * t for t in tot])
    h, w = image.shape[:2]
    computed = -(-tiles // runner.batch) * runner.batch if backend.max_batch else tiles  # a static batch pads
    work = perf.gflops * computed if perf and perf.gflops else None
    rp = row_perf(perf, backend.precision, work, float(np.median(inf)) / 1e3, probe.sample, tot)
    return FrameRow(
        label=label, backend=backend.name, precision=backend.precision, frame=f"{h}x{w}",
        tile=f"{runner.tile[0]}x{runner.tile[1]}", tile_overlap=runner.overlap, tiles=tiles, batch=runner.batch,
        iters=len(tot), cells=cells, frame_p50_ms=round(p50, 2), frame_p90_ms=round(p90, 2),
        mpix_per_s=round(h * w / 1e6 / float(np.median(tot)), 3), pre_ms=round(float(np.median(pre)), 2),
        infer_ms=round(float(np.median(inf)), 2), post_ms=round(float(np.median(post)), 2),
        peak_host_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        device=_device_name(env, device), threads=torch.get_num_threads(), torch=env.get("torch") or "",
        onnxruntime=env.get("onnxruntime"), git_sha=env.get("git_sha"),
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"), load_warning=rp.noise_reason, perf=rp,
    )
