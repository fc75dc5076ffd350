"""Results of prediction at the original image resolution, and the label maps painted from box-local masks.

The pipeline that makes them (geometry, backend, NMS, masks) is the runtime layer: `asfyolo_rt.runtime`.

Masks are assembled by `asfyolo_rt.kernels.mask_assembly` (Triton on CUDA, the box-bounded
PyTorch reference on CPU): box-local per-cell masks plus one instance label map per image, never
N full-resolution masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from asfyolo_rt.infer.sources import Frame

if TYPE_CHECKING:
    import torch

    from asfyolo_rt.data.letterbox import LetterboxTransform
    from asfyolo_rt.infer.nms import Detections
    from asfyolo_rt.kernels.mask_assembly import Impl, PackedMasks


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
    masks: PackedMasks
    timing_ms: dict[str, float] = field(default_factory=dict)
    tiles: int = 1

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def assemble(protos: torch.Tensor, det: Detections, t: LetterboxTransform, *, mask_threshold: float = 0.5,
             kernel_impl: str = "auto") -> tuple[np.ndarray, PackedMasks]:
    """Label map (H0, W0) and packed box-local masks at the original resolution for one image."""
    import torch

    from asfyolo_rt.kernels.mask_assembly import mask_assembly

    dev = protos.device
    b = t.boxes_to_original(det.boxes.clone()).to(dev)
    bidx = torch.zeros(b.shape[0], dtype=torch.int64, device=dev)
    coeffs, scores = det.coeffs.to(dev), det.scores.to(dev)
    impl = cast("Impl", kernel_impl)  # checked by the kernel
    packed = mask_assembly(protos[None], coeffs, b, bidx, scores, t.orig_shape, threshold=mask_threshold,
                           scale=t.scale, pad=t.pad, output="masks", impl=impl)
    if dev.type == "cuda":  # the Triton label-map kernel is cheap: use it
        label_map = mask_assembly(protos[None], coeffs, b, bidx, scores, t.orig_shape, threshold=mask_threshold,
                                  scale=t.scale, pad=t.pad, output="label_map", impl=impl)
        return label_map[0].cpu().numpy(), packed
    return label_map_from_packed(packed, scores, t.orig_shape), packed  # CPU: reuse the masks, no second pass


def label_map_from_packed(packed: Any, scores: Any, size: tuple[int, int]) -> np.ndarray:
    """(H, W) int32 label map from box-local masks: 1 + index of the highest-scoring covering mask
    (ties: lower index), 0 = background. Same result as mask_assembly(output="label_map"). Takes the masks
    and scores as CPU tensors (`PackedMasks`) or NumPy arrays (`asfyolo_rt.runtime.lean_ops.PackedArrays`)."""
    h, w = size
    n = int(scores.shape[0])
    out = np.zeros(h * w, np.int32)  # int32 (not int64): an 8192 x 8192 frame is 256 MiB
    if n == 0:
        return out.reshape(h, w)
    order = np.argsort(-_np(scores).astype(np.float64), kind="stable")
    win = _np(packed.windows).astype(np.int64)
    data = _np(packed.data)
    offsets = _np(packed.offsets)
    for i in order[::-1]:  # ascending priority: higher-scoring masks are painted last
        x0, y0, ww, hh = win[i]
        if ww == 0 or hh == 0:
            continue
        m = data[offsets[i] : offsets[i + 1]].reshape(hh, ww).astype(bool)
        view = out.reshape(h, w)[y0 : y0 + hh, x0 : x0 + ww]
        view[m] = i + 1
    return out.reshape(h, w)


def _np(x: Any) -> np.ndarray:
    """A NumPy view of a CPU tensor or an array."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
