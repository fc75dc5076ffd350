"""Fixtures for end-to-end evaluation tests: a small synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from asfyolo_rt.data.dataset import DatasetSplit, load_split


@pytest.fixture(scope="session")
def synth_split(tmp_path_factory: pytest.TempPathFactory) -> DatasetSplit:
    from asfyolo_rt.data.synth import write_synth_dataset

    root = write_synth_dataset(tmp_path_factory.mktemp("synth"), 0, 10, kind="nuclei", shape=(128, 160), seed=3)
    split = load_split(Path(root), "val")
    # keep images with at most 32 instances (one prototype each)
    split.samples[:] = [s for s in split.samples if len(s.polygons) <= 32]
    assert split.samples
    return split
