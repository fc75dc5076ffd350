"""Prediction inputs: image files, folders, glob patterns and video files, as RGB uint8 frames."""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asfyolo_rt.data.stacks import StackLayout, StackPlane
from asfyolo_rt.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".wmv", ".mpg", ".mpeg"}


@dataclass(frozen=True)
class Frame:
    name: str  # file stem, or "<video stem>_<frame:06d>"
    source: Path
    image: np.ndarray  # (H, W, 3) uint8 RGB
    frame_index: int | None = None
    pixel_size_um: float | None = None  # physical pixel size recorded in the file (OME/ImageJ TIFF), if any
    plane: StackPlane | None = None  # the plane of a multi-plane TIFF (asfyolo_rt.data.stacks), else None


def expand_sources(sources: Sequence[str | Path]) -> list[Path]:
    """Files, folders (non-recursive, sorted) and glob patterns -> existing image/video files."""
    out: list[Path] = []
    for s in sources:
        text = str(s)
        if any(c in text for c in "*?["):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            if not matches:
                raise DataError(f"pattern {text!r} matches no files")
            out += [p for p in matches if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES]
            continue
        p = Path(text)
        if p.is_dir() and p.suffix.lower() == ".zarr":  # an OME-Zarr image (asfyolo_rt.data.omezarr)
            out.append(p)
        elif p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            if not files:
                raise DataError(f"folder {p} has no images or videos",
                                hint=f"supported: {', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))}")
            out += files
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                raise DataError(f"{p}: unsupported file type {p.suffix!r}",
                                hint=f"supported: {', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))}")
            out.append(p)
        else:
            raise DataError(f"source {p} does not exist")
    return out


def iter_frames(paths: Sequence[Path], *, video_stride: int = 1, channel: int | None = None) -> Iterator[Frame]:
    """Read every image, every plane of a multi-plane TIFF, and every `video_stride`-th frame of every video,
    as RGB uint8. channel: the channel to segment (0-based) of multichannel images (asfyolo_rt.data.stacks)."""
    from asfyolo_rt.data.io import read_image, read_image_raw, read_pixel_size, to_uint8_rgb
    from asfyolo_rt.data.stacks import stack_layout

    for p in paths:
        if p.suffix.lower() in VIDEO_SUFFIXES:
            yield from _video_frames(p, video_stride)
        elif p.suffix.lower() == ".zarr":
            from asfyolo_rt.data.omezarr import zarr_layout

            yield from _stack_frames(zarr_layout(p, channel))
        elif p.suffix.lower() in (".tif", ".tiff") and ((layout := stack_layout(p, channel)).is_stack
                                                          or layout.channel is not None):
            yield from _stack_frames(layout)
        elif channel is not None:
            raw = read_image_raw(p)
            if raw.ndim != 3 or channel >= raw.shape[2]:
                raise DataError(f"--channel {channel}: {p} has {1 if raw.ndim == 2 else raw.shape[2]} channel(s)",
                                hint="omit --channel, or pass a 0-based channel the image has")
            yield Frame(p.stem, p, to_uint8_rgb(raw[:, :, channel]), pixel_size_um=read_pixel_size(p))
        else:
            yield Frame(p.stem, p, read_image(p), pixel_size_um=read_pixel_size(p))


def _stack_frames(layout: StackLayout) -> Iterator[Frame]:
    from asfyolo_rt.data.io import to_uint8_rgb
    from asfyolo_rt.data.stacks import input_stem, iter_planes

    for plane, pixels in iter_planes(layout):
        if not layout.is_stack and layout.kind != "ome-zarr":  # one plane (a channel of a CYX TIFF): an image
            yield Frame(layout.path.stem, layout.path, to_uint8_rgb(pixels), pixel_size_um=layout.size.x)
            continue
        yield Frame(f"{input_stem(layout.path)}{plane.suffix()}", layout.path, to_uint8_rgb(pixels), plane.index,
                    pixel_size_um=layout.size.x, plane=plane)


def _video_frames(path: Path, stride: int) -> Iterator[Frame]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path}: OpenCV cannot open this video", hint="re-encode it as H.264 .mp4 or extract frames")
    try:
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % stride == 0:
                yield Frame(f"{path.stem}_{i:06d}", path, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), i)
            i += 1
        if i == 0:
            raise DataError(f"{path}: the video has no readable frames")
    finally:
        cap.release()
