"""The models shipped inside the package: present, small, FP16 on disk, FP32 in memory, and they segment cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from asfyolo_rt.errors import CheckpointError
from asfyolo_rt.model.weights import load_checkpoint, read_checkpoint
from asfyolo_rt.weights_registry import ASSETS, DEFAULT, SHIPPED, resolve_weights, shipped_weights

# name -> (dataset folder under ../shared/datasets, training image size, minimum recall at IoU 0.5, conf 0.25
# on the first val images; measured 184/252 = 0.73 (dsb2018) and 12/44 = 0.27 (bcc, glands); an untrained model finds ~0)
EXPECTED = {"dsb2018": ("DSB2018", 320, 0.5), "bcc": ("BCC", 512, 0.2)}


def test_registry_lists_the_expected_models() -> None:
    assert set(SHIPPED) == set(EXPECTED)
    assert DEFAULT == "dsb2018"
    assert resolve_weights(None) == shipped_weights("dsb2018")
    assert resolve_weights("bcc") == ASSETS / SHIPPED["bcc"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_file_is_small_fp16_and_documented(name: str) -> None:
    path = shipped_weights(name)
    assert path.stat().st_size <= 10 * 2**20, "the issue caps shipped weights at 10 MB"
    state, config = read_checkpoint(path)
    floats = [t for t in state.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    assert config.img_size == EXPECTED[name][1]
    assert config.nc == 1 and config.names == {0: "cell"}
    assert config.provenance.get("hardware") and config.provenance.get("epoch") is not None
    card = path.with_suffix(".md")
    assert card.is_file(), f"model card {card.name} missing"
    text = card.read_text()
    assert "mAP50" in text and "COCO" in text


def test_unknown_shipped_name_is_a_clear_error() -> None:
    with pytest.raises(CheckpointError, match="available: dsb2018, bcc"):
        shipped_weights("coco")


@pytest.mark.datasets
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_model_finds_the_cells_of_val_images(name: str, datasets_root: Path) -> None:
    """On val images of its own dataset, the model's confident boxes match ground-truth objects.

    Images whose long side exceeds twice the training size are left out: the shipped models are small
    and trained at 320/512, and at that down-scaling nuclei shrink to a few pixels.
    """
    from asfyolo_rt.boxes import box_iou
    from asfyolo_rt.data.dataset import load_split
    from asfyolo_rt.data.io import image_size, read_image
    from asfyolo_rt.infer.backends import TorchBackend
    from asfyolo_rt.infer.sources import Frame
    from asfyolo_rt.runtime.pipeline import PredictConfig, predict

    split = load_split(datasets_root / EXPECTED[name][0], "val")
    model, config = load_checkpoint(shipped_weights(name))
    assert next(model.parameters()).dtype == torch.float32
    long_side = lambda s: max(image_size(s.image_path))
    samples = [s for s in split.samples if len(s) and long_side(s) <= 2 * config.img_size][:6]
    frames = [Frame(s.image_path.stem, s.image_path, read_image(s.image_path)) for s in samples]
    cfg = PredictConfig(img_size=config.img_size, conf=0.25, iou=0.6)
    hits = total = 0
    for sample, result in zip(samples, predict(TorchBackend(model), frames, cfg)):
        h, w = result.frame.image.shape[:2]
        gt = sample.boxes_xyxy_norm() * np.array([w, h, w, h], np.float32)
        total += len(gt)
        if len(gt) and len(result):
            iou = box_iou(torch.from_numpy(gt), torch.from_numpy(result.boxes))
            hits += int((iou.max(dim=1).values >= 0.5).sum())
    assert total > 0
    assert hits / total >= EXPECTED[name][2], f"{name}: only {hits}/{total} ground-truth cells found at IoU 0.5"

