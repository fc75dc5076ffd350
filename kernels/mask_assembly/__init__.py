"""Mask assembly for YOLO-style prototype masks (ASF-YOLO.md §6.2), bounded by each box.

Inputs
    protos:    (B, NM, Hp, Wp) float32/float16 prototypes at stride 4 (NM = 32); the proto grid covers
               the network input (Hn, Wn) = (4 * Hp, 4 * Wp).
    coeffs:    (N, NM) float mask coefficients (raw, no activation).
    boxes:     (N, 4) float xyxy in OUTPUT pixels (after the letterbox has been undone, if any).
    batch_idx: (N,) integer image index in [0, B).
    scores:    (N,) float confidence (only used by output="label_map"; may be None otherwise).
    out_size:  (H, W) of the output image.
    scale, pad=(pad_x, pad_y): letterbox mapping from output pixels to network-input pixels:
               x_net = x_out * scale + pad_x (continuous coordinates, pixel x spans [x, x + 1)).
               scale=1, pad=(0, 0) and out_size=(Hn, Wn) is the network-resolution (identity) case;
               for the original image use scale = letterbox gain, pad = letterbox padding.
    threshold: mask probability threshold in (0, 1), default 0.5.

Per detection i and output pixel (row y, col x):
    logit = bilinear sample of coeffs[i] . protos[batch_idx[i]] at the pixel centre mapped into the
            proto grid, with F.interpolate(mode="bilinear", align_corners=False) semantics. In the
            identity case this equals F.interpolate((coeffs @ protos)[None], size=(H, W)) exactly in
            real arithmetic (float results differ only by summation order).
    mask  = sigmoid(logit) > threshold  AND  the pixel centre lies in the half-open box:
            x1 <= x + 0.5 < x2 and y1 <= y + 0.5 < y2 (see `reference.box_windows`).
Pixels outside a box are never computed: the work per detection is bounded by its clipped box.

Outputs (`output=`)
    "label_map": (B, H, W) int32; 1 + index of the highest-scoring detection whose mask covers the
                 pixel (ties in score: lower index wins), 0 for background. Never holds N masks.
    "masks":     `PackedMasks` (box-local masks in one flat uint8 buffer; memory = sum of box areas).
    "dense":     (N, H, W) uint8 in {0, 1} (memory N * H * W: for small N only).

impl: "auto" = Triton for CUDA tensors, the PyTorch reference otherwise; "torch"; "triton" (raises
KernelUnavailableError where Triton cannot run instead of falling back).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast, overload

import torch
from asfyolo_rt.kernels.assembly_args import check_geometry
from asfyolo_rt.kernels.mask_assembly import reference as ref
from torch import Tensor

from asfyolo_rt.errors import ConfigError, KernelUnavailableError

__all__ = ["PackedMasks", "box_windows", "mask_assembly"]

box_windows = ref.box_windows
Impl = Literal["auto", "torch", "triton"]
Output = Literal["label_map", "masks", "dense"]


@dataclass(frozen=True)
class PackedMasks:
    """Box-local binary masks of N detections.

    data:      (sum_i w_i * h_i,) uint8 in {0, 1}; mask i is data[offsets[i]:offsets[i+1]]
               reshaped to (h_i, w_i), row-major.
    offsets:   (N + 1,) int64, offsets[0] = 0.
    windows:   (N, 4) int32 [x0, y0, w, h]: mask i covers output rows y0..y0+h-1, cols x0..x0+w-1.
    batch_idx: (N,) int64 image index.
    size:      (H, W) of the output image.
    """

    data: Tensor
    offsets: Tensor
    windows: Tensor
    batch_idx: Tensor
    size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    def mask(self, i: int) -> Tensor:
        """(h_i, w_i) uint8 view of detection i's box-local mask."""
        _, _, w, h = (int(v) for v in self.windows[i].tolist())
        start = int(self.offsets[i].item())
        return self.data[start : start + w * h].view(h, w)

    def to_dense(self) -> Tensor:
        """(N, H, W) uint8: the full-size masks (memory N * H * W)."""
        h_img, w_img = self.size
        dense = torch.zeros(len(self) * h_img * w_img, dtype=torch.uint8, device=self.data.device)
        win = self.windows.to(device=self.data.device, dtype=torch.int64)
        det = torch.repeat_interleave(torch.arange(len(self), device=win.device), win[:, 2] * win[:, 3])
        local = torch.arange(det.shape[0], device=win.device) - self.offsets[:-1].to(win.device)[det]
        w = win[det, 2].clamp(min=1)
        y = win[det, 1] + torch.div(local, w, rounding_mode="floor")
        x = win[det, 0] + local % w
        dense[(det * h_img + y) * w_img + x] = self.data
        return dense.reshape(len(self), h_img, w_img)


def _validate(
    protos: Tensor, coeffs: Tensor, boxes: Tensor, batch_idx: Tensor, scores: Tensor | None,
    out_size: tuple[int, int], threshold: float, scale: float, pad: tuple[float, float], output: str,
    impl: str,
) -> tuple[tuple[int, int], tuple[float, float]]:
    if impl not in ("auto", "torch", "triton"):
        raise ConfigError(f"mask_assembly: impl={impl!r}; expected 'auto', 'torch' or 'triton'")
    if output not in ("label_map", "masks", "dense"):
        raise ConfigError(f"mask_assembly: output={output!r}; expected 'label_map', 'masks' or 'dense'")
    if protos.dim() != 4 or protos.dtype not in (torch.float32, torch.float16):
        raise ConfigError(
            f"mask_assembly: protos is {tuple(protos.shape)} {protos.dtype}; "
            "expected (B, NM, Hp, Wp) float32 or float16"
        )
    nm = protos.shape[1]
    if coeffs.dim() != 2 or coeffs.shape[1] != nm or not coeffs.is_floating_point():
        raise ConfigError(
            f"mask_assembly: coeffs is {tuple(coeffs.shape)} {coeffs.dtype}; expected (N, {nm}) float "
            "(one coefficient per prototype)"
        )
    n = coeffs.shape[0]
    if boxes.dim() != 2 or tuple(boxes.shape) != (n, 4) or not boxes.is_floating_point():
        raise ConfigError(f"mask_assembly: boxes is {tuple(boxes.shape)} {boxes.dtype}; expected ({n}, 4) float xyxy")
    if batch_idx.dim() != 1 or batch_idx.shape[0] != n or batch_idx.is_floating_point():
        raise ConfigError(
            f"mask_assembly: batch_idx is {tuple(batch_idx.shape)} {batch_idx.dtype}; expected ({n},) integer"
        )
    if scores is None and output == "label_map":
        raise ConfigError("mask_assembly: output='label_map' needs scores (N,); got None")
    if scores is not None and (scores.dim() != 1 or scores.shape[0] != n):
        raise ConfigError(f"mask_assembly: scores is {tuple(scores.shape)}; expected ({n},)")
    for name, x in (("coeffs", coeffs), ("boxes", boxes), ("batch_idx", batch_idx), ("scores", scores)):
        if x is not None and x.device != protos.device:
            raise ConfigError(f"mask_assembly: {name} is on {x.device}; expected the device of protos ({protos.device})")
    size, pad_xy = check_geometry("mask_assembly", out_size, threshold, scale, pad)
    if n:
        lo, hi = (int(v) for v in torch.aminmax(batch_idx))
        if lo < 0 or hi >= protos.shape[0]:
            raise ConfigError(
                f"mask_assembly: batch_idx spans [{lo}, {hi}]; expected indices in [0, {protos.shape[0] - 1}]"
            )
    return size, pad_xy


@overload
def mask_assembly(
    protos: Tensor, coeffs: Tensor, boxes: Tensor, batch_idx: Tensor, scores: Tensor | None,
    out_size: tuple[int, int], *, threshold: float = ..., scale: float = ..., pad: tuple[float, float] = ...,
    output: Literal["masks"], impl: Impl = ...,
) -> PackedMasks: ...


@overload
def mask_assembly(
    protos: Tensor, coeffs: Tensor, boxes: Tensor, batch_idx: Tensor, scores: Tensor | None,
    out_size: tuple[int, int], *, threshold: float = ..., scale: float = ..., pad: tuple[float, float] = ...,
    output: Literal["label_map", "dense"] = ..., impl: Impl = ...,
) -> Tensor: ...


def mask_assembly(
    protos: Tensor,
    coeffs: Tensor,
    boxes: Tensor,
    batch_idx: Tensor,
    scores: Tensor | None,
    out_size: tuple[int, int],
    *,
    threshold: float = 0.5,
    scale: float = 1.0,
    pad: tuple[float, float] = (0.0, 0.0),
    output: Output = "label_map",
    impl: Impl = "auto",
) -> Tensor | PackedMasks:
    """Assemble binary instance masks (see the module docstring for shapes, maths and outputs).

    Returns a (B, H, W) int32 label map, a `PackedMasks`, or an (N, H, W) uint8 tensor.
    Raises ConfigError on bad inputs, KernelUnavailableError for impl="triton" where Triton cannot run.
    """
    size, pad_f = _validate(protos, coeffs, boxes, batch_idx, scores, out_size, threshold, float(scale), pad,
                            output, impl)
    scale = float(scale)
    thr = ref.logit_threshold(threshold)
    windows = ref.box_windows(boxes, size)
    b64 = batch_idx.to(torch.int64)
    use_triton = impl == "triton" or (impl == "auto" and protos.device.type == "cuda")
    if use_triton:
        try:
            from asfyolo_rt.kernels.mask_assembly import _triton as tri
        except ImportError as exc:
            raise KernelUnavailableError(
                f"mask_assembly: impl={impl!r} needs Triton, which cannot be imported ({exc})",
                hint="install triton, or use impl='torch'",
            ) from exc
        tri._check(protos)
        b32 = batch_idx.to(torch.int32).contiguous()
    if output == "label_map":
        scores = cast(Tensor, scores)  # not None: checked by _validate
        if not use_triton:
            return ref.label_map_reference(protos, coeffs, windows, b64, scores, size, thr, scale, pad_f)
        order, rank = ref.rank_by_score(scores)
        return tri.label_map_triton(protos, coeffs, windows, b32, rank.to(torch.int32), order.to(torch.int32),
                                    size, thr, scale, pad_f)
    if output == "dense":
        if not use_triton:
            return ref.dense_reference(protos, coeffs, windows, b64, size, thr, scale, pad_f)
        return tri.dense_triton(protos, coeffs, windows, b32, size, thr, scale, pad_f)
    area = windows[:, 2].to(torch.int64) * windows[:, 3].to(torch.int64)
    offsets = torch.cat([area.new_zeros(1), torch.cumsum(area, 0)])
    if use_triton:
        data = tri.packed_triton(protos, coeffs, windows, b32, offsets, thr, scale, pad_f)
    else:
        data = ref.packed_reference(protos, coeffs, windows, b64, thr, scale, pad_f)
    return PackedMasks(data=data, offsets=offsets, windows=windows, batch_idx=b64, size=size)
