"""Models shared by test folders (import as `from testing_models import ...`; tests/ is on sys.path)."""

from __future__ import annotations

import torch


def input_dependent_n_model():
    """A random n model whose outputs depend on the image (a fresh YOLOv5 init is dominated by its priors).

    BatchNorm running variances 0.3 keep activations from shrinking through the depth; the head's prediction
    and prototype weights are scaled up and the objectness/class biases set so that confidences spread over
    ~0.05-0.17 with tens of boxes per image above 0.16.
    """
    from asfyolo_rt.model import build_model

    torch.manual_seed(0)
    m = build_model("n", 1).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                mod.running_var.fill_(0.3)
        for conv in m.head.m:
            w = conv.weight.view(3, -1, conv.weight.shape[1])  # (anchors, 5 + nc + 32, c_in)
            w[:, 4:6].mul_(100.0)  # objectness and class logits: input-dependent
            w[:, 6:].mul_(3.0)  # mask coefficients
            b = conv.bias.view(3, -1)
            b[:, 4] = -3.0
            b[:, 5] = 3.0
        m.head.proto.cv3.conv.weight.mul_(30.0)
    return m
