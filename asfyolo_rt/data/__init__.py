"""Data: image reading, YOLO-seg datasets, letterbox pre-processing, masks, RLE, checks, converters.

The public API is re-exported here, each name imported on first use (PEP 562): `from asfyolo_rt.data.io
import read_image` on predict's path does not import the dataset checker, converters or YAML. See each
module for details.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "check": ("CheckReport", "SplitStats", "check_dataset"),
    "convert": ("ConvertReport", "coco_to_yolo", "convert_dsb2018", "convert_instance_masks", "write_data_yaml",
                "yolo_to_coco"),
    "dataset": ("DatasetSource", "DatasetSplit", "OnProblem", "Problem", "Sample", "format_label_line",
                "label_path_for", "load_split", "parse_label_text", "read_split", "resolve_source"),
    "io": ("IMAGE_SUFFIXES", "image_size", "pixel_hash", "read_image", "read_image_raw", "to_uint8_rgb",
           "write_image"),
    "letterbox": ("LetterboxTransform", "letterbox", "preprocess", "preprocess_array", "rect_shape",
                  "rect_shape_batch"),
    "masks": ("mask_to_polygon", "masks_to_polygons", "polygon_areas", "polygons_to_index_map", "polygons_to_masks"),
    "rle": ("rle_area", "rle_decode", "rle_encode", "rle_to_bbox"),
    "synth": ("make_nuclei", "make_tissue", "write_synth_dataset"),
}
_WHERE = {name: module for module, names in _PUBLIC.items() for name in names}

# a function named as its module: bound now, or the first `import asfyolo_rt.data.letterbox` would make the
# package's `letterbox` that module (the import system sets it; __getattr__ below is then never asked)
from asfyolo_rt.data.letterbox import letterbox as letterbox  # noqa: E402

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """A public name (imported from its module once), or a submodule (`asfyolo_rt.data.dataset`)."""
    module = _WHERE.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
