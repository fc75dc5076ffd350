"""The backend protocol every runtime implements (torch-free: TensorRT engines run on devices without torch).

A backend takes a pre-processed batch (B, 3, H, W) float32 in [0, 1], RGB (`asfyolo_rt.data.letterbox`)
and gives, through `detect`, one `Detections` per image (boxes in network pixels, NMS applied), the mask
prototypes (B, 32, H/4, W/4) and the forward time. Two kinds, both first-class:

* plain models (`end2end = False`): `__call__(x) -> (pred, protos)` returns the raw outputs (decoded
  predictions (B, N, 5 + nc + 32) and prototypes); `detect` runs them and the host NMS. `PlainBackend`
  gives them that `detect`.
* end-to-end models (`end2end = True`, `asfyolo_rt.infer.e2e_rows.End2EndRows`): NMS is inside the graph;
  `detect` reads its rows. `__call__` raises (there are no raw outputs to return).

A static model pads a short last batch to its batch (`pad_to_static_batch`); the padding never reaches
the caller. Backends are opened from a picklable `asfyolo_rt.runtime.registry.BackendSpec`.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    name: str  # registry runtime: "torch", "onnxruntime", "openvino", "onnxruntime-rtx", "tensorrt"
    precision: str  # "fp32", "fp16", "bf16", "int8", "int8-cpu"
    input_shape: tuple[int, int] | None  # fixed (H, W) of a static model, None when any multiple of 32 works
    max_batch: int | None  # fixed batch of a static model, None when dynamic
    nc: int
    names: dict[int, str]
    end2end: bool  # NMS inside the graph
    # optional (read with getattr, default False/1): per_image_tiles: a dynamic model takes any tile shape at no
    # cost, so each image gets its own (asfyolo_rt.runtime.tiles.Tiler); parallel: batches it runs at once;
    # prepare((H, W)): make the tile shape ready now (a compile), called before the first batch of a frame

    def detect(self, images: Any, *, conf: float, iou: float, max_det: int,
               soft: bool = False) -> tuple[list[Any], Any, float]: ...


@runtime_checkable
class RawBackend(Backend, Protocol):
    """A plain backend: also gives its raw outputs (pred, protos) for a batch (benchmarks, parity tensors)."""

    def __call__(self, images: Any) -> tuple[Any, Any]: ...


def pad_to_static_batch(backend: Any, x: Any) -> Any:
    """`x` padded with blank images up to a static-batch backend's batch (unchanged for dynamic batches)."""
    mb = backend.max_batch
    if mb and x.shape[0] < mb:
        import torch

        x = torch.cat([x, x.new_zeros((mb - x.shape[0], *x.shape[1:]))])
    return x


def detect_batch(backend: Any, x: Any, *, conf: float, iou: float, max_det: int,
                 soft: bool = False) -> tuple[list[Any], Any, float]:
    """One batch through a plain backend: padded to a static batch, forward, NMS on the real images.

    Returns one `Detections` per image of `x` (padding dropped), the prototypes (padded batch) and the
    forward time in seconds alone (NMS is post-processing in every caller's timing)."""
    from asfyolo_rt.infer.nms import non_max_suppression

    n_real = x.shape[0]
    x = pad_to_static_batch(backend, x)
    t0 = time.perf_counter()
    pred, protos = backend(x)
    forward_s = time.perf_counter() - t0
    dets = non_max_suppression(pred[:n_real], conf_threshold=conf, iou_threshold=iou, max_det=max_det, soft=soft)
    return dets, protos, forward_s


class PlainBackend:
    """What a plain backend (raw outputs) adds to its `__call__`: `detect` = forward + the host NMS."""

    end2end = False

    def detect(self, images: Any, *, conf: float, iou: float, max_det: int,
               soft: bool = False) -> tuple[list[Any], Any, float]:
        return detect_batch(self, images, conf=conf, iou=iou, max_det=max_det, soft=soft)


def json_or(text: str | None, default: Any) -> Any:
    """JSON metadata text, or `default` when missing or malformed."""
    import json

    if not text:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return default
