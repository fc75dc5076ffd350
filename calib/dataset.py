"""Calibration image sets: sampled, seeded, stratified, pre-processed exactly as at inference.

Sources (`--data`):
- a YOLO-seg dataset folder or data YAML: images of its `train` split (the split used for evaluation,
  `val`, is left alone unless it is the only one);
- a plain folder of images (searched recursively);
- None: synthetic fluorescence nuclei from `asfyolo_rt.data.synth.make_nuclei` (a warning is logged:
  real images from the target microscope give better scales).

Sampling: N images (default min(500, all)), stratified by (source folder, image height x width) with
largest-remainder allocation (every stratum gets at least one image when N allows), uniformly at random
within a stratum with a seeded generator; the result is sorted by path. Pre-processing is what inference
does with the model: `asfyolo_rt.data.letterbox.preprocess` to the model input size for whole-image
(fit-scale) models; for native-scale models (`tile_scale`) one seeded tile-sized window per image at the
model scale, padded like the edge tiles of `asfyolo_rt.runtime.stages`.

Images are held as uint8 (N, 3, H, W) to bound memory (500 images at 640 x 640 take 0.6 GB) and converted
to float32 [0, 1] per batch.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asfyolo_rt.errors import CalibrationError, DataError

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

DEFAULT_MAX_IMAGES = 500
DEFAULT_SYNTHETIC_IMAGES = 64
# Below this many images the activation ranges are a handful of samples: warn. (NVIDIA advises >= 500 for CNNs;
# 32 is where the tiny-dataset case, e.g. a lab's first 40 annotated images, is still accepted silently.)
MIN_ADVISED_IMAGES = 32


def few_images_warning(n: int, source: str | None) -> str | None:
    """The warning for a calibration set of `n` images (None when there are enough)."""
    if n >= MIN_ADVISED_IMAGES:
        return None
    where = f" from {source}" if source else " (synthetic)"
    return (f"INT8 calibrated on only {n} image{'s' if n != 1 else ''}{where}, fewer than {MIN_ADVISED_IMAGES}: the "
            "activation ranges may not cover the data and INT8 accuracy can drop; pass --data with more images "
            f"(--calib-images {MIN_ADVISED_IMAGES} or more; NVIDIA advises about 500)")
SYNTHETIC_SHAPES = ((256, 256), (256, 320), (360, 360), (520, 696))  # DSB2018's common sizes
SYNTHETIC_WARNING = (
    "no calibration data given: calibrating INT8 scales on synthetic nuclei images; real images from the "
    "target microscope give better scales (pass --data DATASET_OR_FOLDER)"
)


@dataclass(frozen=True)
class CalibImage:
    """One calibration image: where it came from and its original size."""

    id: str  # file path, or "synthetic:nuclei:<seed>:<H>x<W>"
    source: str  # stratum source (folder relative to the data root, or "synthetic")
    shape: tuple[int, int]  # original (H, W)


@dataclass
class CalibrationSet:
    """Pre-processed calibration images.

    pixels: (N, 3, H, W) uint8 RGB letterboxed; `batches()` yields float32 in [0, 1].
    """

    pixels: np.ndarray
    entries: list[CalibImage]
    img_size: tuple[int, int]
    seed: int
    synthetic: bool
    data: str | None
    content_sha256: str  # hash over the image files' bytes (or synthetic ids), in entry order
    preprocess: dict[str, Any] = field(default_factory=dict)
    split: str | None = None  # the dataset split the images came from (None: a plain folder, or synthetic)
    folder: str | None = None  # the folder sampled (split folder or plain folder)

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def float_images(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(n, 3, H, W) float32 in [0, 1] for entries start..stop."""
        return self.pixels[start:stop].astype(np.float32) / np.float32(255.0)

    def batches(self, batch_size: int = 1) -> Iterator[np.ndarray]:
        for s in range(0, len(self), batch_size):
            yield self.float_images(s, s + batch_size)

    def strata(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for e in self.entries:
            counts[f"{e.source}:{e.shape[0]}x{e.shape[1]}"] += 1
        return dict(sorted(counts.items()))

    def image_list_sha256(self) -> str:
        """Hash of the ordered image ids and their content hash: changes when any image changes."""
        h = hashlib.sha256()
        for e in self.entries:
            h.update(f"{e.id}\n".encode())
        h.update(self.content_sha256.encode())
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        return {
            "n_images": len(self),
            "img_size": list(self.img_size),
            "seed": self.seed,
            "synthetic": self.synthetic,
            "data": self.data,
            "split": self.split,
            "folder": self.folder,
            "strata": self.strata(),
            "preprocess": self.preprocess,
            "images": [e.id for e in self.entries],
            "image_list_sha256": self.image_list_sha256(),
        }


def preprocess_description(img_size: tuple[int, int], tile_scale: float | None = None) -> dict[str, Any]:
    """What the calibration images went through (part of the cache fingerprint)."""
    if tile_scale is not None:
        return {
            "function": "asfyolo_rt.calib.dataset.native_tile (one seeded window per image, as tiled inference cuts)",
            "shape": list(img_size),
            "model_scale": tile_scale,
            "color": 114,
            "reader": "asfyolo_rt.data.io.read_image(method='percentile', low=0.1, high=99.9)",
            "dtype": "float32",
            "range": [0, 1],
            "layout": "NCHW RGB",
        }
    return {
        "function": "asfyolo_rt.data.letterbox.preprocess",
        "shape": list(img_size),
        "color": 114,
        "reader": "asfyolo_rt.data.io.read_image(method='percentile', low=0.1, high=99.9)",
        "dtype": "float32",
        "range": [0, 1],
        "layout": "NCHW RGB",
    }


def _list_source(data: Path) -> tuple[list[Path], Path, str | None]:
    """Image paths of a dataset (train split) or a plain folder, the root strata are relative to, and the
    split (None for a plain folder)."""
    from asfyolo_rt.data.dataset import _walk_images, list_images, resolve_source

    if data.is_dir() and not (data / "images").is_dir() and not any(
        (data / n).is_file() for n in ("data.yaml", "dataset.yaml")
    ):
        return _walk_images(data), data, None
    try:
        source = resolve_source(data)
    except DataError:
        if data.is_dir():
            return _walk_images(data), data, None
        raise
    split = "train" if "train" in source.splits else next(iter(source.splits), None)
    if split is None:
        raise CalibrationError(f"{data}: the dataset has no splits to calibrate on")
    paths = list_images(source.splits[split])
    roots = [e for e in source.splits[split] if e.is_dir()]
    return paths, roots[0] if len(roots) == 1 else source.root, split


def stratified_sample(keys: list[str], n: int, seed: int) -> list[int]:
    """Indices of n items, stratified by key (largest remainder, >= 1 per stratum if n allows), seeded."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        groups[k].append(i)
    total = len(keys)
    if n >= total:
        return list(range(total))
    names = sorted(groups)
    quota = {k: n * len(groups[k]) / total for k in names}
    alloc = {k: int(quota[k]) for k in names}
    if n >= len(names):
        for k in names:
            alloc[k] = max(alloc[k], 1)
    while sum(alloc.values()) > n:  # the >= 1 floors overshot: take from strata holding more than one
        k = max((s for s in names if alloc[s] > 1), key=lambda s: (alloc[s] - quota[s], alloc[s]))
        alloc[k] -= 1
    for k in sorted(names, key=lambda s: (-(quota[s] - alloc[s]), s)):
        if sum(alloc.values()) >= n:
            break
        if alloc[k] < len(groups[k]):
            alloc[k] += 1
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for k in names:
        members = groups[k]
        pick = rng.choice(len(members), size=min(alloc[k], len(members)), replace=False)
        chosen.extend(members[int(j)] for j in pick)
    return sorted(chosen)


def native_tile(image: np.ndarray, img_size: tuple[int, int], model_scale: float, rng: np.random.Generator) -> np.ndarray:
    """One (3, H, W) uint8 window of `image` at `model_scale`, as tiled inference cuts it: a seeded random
    position inside the image, padded with 114 where the image is smaller than the tile."""
    import cv2

    from asfyolo_rt.runtime.stages import PAD_VALUE

    h0, w0 = image.shape[:2]
    if model_scale != 1.0:
        size = (max(1, round(w0 * model_scale)), max(1, round(h0 * model_scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR if model_scale > 1 else cv2.INTER_AREA)
    th, tw = img_size
    hs, ws = image.shape[:2]
    y0 = int(rng.integers(0, hs - th + 1)) if hs > th else 0
    x0 = int(rng.integers(0, ws - tw + 1)) if ws > tw else 0
    out = np.full((th, tw, 3), PAD_VALUE, np.uint8)
    crop = image[y0 : y0 + th, x0 : x0 + tw]
    out[: crop.shape[0], : crop.shape[1]] = crop
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def build_calibration_set(
    data: str | Path | None,
    img_size: tuple[int, int],
    *,
    n: int | None = None,
    seed: int = 0,
    tile_scale: float | None = None,
    progress: Progress | None = None,
) -> CalibrationSet:
    """Sample and pre-process calibration images (see the module docstring).

    data: dataset folder / data YAML / image folder, or None for synthetic images.
    img_size: network (H, W). n: number of images (default min(500, available); synthetic: 64).
    tile_scale: None = letterbox each whole image (fit-scale models); a model scale = one native-scale
    window per image, the way tiled inference sees the data (native-scale models).
    """
    from asfyolo_rt.data.io import image_size, read_image, to_uint8_rgb
    from asfyolo_rt.data.letterbox import preprocess

    if n is not None and n < 1:
        raise CalibrationError(f"--calib-images {n}; expected a positive number of images")
    desc = preprocess_description(img_size, tile_scale)
    tile_rng = np.random.default_rng(seed + 7919)

    def prepare(rgb: np.ndarray) -> np.ndarray:
        if tile_scale is not None:
            return native_tile(rgb, img_size, tile_scale, tile_rng)
        tensor, _ = preprocess([rgb], img_size)
        return np.clip(tensor[0].numpy() * 255.0 + 0.5, 0, 255).astype(np.uint8)
    h, w = img_size
    entries: list[CalibImage] = []
    if data is None:
        log.warning(SYNTHETIC_WARNING)
        count = n or DEFAULT_SYNTHETIC_IMAGES
        pixels = np.empty((count, 3, h, w), np.uint8)
        digest = hashlib.sha256()
        for i in range(count):
            shape = SYNTHETIC_SHAPES[i % len(SYNTHETIC_SHAPES)]
            s = seed * 100_003 + i
            from asfyolo_rt.data.synth import make_nuclei

            raw, _ = make_nuclei(s, shape)
            pixels[i] = prepare(to_uint8_rgb(raw))
            entries.append(CalibImage(f"synthetic:nuclei:{s}:{shape[0]}x{shape[1]}", "synthetic", shape))
            digest.update(entries[-1].id.encode())
            if progress:
                progress(i + 1, count)
        return CalibrationSet(pixels, entries, img_size, seed, True, None, digest.hexdigest(), desc)

    root_path = Path(data)
    if not root_path.exists():
        raise CalibrationError(f"--data {root_path} does not exist",
                               hint="pass a dataset folder, a data YAML or a folder of images")
    paths, root, split = _list_source(root_path)
    if not paths:
        raise CalibrationError(f"--data {root_path}: no images found",
                               hint="supported: .png .jpg .tif .bmp ... (recursively in a folder)")
    keys = []
    shapes = []
    for p in paths:
        try:
            shp = image_size(p)
        except DataError as exc:
            raise CalibrationError(f"calibration image {p} is unreadable: {exc}") from exc
        shapes.append(shp)
        try:
            rel = os.path.relpath(p.parent, root)
        except ValueError:
            rel = str(p.parent)
        keys.append(f"{rel}:{shp[0]}x{shp[1]}")
    count = min(DEFAULT_MAX_IMAGES, len(paths)) if n is None else min(n, len(paths))
    if n is not None and n > len(paths):
        log.warning("--calib-images %d but only %d images in %s: using all of them", n, len(paths), root_path)
    picked = stratified_sample(keys, count, seed)
    pixels = np.empty((len(picked), 3, h, w), np.uint8)
    digest = hashlib.sha256()
    for j, i in enumerate(picked):
        p = paths[i]
        digest.update(Path(p).read_bytes())
        pixels[j] = prepare(read_image(p))
        entries.append(CalibImage(str(p), keys[i].rsplit(":", 1)[0], shapes[i]))
        if progress:
            progress(j + 1, len(picked))
    return CalibrationSet(pixels, entries, img_size, seed, False, str(root_path), digest.hexdigest(), desc,
                          split=split, folder=str(root))
