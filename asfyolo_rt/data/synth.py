"""Synthetic cell images with exact instance ground truth, deterministic by seed.

Two looks:

* `make_nuclei`: fluorescence microscopy (DSB2018-like): dark background with a faint gradient, bright
  blurred elliptical / irregular nuclei of varying size and brightness (brighter in the middle),
  Poisson shot noise and Gaussian read noise; 8-bit, or 16-bit with a camera-like offset and range
  (about 100..4500 of 65535, so truncating to the low or high byte visibly fails).
* `make_tissue`: H&E-like (BCC-like): pink eosin texture with white gaps, purple/dark hematoxylin nuclei
  with chromatin texture; 8-bit RGB.

Ground truth is an int32 label map (0 = background, 1..N) that equals the *visible* pixels of each
instance: nuclei are placed with slight overlap allowed (the later one on top); pieces of an instance cut
off by an occluder are given back to the background; instances too small to outline (< 12 pixels or
fewer than 3 contour points) are removed before the image is rendered, so every labelled instance has a
polygon and every painted nucleus is labelled.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from asfyolo_rt.data.convert import label_map_polygons, write_data_yaml
from asfyolo_rt.data.dataset import Problem, format_label_line
from asfyolo_rt.data.io import atomic_write_bytes, write_image
from asfyolo_rt.data.masks import mask_to_polygon
from asfyolo_rt.errors import DataError

SynthKind = Literal["nuclei", "tissue"]
_MIN_AREA = 12  # pixels; smaller visible pieces are not outlined reliably by a contour


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """(H, W) float32 smooth random field with zero mean and unit standard deviation."""
    field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return (field - field.mean()) / (field.std() + 1e-6)


def _blob(rng: np.random.Generator, radius: float, elongation: float, irregularity: float) -> np.ndarray:
    """(K, 2) float64 polygon of an irregular ellipse centred at the origin."""
    t = np.linspace(0.0, 2 * np.pi, 48, endpoint=False)
    r = np.ones_like(t)
    for k in (2, 3, 5):
        r += irregularity * rng.uniform(0, 1) / k * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    a, b = radius * elongation, radius / elongation
    x, y = a * r * np.cos(t), b * r * np.sin(t)
    phi = rng.uniform(0, np.pi)
    return np.stack([x * np.cos(phi) - y * np.sin(phi), x * np.sin(phi) + y * np.cos(phi)], axis=1)


def _place(rng: np.random.Generator, shape: tuple[int, int], n: int, radius: tuple[float, float],
           elongation: tuple[float, float], irregularity: float, max_overlap: float = 0.15) -> np.ndarray:
    """(H, W) int32 label map of up to n blobs, each overlapping others by <= max_overlap of either area."""
    h, w = shape
    label = np.zeros(shape, np.int32)
    areas: list[int] = [0]
    for _ in range(n * 20):
        if len(areas) > n:
            break
        poly = _blob(rng, rng.uniform(*radius), rng.uniform(*elongation), irregularity)
        poly += [rng.uniform(0, w), rng.uniform(0, h)]
        mask = np.zeros(shape, np.uint8)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
        inside = mask.astype(bool)
        area = int(inside.sum())
        if area < _MIN_AREA:
            continue
        under = label[inside]
        ids, counts = np.unique(under[under > 0], return_counts=True)
        if counts.sum() > max_overlap * area or any(c > max_overlap * areas[i] for i, c in zip(ids, counts)):
            continue
        label[inside] = len(areas)
        areas.append(area)
    return _clean(label)


def _clean(label: np.ndarray) -> np.ndarray:
    """Keep each instance's largest visible piece; drop unoutlinable ones; renumber 1..N in order."""
    from scipy import ndimage

    out = np.zeros_like(label)
    new_id = 0
    for k, sl in enumerate(ndimage.find_objects(label), 1):
        if sl is None:
            continue
        piece = (label[sl] == k).astype(np.uint8)
        n_parts, parts, stats, _ = cv2.connectedComponentsWithStats(piece, connectivity=8)
        if n_parts > 2:
            piece = (parts == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
        if int(piece.sum()) < _MIN_AREA or len(mask_to_polygon(piece)) < 3:
            continue
        new_id += 1
        out[sl][piece > 0] = new_id
    return out


def _n_cells(rng: np.random.Generator, n_cells: tuple[int, int] | int) -> int:
    lo, hi = (n_cells, n_cells) if isinstance(n_cells, int) else n_cells
    if lo < 0 or hi < lo:
        raise DataError(f"n_cells={n_cells!r}; expected an int or (low, high) with 0 <= low <= high")
    return int(rng.integers(lo, hi + 1))


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < 16:
        raise DataError(f"shape={shape!r}; expected (H, W) with both sides >= 16")
    return int(shape[0]), int(shape[1])


def make_nuclei(
    seed: int,
    shape: tuple[int, int] = (256, 256),
    n_cells: tuple[int, int] | int = (20, 60),
    bit_depth: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """A fluorescence image of nuclei and its instance label map.

    Returns image (H, W) uint8 (bit_depth 8) or uint16 (bit_depth 16), grayscale; and label_map (H, W)
    int32, 0 = background, 1..N = instances (N <= the drawn cell count: overlaps and tiny pieces remove
    some).
    """
    if bit_depth not in (8, 16):
        raise DataError(f"bit_depth={bit_depth!r}; expected 8 or 16")
    h, w = _check_shape(shape)
    rng = np.random.default_rng(seed)
    s = min(h, w)
    label = _place(rng, (h, w), _n_cells(rng, n_cells), (max(3.5, 0.016 * s), max(6.0, 0.055 * s)),
                   (1.0, 1.5), 0.25)
    inside = label > 0
    brightness = rng.uniform(0.3, 1.0, int(label.max()) + 1).astype(np.float32)
    dist = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 3)
    profile = 0.7 + 0.3 * np.minimum(dist / 4.0, 1.0)
    texture = 1.0 + 0.08 * _smooth_noise(rng, (h, w), 1.5)
    sharp = np.where(inside, brightness[label] * profile * texture, 0.0).astype(np.float32)
    signal = cv2.GaussianBlur(sharp, (0, 0), 0.8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    background = 0.03 + 0.02 * (xx / w) * rng.uniform(-1, 1) + 0.02 * (yy / h) * rng.uniform(-1, 1)
    clean = np.clip(signal + background, 0, None)
    photons = float(rng.uniform(150, 600))
    noisy = rng.poisson(clean * photons).astype(np.float32) / photons
    noisy += rng.normal(0.0, 0.008, (h, w)).astype(np.float32)
    if bit_depth == 8:
        image = np.clip(noisy * 230.0 + 0.5, 0, 255).astype(np.uint8)
    else:
        image = np.clip(noisy * 4000.0 + 100.0 + 0.5, 0, 65535).astype(np.uint16)
    return image, label


def make_tissue(
    seed: int,
    shape: tuple[int, int] = (256, 256),
    n_cells: tuple[int, int] | int = (20, 60),
) -> tuple[np.ndarray, np.ndarray]:
    """An H&E-like tissue image and its nucleus label map.

    Returns image (H, W, 3) uint8 RGB and label_map (H, W) int32 (0 = background, 1..N = nuclei).
    """
    h, w = _check_shape(shape)
    rng = np.random.default_rng(seed)
    s = min(h, w)
    label = _place(rng, (h, w), _n_cells(rng, n_cells), (max(3.5, 0.018 * s), max(6.0, 0.05 * s)),
                   (1.1, 1.9), 0.3)
    eosin = 0.5 + 0.25 * _smooth_noise(rng, (h, w), 6.0) + 0.1 * _smooth_noise(rng, (h, w), 1.5)
    pink = np.array([236, 168, 200], np.float32) * (1.0 - 0.12 * eosin[..., None])
    lumen = _smooth_noise(rng, (h, w), 12.0) > 1.3
    rgb = np.where(lumen[..., None], np.array([246, 236, 244], np.float32), pink)
    inside = label > 0
    darkness = rng.uniform(0.0, 0.45, int(label.max()) + 1).astype(np.float32)
    chromatin = 1.0 + 0.12 * _smooth_noise(rng, (h, w), 1.0)
    purple = np.array([112, 62, 150], np.float32) * ((1.0 - darkness[label]) * chromatin)[..., None]
    rgb = np.where(inside[..., None], purple, rgb)
    rgb = cv2.GaussianBlur(rgb, (0, 0), 0.7) + rng.normal(0.0, 3.0, (h, w, 3)).astype(np.float32)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8), label


def write_synth_dataset(
    out_dir: str | os.PathLike[str],
    n_train: int,
    n_val: int,
    kind: SynthKind = "nuclei",
    shape: tuple[int, int] = (256, 256),
    seed: int = 0,
    *,
    bit_depth: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a YOLO-seg dataset of synthetic images: images/{train,val}/*.png, labels/, data.yaml.

    Image i of split s is generated with a seed derived from (seed, s, i), so datasets are reproducible
    and a larger n_train extends a smaller one. bit_depth 16 applies to kind "nuclei" only.
    Returns out_dir (load it with `load_split(out_dir, "train")`).
    """
    if kind not in ("nuclei", "tissue"):
        raise DataError(f"kind={kind!r}; expected 'nuclei' or 'tissue'")
    if n_train < 0 or n_val < 0:
        raise DataError(f"n_train={n_train}, n_val={n_val}; expected counts >= 0")
    if kind == "tissue" and bit_depth != 8:
        raise DataError("kind='tissue' is 8-bit RGB only; use bit_depth=8")
    out = Path(out_dir)
    total, done = n_train + n_val, 0
    for split_id, (split, count) in enumerate((("train", n_train), ("val", n_val))):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            child = int(np.random.SeedSequence([seed, split_id, i]).generate_state(1)[0])
            if kind == "nuclei":
                image, label = make_nuclei(child, shape, bit_depth=bit_depth)
            else:
                image, label = make_tissue(child, shape)
            stem = f"{kind}_{split}_{i:05d}"
            problems: list[Problem] = []
            polys = label_map_polygons(label, out / "labels" / split / f"{stem}.txt", problems)
            write_image(out / "images" / split / f"{stem}.png", image)
            lines = [format_label_line(0, p / np.array([shape[1], shape[0]], np.float64)) for p in polys]
            atomic_write_bytes(out / "labels" / split / f"{stem}.txt", ("\n".join(lines) + "\n" if lines else "").encode())
            done += 1
            if progress is not None:
                progress(done, total)
    write_data_yaml(out, {0: "cell"})
    return out
