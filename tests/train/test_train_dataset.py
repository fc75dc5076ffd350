"""TrainDataset: item format, index map <-> label rows <-> image pixels, determinism per (seed, epoch, index)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from asfyolo_rt.data.dataset import load_split
from asfyolo_rt.train.config import AugmentConfig
from asfyolo_rt.train.dataset import TrainDataset, collate

from ._synthetic import colour_mask, iou, write_dataset


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("blobs"), n_train=6, n_val=2)
    return load_split(root, "train")


@pytest.mark.parametrize("index", range(4))
@pytest.mark.parametrize("augment", [True, False])
def test_index_map_labels_and_pixels_agree(split, index: int, augment: bool) -> None:
    size = 128
    ds = TrainDataset(split, size, AugmentConfig(hsv_h=0, hsv_s=0, hsv_v=0, degrees=10), augment=augment)
    img_t, labels, index_map, _ = ds[index]
    assert img_t.shape == (3, size, size) and img_t.dtype == torch.uint8
    assert index_map.shape == (size // 4, size // 4) and labels.shape[1] == 5
    assert int(index_map.max()) <= len(labels)
    img = img_t.permute(1, 2, 0).numpy()
    for k, (cls, cx, cy, w, h) in enumerate(labels.tolist()):
        truth = colour_mask(img, int(cls))
        if truth.sum() < 200:
            continue
        # the label's box covers the instance's pixels (blobs of one colour may repeat: test containment)
        ys, xs = np.nonzero(truth)
        x1, y1, x2, y2 = (cx - w / 2) * size, (cy - h / 2) * size, (cx + w / 2) * size, (cy + h / 2) * size
        inside = (xs >= x1 - 1.5) & (xs <= x2 + 1.5) & (ys >= y1 - 1.5) & (ys <= y2 + 1.5)
        own = truth.copy()
        own[ys[~inside], xs[~inside]] = False
        # the index-map id k + 1 marks the same pixels at 1/4 resolution
        small = cv2.resize(own.astype(np.uint8), (size // 4, size // 4), interpolation=cv2.INTER_AREA) > 0
        assert iou(index_map.numpy() == k + 1, small) > 0.6
        oy, ox = np.nonzero(own)  # the colour's pixels inside the box span the box
        np.testing.assert_allclose([ox.min(), oy.min(), ox.max() + 1, oy.max() + 1], [x1, y1, x2, y2], atol=2.5)


def test_samples_depend_on_seed_epoch_and_index_only(split) -> None:
    ds = TrainDataset(split, 64, seed=1)
    a = ds[2]
    ds.set_epoch(0)
    b = ds[2]
    ds.set_epoch(1)
    c = ds[2]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
    assert not torch.equal(a[0], c[0])
    uncached = TrainDataset(split, 64, seed=1, cache_images=False)
    assert torch.equal(uncached[2][0], a[0])


def test_collate_groups_targets_by_image(split) -> None:
    ds = TrainDataset(split, 64)
    items = [ds[i] for i in range(3)]
    imgs, targets, maps, paths = collate(items)
    assert imgs.shape == (3, 3, 64, 64) and maps.shape == (3, 16, 16) and len(paths) == 3
    counts = [len(it[1]) for it in items]
    assert targets[:, 0].tolist() == [float(i) for i, n in enumerate(counts) for _ in range(n)]
    torch.testing.assert_close(targets[:, 1:], torch.cat([it[1] for it in items]))
    assert ((targets[:, 2:] >= 0) & (targets[:, 2:] <= 1)).all()


def test_box_sizes_are_in_training_pixels(split) -> None:
    wh = TrainDataset(split, 256, cache_images=False).box_sizes()
    assert wh.shape == (split.n_instances, 2)
    assert 10 < float(np.median(wh)) < 256  # blobs of radius ~0.3 * short side at long side 256


def test_area_sampling_draws_images_by_their_windowed_area(tmp_path) -> None:
    """window_sampling "area": a 384 x 512 image is worth 48 windows of 64 px, a 96 x 128 one 3, so the big
    image is the base of ~48/57 of the items (one image per item without mosaic); "image" keeps 1 in 4."""
    import shutil

    small = write_dataset(tmp_path / "small", n_train=3, n_val=1)
    big = write_dataset(tmp_path / "big", n_train=1, n_val=1, shape=(384, 512), seed=3)
    shutil.copy(big / "images/train/000.png", small / "images/train/big.png")
    shutil.copy(big / "labels/train/000.txt", small / "labels/train/big.txt")
    split = load_split(small, "train")
    aug = AugmentConfig(mosaic=0.0, window_sampling="area")
    ds = TrainDataset(split, 64, aug, scale="native")
    names = [p.image_path.name for p in split.samples]
    assert ds.draw_p is not None
    np.testing.assert_allclose(ds.draw_p, [48 / 57 if n == "big.png" else 3 / 57 for n in names], rtol=1e-6)
    hits = 0
    for epoch in range(50):  # 50 epochs x 4 items: 200 independent draws
        ds.set_epoch(epoch)
        hits += sum(ds[i][3].endswith("big.png") for i in range(len(ds)))
    assert 0.75 < hits / 200 < 0.93
    uniform = TrainDataset(split, 64, AugmentConfig(mosaic=0.0), scale="native")
    assert uniform.draw_p is None
    hits = sum(uniform[i % 4][3].endswith("big.png") for i in range(200))
    assert hits == 50
    # at 2x the model scale the small images fill 12 windows each, the big one 192
    np.testing.assert_allclose(TrainDataset(split, 64, aug, scale="native", model_scale=2.0).draw_p,
                               [192 / 228 if n == "big.png" else 12 / 228 for n in names], rtol=1e-6)
