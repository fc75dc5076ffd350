"""Data: image reading, YOLO-seg datasets, letterbox pre-processing, masks, RLE, checks, converters.

The public API is re-exported here; see each module for details.
"""

from __future__ import annotations

from asfyolo_rt.data.check import CheckReport, SplitStats, check_dataset
from asfyolo_rt.data.convert import (
    ConvertReport,
    coco_to_yolo,
    convert_dsb2018,
    convert_instance_masks,
    write_data_yaml,
    yolo_to_coco,
)
from asfyolo_rt.data.dataset import (
    DatasetSource,
    DatasetSplit,
    OnProblem,
    Problem,
    Sample,
    format_label_line,
    label_path_for,
    load_split,
    parse_label_text,
    read_split,
    resolve_source,
)
from asfyolo_rt.data.io import (
    IMAGE_SUFFIXES,
    image_size,
    pixel_hash,
    read_image,
    read_image_raw,
    to_uint8_rgb,
    write_image,
)
from asfyolo_rt.data.letterbox import (
    LetterboxTransform,
    letterbox,
    preprocess,
    preprocess_array,
    rect_shape,
    rect_shape_batch,
)
from asfyolo_rt.data.masks import (
    mask_to_polygon,
    masks_to_polygons,
    polygon_areas,
    polygons_to_index_map,
    polygons_to_masks,
)
from asfyolo_rt.data.rle import rle_area, rle_decode, rle_encode, rle_to_bbox
from asfyolo_rt.data.synth import make_nuclei, make_tissue, write_synth_dataset

__all__ = [
    "IMAGE_SUFFIXES",
    "CheckReport",
    "ConvertReport",
    "DatasetSource",
    "DatasetSplit",
    "LetterboxTransform",
    "OnProblem",
    "Problem",
    "Sample",
    "SplitStats",
    "check_dataset",
    "coco_to_yolo",
    "convert_dsb2018",
    "convert_instance_masks",
    "format_label_line",
    "image_size",
    "label_path_for",
    "letterbox",
    "load_split",
    "make_nuclei",
    "make_tissue",
    "mask_to_polygon",
    "masks_to_polygons",
    "parse_label_text",
    "pixel_hash",
    "polygon_areas",
    "polygons_to_index_map",
    "polygons_to_masks",
    "preprocess",
    "preprocess_array",
    "read_image",
    "read_image_raw",
    "read_split",
    "rect_shape",
    "rect_shape_batch",
    "resolve_source",
    "rle_area",
    "rle_decode",
    "rle_encode",
    "rle_to_bbox",
    "to_uint8_rgb",
    "write_data_yaml",
    "write_image",
    "write_synth_dataset",
    "yolo_to_coco",
]
