"""Prediction at the original image resolution: geometry (tiles or letterbox), backend, NMS, masks.

The geometry (native-scale tiles, or the paper's whole-image letterbox) is `asfyolo_rt.infer.geometry`.

Masks are assembled by `asfyolo_rt.kernels.mask_assembly` (Triton on CUDA, the box-bounded
PyTorch reference on CPU): box-local per-cell masks plus one instance label map per image, never
N full-resolution masks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from asfyolo_rt.data.letterbox import LetterboxTransform
from asfyolo_rt.infer.backends import Backend
from asfyolo_rt.infer.sources import Frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictConfig:
    img_size: int | None = None  # fit: long side after resizing; native: tile side (default 640 / the model's)
    scale: str = "native"  # "native" (tiles at the model's pixel scale) or "fit" (whole-image letterbox)
    tile_overlap: int | None = None  # native: px shared by neighbouring tiles (default: the model's)
    model_scale: float = 1.0  # native: network px per image px
    max_object_px: float | None = None  # the model's largest training object (default overlap)
    batch: int = 1  # tiles per backend call
    train_pixel_size_um: float | None = None  # the model's training pixel size (checkpoint), if recorded
    pixel_size_um: float | None = None  # --pixel-size: overrides what the image files record
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 1000  # per tile (native) or per image (fit); DSB2018 images hold up to 382 cells
    mask_threshold: float = 0.5
    min_visible: float = 0.5  # drop a cell of which less than this fraction stays visible in the label image
    soft_nms: bool = False
    kernel_impl: str = "auto"  # mask assembly: auto = Triton on CUDA, reference on CPU


@dataclass
class ImageResult:
    """Detections of one image, in original-image pixels, sorted by descending score.

    boxes (n, 4) xyxy float32; scores (n,); classes (n,) int64; label_map (H, W) int32 with the
    1-based detection index of the highest-scoring mask covering each pixel (0 = background);
    masks: box-local binary masks (`PackedMasks`), mask i covering windows[i] = (x0, y0, w, h).
    """

    frame: Frame
    transform: LetterboxTransform | None  # the letterbox of a "fit" pass; None for native tiles
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    label_map: np.ndarray
    masks: object
    timing_ms: dict[str, float] = field(default_factory=dict)
    tiles: int = 1

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def assemble(protos: torch.Tensor, det: object, t: LetterboxTransform, cfg: PredictConfig) -> tuple[np.ndarray, object]:
    """Label map (H0, W0) and packed box-local masks at the original resolution for one image."""
    from asfyolo_rt.kernels.mask_assembly import mask_assembly

    boxes_orig = t.boxes_to_original(det.boxes.clone())  # type: ignore[attr-defined]
    n = boxes_orig.shape[0]
    bidx = torch.zeros(n, dtype=torch.int64, device=protos.device)
    args = dict(out_size=t.orig_shape, threshold=cfg.mask_threshold, scale=t.scale, pad=t.pad, impl=cfg.kernel_impl)
    coeffs = det.coeffs.to(protos.device)  # type: ignore[attr-defined]
    scores = det.scores.to(protos.device)  # type: ignore[attr-defined]
    b = boxes_orig.to(protos.device)
    packed = mask_assembly(protos[None], coeffs, b, bidx, scores, output="masks", **args)  # type: ignore[arg-type]
    if protos.device.type == "cuda":  # the Triton label-map kernel is cheap: use it
        label_map = mask_assembly(protos[None], coeffs, b, bidx, scores, output="label_map", **args)  # type: ignore[arg-type]
        return label_map[0].cpu().numpy(), packed  # type: ignore[index]
    return label_map_from_packed(packed, scores, t.orig_shape), packed  # CPU: reuse the masks, no second pass


def label_map_from_packed(packed: object, scores: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(H, W) int32 label map from box-local masks: 1 + index of the highest-scoring covering mask
    (ties: lower index), 0 = background. Same result as mask_assembly(output="label_map")."""
    h, w = size
    n = int(scores.shape[0])
    out = np.zeros(h * w, np.int32)  # int32 (not int64): an 8192 x 8192 frame is 256 MiB
    if n == 0:
        return out.reshape(h, w)
    order = np.argsort(-scores.detach().cpu().numpy().astype(np.float64), kind="stable")
    win = packed.windows.cpu().numpy().astype(np.int64)  # type: ignore[attr-defined]
    data = packed.data.cpu().numpy()  # type: ignore[attr-defined]
    offsets = packed.offsets.cpu().numpy()  # type: ignore[attr-defined]
    for i in order[::-1]:  # ascending priority: higher-scoring masks are painted last
        x0, y0, ww, hh = win[i]
        if ww == 0 or hh == 0:
            continue
        m = data[offsets[i] : offsets[i + 1]].reshape(hh, ww).astype(bool)
        view = out.reshape(h, w)[y0 : y0 + hh, x0 : x0 + ww]
        view[m] = i + 1
    return out.reshape(h, w)


def predict(
    backend: Backend,
    frames: Iterable[Frame],
    cfg: PredictConfig | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    total: int = 0,
) -> Iterator[ImageResult]:
    """Run the whole pipeline image by image with the geometry of `cfg` (see asfyolo_rt.infer.geometry)."""
    from asfyolo_rt.infer.geometry import Geometry, PostConfig, Runner

    cfg = cfg or PredictConfig()
    geo = Geometry(cfg.scale, img_size=cfg.img_size, tile_overlap=cfg.tile_overlap, model_scale=cfg.model_scale,
                   batch=cfg.batch)
    post = PostConfig(conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det, mask_threshold=cfg.mask_threshold,
                      soft_nms=cfg.soft_nms, kernel_impl=cfg.kernel_impl)
    runners: dict[float, Runner] = {}
    warned = False
    for i, frame in enumerate(frames):
        scale = cfg.model_scale
        px = cfg.pixel_size_um or frame.pixel_size_um
        if cfg.scale == "native" and px and cfg.train_pixel_size_um:
            scale = cfg.model_scale * px / cfg.train_pixel_size_um  # cells at the size the model was trained on
        elif px and not cfg.train_pixel_size_um and not warned:
            log.info("%s: pixel size %.4g um; the model records none, so images are processed at their own "
                     "pixel scale (record it with `asfyolo-rt weights pack --pixel-size`)", frame.name, px)
            warned = True
        key = round(scale, 6)
        if key not in runners:
            runners[key] = Runner(backend, replace(geo, model_scale=scale), post, max_object_px=cfg.max_object_px)
        res = runners[key](frame.image)
        t0 = time.perf_counter()
        res, label_map = res.final_labels(cfg.min_visible)
        timing = dict(res.timing_ms)
        timing["postprocess"] = timing.get("postprocess", 0.0) + 1e3 * (time.perf_counter() - t0)
        yield ImageResult(
            frame=frame, transform=res.transform, boxes=res.boxes.numpy().astype(np.float32),
            scores=res.scores.numpy(), classes=res.classes.numpy().astype(np.int64), label_map=label_map,
            masks=res.masks, timing_ms=timing, tiles=res.tiles,
        )
        if progress:
            progress(i + 1, total)
