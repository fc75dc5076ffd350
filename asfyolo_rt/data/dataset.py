"""YOLO segmentation datasets: layout, data YAMLs, label parsing, and the split loader.

Layout: `images/<split>/<stem>.<ext>` with labels at the same path with `/images/` replaced by
`/labels/` and the extension by `.txt`. One line per instance, `class x1 y1 x2 y2 ... xn yn`, class an
integer >= 0, vertices normalised to [0, 1] by image width and height (at least 3 vertices).

A source is either a dataset folder (holding `images/<split>`) or a data YAML with the keys `path`,
`train`, `val`, `test`, `names` (`nc` and `download` are accepted and ignored). Split entries may be a
folder, a `.txt` list of image paths, or a list of those; relative entries are resolved against `path`,
and a relative (or missing) `path` against the YAML's folder. A folder without `images/` but with a
`data.yaml` (or `dataset.yaml`) is read through that YAML.

`load_split` only reads label text files (images are not decoded), so it is fast; `check_dataset`
(check.py) decodes images as well.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import yaml

from asfyolo_rt.data.io import IMAGE_SUFFIXES
from asfyolo_rt.errors import DataError

log = logging.getLogger(__name__)

Severity = Literal["error", "warning"]
OnProblem = Literal["error", "skip", "warn"]

_YAML_KEYS = ("path", "train", "val", "test", "names", "nc", "download")
_COORD_TOL = 1e-6  # coordinates may exceed [0, 1] by float-print noise this large


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset file. `line` is 1-based, None for whole-file problems."""

    path: Path
    line: int | None
    severity: Severity
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.severity}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "line": self.line, "severity": self.severity, "message": self.message}


@dataclass(frozen=True, eq=False)
class Sample:
    """One image and its instances.

    classes: (N,) int64 class ids. polygons: N arrays (K_i, 2) float32, vertices x, y normalised to
    [0, 1] by image width and height. label_path is None when the image has no label file (no instances).
    Samples compare and hash by identity (their arrays have no single truth value).
    """

    image_path: Path
    label_path: Path | None
    classes: np.ndarray
    polygons: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.polygons)

    def boxes_xyxy_norm(self) -> np.ndarray:
        """(N, 4) float32 boxes x1, y1, x2, y2 normalised to [0, 1]: the bounds of each polygon."""
        if not self.polygons:
            return np.zeros((0, 4), np.float32)
        return np.array([np.concatenate([p.min(0), p.max(0)]) for p in self.polygons], dtype=np.float32)


@dataclass(frozen=True)
class DatasetSplit:
    """The samples of one split plus every problem found while reading its labels."""

    root: Path
    split: str
    names: dict[int, str]
    samples: list[Sample]
    problems: list[Problem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def n_instances(self) -> int:
        return sum(len(s) for s in self.samples)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


@dataclass(frozen=True)
class DatasetSource:
    """A resolved dataset description: where each split's images are, and the class names."""

    root: Path
    yaml_path: Path | None
    splits: dict[str, list[Path]]  # split -> image folders and/or .txt image lists
    names: dict[int, str] | None  # None: not given (derived from the labels)


def label_path_for(image_path: str | os.PathLike[str]) -> Path:
    """Label file of an image: the last `/images/` of the path becomes `/labels/`, extension `.txt`."""
    p = Path(image_path)
    parts = list(p.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    raise DataError(f"{p}: image path has no 'images' folder; cannot locate its label file",
                    hint="use the layout images/<split>/<name>.png + labels/<split>/<name>.txt")


def _parse_names(raw: object, yaml_path: Path) -> dict[int, str]:
    if isinstance(raw, dict):
        try:
            return {int(k): str(v) for k, v in raw.items()}
        except (TypeError, ValueError) as exc:
            raise DataError(f"{yaml_path}: `names` keys must be integers, got {list(raw)}") from exc
    if isinstance(raw, (list, tuple)):
        return {i: str(v) for i, v in enumerate(raw)}
    raise DataError(f"{yaml_path}: `names` is {type(raw).__name__}; expected a mapping {{0: cell}} or a list")


def _read_yaml(yaml_path: Path) -> DatasetSource:
    try:
        data = yaml.safe_load(yaml_path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"{yaml_path}: cannot read the data YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{yaml_path}: expected a mapping with keys path, train, val, names")
    for key in data:
        if key not in _YAML_KEYS:
            close = difflib.get_close_matches(str(key), _YAML_KEYS, n=1)
            raise DataError(f"{yaml_path}: unknown key {key!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
                            hint=f"allowed keys: {', '.join(_YAML_KEYS)}")
    base = yaml_path.parent.resolve()
    root = Path(str(data["path"])) if data.get("path") else base
    if not root.is_absolute():
        root = (base / root).resolve()
    if not root.is_dir():
        raise DataError(f"{yaml_path}: dataset `path` {root} does not exist",
                        hint="edit `path` to point at the dataset folder, or remove it to use the YAML's folder")
    splits: dict[str, list[Path]] = {}
    for split in ("train", "val", "test"):
        entry = data.get(split)
        if not entry:
            continue
        entries = entry if isinstance(entry, (list, tuple)) else [entry]
        splits[split] = [p if p.is_absolute() else root / p for p in (Path(str(e)) for e in entries)]
    names = _parse_names(data["names"], yaml_path) if data.get("names") is not None else None
    return DatasetSource(root=root, yaml_path=yaml_path, splits=splits, names=names)


def resolve_source(source: str | os.PathLike[str]) -> DatasetSource:
    """Describe a dataset folder or data YAML (see the module docstring). Raises DataError if unusable."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return _read_yaml(path)
    if not path.is_dir():
        raise DataError(f"dataset {path} does not exist or is neither a folder nor a .yaml file",
                        hint="pass a folder holding images/<split>, or a data YAML")
    images = path / "images"
    if images.is_dir():
        splits = {d.name: [d] for d in sorted(images.iterdir()) if d.is_dir()}
        order = {"train": 0, "val": 1, "test": 2}
        splits = dict(sorted(splits.items(), key=lambda kv: (order.get(kv[0], 3), kv[0])))
        yaml_names = None
        for name in ("data.yaml", "dataset.yaml"):
            if (path / name).is_file():
                yaml_names = _read_yaml(path / name).names
                break
        return DatasetSource(root=path, yaml_path=None, splits=splits, names=yaml_names)
    for name in ("data.yaml", "dataset.yaml"):
        if (path / name).is_file():
            return _read_yaml(path / name)
    raise DataError(f"{path}: no images/ folder and no data.yaml inside",
                    hint="expected images/{train,val}/ and labels/{train,val}/, or a data YAML")


def _walk_images(folder: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found.extend(Path(dirpath) / f for f in sorted(filenames)
                     if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES and not f.startswith("."))
    return found


def list_images(entries: list[Path]) -> list[Path]:
    """Image files of a split: folders are searched recursively, `.txt` files list one path per line."""
    images: list[Path] = []
    for entry in entries:
        if entry.is_dir():
            images.extend(_walk_images(entry))
        elif entry.is_file() and entry.suffix.lower() == ".txt":
            for line in entry.read_text().splitlines():
                if line.strip():
                    p = Path(line.strip())
                    images.append(p if p.is_absolute() else (entry.parent / p))
        elif entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            images.append(entry)
        else:
            raise DataError(f"split entry {entry} does not exist (expected an image folder or a .txt list)")
    return images


def parse_label_text(
    text: str, path: Path, names: dict[int, str] | None = None
) -> tuple[np.ndarray, list[np.ndarray], list[Problem]]:
    """Parse one label file's text. Valid lines become instances; every bad line becomes a Problem.

    Returns classes (N,) int64, polygons N x (K_i, 2) float32 normalised, problems (file `path`, 1-based
    line numbers). Blank lines are ignored.
    """
    classes: list[int] = []
    polygons: list[np.ndarray] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}

    def bad(lineno: int, msg: str, severity: Severity = "error") -> None:
        problems.append(Problem(path, lineno, severity, msg))

    for lineno, raw in enumerate(text.splitlines(), 1):
        tokens = raw.split()
        if not tokens:
            continue
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            tok = next(t for t in tokens if not _is_float(t))
            bad(lineno, f"malformed line: {tok!r} is not a number; expected `class x1 y1 ... xn yn`")
            continue
        n_coords = len(values) - 1
        if n_coords % 2 or n_coords == 0:
            bad(lineno, f"malformed line: got {len(values)} number(s); expected `class x1 y1 ... xn yn` "
                        "(a class id and at least 3 x y pairs, i.e. an odd count >= 7)")
            continue
        if not (math.isfinite(values[0]) and values[0].is_integer() and values[0] >= 0):
            bad(lineno, f"class id {tokens[0]!r} is not a non-negative integer")
            continue
        cls = int(values[0])
        if names is not None and cls not in names:
            bad(lineno, f"class id {cls} is not in the dataset's names {names}")
            continue
        if n_coords < 6:
            hint = " (this looks like a detection box `class cx cy w h`, not a polygon)" if n_coords == 4 else ""
            bad(lineno, f"polygon has {n_coords // 2} vertices; at least 3 are needed{hint}")
            continue
        coords = np.asarray(values[1:], dtype=np.float64)
        if not np.isfinite(coords).all():
            bad(lineno, "coordinates contain nan or inf")
            continue
        lo, hi = float(coords.min()), float(coords.max())
        if lo < -_COORD_TOL or hi > 1.0 + _COORD_TOL:
            bad(lineno, f"coordinates outside [0, 1] (min {lo:g}, max {hi:g}); vertices must be normalised "
                        "by image width and height")
            continue
        key = " ".join(tokens)
        if key in seen:
            bad(lineno, f"duplicate of line {seen[key]} (same class and polygon)", "warning")
            continue
        seen[key] = lineno
        classes.append(cls)
        polygons.append(coords.astype(np.float32).reshape(-1, 2))
    return np.asarray(classes, dtype=np.int64), polygons, problems


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_split(source: str | os.PathLike[str] | DatasetSource, split: str) -> DatasetSplit:
    """All samples of a split with every problem, nothing dropped (instances from bad lines excluded).

    This is the policy-free reader used by `load_split` and `check_dataset`.
    """
    src = source if isinstance(source, DatasetSource) else resolve_source(source)
    if split not in src.splits:
        where = src.yaml_path or src.root / "images"
        raise DataError(f"{where}: no split {split!r}; available: {sorted(src.splits) or 'none'}",
                        hint="use one of the available splits, or add it to the data YAML")
    images = list_images(src.splits[split])
    samples: list[Sample] = []
    problems: list[Problem] = []
    label_owner: dict[Path, Path] = {}
    for image_path in images:
        try:
            label_path = label_path_for(image_path)
        except DataError:
            problems.append(Problem(image_path, None, "error", "image path has no 'images' folder; "
                                    "cannot locate its label file"))
            continue
        if label_path in label_owner:
            problems.append(Problem(image_path, None, "warning",
                                    f"shares label file {label_path} with {label_owner[label_path]}"))
        label_owner[label_path] = image_path
        try:
            text = label_path.read_text()
        except FileNotFoundError:
            problems.append(Problem(image_path, None, "warning",
                                    f"no label file {label_path}; the image is used with no instances"))
            samples.append(Sample(image_path, None, np.zeros(0, np.int64), []))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(label_path, None, "error", f"unreadable label file ({exc})"))
            samples.append(Sample(image_path, label_path, np.zeros(0, np.int64), []))
            continue
        classes, polygons, file_problems = parse_label_text(text, label_path, src.names)
        problems.extend(file_problems)
        samples.append(Sample(image_path, label_path, classes, polygons))
    problems.extend(_orphan_labels(src.splits[split], set(label_owner)))
    names = src.names
    if names is None:
        max_cls = max((int(s.classes.max()) for s in samples if len(s.classes)), default=0)
        names = {0: "cell"} if max_cls == 0 else {k: str(k) for k in range(max_cls + 1)}
    return DatasetSplit(root=src.root, split=split, names=names, samples=samples, problems=problems)


def _orphan_labels(entries: list[Path], used: set[Path]) -> list[Problem]:
    problems = []
    for entry in entries:
        if not entry.is_dir():
            continue
        try:
            label_dir = label_path_for(entry / "x.png").parent
        except DataError:
            continue
        if not label_dir.is_dir():
            continue
        for dirpath, _, filenames in os.walk(label_dir):
            for f in sorted(filenames):
                p = Path(dirpath) / f
                if f.endswith(".txt") and p not in used:
                    problems.append(Problem(p, None, "warning", "label file without a matching image (ignored)"))
    return problems


def load_split(
    source: str | os.PathLike[str],
    split: str = "val",
    *,
    on_problem: OnProblem = "error",
) -> DatasetSplit:
    """Load one split of a YOLO-seg dataset (folder or data YAML), parsing label text only.

    on_problem decides what error-level problems (malformed lines, bad class ids, coordinates outside
    [0, 1], polygons with < 3 vertices, unreadable label files) do:
      "error" (default): raise DataError listing them, so training never runs on silently damaged data;
      "skip": drop every image whose label file has an error (logged once at INFO);
      "warn": drop them as "skip" does and log each problem at WARNING.
    Warnings (a missing label file = an image with no instances, duplicate lines, orphan label files)
    never drop anything. All problems are kept in `DatasetSplit.problems`.
    """
    if on_problem not in ("error", "skip", "warn"):
        raise DataError(f"on_problem={on_problem!r}; expected 'error', 'skip' or 'warn'")
    full = read_split(source, split)
    errors = full.errors
    if errors and on_problem == "error":
        shown = "\n  ".join(str(p) for p in errors[:5])
        more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise DataError(
            f"{len(errors)} error(s) in split {split!r} of {source}:\n  {shown}{more}",
            hint=f"run `asfyolo-rt data check {source}` to list every problem, fix the files, "
            "or pass --skip-bad-labels (API: on_problem='skip') to leave the affected images out",
        )
    if not errors:
        return full
    bad_files = {p.path for p in errors}
    kept = [s for s in full.samples if s.image_path not in bad_files and s.label_path not in bad_files]
    if on_problem == "warn":
        for p in errors:
            log.warning("%s", p)
    log.info("split %r: skipped %d of %d images with label errors", split, len(full.samples) - len(kept),
             len(full.samples))
    return DatasetSplit(root=full.root, split=split, names=full.names, samples=kept, problems=full.problems)


def format_label_line(cls: int, polygon: np.ndarray) -> str:
    """One label line `cls x1 y1 ... xn yn` from a (K, 2) normalised polygon (6 decimals, no trailing 0s)."""
    coords = " ".join(_fmt(v) for v in np.clip(np.asarray(polygon, np.float64).reshape(-1), 0.0, 1.0))
    return f"{int(cls)} {coords}"


def _fmt(v: float) -> str:
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    return s if s not in ("", "-0") else "0"
