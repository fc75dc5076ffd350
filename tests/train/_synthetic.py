"""Helpers for the training tests: coloured-polygon images whose pixels reveal each instance."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

COLOURS = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230], [230, 230, 20]], np.uint8)
BACKGROUND = 60


def blob(rng: np.random.Generator, centre: tuple[float, float], radius: float, n: int = 24) -> np.ndarray:
    """(n, 2) float32 star-shaped polygon."""
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = radius * rng.uniform(0.75, 1.0, n)
    return np.stack([centre[0] + r * np.cos(ang), centre[1] + r * np.sin(ang)], 1).astype(np.float32)


def coloured_image(shape: tuple[int, int], polygons: list[np.ndarray], classes: list[int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB: grey background, polygon i filled with COLOURS[classes[i]]."""
    img = np.full((*shape, 3), BACKGROUND, np.uint8)
    for p, c in zip(polygons, classes):
        cv2.fillPoly(img, [np.round(p).astype(np.int32)], COLOURS[c].tolist())
    return img


def colour_mask(img: np.ndarray, cls: int) -> np.ndarray:
    """(H, W) bool: pixels close to the colour of class `cls` (tolerates bilinear edges)."""
    d = np.abs(img.astype(np.int16) - COLOURS[cls].astype(np.int16)).sum(2)
    return d < 120


def fill(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    cv2.fillPoly(out, [np.round(polygon).astype(np.int32)], 1)
    return out.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def write_dataset(root: Path, n_train: int = 6, n_val: int = 2, shape: tuple[int, int] = (96, 128),
                  seed: int = 0) -> Path:
    """A YOLO-seg dataset of coloured blobs (2-3 per image, classes 0..3 with matching colours)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            k = int(rng.integers(2, 4))
            polys = [blob(rng, (w * (j + 0.5) / k, h * rng.uniform(0.35, 0.65)), min(h, w / k) * 0.3)
                     for j in range(k)]
            classes = [int(c) for c in rng.integers(0, 4, k)]
            img = coloured_image(shape, polys, classes)
            cv2.imwrite(str(root / "images" / split / f"{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            lines = [f"{c} " + " ".join(f"{v:.6f}" for v in (p / [w, h]).clip(0, 1).reshape(-1))
                     for p, c in zip(polys, classes)]
            (root / "labels" / split / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: a, 1: b, 2: c, 3: d}\n")
    return root
