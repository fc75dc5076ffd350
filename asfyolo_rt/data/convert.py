"""Converters between instance-segmentation formats and YOLO-seg datasets.

* `convert_dsb2018`: the Kaggle DSB2018 layout `<id>/images/<id>.png` + `<id>/masks/*.png` (one binary
  mask per nucleus) -> YOLO-seg.
* `convert_instance_masks`: instance label images (0 = background, k = instance k; 8/16/32-bit PNG or
  TIFF) paired with images by file stem -> YOLO-seg.
* `yolo_to_coco` / `coco_to_yolo`: YOLO-seg split <-> COCO instance JSON (polygons or RLE). COCO
  category ids are YOLO class + 1; reading COCO maps the sorted category ids to classes 0, 1, ...

Masks become polygons through cv2.findContours (the largest external contour per instance);
instances that yield fewer than 3 vertices are dropped and reported, as are extra parts of instances
split into several pieces (only the largest piece is kept). Every converter returns a ConvertReport;
problems name their file. Images are copied byte for byte unless `rgb8` asks for 8-bit RGB PNGs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from asfyolo_rt.data.dataset import Problem, format_label_line, load_split, resolve_source
from asfyolo_rt.data.io import (
    IMAGE_SUFFIXES,
    atomic_write_bytes,
    image_size,
    read_image_raw,
    to_uint8_rgb,
    write_image,
)
from asfyolo_rt.data.masks import mask_to_polygon, polygon_areas
from asfyolo_rt.data.rle import rle_decode
from asfyolo_rt.errors import DataError

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ConvertReport:
    """What a conversion wrote: `out` (folder or JSON file), counts, and the problems it met."""

    out: Path
    n_images: int
    n_instances: int
    problems: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"out": str(self.out), "n_images": self.n_images, "n_instances": self.n_instances,
                "problems": [p.to_dict() for p in self.problems]}


def _instance_polygon(mask: np.ndarray, offset: tuple[int, int], where: Path, what: str,
                      problems: list[Problem]) -> np.ndarray | None:
    """Largest external contour of a binary mask crop, or None (reported) when it is degenerate."""
    m = np.ascontiguousarray(mask != 0, dtype=np.uint8)
    area = int(m.sum())
    if area == 0:
        problems.append(Problem(where, None, "warning", f"{what} is empty; dropped"))
        return None
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    poly = mask_to_polygon(m, offset)
    if len(poly) < 3:
        problems.append(Problem(where, None, "warning",
                                f"{what} ({area} px) yields fewer than 3 contour points; dropped"))
        return None
    if len(contours) > 1:
        problems.append(Problem(where, None, "warning",
                                f"{what} has {len(contours)} separate parts; kept the largest"))
    return poly


def _write_yolo_sample(out: Path, split: str, image_src: Path, stem: str, shape: tuple[int, int],
                       classes: list[int], polygons_px: list[np.ndarray], rgb8: bool) -> None:
    """Write images/<split>/<stem>.<ext> and labels/<split>/<stem>.txt (polygons in pixels)."""
    h, w = shape
    if rgb8:
        write_image(out / "images" / split / f"{stem}.png", to_uint8_rgb(read_image_raw(image_src)))
    else:
        dst = out / "images" / split / f"{stem}{image_src.suffix.lower()}"
        atomic_write_bytes(dst, image_src.read_bytes())
    lines = [format_label_line(c, p / np.array([w, h], np.float64)) for c, p in zip(classes, polygons_px)]
    atomic_write_bytes(out / "labels" / split / f"{stem}.txt", ("\n".join(lines) + "\n" if lines else "").encode())


def write_data_yaml(out: str | os.PathLike[str], names: dict[int, str]) -> Path:
    """Write out/data.yaml naming the splits present under out/images (paths relative to the YAML)."""
    out = Path(out)
    doc: dict[str, object] = {}
    for split in ("train", "val", "test"):
        if (out / "images" / split).is_dir():
            doc[split] = f"images/{split}"
    doc["names"] = {int(k): str(v) for k, v in sorted(names.items())}
    path = out / "data.yaml"
    atomic_write_bytes(path, yaml.safe_dump(doc, sort_keys=False).encode())
    return path


def convert_dsb2018(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    split: str = "train",
    val_ids: Collection[str] = (),
    rgb8: bool = False,
    progress: Progress | None = None,
) -> ConvertReport:
    """Kaggle DSB2018 (`<id>/images/<id>.png`, `<id>/masks/*.png`) -> YOLO-seg dataset at `out`.

    Samples go to `split`, except ids in `val_ids`, which go to "val". Class 0 = "cell".
    """
    src, out = Path(src), Path(out)
    ids = sorted(d for d in src.iterdir() if (d / "images").is_dir()) if src.is_dir() else []
    if not ids:
        raise DataError(f"{src}: no <id>/images/ folders found; expected the Kaggle DSB2018 stage1_train layout",
                        hint="point at the folder that holds the <id> sub-folders")
    problems: list[Problem] = []
    n_inst = 0
    for i, d in enumerate(ids):
        images = sorted(p for p in (d / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(images) != 1:
            problems.append(Problem(d / "images", None, "error", f"expected 1 image, found {len(images)}; skipped"))
            continue
        image = images[0]
        try:
            shape = image_size(image)
        except DataError as exc:
            problems.append(Problem(image, None, "error", f"unreadable image ({exc}); skipped"))
            continue
        polys = []
        mask_dir = d / "masks"
        for mpath in sorted(mask_dir.glob("*.png")) if mask_dir.is_dir() else []:
            try:
                mask = read_image_raw(mpath)
            except DataError as exc:
                problems.append(Problem(mpath, None, "error", f"unreadable mask ({exc}); dropped"))
                continue
            if mask.shape[:2] != shape:
                problems.append(Problem(mpath, None, "error",
                                        f"mask size {mask.shape[:2]} differs from image size {shape}; dropped"))
                continue
            mask = mask if mask.ndim == 2 else mask[..., 0]
            poly = _instance_polygon(mask, (0, 0), mpath, "mask", problems)
            if poly is not None:
                polys.append(poly)
        _write_yolo_sample(out, "val" if d.name in val_ids else split, image, d.name, shape,
                           [0] * len(polys), polys, rgb8)
        n_inst += len(polys)
        if progress is not None:
            progress(i + 1, len(ids))
    write_data_yaml(out, {0: "cell"})
    return ConvertReport(out, len(ids), n_inst, problems)


def label_map_polygons(label_map: np.ndarray, where: Path, problems: list[Problem]) -> list[np.ndarray]:
    """Polygons (pixels) of the instances of an (H, W) integer label map, in increasing label order."""
    from scipy import ndimage

    polys = []
    for k, sl in enumerate(ndimage.find_objects(label_map.astype(np.int64, copy=False)), 1):
        if sl is None:
            continue
        poly = _instance_polygon(label_map[sl] == k, (sl[1].start, sl[0].start), where, f"instance {k}", problems)
        if poly is not None:
            polys.append(poly)
    return polys


def convert_instance_masks(
    images: str | os.PathLike[str],
    masks: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    split: str = "train",
    mask_suffix: str = "",
    rgb8: bool = False,
    progress: Progress | None = None,
) -> ConvertReport:
    """Images + instance label images (0 = background, k = instance k) -> YOLO-seg dataset at `out`.

    The label image of `images/<stem>.<ext>` is `masks/<stem><mask_suffix>.<any image ext>` (e.g.
    mask_suffix="_masks" for Cellpose's naming). Class 0 = "cell".
    """
    images, masks, out = Path(images), Path(masks), Path(out)
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if images.is_dir() else []
    if not files:
        raise DataError(f"{images}: no image files found", hint=f"expected files ending in {IMAGE_SUFFIXES}")
    by_stem = {p.stem: p for p in masks.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES} if masks.is_dir() else {}
    problems: list[Problem] = []
    n_img = n_inst = 0
    for i, image in enumerate(files):
        mpath = by_stem.get(image.stem + mask_suffix)
        if mpath is None:
            problems.append(Problem(image, None, "warning",
                                    f"no label image {image.stem}{mask_suffix}.* in {masks}; skipped"))
            continue
        try:
            shape = image_size(image)
            label_map = read_image_raw(mpath)
        except DataError as exc:
            problems.append(Problem(image, None, "error", f"{exc}; skipped"))
            continue
        if label_map.ndim != 2 or label_map.dtype.kind not in "ui":
            problems.append(Problem(mpath, None, "error", f"label image of shape {label_map.shape} and dtype "
                                    f"{label_map.dtype}; expected a single-channel integer image; skipped"))
            continue
        if label_map.shape != shape:
            problems.append(Problem(mpath, None, "error", f"size {label_map.shape} differs from image size {shape}"))
            continue
        polys = label_map_polygons(label_map, mpath, problems)
        _write_yolo_sample(out, split, image, image.stem, shape, [0] * len(polys), polys, rgb8)
        n_img += 1
        n_inst += len(polys)
        if progress is not None:
            progress(i + 1, len(files))
    write_data_yaml(out, {0: "cell"})
    return ConvertReport(out, n_img, n_inst, problems)


def yolo_to_coco(
    source: str | os.PathLike[str],
    split: str,
    out_json: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
) -> ConvertReport:
    """One split of a YOLO-seg dataset -> COCO instance JSON (polygon segmentations, pixel units).

    file_name is the image path relative to the dataset root; area is the rasterised pixel count.
    """
    data = load_split(source, split)
    root = resolve_source(source).root
    images: list[dict[str, object]] = []
    anns: list[dict[str, object]] = []
    for i, s in enumerate(data.samples):
        h, w = image_size(s.image_path)
        image_id = i + 1
        try:
            file_name = s.image_path.relative_to(root).as_posix()
        except ValueError:
            file_name = str(s.image_path)
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
        polys_px = [p.astype(np.float64) * [w, h] for p in s.polygons]
        areas = polygon_areas(polys_px, (h, w)) if polys_px else np.zeros(0, np.int64)
        for cls, poly, area in zip(s.classes.tolist(), polys_px, areas):
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(cls) + 1,
                         "segmentation": [[round(float(v), 3) for v in poly.reshape(-1)]],
                         "area": float(area), "bbox": [round(float(v), 3) for v in (x0, y0, x1 - x0, y1 - y0)],
                         "iscrowd": 0})
        if progress is not None:
            progress(i + 1, len(data.samples))
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": k + 1, "name": v} for k, v in sorted(data.names.items())]}
    out_json = Path(out_json)
    atomic_write_bytes(out_json, json.dumps(doc).encode())
    return ConvertReport(out_json, len(images), len(anns), list(data.problems))


def _coco_polygon(seg: object, hw: tuple[int, int], where: Path, what: str,
                  problems: list[Problem]) -> np.ndarray | None:
    if isinstance(seg, dict):
        try:
            mask = rle_decode(seg)
        except DataError as exc:
            problems.append(Problem(where, None, "error", f"{what}: bad RLE ({exc}); dropped"))
            return None
        if mask.shape != hw:
            problems.append(Problem(where, None, "error", f"{what}: RLE size {mask.shape} differs from the "
                                    f"image size {hw}; dropped"))
            return None
        return _instance_polygon(mask, (0, 0), where, what, problems)
    parts = [np.asarray(p, np.float64).reshape(-1, 2) for p in (seg if isinstance(seg, list) else []) if len(p) >= 6 and len(p) % 2 == 0]
    if not parts:
        problems.append(Problem(where, None, "warning", f"{what} has no polygon with >= 3 vertices; dropped"))
        return None
    if len(parts) > 1:
        problems.append(Problem(where, None, "warning", f"{what} has {len(parts)} polygons; kept the largest"))
    return max(parts, key=lambda p: abs(cv2.contourArea(p.astype(np.float32))))


def coco_to_yolo(
    coco_json: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    split: str = "train",
    progress: Progress | None = None,
) -> ConvertReport:
    """COCO instance JSON (polygon or RLE segmentations) + its image folder -> YOLO-seg dataset at `out`.

    Images are found at images_dir/file_name (or images_dir/<basename>) and copied byte for byte.
    iscrowd annotations are skipped (reported); category ids map, sorted, to classes 0, 1, ...
    """
    coco_json, images_dir, out = Path(coco_json), Path(images_dir), Path(out)
    try:
        doc = json.loads(coco_json.read_text())
        cats = sorted(doc["categories"], key=lambda c: c["id"])
        imgs = doc["images"]
        all_anns = doc.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{coco_json}: not a readable COCO instance JSON ({exc})",
                        hint="expected keys images, annotations, categories") from exc
    cls_of = {c["id"]: i for i, c in enumerate(cats)}
    anns_by_image: dict[object, list[dict]] = {}
    for a in all_anns:
        anns_by_image.setdefault(a["image_id"], []).append(a)
    problems: list[Problem] = []
    n_img = n_inst = 0
    for i, info in enumerate(imgs):
        name = str(info["file_name"])
        image = images_dir / name
        if not image.is_file():
            image = images_dir / Path(name).name
        if not image.is_file():
            problems.append(Problem(images_dir / name, None, "error", "image listed in the JSON not found; skipped"))
            continue
        h, w = int(info.get("height") or 0), int(info.get("width") or 0)
        if not (h and w):
            h, w = image_size(image)
        classes, polys = [], []
        for a in anns_by_image.get(info["id"], []):
            what = f"annotation {a.get('id')}"
            if a.get("iscrowd"):
                problems.append(Problem(coco_json, None, "warning", f"{what} is a crowd region; skipped"))
                continue
            if a.get("category_id") not in cls_of:
                problems.append(Problem(coco_json, None, "error", f"{what}: unknown category {a.get('category_id')}"))
                continue
            poly = _coco_polygon(a.get("segmentation"), (h, w), coco_json, what, problems)
            if poly is not None:
                classes.append(cls_of[a["category_id"]])
                polys.append(poly)
        _write_yolo_sample(out, split, image, Path(name).stem, (h, w), classes, polys, rgb8=False)
        n_img += 1
        n_inst += len(polys)
        if progress is not None:
            progress(i + 1, len(imgs))
    write_data_yaml(out, {i: str(c.get("name", c["id"])) for i, c in enumerate(cats)})
    return ConvertReport(out, n_img, n_inst, problems)

