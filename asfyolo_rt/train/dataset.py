"""The training dataset: augmented square images, normalised box targets and overlap index maps.

One item (`TrainDataset[i]`):
- image: (3, S, S) uint8 RGB (the trainer divides by 255 on its device);
- labels: (n, 5) float32 = cls, cx, cy, w, h normalised to [0, 1] by S;
- index_map: (S / mask_ratio, S / mask_ratio) int32, 0 = background, k = labels row k - 1
  (instances painted in decreasing-area order, so smaller ones win where they overlap; §4);
- the image path.

`collate` stacks a batch into images (B, 3, S, S) uint8, targets (n, 6) float32 = batch index, cls,
cx, cy, w, h (rows grouped by image, in index-map order) and index maps (B, S/r, S/r) int32.

Scale "fit" (the paper's): every image is resized so its long side is S, then augmented. Scale
"native": every item is built from windows of S x S pixels cut from the full-resolution image (resized
only by the run's `model_scale`, 1.0 = the image's own pixels), so objects keep the size they have in
the images the model will segment; a window is placed around a random instance with probability
`augment.object_bias` (else uniformly), instances cut by the window edge are clipped to it, and the
mosaic and affine (scale jitter around 1.0) run on those windows as on resized images.

Randomness: sample i of epoch e uses `numpy.random.default_rng((seed, e, i))`, so a batch does not
depend on worker count or on whether the run was interrupted and resumed. Call `set_epoch(e)` before
iterating (workers are not persistent, so every epoch's workers see the new value).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import Dataset

from asfyolo_rt.data.dataset import DatasetSplit, Sample
from asfyolo_rt.data.io import image_size, read_image
from asfyolo_rt.data.masks import polygons_to_index_map
from asfyolo_rt.errors import DataError
from asfyolo_rt.train.augment import (
    Instances,
    augment_sample,
    letterbox_square,
    polygon_boxes,
    resample_polygons,
    resize_long_side,
)
from asfyolo_rt.train.config import AugmentConfig

log = logging.getLogger(__name__)


def load_resized(sample: Sample, size: int) -> tuple[np.ndarray, Instances]:
    """Read one image with its long side resized to `size`; polygons (K_i, 2) in its pixels.

    Vertices are pixel-centre coordinates (normalised value x original size), moved exactly as
    cv2.resize moves pixel centres: x' = (x + 0.5) * r - 0.5.
    """
    raw = read_image(sample.image_path)
    img = resize_long_side(raw, size)
    (h0, w0), (h, w) = raw.shape[:2], img.shape[:2]
    orig, ratio = np.array([w0, h0], np.float32), np.array([w / w0, h / h0], np.float32)
    polys = [(np.asarray(p, np.float32) * orig + 0.5) * ratio - 0.5 for p in sample.polygons]
    return img, Instances(np.asarray(sample.classes, np.int64).reshape(-1), polys)


def load_native(sample: Sample, model_scale: float = 1.0) -> tuple[np.ndarray, Instances]:
    """Read one image at `model_scale` x its own pixel scale; polygons (K_i, 2) in its pixels."""
    raw = read_image(sample.image_path)
    h0, w0 = raw.shape[:2]
    if model_scale != 1.0:
        return load_resized(sample, max(1, round(max(h0, w0) * model_scale)))
    orig = np.array([w0, h0], np.float32)
    polys = [np.asarray(p, np.float32) * orig for p in sample.polygons]
    return raw, Instances(np.asarray(sample.classes, np.int64).reshape(-1), polys)


def cut_window(
    img: np.ndarray, inst: Instances, size: int, rng: np.random.Generator, object_bias: float, resample: int
) -> tuple[np.ndarray, Instances]:
    """A window of at most size x size pixels of `img`, placed around a random instance with probability
    `object_bias` (else uniformly). Polygons are resampled to `resample` points and clipped to the window;
    instances with no point strictly inside it are dropped."""
    h, w = img.shape[:2]
    wh, ww = min(h, size), min(w, size)
    n = len(inst)
    if n and rng.random() < object_bias:
        k = int(rng.integers(n))
        p = inst.polygons[k]
        cx, cy = float(p[:, 0].mean()), float(p[:, 1].mean())
        x0 = int(round(cx - rng.uniform(0.15, 0.85) * ww))
        y0 = int(round(cy - rng.uniform(0.15, 0.85) * wh))
    else:
        x0, y0 = int(rng.integers(0, w - ww + 1)), int(rng.integers(0, h - wh + 1))
    x0, y0 = min(max(x0, 0), w - ww), min(max(y0, 0), h - wh)
    crop = img[y0:y0 + wh, x0:x0 + ww]
    if not n:
        return crop, Instances(inst.classes, [])
    polys = resample_polygons(list(inst.polygons), resample) - np.array([x0, y0], np.float32)
    inside = ((polys[..., 0] > 0) & (polys[..., 0] < ww - 1) & (polys[..., 1] > 0) & (polys[..., 1] < wh - 1)).any(1)
    polys = polys[inside]
    polys[..., 0] = np.clip(polys[..., 0], 0, ww - 1)
    polys[..., 1] = np.clip(polys[..., 1], 0, wh - 1)
    return crop, Instances(inst.classes[inside], list(polys))


def largest_object_px(split: DatasetSplit, model_scale: float = 1.0) -> float:
    """The longest box side over every instance of `split`, in pixels at `model_scale` (the default tile
    overlap of native-scale inference must exceed it)."""
    best = 0.0
    for s in split.samples:
        if not len(s):
            continue
        b = s.boxes_xyxy_norm()
        h, w = image_size(s.image_path)
        best = max(best, float(((b[:, 2:] - b[:, :2]) * np.array([w, h], np.float32)).max()) * model_scale)
    return round(best, 1)


def object_size_px(split: DatasetSplit, model_scale: float = 1.0, q: float = 99.0) -> float | None:
    """The q-th percentile of the instances' longest box side over `split`, in pixels at `model_scale` (the
    overlap native-scale inference needs for all but the rarest cells; larger ones are seen again in a tile
    centred on them). None for a split without instances."""
    sides: list[np.ndarray] = []
    for s in split.samples:
        if not len(s):
            continue
        b = s.boxes_xyxy_norm()
        h, w = image_size(s.image_path)
        sides.append(((b[:, 2:] - b[:, :2]) * np.array([w, h], np.float32)).max(1) * model_scale)
    if not sides:
        return None
    return round(float(np.percentile(np.concatenate(sides), q)), 1)


def window_weights(samples: list[Sample], size: int, model_scale: float = 1.0) -> np.ndarray:
    """Draw probabilities of native-scale training images: each image's area at `model_scale`, in
    size x size windows, at least 1 (an image smaller than a window still fills one), normalised."""
    areas = np.array([image_size(s.image_path) for s in samples], np.float64).prod(1) * model_scale**2
    w = np.maximum(areas / float(size * size), 1.0)
    return w / w.sum()


class TrainDataset(Dataset):
    """Augmented training samples of one split (see module docstring for the item format and scales)."""

    def __init__(
        self,
        split: DatasetSplit,
        img_size: int,
        aug: AugmentConfig | None = None,
        *,
        seed: int = 0,
        augment: bool = True,
        mask_ratio: int = 4,
        cache_images: bool = True,
        scale: str = "fit",
        model_scale: float = 1.0,
    ) -> None:
        if not split.samples:
            raise DataError(f"split {split.split!r} of {split.root} has no images to train on")
        self.split = split
        self.samples = split.samples
        self.img_size = img_size
        self.aug = aug or AugmentConfig()
        self.seed = seed
        self.augment = augment
        self.mask_ratio = mask_ratio
        self.epoch = 0
        if scale not in ("fit", "native"):
            raise DataError(f"scale {scale!r}: expected 'fit' or 'native'")
        self.scale = scale
        self.model_scale = model_scale
        self._cache: list[tuple[np.ndarray, Instances]] | None = None
        self.draw_p: np.ndarray | None = None  # per-image draw probabilities (window_sampling "area")
        if scale == "native" and self.aug.window_sampling == "area":
            self.draw_p = window_weights(self.samples, img_size, model_scale)
        if cache_images:
            self._cache = [self._read(s) for s in self.samples]
            mb = sum(im.nbytes for im, _ in self._cache) / 2**20
            log.info("cached %d training images (%.0f MiB)", len(self._cache), mb)

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _read(self, sample: Sample) -> tuple[np.ndarray, Instances]:
        if self.scale == "native":
            return load_native(sample, self.model_scale)
        return load_resized(sample, self.img_size)

    def load(self, i: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, Instances]:
        """Image i resized (scale "fit"), or a window of it at native scale (needs `rng`)."""
        if self._cache is not None:
            img, inst = self._cache[i]
            inst = Instances(inst.classes, list(inst.polygons))
        else:
            img, inst = self._read(self.samples[i])
        if self.scale == "native":
            rng = rng if rng is not None else np.random.default_rng((self.seed, self.epoch, i, 1))
            img, inst = cut_window(img, inst, self.img_size, rng, self.aug.object_bias, self.aug.resample_points)
        return img, inst

    def box_sizes(self) -> np.ndarray:
        """(M, 2) float32 w, h in pixels of every training box with the image's long side = img_size."""
        out = []
        for s in self.samples:
            if not len(s):
                continue
            b = s.boxes_xyxy_norm()
            h, w = image_size(s.image_path)
            r = self.model_scale if self.scale == "native" else self.img_size / max(h, w)
            out.append((b[:, 2:] - b[:, :2]) * np.array([w * r, h * r], np.float32))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 2), np.float32)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
        s = self.img_size
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if self.augment:
            use_mosaic = bool(rng.random() < self.aug.mosaic)
            if self.draw_p is not None:
                picks = rng.choice(len(self), 4 if use_mosaic else 1, p=self.draw_p).tolist()
            else:
                picks = [index, *rng.integers(0, len(self), 3).tolist()] if use_mosaic else [index]
            img, inst = augment_sample([self.load(i, rng) for i in picks], s, self.aug, rng, use_mosaic=use_mosaic)
            polys = list(inst.polygons)
            index = picks[0]  # the image the item is built on (differs from `index` under area sampling)
        else:
            img, inst = letterbox_square(*self.load(index, rng), s)
            polys = list(resample_polygons(list(inst.polygons), self.aug.resample_points))
            inst.boxes = polygon_boxes(np.asarray(polys, np.float32).reshape(-1, self.aug.resample_points, 2), s, s)
        index_map, order = polygons_to_index_map(polys, (s, s), downsample=self.mask_ratio)
        boxes = np.asarray(inst.boxes, np.float32).reshape(-1, 4)[order]
        classes = inst.classes[order].astype(np.float32)
        xywh = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                         boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1) / s
        labels = np.concatenate([classes[:, None], xywh], 1).astype(np.float32)
        image = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        return image, torch.from_numpy(labels), torch.from_numpy(index_map), str(self.samples[index].image_path)


def collate(
    batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Stack items; targets (n, 6) = batch index, cls, cx, cy, w, h (grouped by image, map order)."""
    images, labels, maps, paths = zip(*batch)
    targets = [torch.cat([torch.full((len(lb), 1), float(i)), lb], 1) for i, lb in enumerate(labels)]
    return torch.stack(images), torch.cat(targets, 0), torch.stack(maps), list(paths)

