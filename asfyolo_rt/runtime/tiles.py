"""Tile geometry of native-scale inference: the grid of an image, each tile's core, plans by window, and the
tiles that see again a cell cut by its owner's edge (`asfyolo_rt.runtime.stages` runs them)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asfyolo_rt.errors import ConfigError

if TYPE_CHECKING:
    from asfyolo_rt.infer.nms import Detections

DEFAULT_TILE = 640  # tile side for backends that take any multiple of 32 (PyTorch, dynamic ONNX) at --img-size
MIN_FIT_TILE = 320  # the sides `fit_tile` chooses between (multiples of 32): below, the overlap is most of a
MAX_FIT_TILE = 1024  # tile; above, memory grows and the CPU's cost per pixel was no lower (bench --levers)
TILE_COST_PX = 32 * 1024  # network px one more tile costs beyond its pixels (call, NMS, decode): ~2 % of a 640
SCALES = ("native", "fit")


@dataclass(frozen=True)
class Geometry:
    """Where pixels go. scale: "native" (tiles at model scale) or "fit" (whole-image letterbox).

    img_size: "fit": long side after resizing (default 640); "native": tile side for dynamic backends
    (default 640; a static model's H x W always wins and a conflicting value is an error).
    tile_overlap: network pixels shared by neighbouring tiles (default: from the checkpoint, larger than
    its largest training object). model_scale: network pixels per image pixel (native).
    batch: tiles per backend call.
    """

    scale: str = "native"
    img_size: int | None = None
    tile_overlap: int | None = None
    model_scale: float = 1.0
    batch: int = 1

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"--scale {self.scale!r}: expected native or fit")
        if self.img_size is not None and (self.img_size < 32 or self.img_size % 32):
            raise ConfigError(f"--img-size {self.img_size}: expected a positive multiple of 32 (e.g. 640)")
        if self.tile_overlap is not None and self.tile_overlap < 0:
            raise ConfigError(f"--tile-overlap {self.tile_overlap}: expected >= 0 pixels")
        if not (math.isfinite(self.model_scale) and 0.01 <= self.model_scale <= 100):
            raise ConfigError(f"model scale {self.model_scale}: expected a factor in [0.01, 100]")
        if self.batch < 1:
            raise ConfigError(f"--batch {self.batch}: expected >= 1")


@dataclass(frozen=True)
class Tile:
    """One tile: origin (x0, y0) in the scaled image, network shape (h, w), and its core region
    [cx0, cx1) x [cy0, cy1) in scaled-image pixels (detections whose box centre lies there are kept)."""

    x0: int
    y0: int
    h: int
    w: int
    core: tuple[float, float, float, float]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length), neighbours sharing >= `overlap` px.

    The fewest tiles that keep the overlap, spread evenly: the first starts at 0, the last ends at length.
    """
    if length <= tile:
        return [0]
    step = tile - overlap
    if step <= 0:
        raise ConfigError(f"tile overlap {overlap} px is not smaller than the tile ({tile} px)",
                          hint="use a smaller --tile-overlap or a larger tile (--img-size)")
    n = math.ceil((length - overlap) / step)
    n = max(n, 2)
    return [round(k * (length - tile) / (n - 1)) for k in range(n)]


def fit_side(length: int, overlap: int, lo: int = MIN_FIT_TILE, hi: int = MAX_FIT_TILE) -> tuple[int, int]:
    """(tile side, tiles) along one axis of `length` network px: for each count n, the smallest multiple of 32
    whose n tiles cover the axis with neighbours sharing >= `overlap` px, raised to at least
    max(lo, 2 * overlap + 32) (ceil32); of those within `hi` (one tile of ceil32(length) where the axis fits in
    `hi`), the one that runs the fewest pixels, n * side + the per-tile cost (`TILE_COST_PX` spread over the other
    axis' side, taken as `hi` here: a tie-break). Where even that floor exceeds `hi`: `hi`."""
    if length <= hi:
        return _ceil32(length), 1
    floor = _ceil32(max(lo, 2 * overlap + 32))
    if floor > hi:  # an overlap near half the largest tile: the largest tile (plan_tiles caps the overlap)
        return hi, max(2, math.ceil((length - overlap) / max(1, hi - overlap)))
    best: tuple[float, int, int] | None = None
    n = 1
    while True:
        n += 1
        side = max(floor, _ceil32(math.ceil((length + (n - 1) * overlap) / n)))
        if side > hi:
            continue
        cost = n * side + n * TILE_COST_PX / hi
        if best is None or cost < best[0]:
            best = (cost, side, n)
        if side == floor:  # more tiles of the same side only cost more
            return best[1], best[2]


def fit_tile(height: int, width: int, overlap: int) -> tuple[int, int]:
    """The tile (H, W) of a dynamic-shape backend for a scaled image of height x width when no --img-size is
    given: per axis the side of `fit_side` (fewest network px run: a 3072 px axis takes 4 x 864 = 3,456 px
    instead of 6 x 640 = 3,840, 19 % fewer pixels over the image; a 905 px axis one tile of 928).
    One (H, W) per image, so a static-shape runtime compiles once per frame size."""
    return fit_side(height, overlap)[0], fit_side(width, overlap)[0]


def _cores(starts: list[int], tile: int, length: int) -> list[tuple[float, float]]:
    out = []
    for k, s in enumerate(starts):
        lo = 0.0 if k == 0 else (s + starts[k - 1] + tile) / 2
        hi = float(length) if k == len(starts) - 1 else (starts[k + 1] + s + tile) / 2
        out.append((lo, hi))
    return out


def plan_tiles(height: int, width: int, tile_hw: tuple[int, int], overlap: int, *, static: bool) -> list[Tile]:
    """The tile grid of a (scaled) image of height x width.

    tile_hw: the backend's tile (H, W). A dynamic backend gets smaller tiles (rounded up to a multiple
    of 32) where the image is smaller than the tile; a static one always gets tile_hw (padded).
    """
    th, tw = tile_hw
    if not static:
        th, tw = min(th, _ceil32(height)), min(tw, _ceil32(width))
    ov_y, ov_x = min(overlap, th // 2), min(overlap, tw // 2)
    ys, xs = tile_starts(height, th, ov_y), tile_starts(width, tw, ov_x)
    cy, cx = _cores(ys, th, height), _cores(xs, tw, width)
    return [Tile(x0, y0, th, tw, (cx[j][0], cy[i][0], cx[j][1], cy[i][1]))
            for i, y0 in enumerate(ys) for j, x0 in enumerate(xs)]


def _ceil32(n: int) -> int:
    return max(32, 32 * math.ceil(n / 32))


@dataclass(frozen=True)
class Plan:
    """Stage 1's output: how an image of `orig_shape` (H, W) is cut. scaled_shape: (H, W) at model scale;
    scale: network px per original px (one for both axes; the two axes' rounding differs by < 1 px over a
    frame); tiles: the tiles to run (all of the image's, or those whose core meets a window); grid: how
    many tiles the whole image has."""

    orig_shape: tuple[int, int]
    scaled_shape: tuple[int, int]
    scale: float
    tiles: tuple[Tile, ...]
    grid: int


def plan_image(orig_shape: tuple[int, int], *, model_scale: float, tile_hw: tuple[int, int] | None, overlap: int,
               static: bool, window: tuple[int, int, int, int] | None = None) -> Plan:
    """The tile plan of an image (stage 1). tile_hw None: the image's own tile (`fit_tile`, dynamic backends).
    window: (x0, y0, x1, y1) in original pixels: keep only the tiles whose core *starts* in it. Windows that
    partition the image partition its tiles, and every cell comes from the one tile whose core holds its
    centre, so their parts merged give the whole image's cells."""
    h0, w0 = orig_shape
    if model_scale != 1.0:
        hs, ws = max(1, round(h0 * model_scale)), max(1, round(w0 * model_scale))
        scale = (ws / w0 + hs / h0) / 2
    else:
        hs, ws, scale = h0, w0, 1.0
    if tile_hw is None:
        tile_hw, static = fit_tile(hs, ws, overlap), False
    tiles = plan_tiles(hs, ws, tile_hw, overlap, static=static)
    grid = len(tiles)
    if window is not None:
        x0, y0, x1, y1 = (v * scale for v in window)
        tiles = [t for t in tiles if x0 <= t.core[0] < x1 and y0 <= t.core[1] < y1]
    return Plan((h0, w0), (hs, ws), scale, tuple(tiles), grid)


def tile_size(input_shape: tuple[int, int] | None, geo: Geometry) -> tuple[int, int]:
    """The tile (H, W) for a backend of `input_shape` (None: dynamic): a static model's shape, else img_size
    (default 640). An img_size that conflicts with a static model is an error, never ignored."""
    if input_shape is not None:
        h, w = input_shape
        if geo.img_size is not None and (geo.img_size, geo.img_size) != (h, w) and geo.img_size != max(h, w):
            raise ConfigError(f"--img-size {geo.img_size} conflicts with the model's fixed input {h}x{w}",
                              hint=f"leave out --img-size (tiles are {h}x{w}) or export the model at "
                                   f"--img-size {geo.img_size}")
        return int(h), int(w)
    s = geo.img_size or DEFAULT_TILE
    return s, s


class Tiler:
    """Stage 1 for one backend and geometry: the tile, overlap and batch of a run, and each image's plan.

    input_shape: the backend's fixed (H, W), None when dynamic; max_batch: its fixed batch, None when any;
    per_image: whether the backend takes a new tile shape cheaply (`Backend.per_image_tiles`: PyTorch and ONNX
    Runtime on the CPU, OpenVINO; not TensorRT, whose profiles bound the shape, nor ONNX Runtime's CUDA and
    TensorRT-RTX providers, which build or tune per shape). Such a dynamic backend without --img-size gets each
    image's own tile (`fit_tile`: the fewest network px), `adaptive` True; others the 640 default."""

    def __init__(self, input_shape: tuple[int, int] | None, max_batch: int | None, geo: Geometry, *,
                 max_object_px: float | None = None, per_image: bool = True) -> None:
        from asfyolo_rt.runtime.info import overlap_for

        self.geo, self.input_shape = geo, input_shape
        if max_batch is not None and geo.batch > max_batch:
            raise ConfigError(f"--batch {geo.batch} is larger than the model's fixed batch {max_batch}",
                              hint=f"use --batch {max_batch} or export with a larger batch")
        self.batch = max_batch or geo.batch
        self.adaptive = False
        if geo.scale == "native":
            self.tile = tile_size(input_shape, geo)
            self.overlap = int(geo.tile_overlap) if geo.tile_overlap is not None else overlap_for(max_object_px)
            self.adaptive = input_shape is None and geo.img_size is None and per_image
        else:
            if input_shape is not None:
                tile_size(input_shape, geo)  # conflicting img_size -> error
            self.tile = input_shape or (geo.img_size or DEFAULT_TILE,) * 2
            self.overlap = 0

    def plan(self, orig_shape: tuple[int, int], window: tuple[int, int, int, int] | None = None) -> Plan:
        """Stage 1 with this run's tile, overlap and scale."""
        return plan_image(orig_shape, model_scale=self.geo.model_scale, tile_hw=None if self.adaptive else self.tile,
                          overlap=self.overlap, static=self.input_shape is not None, window=window)


CUT_MARGIN = 1.0  # network px: a box this close to an inner tile edge is taken as cut by it


def _inner_edges(tile: Tile, plan: Plan) -> tuple[bool, bool, bool, bool]:
    """Which edges of `tile` (left, top, right, bottom) lie inside the scaled image (a cell can cross them)."""
    hs, ws = plan.scaled_shape
    return tile.x0 > 0, tile.y0 > 0, tile.x0 + tile.w < ws, tile.y0 + tile.h < hs


def cut_by_tile(det: Detections, tile: Tile, plan: Plan) -> Any:
    """(n,) bool: detections (tile px) whose box touches an inner edge of `tile`: cells the tile saw cut.
    Boxes as a torch tensor give a tensor, as a NumPy array an array."""
    left, top, right, bottom = _inner_edges(tile, plan)
    b = det.boxes
    cut = b[:, 0] != b[:, 0]  # all False (boxes are finite), of b's kind
    if left:
        cut |= b[:, 0] <= CUT_MARGIN
    if top:
        cut |= b[:, 1] <= CUT_MARGIN
    if right:
        cut |= b[:, 2] >= tile.w - CUT_MARGIN
    if bottom:
        cut |= b[:, 3] >= tile.h - CUT_MARGIN
    return cut


def rescue_tile(box: Any, tile: Tile, plan: Plan) -> Tile:
    """A tile of `tile`'s size centred on `box` (scaled-image px), kept inside the image where it fits."""
    hs, ws = plan.scaled_shape
    cx, cy = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2
    x0 = min(max(round(cx - tile.w / 2), 0), max(ws - tile.w, 0))
    y0 = min(max(round(cy - tile.h / 2), 0), max(hs - tile.h, 0))
    return Tile(x0, y0, tile.h, tile.w, (0.0, 0.0, float(ws), float(hs)))
