"""A bioimage.io model package (format 0.5): `asfyolo-rt export --bioimageio OUT`.

OUT/ holds rdf.yaml, the ONNX weights (`export.bioimageio_graph`: grey image in, instance label image
out), test_input.npy / test_output.npy and TIFF sample tensors (the output made by running that ONNX file in ONNX Runtime on the
pre-processed input), a cover image (input | labelled cells) and README.md (documentation). Licence: Apache-2.0 (SPDX id).

Pre-processing declared in rdf.yaml (and applied by bioimage.io consumers before the graph): `scale_range`
between the image's 0.1 and 99.9 percentiles (channel, y and x together, eps 1e-6), then `clip` to [0, 1].
`_preprocess` below is the same formula, used here to make the test output. Only ONNX weights are
packaged: TorchScript or a pytorch_state_dict would reproduce the raw network (pred, protos), not the
label image the package describes, and bioimage.io tests every weight format against the same test
output.

The package is written into a temporary folder and renamed into place; an existing OUT is refused.
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from asfyolo_rt.atomic import atomic_write_bytes, file_sha256
from asfyolo_rt.errors import ConfigError

CITATION = {
    "text": "Kang M, Ting C-M, Ting FF, Phan RC-W. ASF-YOLO: A novel YOLO model with attentional scale sequence "
            "fusion for cell instance segmentation. Image and Vision Computing 147, 105057 (2024).",
    "doi": "10.1016/j.imavis.2024.105057",
}
LOW_PERCENTILE, HIGH_PERCENTILE, EPS = 0.1, 99.9, 1e-6
MIN_SIDE, STEP = 64, 32
ONNX_NAME = "asfyolo.onnx"


@dataclass(frozen=True)
class BioimageioOptions:
    out: Path
    weights: Path | None = None  # checkpoint; None: the shipped DSB2018 model
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 1000
    test_image: Path | None = None  # grey image for the test tensors and cover (default: synthetic nuclei)
    test_size: int = 256  # synthetic test image side (multiple of 32)
    model_scale: float | None = None  # network px per image px; None: the checkpoint's recorded one (else 1)


@dataclass(frozen=True)
class BioimageioResult:
    out: Path
    rdf: Path
    onnx: Path
    test_shape: tuple[int, ...]
    test_cells: int  # cells in the test output


def _preprocess(x: np.ndarray) -> np.ndarray:
    """bioimage.io scale_range (per sample over channel, y, x) + clip [0, 1], in float32."""
    lo, hi = np.percentile(x, [LOW_PERCENTILE, HIGH_PERCENTILE], axis=(1, 2, 3), keepdims=True)
    return np.clip((x - lo) / (hi - lo + EPS), 0.0, 1.0).astype(np.float32)


def _test_image(opts: BioimageioOptions) -> np.ndarray:
    """(H, W) grey test image with H, W multiples of 32 (a given image is cropped to them)."""
    if opts.test_image is None:
        from asfyolo_rt.data.synth import make_nuclei

        if opts.test_size < MIN_SIDE or opts.test_size % STEP:
            raise ConfigError(f"test size {opts.test_size}: expected a multiple of {STEP}, at least {MIN_SIDE}")
        img, _ = make_nuclei(0, shape=(opts.test_size, opts.test_size))
        return img if img.ndim == 2 else img[..., 0]
    from asfyolo_rt.data.io import read_image_raw

    img = read_image_raw(opts.test_image)
    img = img if img.ndim == 2 else img[..., :3].mean(axis=2)
    h, w = (img.shape[0] // STEP) * STEP, (img.shape[1] // STEP) * STEP
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ConfigError(f"--bioimageio-image {opts.test_image}: {img.shape[1]}x{img.shape[0]} px; expected at "
                          f"least {MIN_SIDE}x{MIN_SIDE}")
    return img[:h, :w]


def _cover(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(H, 2W, 3) uint8: the input beside the input with every cell tinted (2:1, as bioimage.io prefers)."""
    from asfyolo_rt.data.io import to_uint8_rgb

    rgb = to_uint8_rgb(image)
    rng = np.random.default_rng(12345)
    colours = rng.integers(40, 256, size=(int(labels.max()) + 1, 3), dtype=np.uint8)
    tinted = rgb.copy()
    inside = labels > 0
    tinted[inside] = (0.5 * rgb[inside] + 0.5 * colours[labels[inside]]).astype(np.uint8)
    edge = np.zeros_like(inside)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    tinted[edge & inside] = colours[labels[edge & inside]]
    return np.concatenate([rgb, tinted], axis=1)


def _axes(tensor: str | None) -> list[dict[str, Any]]:
    def size(a: str) -> dict[str, Any]:
        return {"min": MIN_SIDE, "step": STEP} if tensor is None else {"tensor_id": tensor, "axis_id": a}

    return [{"type": "batch"}, {"type": "channel", "channel_names": ["labels" if tensor else "nuclei"]},
            {"type": "space", "id": "y", "size": size("y")}, {"type": "space", "id": "x", "size": size("x")}]


def rdf(opts: BioimageioOptions, names: dict[int, str], opset: int, sha: dict[str, str]) -> dict[str, Any]:
    """The rdf.yaml content (bioimage.io model format 0.5)."""
    from asfyolo_rt import __version__

    return {
        "format_version": "0.5.4", "type": "model",
        "name": "ASF-YOLO nuclei instance segmentation (asfyolo-rt)",
        "description": "Nucleus instance segmentation with ASF-YOLO (YOLOv5-seg with scale sequence fusion, "
                       "triple feature encoder and channel/position attention); outputs one label per nucleus.",
        "authors": [{"name": "asfyolo-rt contributors"}],
        "cite": [CITATION],
        "license": "Apache-2.0",
        "documentation": "README.md",
        "covers": ["cover.png"],
        "tags": ["instance-segmentation", "nuclei", "fluorescence-light-microscopy", "2d", "onnx", "yolo",
                 "asf-yolo", "dsb2018"],
        "version": __version__,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "inputs": [{
            "id": "raw", "description": "grey image (the nuclear stain), any dtype; scaled to [0, 1] by the "
                                        "pre-processing",
            "axes": _axes(None), "data": {"type": "float32"},
            "test_tensor": {"source": "test_input.npy", "sha256": sha["test_input.npy"]},
            "sample_tensor": {"source": "sample_input.tif", "sha256": sha["sample_input.tif"]},
            "preprocessing": [
                {"id": "scale_range", "kwargs": {"axes": ["channel", "y", "x"], "min_percentile": LOW_PERCENTILE,
                                                 "max_percentile": HIGH_PERCENTILE, "eps": EPS}},
                {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}},
            ],
        }],
        "outputs": [{
            "id": "labels", "description": "instance label image: 0 background, 1..N one id per nucleus "
                                           "(by descending score)",
            "axes": _axes("raw"), "data": {"type": "int32"},
            "test_tensor": {"source": "test_output.npy", "sha256": sha["test_output.npy"]},
            "sample_tensor": {"source": "sample_output.tif", "sha256": sha["sample_output.tif"]},
        }],
        "weights": {"onnx": {"source": ONNX_NAME, "sha256": sha[ONNX_NAME], "opset_version": opset}},
        "config": {"asfyolo_rt": {"classes": {str(k): v for k, v in sorted(names.items())}, "conf": opts.conf,
                                  "iou": opts.iou, "max_det": opts.max_det, "model_scale": opts.model_scale or 1.0}},
    }


def _scale_text(s: float) -> str:
    if s == 1.0:
        return "its own pixel size"
    return (f"{s:g}x its own pixel size (the graph resizes the image bilinearly by {s:g}, rounded up to "
            f"multiples of {STEP}, the scale the model was trained at and `asfyolo-rt predict` runs it at), "
            f"and the labels come back to the input's size")


def _documentation(opts: BioimageioOptions, names: dict[int, str], weights: str) -> str:
    return f"""# ASF-YOLO nuclei instance segmentation

An ASF-YOLO model (weights: `{weights}`) packaged by asfyolo-rt. Input: one grey image (the nuclear stain),
axes (batch, channel = 1, y, x), height and width multiples of {STEP} (at least {MIN_SIDE}). Output: an int32
instance label image of the same size, 0 = background, 1..N one id per cell (ids by descending score).
Classes: {", ".join(names.values())}.

## Pre-processing
The image is scaled linearly between its own {LOW_PERCENTILE} and {HIGH_PERCENTILE} percentiles to [0, 1] and
clipped (`scale_range`, `clip`); the graph repeats the grey channel into the model's three input channels.

## Post-processing (inside the ONNX graph)
Score threshold {opts.conf}, class-aware NMS at IoU {opts.iou}, at most {opts.max_det} cells, masks from the
prototypes at 1/4 of the network input's resolution (threshold 0.5) painted into a label map (the highest-scoring cell wins
where masks overlap), upsampled to the input size by nearest neighbour.

## Limits
The whole image goes through the network at {_scale_text(opts.model_scale or 1.0)}: the model was trained on
nuclei at the pixel scale of the DSB2018 images; rescale images whose nuclei are much larger or smaller.
Label edges follow the prototype grid ({4 / (opts.model_scale or 1.0):.3g} image px); `asfyolo-rt predict` (tiles, full-resolution masks, duplicate removal)
gives finer edges and handles images of any size.

## Validation
The package's test tensors (a synthetic nuclei image unless another was given at export) were made by running
this ONNX file in ONNX Runtime on the pre-processed test input; `bioimageio test rdf.yaml` reproduces them.
Accuracy of the source model on DSB2018 val is in the asfyolo-rt model card (its protocols use full-resolution
masks; this graph's prototype-resolution labels are coarser).

## Cite
{CITATION["text"]} doi:{CITATION["doi"]}
"""


def export_bioimageio(opts: BioimageioOptions) -> BioimageioResult:
    """Export the checkpoint (dynamic H, W), wrap it (export.bioimageio_graph) and write the package."""
    import onnx
    from asfyolo_rt.export.onnx_export import export_onnx, load_weights

    from asfyolo_rt.weights_registry import resolve_weights

    if Path(opts.out).exists():
        raise ConfigError(f"--bioimageio {opts.out} already exists", hint="choose a new folder; nothing was overwritten")
    weights = resolve_weights(opts.weights)
    model, config = load_weights(weights)
    if opts.model_scale is None:  # the scale predict runs these weights at
        from dataclasses import replace

        from asfyolo_rt.runtime.info import read_model_info

        opts = replace(opts, model_scale=read_model_info(weights).model_scale)
    with tempfile.TemporaryDirectory() as tmp:
        raw = export_onnx(model, Path(tmp) / "raw.onnx", config, img_size=config.img_size or 320,
                          dynamic_batch=True, dynamic_size=True)
        return write_package(onnx.load(str(raw.path)), opts, config.names, weights.name)


def write_package(raw_model: object, opts: BioimageioOptions, names: dict[int, str], source: str) -> BioimageioResult:
    """Write the package of an exported model (ONNX ModelProto with outputs pred, protos and dynamic H, W)."""
    import onnx
    import onnxruntime as ort
    from asfyolo_rt.export.bioimageio_graph import INPUT, OUTPUT, build_label_graph
    from asfyolo_rt.export.end2end import End2EndConfig
    from asfyolo_rt.export.onnx_export import save_model

    from asfyolo_rt.data.io import write_image

    out = Path(opts.out)
    if out.exists():
        raise ConfigError(f"--bioimageio {out} already exists", hint="choose a new folder; nothing was overwritten")
    cfg = End2EndConfig(conf_threshold=opts.conf, iou_threshold=opts.iou, max_det=opts.max_det,
                        topk=max(opts.max_det, 3840))
    assert isinstance(raw_model, onnx.ModelProto)
    graph = build_label_graph(raw_model, cfg, model_scale=opts.model_scale or 1.0)
    image = _test_image(opts)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_model(graph, stage / ONNX_NAME)
        x = image.astype(np.float32)[None, None]
        sess = ort.InferenceSession(str(stage / ONNX_NAME), providers=["CPUExecutionProvider"])
        y = sess.run([OUTPUT], {INPUT: _preprocess(x)})[0]
        np.save(stage / "test_input.npy", x)
        np.save(stage / "test_output.npy", y)
        write_image(stage / "cover.png", _cover(image, y[0, 0]))
        (stage / "README.md").write_text(_documentation(opts, names, source))
        write_image(stage / "sample_input.tif", x[0, 0])
        write_image(stage / "sample_output.tif", y[0, 0])
        sha = {n: file_sha256(stage / n) for n in ("test_input.npy", "test_output.npy", "sample_input.tif",
                                                   "sample_output.tif", ONNX_NAME)}
        opset = next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), 18)
        doc = rdf(opts, names, int(opset), sha)
        atomic_write_bytes(stage / "rdf.yaml", yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode())
        for f in stage.iterdir():
            f.chmod(0o644)
        stage.chmod(0o755)
        stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return BioimageioResult(out, out / "rdf.yaml", out / ONNX_NAME, tuple(x.shape), int(len(np.unique(y)) - 1))
