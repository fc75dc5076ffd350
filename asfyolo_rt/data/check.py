"""`data check`: statistics and every problem of a YOLO-seg dataset.

Per split: image count, image-size histogram, instance count, instances per image, box sizes (in
original pixels and after resizing the long side to 640, as training and validation see them). Problems
(each naming its file, and line where there is one): unreadable images, missing label files (warning:
the image has no instances), malformed label lines, non-integer classes, coordinates outside [0, 1],
polygons with < 3 vertices, duplicate images (same pixels; an error across splits because it leaks
training images into validation, a warning within a split).

Splits that list exactly the same images (the official YAMLs point `test` at the val images) are
checked once; the report records the alias.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asfyolo_rt.data.dataset import DatasetSplit, Problem, read_split, resolve_source
from asfyolo_rt.data.io import check_pixels, image_size, pixel_hash, read_image_raw
from asfyolo_rt.errors import DataError

PERCENTILES = (5, 25, 50, 75, 95)


@dataclass(frozen=True)
class SplitStats:
    """Statistics of one split. Box percentiles are keyed "p5", "p25", ...; empty when no instances."""

    split: str
    n_images: int
    size_histogram: dict[str, int]  # "WxH" -> image count, most frequent first
    n_instances: int
    instances_per_image_mean: float
    instances_per_image_max: int
    n_images_without_instances: int
    box_width_px: dict[str, float]  # original image pixels
    box_height_px: dict[str, float]
    box_width_640: dict[str, float]  # after resizing the long side to 640
    box_height_640: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CheckReport:
    """The result of `check_dataset`. `ok` is False when any problem is an error."""

    source: Path
    splits: list[SplitStats]
    problems: list[Problem]
    aliases: dict[str, str] = field(default_factory=dict)  # split -> the split with the same images

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        return {
            "source": str(self.source),
            "ok": self.ok,
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "splits": [s.to_dict() for s in self.splits],
            "aliases": dict(self.aliases),
            "problems": [p.to_dict() for p in self.problems],
        }


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    return {f"p{q}": round(float(v), 2) for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))}


def _stats(split: DatasetSplit, sizes: dict[Path, tuple[int, int]]) -> SplitStats:
    counts = np.array([len(s) for s in split.samples], dtype=np.int64)
    hist = Counter(f"{w}x{h}" for h, w in (sizes[s.image_path] for s in split.samples if s.image_path in sizes))
    widths, heights, scales = [], [], []
    for s in split.samples:
        if s.image_path not in sizes or not len(s):
            continue
        h, w = sizes[s.image_path]
        b = s.boxes_xyxy_norm()
        widths.append((b[:, 2] - b[:, 0]) * w)
        heights.append((b[:, 3] - b[:, 1]) * h)
        scales.append(np.full(len(b), 640.0 / max(h, w)))
    bw = np.concatenate(widths) if widths else np.zeros(0)
    bh = np.concatenate(heights) if heights else np.zeros(0)
    sc = np.concatenate(scales) if scales else np.zeros(0)
    return SplitStats(
        split=split.split,
        n_images=len(split.samples),
        size_histogram=dict(hist.most_common()),
        n_instances=int(counts.sum()),
        instances_per_image_mean=round(float(counts.mean()), 2) if counts.size else 0.0,
        instances_per_image_max=int(counts.max()) if counts.size else 0,
        n_images_without_instances=int((counts == 0).sum()),
        box_width_px=_percentiles(bw),
        box_height_px=_percentiles(bh),
        box_width_640=_percentiles(bw * sc),
        box_height_640=_percentiles(bh * sc),
    )


def check_dataset(
    source: str | os.PathLike[str],
    splits: Sequence[str] | None = None,
    *,
    decode: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """Check a dataset folder or data YAML and gather statistics (see the module docstring).

    splits: which splits (default: all the source defines). decode: decode every image (finds truncated
    pixel data and duplicate images); False reads only image headers. Images above the pixel limit
    (`asfyolo_rt.data.io.pixel_limit`) are listed as errors, never decoded. progress(done, total) is called
    after each image. Raises DataError only when the source itself is unusable.
    """
    src = resolve_source(source)
    wanted = list(splits) if splits else list(src.splits)
    for name in wanted:
        if name not in src.splits:
            raise DataError(f"{source}: no split {name!r}; available: {sorted(src.splits)}")
    loaded: list[DatasetSplit] = []
    aliases: dict[str, str] = {}
    seen_lists: dict[tuple[Path, ...], str] = {}
    for name in wanted:
        split = read_split(src, name)
        key = tuple(sorted(s.image_path.resolve() for s in split.samples))
        if key and key in seen_lists:
            aliases[name] = seen_lists[key]
            continue
        seen_lists[key] = name
        loaded.append(split)

    problems: list[Problem] = [p for s in loaded for p in s.problems]
    sizes: dict[Path, tuple[int, int]] = {}
    by_hash: dict[str, list[tuple[str, Path]]] = {}
    total = sum(len(s.samples) for s in loaded)
    done = 0
    for split in loaded:
        for sample in split.samples:
            path = sample.image_path
            try:
                if decode:
                    pixels = read_image_raw(path)
                    sizes[path] = (int(pixels.shape[0]), int(pixels.shape[1]))
                    by_hash.setdefault(pixel_hash(pixels), []).append((split.split, path))
                else:
                    size = image_size(path)
                    check_pixels(path, size)
                    sizes[path] = size
            except DataError as exc:
                message = str(exc)
                prefix = f"{path}: "
                message = message.removeprefix(prefix)
                hint = f" ({exc.hint})" if exc.hint else ""
                problems.append(Problem(path, None, "error", f"unreadable image: {message}{hint}"))
            done += 1
            if progress is not None:
                progress(done, total)
    problems.extend(_duplicates(by_hash))
    return CheckReport(source=Path(source), splits=[_stats(s, sizes) for s in loaded], problems=problems,
                       aliases=aliases)


def _duplicates(by_hash: dict[str, list[tuple[str, Path]]]) -> list[Problem]:
    problems = []
    for entries in by_hash.values():
        if len(entries) < 2:
            continue
        first_split, first = entries[0]
        for split, path in entries[1:]:
            if split != first_split:
                problems.append(Problem(path, None, "error", f"duplicate image: same pixels as {first} "
                                        f"(split {first_split!r}); the same image in two splits leaks "
                                        "training data into evaluation"))
            else:
                problems.append(Problem(path, None, "warning", f"duplicate image: same pixels as {first}"))
    return problems
