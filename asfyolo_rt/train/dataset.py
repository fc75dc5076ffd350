"""The training dataset: augmented square images, normalised box targets and overlap index maps.

One item (`TrainDataset[i]`):
- image: (3, S, S) uint8 RGB (the trainer divides by 255 on its device);
- labels: (n, 5) float32 = cls, cx, cy, w, h normalised to [0, 1] by S;
- index_map: (S / mask_ratio, S / mask_ratio) int32, 0 = background, k = labels row k - 1
  (instances painted in decreasing-area order, so smaller ones win where they overlap; §4);
- the image path.

`collate` stacks a batch into images (B, 3, S, S) uint8, targets (n, 6) float32 = batch index, cls,
cx, cy, w, h (rows grouped by image, in index-map order) and index maps (B, S/r, S/r) int32.

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


class TrainDataset(Dataset):
    """Augmented training samples of one split (see module docstring for the item format)."""

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
        self._cache: list[tuple[np.ndarray, Instances]] | None = None
        if cache_images:
            self._cache = [load_resized(s, img_size) for s in self.samples]
            mb = sum(im.nbytes for im, _ in self._cache) / 2**20
            log.info("cached %d training images (%.0f MiB)", len(self._cache), mb)

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load(self, i: int) -> tuple[np.ndarray, Instances]:
        if self._cache is not None:
            img, inst = self._cache[i]
            return img, Instances(inst.classes, list(inst.polygons))
        return load_resized(self.samples[i], self.img_size)

    def box_sizes(self) -> np.ndarray:
        """(M, 2) float32 w, h in pixels of every training box with the image's long side = img_size."""
        out = []
        for s in self.samples:
            if not len(s):
                continue
            b = s.boxes_xyxy_norm()
            h, w = image_size(s.image_path)
            r = self.img_size / max(h, w)
            out.append((b[:, 2:] - b[:, :2]) * np.array([w * r, h * r], np.float32))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 2), np.float32)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
        s = self.img_size
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if self.augment:
            use_mosaic = bool(rng.random() < self.aug.mosaic)
            picks = [index, *rng.integers(0, len(self), 3).tolist()] if use_mosaic else [index]
            img, inst = augment_sample([self.load(i) for i in picks], s, self.aug, rng, use_mosaic=use_mosaic)
            polys = list(inst.polygons)
        else:
            img, inst = letterbox_square(*self.load(index), s)
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

