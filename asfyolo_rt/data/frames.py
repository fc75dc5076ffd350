"""Camera-sized test frames with ground truth, made from a dataset split (no resizing).

Scientific cameras write 2048 x 2048 (and larger) 16-bit frames; the public datasets hold small crops.
`camera_frame` packs whole images of one split, at their own pixel scale, into one size x size canvas
(bottom-left skyline packing, smallest first, each image used once before any is reused flipped;
for DSB2018 val that is 64 of its 256 x 256 fluorescence images, ~1,800 nuclei), and returns the
frame as a 12-bit camera would write it (uint16: dark offset 100 + 15 x the 8-bit value, plus
Gaussian read noise) with every instance polygon moved into frame pixels. Only images that look like
fluorescence (dark background, grey) are used by default, so the frame is one modality, as a
microscope's would be.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asfyolo_rt.data.dataset import DatasetSplit
from asfyolo_rt.data.io import read_image
from asfyolo_rt.errors import DataError


@dataclass
class CameraFrame:
    image: np.ndarray  # (size, size) uint16 (grey) or (size, size, 3) uint8 when dtype="uint8"
    polygons: list[np.ndarray]  # (K_i, 2) float32 frame pixels (vertex = pixel centre)
    classes: np.ndarray  # (N,) int64
    sources: list[dict[str, object]]  # per placed image: name, x0, y0, w, h, flipped

    def index_map(self) -> np.ndarray:
        """(H, W) int32 ground-truth label map (smaller instances painted over larger)."""
        from asfyolo_rt.data.masks import polygons_to_index_map

        h, w = self.image.shape[:2]
        if not self.polygons:
            return np.zeros((h, w), np.int32)
        return polygons_to_index_map(self.polygons, (h, w))[0]


def is_fluorescence(img: np.ndarray) -> bool:
    """Dark background and grey: the median is low and the channels agree."""
    grey = np.abs(img.astype(np.int16) - img.mean(2, keepdims=True)).mean() < 4
    return bool(grey and np.median(img) < 60)


def camera_frame(split: DatasetSplit, size: int = 2048, *, seed: int = 0, fluorescence_only: bool = True,
                 dtype: str = "uint16") -> CameraFrame:
    """Pack images of `split` into a size x size frame (see the module docstring)."""
    if size < 64:
        raise DataError(f"frame size {size}: expected >= 64")
    rng = np.random.default_rng(seed)
    pool = []
    for s in split.samples:
        img = read_image(s.image_path)
        if fluorescence_only and not is_fluorescence(img):
            continue
        if img.shape[0] > size or img.shape[1] > size:
            continue
        pool.append((s, img))
    if not pool:
        raise DataError(f"split {split.split!r} of {split.root} has no image that fits a {size} px frame"
                        + (" and looks like fluorescence" if fluorescence_only else ""))
    pool.sort(key=lambda p: (p[1].shape[0] * p[1].shape[1], p[0].image_path.name))
    canvas = np.zeros((size, size, 3), np.uint8)
    polys: list[np.ndarray] = []
    classes: list[int] = []
    sources: list[dict[str, object]] = []
    sky = np.zeros(size, np.int64)  # skyline: filled height of every column (bottom-left packing)
    for rnd in range(4):  # each image once, then flipped copies, until nothing fits any more
        flipped = rnd % 2 == 1
        placed_any = False
        for s, img in pool:
            h, w = img.shape[:2]
            spot = _lowest_spot(sky, w, h, size)
            if spot is None:
                continue
            px, py = spot
            sky[px:px + w] = py + h
            tile = img[:, ::-1] if flipped else img
            canvas[py:py + h, px:px + w] = tile
            for c, p in zip(s.classes.tolist(), s.polygons):
                q = np.asarray(p, np.float32) * np.array([w, h], np.float32)
                if flipped:
                    q[:, 0] = (w - 1) - q[:, 0]
                polys.append(q + np.array([px, py], np.float32))
                classes.append(int(c))
            sources.append({"name": s.image_path.name, "x0": px, "y0": py, "w": w, "h": h, "flipped": flipped})
            placed_any = True
        if not placed_any:
            break
    if dtype == "uint8":
        image = canvas
    elif dtype == "uint16":
        grey = canvas.mean(2)
        noisy = 100 + 15 * grey + rng.normal(0, 3, grey.shape)
        image = np.clip(np.round(noisy), 0, 4095).astype(np.uint16)
    else:
        raise DataError(f"frame dtype {dtype!r}: expected uint16 or uint8")
    return CameraFrame(image, polys, np.asarray(classes, np.int64), sources)


def _lowest_spot(sky: np.ndarray, w: int, h: int, size: int, step: int = 8) -> tuple[int, int] | None:
    """Leftmost of the lowest positions (x, y) where a w x h image sits on the skyline inside the frame."""
    best: tuple[int, int] | None = None
    for x in list(range(0, size - w + 1, step)) + [size - w]:
        if x < 0:
            continue
        y = int(sky[x:x + w].max())
        if y + h <= size and (best is None or y < best[1]):
            best = (x, y)
    return best
