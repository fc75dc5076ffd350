"""The CPU label map derived from box-local masks equals the kernel's label-map output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from asfyolo_rt.kernels.mask_assembly import mask_assembly

from asfyolo_rt.infer.predict import label_map_from_packed


@pytest.mark.parametrize("n", [0, 1, 40])
def test_label_map_from_packed_matches_kernel_reference(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    protos = torch.randn(1, 32, 24, 20, generator=g)
    coeffs = torch.randn(n, 32, generator=g)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([70.0, 80.0])
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 30 + 1], 1)
    scores = torch.rand(n, generator=g).round(decimals=1)  # ties included
    args = dict(out_size=(90, 75), scale=1.1, pad=(3.0, 2.0), impl="torch")
    bidx = torch.zeros(n, dtype=torch.int64)
    ref = mask_assembly(protos, coeffs, boxes, bidx, scores, output="label_map", **args)[0].numpy()
    packed = mask_assembly(protos, coeffs, boxes, bidx, scores, output="masks", **args)
    assert np.array_equal(label_map_from_packed(packed, scores, (90, 75)), ref)
