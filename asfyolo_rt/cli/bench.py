"""`asfyolo-rt bench`: latency/FPS with pre- and post-processing, per backend, precision and batch size."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from asfyolo_rt.cli._bench_perf import (
    PERF_COLUMNS,
    file_gflops,
    net_gflops,
    noise_warnings,
    openvino_int8_variant,
    peak_dict,
    peak_line,
    perf_cells,
    split_precisions,
)
from asfyolo_rt.cli._bench_perf import measure_peak as _peak
from asfyolo_rt.cli._bench_perf import openvino_runs as _openvino_runs
from asfyolo_rt.cli._common import check_device, print_json, stderr, stdout_console
from asfyolo_rt.cli.main import app

console = stdout_console()
DEFAULT_DATA = Path("../shared/datasets/DSB2018")


def _csv_list(text: str, cast: type = str, option: str = "--batch") -> list[Any]:
    try:
        return [cast(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        from asfyolo_rt.errors import ConfigError

        raise ConfigError(f"{option} {text!r}: expected a comma list of {cast.__name__} values, e.g. 1,2,4") from None


def _images(data: Path | None, n: int = 16) -> tuple[list, str]:
    """Benchmark images: the first N val images of a dataset, or synthetic nuclei without one."""
    from asfyolo_rt.data.io import read_image, to_uint8_rgb

    src = data if data is not None else (DEFAULT_DATA if DEFAULT_DATA.exists() else None)
    if src is not None:
        from asfyolo_rt.data.dataset import load_split

        split = load_split(src, "val", on_problem="warn")
        return [read_image(s.image_path) for s in split.samples[:n]], f"{src} (val, {min(n, len(split.samples))} images)"
    from asfyolo_rt.data.synth import make_nuclei

    return [to_uint8_rgb(make_nuclei(i, shape=(360, 360))[0]) for i in range(n)], "synthetic nuclei 360x360"


@app.command()
def bench(
    models: Annotated[list[str] | None, typer.Argument(help="Checkpoints (.safetensors, official .pt), ONNX files, engines, or bundle folders (their model files, as parity). Default: the shipped DSB2018 model.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Benchmark an architecture with random weights: n, s, m, l or x.")] = None,
    backend: Annotated[str, typer.Option(help="Comma list: torch, onnxruntime, openvino, tensorrt (openvino also runs given .onnx files).")] = "torch,onnxruntime",
    precision: Annotated[str, typer.Option(help="Comma list. ONNX Runtime: fp32, fp16, int8 (TensorRT Q/DQ), int8-cpu (uint8 activations); OpenVINO: fp32, bf16 (CPUs with AVX512-BF16/AMX), int8 (NNCF).")] = "fp32",
    batch: Annotated[str, typer.Option(help="Comma list of batch sizes.")] = "1",
    img_size: Annotated[int | None, typer.Option("--img-size", help="Square input (default: the model's training size, else 640).")] = None,
    warmup: Annotated[int, typer.Option(help="Untimed iterations per configuration.")] = 3,
    iters: Annotated[int, typer.Option(help="Timed iterations per configuration.")] = 20,
    seconds: Annotated[float | None, typer.Option(help="Time each configuration for this long instead of --iters.")] = None,
    cells: Annotated[int | None, typer.Option(help="Synthetic post-processing load: N cells per image.")] = None,
    frame: Annotated[int | None, typer.Option("--frame", help="Time whole N x N camera frames (DSB2018 val nuclei packed at native scale, 16-bit; synthetic without the data) through tiling, batching and stitching: ms per frame and megapixels/s.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Time whole frames of this image file (any size) instead of --frame.")] = None,
    tile_overlap: Annotated[int | None, typer.Option("--tile-overlap", help="Whole-frame mode: pixels shared by neighbouring tiles (default: the model's).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help=f"Images for the benchmark (val split). Default: {DEFAULT_DATA} if present, else synthetic.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda (PyTorch).")] = "cpu",
    kernel_impl: Annotated[str, typer.Option("--kernel-impl", help="PyTorch CPAM on CUDA: torch (reference) or triton.")] = "torch",
    threads: Annotated[int | None, typer.Option(help="CPU threads (torch and ONNX Runtime).")] = None,
    cache: Annotated[Path | None, typer.Option(help="Where ONNX files exported for the benchmark are kept (default: $ASFYOLO_RT_CACHE/bench, else $XDG_CACHE_HOME or ~/.cache, /asfyolo-rt/bench).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON.")] = False,
    csv: Annotated[Path | None, typer.Option("--csv", help="Append rows to this CSV.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json-out", help="Append rows to this JSON list file.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Bar chart (PNG) of FPS and the latency split.")] = None,
    peak: Annotated[bool, typer.Option("--peak/--no-peak", help="Measure the machine's FP32/INT8 GEMM peak (a few seconds) for the %-of-peak column.")] = True,
    levers: Annotated[bool, typer.Option("--levers", help="Whole-frame mode: one row per throughput lever, each added to the row above (overlap, pipelining, OpenVINO, BF16, INT8 of a bundle given as MODELS, empty-tile skip), then predict's default path; frame F1 against the frame's nuclei.")] = False,
    levers_val: Annotated[bool, typer.Option("--levers-val", help="With --levers: DSB2018 val tiled mask mAP50 of the first and the last row (about a minute each).")] = False,
) -> None:
    """Benchmark what an application sees: pre-processing, inference, NMS + mask assembly, end to end.

    Per-input rows letterbox each image into one network input: for a native-scale model (the shipped ones)
    one predict tile (640x640 unless --img-size), for a fit model its training size; whole frames through
    predict's tiling and the model's scale: --frame N or --image PATH.

    Examples:
      asfyolo-rt bench
      asfyolo-rt bench bundle/ --batch 1,4
      asfyolo-rt bench --model l --img-size 320 --precision fp32,int8,int8-cpu --csv bench/results/cpu.csv
      asfyolo-rt bench bundle/model.int8-cpu.onnx --batch 1,2,4 --cells 300 --json
      asfyolo-rt bench --frame 2048 --batch 4 --csv bench/results/cpu_frames.csv
      asfyolo-rt bench bundle/model.onnx --image camera.tif --batch 4
      asfyolo-rt bench --backend openvino --precision fp32,bf16,int8
      asfyolo-rt bench bundle/ --frame 2048 --levers --levers-val --json-out bench/results/levers.json
    """
    from asfyolo_rt.privacy import disable_telemetry

    disable_telemetry()  # before anything imports ONNX Runtime or OpenVINO (environment() does)
    from asfyolo_rt.bench_machine import busy_before, load_average

    if levers:
        from asfyolo_rt.cli._bench_levers import levers_command

        levers_command(models, frame, image, data, DEFAULT_DATA, iters=iters, warmup=warmup, val=levers_val,
                       peak=peak, json_out=json_out, as_json=as_json)
        return
    load_before = load_average()  # recorded; the verdict uses what other processes do right now:
    others_before = busy_before()  # one second before this command adds its own load
    import torch

    from asfyolo_rt.benchmark import (
        BenchConfig,
        PerfContext,
        append_json,
        bench_backend,
        plot_rows,
        write_csv,
    )
    from asfyolo_rt.env import environment
    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.infer.backends import TorchBackend
    from asfyolo_rt.runtime.registry import load_backend

    if threads:
        torch.set_num_threads(threads)
    backends = _csv_list(backend)
    precisions = _csv_list(precision)
    unknown = set(backends) - {"torch", "onnxruntime", "openvino", "tensorrt"}
    if unknown:
        raise ConfigError(f"--backend {sorted(unknown)}: expected torch, onnxruntime, openvino or tensorrt")
    ort_precs, ov_precs = split_precisions(precisions, backends)
    batches = _csv_list(batch, int)
    if any(b < 1 for b in batches) or not batches:
        raise ConfigError(f"--batch {batch!r}: expected positive batch sizes, e.g. 1,2,4")
    check_device(device)
    if iters < 1 or warmup < 0:
        raise ConfigError(f"--iters {iters} / --warmup {warmup}: expected iters >= 1 and warmup >= 0")
    if frame is not None and image is not None:
        raise ConfigError("give --frame N or --image PATH, not both")
    if frame is not None and not 64 <= frame <= 16384:
        raise ConfigError(f"--frame {frame}: expected a side between 64 and 16384 pixels")
    whole = _frame_image(frame, image, data) if (frame is not None or image is not None) else None
    images, images_desc = ([], "") if whole is not None else _images(data)
    env = environment()
    rows: list[Any] = []
    sources = _sources(models, model)
    cache = cache if cache is not None else bench_cache_dir()
    inputs: dict[str, str] = {}  # per source: what its rows' network input is
    machine = _peak(threads) if peak else None
    for label, src in sources:
        runs: list[tuple[str, Any]] = []
        if isinstance(src, Path) and src.suffix in (".onnx", ".xml", ".engine", ".plan"):
            if "openvino" in backends and src.suffix in (".onnx", ".xml"):
                runs += _openvino_runs(label, src, None, ov_precs or [None], threads)
            else:
                b = load_backend(src, threads=threads)
                runs.append((f"{label} [{b.name} {b.precision}]", b))
            size = img_size or (runs[0][1].input_shape[0] if runs and runs[0][1].input_shape else 640)
            gflops = file_gflops(src, size)
            inputs[label] = f"{size}x{size}" + ("" if img_size else " (the file's input, else predict's 640 tile)")
        else:
            net, cfg = src if isinstance(src, tuple) else _load(src)
            size, inputs[label] = _input_size(cfg, img_size, whole is not None)
            # exported files are cached per weights file content and asfyolo-rt version: new weights under the
            # same name, or a newer exporter, re-export
            folder = cache / f"{label}-{size}-{_weights_key(src)}-{_version()}"
            if "torch" in backends:
                runs.append((f"{label} [torch fp32 {device}]", TorchBackend(net, device=device, kernel_impl=kernel_impl,
                                                                           names=cfg.names)))
            gflops = net_gflops(net, size)
            if "onnxruntime" in backends:
                for prec in ort_precs:
                    path = _onnx_variant(net, cfg, size, prec, folder, data)
                    b = load_backend(path, threads=threads)
                    runs.append((f"{label} [onnxruntime {prec}]", b))
            if "openvino" in backends:
                fp32 = _onnx_variant(net, cfg, size, "fp32", folder, data)
                runs += _openvino_runs(label, fp32, partial(openvino_int8_variant, fp32, size, data, DEFAULT_DATA),
                                       ov_precs, threads)
            if "tensorrt" in backends:
                stderr.print("[yellow]tensorrt:[/] engines are built on the device: `asfyolo-rt build BUNDLE`, "
                             "then `asfyolo-rt bench BUNDLE/model.<precision>.engine`")
        ctx = PerfContext(gflops=gflops, peak=machine, load_before=load_before, busy_before=others_before)
        for run_label, b in runs:
            stderr.print(f"bench {escape(run_label)} ...")
            if whole is not None:
                from asfyolo_rt.benchmark import bench_frame
                from asfyolo_rt.runtime.info import read_model_info

                rec = read_model_info(src) if isinstance(src, Path) else None
                for bs in batches:
                    rows.append(bench_frame(run_label, b, whole[0], batch=bs if not b.max_batch else b.max_batch,
                                            img_size=None if b.input_shape else img_size, tile_overlap=tile_overlap,
                                            model_scale=rec.model_scale if rec else 1.0,
                                            max_object_px=rec.overlap_object_px if rec else None, warmup=warmup,
                                            iters=iters, device=device if b.name == "torch" else "cpu", env=env,
                                            perf=ctx))
                continue
            rows += bench_backend(run_label, b, images, BenchConfig(
                img_size=size, batches=tuple(batches), warmup=warmup, iters=iters, seconds=seconds, cells=cells,
            ), device=device if b.name == "torch" else "cpu", env=env, perf=ctx)
    if whole is not None:
        _frame_output(rows, whole[1], csv, json_out, as_json)
        return
    if csv:
        write_csv(rows, str(csv))
    if json_out:
        append_json(rows, str(json_out))
    if plot:
        plot_rows([r.to_dict() for r in rows], str(plot))
    if as_json:
        print_json({"images": images_desc, "inputs": inputs, "peak": peak_dict(machine),
                    "rows": [r.to_dict() for r in rows]})
        noise_warnings(rows)
        return
    table = Table(title=f"{rows[0].device if rows else ''} - images: {images_desc}",
                  caption="inputs: " + "; ".join(f"{escape(k)}: {v}" for k, v in inputs.items()))
    for col in ("model [backend precision]", "batch", "input", "cells/img", "pre ms", "infer ms", "post ms",
                "p50 ms", "p90 ms", "p99 ms", "FPS", "infer FPS", "post %", *PERF_COLUMNS):
        table.add_column(col, justify="left" if col.startswith("model") else "right")
    for r in rows:
        table.add_row(escape(r.label), str(r.batch), r.img_size, f"{r.cells_per_image:.0f}", f"{r.pre_ms:.1f}",
                      f"{r.infer_ms:.1f}", f"{r.post_ms:.1f}", f"{r.latency_p50_ms:.1f}", f"{r.latency_p90_ms:.1f}",
                      f"{r.latency_p99_ms:.1f}", f"{r.fps:.2f}", f"{r.infer_fps:.2f}", f"{100 * r.post_share:.1f}",
                      *perf_cells(r))
    console.print(table)
    peak_line(machine)
    noise_warnings(rows)


def bench_cache_dir() -> Path:
    """Where bench keeps the ONNX files it exports (`asfyolo_rt.env.user_cache_dir`); `--cache` overrides."""
    from asfyolo_rt.env import user_cache_dir

    return user_cache_dir("bench")


def _input_size(cfg: Any, img_size: int | None, whole: bool) -> tuple[int, str]:
    """The network input of a checkpoint's rows, and what it stands for: predict's tile for a native-scale model
    (and for whole frames), the training size for a fit model; --img-size when given."""
    from asfyolo_rt.runtime.stages import DEFAULT_TILE

    if img_size:
        return img_size, f"{img_size}x{img_size} (--img-size)"
    if whole:
        return DEFAULT_TILE, f"{DEFAULT_TILE}x{DEFAULT_TILE} tiles at the model's scale, as predict"
    if cfg.train_scale == "native":
        scale = f" x{cfg.model_scale:g}" if cfg.model_scale else ""
        return DEFAULT_TILE, (f"{DEFAULT_TILE}x{DEFAULT_TILE}: one predict tile (native-scale model: predict scales "
                              f"images{scale} and cuts {DEFAULT_TILE} tiles; here each image is letterboxed into one "
                              "tile; whole frames: --frame N)")
    return cfg.img_size, f"{cfg.img_size}x{cfg.img_size}: the training size (fit model, as predict --scale fit)"


def _version() -> str:
    from asfyolo_rt import __version__

    return __version__


def _frame_image(frame: int | None, image: Path | None, data: Path | None) -> tuple[Any, str]:
    """The whole frame to time: an image file, or an N x N camera frame of val nuclei (synthetic without data)."""
    from asfyolo_rt.data.io import read_image, to_uint8_rgb

    if image is not None:
        img = read_image(image)
        return img, f"{image} ({img.shape[1]}x{img.shape[0]})"
    assert frame is not None
    src = data if data is not None else (DEFAULT_DATA if DEFAULT_DATA.exists() else None)
    if src is not None:
        from asfyolo_rt.data.dataset import load_split
        from asfyolo_rt.data.frames import camera_frame

        fr = camera_frame(load_split(src, "val", on_problem="warn"), frame)
        return to_uint8_rgb(fr.image), f"{frame}x{frame} 16-bit frame of {src} val nuclei ({len(fr.polygons)} nuclei)"
    from asfyolo_rt.data.synth import make_nuclei

    return to_uint8_rgb(make_nuclei(0, shape=(frame, frame))[0]), f"synthetic nuclei {frame}x{frame}"


def _frame_output(rows: list[Any], desc: str, csv: Path | None, json_out: Path | None, as_json: bool) -> None:
    from asfyolo_rt.benchmark import append_json, write_csv

    if csv:
        write_csv(rows, str(csv))
    if json_out:
        append_json(rows, str(json_out))
    if as_json:
        print_json({"frame": desc, "rows": [r.to_dict() for r in rows]})
        noise_warnings(rows)
        return
    table = Table(title=f"{rows[0].device if rows else ''} - whole frames: {desc}")
    for col in ("model [backend precision]", "tile", "overlap", "tiles", "batch", "cells", "pre ms", "infer ms",
                "post ms", "frame p50 ms", "frame p90 ms", "MP/s", *PERF_COLUMNS):
        table.add_column(col, justify="left" if col.startswith("model") else "right")
    for r in rows:
        table.add_row(escape(r.label), r.tile, str(r.tile_overlap), str(r.tiles), str(r.batch), str(r.cells),
                      f"{r.pre_ms:.0f}", f"{r.infer_ms:.0f}", f"{r.post_ms:.0f}", f"{r.frame_p50_ms:.0f}",
                      f"{r.frame_p90_ms:.0f}", f"{r.mpix_per_s:.3f}", *perf_cells(r))
    console.print(table)
    noise_warnings(rows)


def _sources(models: list[str] | None, arch: str | None) -> list[tuple[str, Any]]:
    from asfyolo_rt.model import build_model
    from asfyolo_rt.model.weights import config_of
    from asfyolo_rt.weights_registry import resolve_weights

    out: list[tuple[str, Any]] = []
    if arch:
        import torch

        torch.manual_seed(0)
        net = build_model(arch, 1).eval()
        out.append((f"asfyolo-{arch}-random", (net, config_of(net, img_size=640))))
    for m in models or []:
        if Path(m).is_dir():  # a bundle: its model files, as parity and build take it
            from asfyolo_rt.cli.parity import discover

            out += [(f"{Path(m).name}/{f.name}", f) for f in discover([Path(m)])[0]]
            continue
        p = resolve_weights(m, option="MODELS")
        out.append((p.stem, p))
    if not out:
        p = resolve_weights(None)
        out.append((p.stem, p))
    return out


def _load(path: Path) -> tuple[Any, Any]:
    from asfyolo_rt.model.weights import import_official, load_checkpoint

    return load_checkpoint(path) if path.suffix == ".safetensors" else import_official(path)


def _weights_key(src: Any) -> str:
    """First 12 hex digits of the checkpoint's SHA-256 ("random" for an in-memory random-weight model)."""
    if isinstance(src, Path):
        from asfyolo_rt.export.onnx_export import file_sha256

        return file_sha256(src)[:12]
    return "random"


def _onnx_variant(net: Any, cfg: Any, size: int, precision: str, folder: Path, data: Path | None) -> Path:
    """Export (once, cached by file name) the ONNX file of one precision for the benchmark.

    INT8 flavours are calibrated on 32 images of `data` at 320 (fewer above, for memory; synthetic nuclei without
    data): enough for speed, which
    does not depend on the scales; accuracy is measured by `asfyolo-rt export` / `parity`.
    """
    from dataclasses import replace

    from asfyolo_rt.errors import ConfigError
    from asfyolo_rt.export.onnx_export import export_onnx

    names = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx", "int8-cpu": "model.int8-cpu.onnx"}
    if precision not in names:
        raise ConfigError(f"--precision {precision!r}: expected fp32, fp16, int8 or int8-cpu")
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / names["fp32"]
    if not fp32.exists():
        stderr.print(f"exporting {fp32} ...")
        export_onnx(net, fp32, replace(cfg, img_size=size), img_size=size)
    target = folder / names[precision]
    if not target.exists():
        stderr.print(f"making {target} ...")
        if precision == "fp16":
            from asfyolo_rt.export.fp16 import convert_fp16

            convert_fp16(fp32, target)
        else:
            from asfyolo_rt.calib.dataset import build_calibration_set
            from asfyolo_rt.calib.quantize import quantize_ort_cpu, quantize_tensorrt

            src = data if data is not None else (DEFAULT_DATA if DEFAULT_DATA.exists() else None)
            # ONNX Runtime's calibrator keeps every activation of every image: 32 images of the l model at 640
            # exceed 24 GiB, so larger inputs get fewer (32 at 320, 8 at 640, never under 4)
            calib = build_calibration_set(src, (size, size), n=max(4, min(32, round(32 * (320 / size) ** 2))))
            (quantize_tensorrt if precision == "int8" else quantize_ort_cpu)(fp32, target, calib)
    return target
