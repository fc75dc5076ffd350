"""Prediction inputs: image files, folders, glob patterns and video files, as RGB uint8 frames.

`expand_sources` turns what the user named into a list of input files: folders are listed (recursively
with `recursive=True`), glob patterns matched (`**` included) and both sorted naturally (`8.png` before
`79.png`); a directory symlink loop is entered once; the same file named twice (or through a symlink) is
kept once. A folder or pattern without images is an error, and so is a FIFO, device or socket.

`unique_names` gives every input the name its outputs carry (the rule: asfyolo_rt.infer.writers);
`iter_frames` reads the inputs frame by frame under those names, and with `skip_bad=True` goes on past a
file it cannot read, recording it as a `BadInput`.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asfyolo_rt.data.layout import blend_note
from asfyolo_rt.data.stacks import StackLayout, StackPlane, input_stem
from asfyolo_rt.errors import DataError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".wmv", ".mpg", ".mpeg"}
_SUPPORTED = IMAGE_SUFFIXES | VIDEO_SUFFIXES
_HINT = f"supported: {', '.join(sorted(_SUPPORTED))} files and OME-Zarr (.zarr) folders"


@dataclass(frozen=True)
class Frame:
    name: str  # the input's output name (unique_names), plus "_<frame:06d>" (video) or the plane's suffix (stack)
    source: Path
    image: np.ndarray  # (H, W, 3) uint8 RGB
    frame_index: int | None = None
    pixel_size_um: float | None = None  # physical pixel size recorded in the file (OME/ImageJ TIFF), if any
    plane: StackPlane | None = None  # the plane of a multi-plane TIFF (asfyolo_rt.data.stacks), else None
    input_name: str = ""  # output name of the input (or TIFF series) the frame is part of; "" = input_stem(source)


@dataclass(frozen=True)
class BadInput:
    """An input that `iter_frames(skip_bad=True)` (or `expand_sources(skip_bad=True)`) passed over."""

    path: Path
    reason: str  # one line: what is wrong with it


def natural_key(path: str | Path) -> list[object]:
    """Sort key: digit runs compare as numbers (`8.png` < `79.png`), text case-insensitively."""
    return [int(t) if t.isdigit() else t.casefold() for t in re.split(r"(\d+)", str(path))]


def special_file(path: Path) -> str | None:
    """Why `path` cannot be an input file ("does not exist", "is a FIFO, not an image file", ...), or None
    for a regular file or folder. Follows symlinks, naming the target when the link is the problem."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"is a broken symbolic link (to {os.readlink(path)})"
        return "does not exist"
    except OSError as exc:
        return f"cannot be accessed ({exc.strerror or exc})"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    what = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "a special file")
    via = f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else ""
    return f"is {what}{via}, not an image file"


def expand_sources(sources: Sequence[str | Path], *, recursive: bool = False, skip_bad: bool = False,
                   skipped: list[BadInput] | None = None) -> list[Path]:
    """Files, folders and glob patterns -> existing image/video files and OME-Zarr folders, each once.

    Folders: their images and videos, naturally sorted; with `recursive=True` those of every subfolder too
    (hidden folders and .zarr folders are not entered). Patterns: glob syntax, `**` for any depth; matches
    naturally sorted. Symlinked folders are followed, each real folder once (no loops). Inputs are
    de-duplicated by real path: the first spelling is kept. Raises DataError for a missing or special
    source, a folder or pattern without images, or (unless `skip_bad`) a special file a folder or pattern
    holds; with `skip_bad` such files are left out and appended to `skipped`.
    """
    out: list[Path] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        real = os.path.realpath(p)
        if real in seen:
            logger.info("%s: already an input (same file), segmented once", p)
            return
        seen.add(real)
        out.append(p)

    def add_listed(found: list[Path], what: str, *, zarr: bool = False) -> None:
        inputs = [p for p in found if p.suffix.lower() in _SUPPORTED and not os.path.isdir(p)
                  or zarr and p.suffix.lower() == ".zarr" and os.path.isdir(p)]
        if not inputs:
            raise DataError(f"{what} has no images or videos"
                            + (f" ({len(found)} other file(s), e.g. {found[0].name})" if found else ""), hint=_HINT)
        for p in sorted(inputs, key=natural_key):
            why = special_file(p)
            if why is None:
                add(p)
                continue
            if not skip_bad:
                raise DataError(f"{p} {why}", hint="remove it or pass --skip-bad")
            logger.warning("skipped %s: %s", p, why)
            if skipped is not None:
                skipped.append(BadInput(p, why))

    for s in sources:
        text = str(s)
        if any(c in text for c in "*?["):
            matches = _glob(text)
            if not matches:
                raise DataError(f"pattern {text!r} matches no files")
            add_listed(matches, f"pattern {text!r}", zarr=True)
            continue
        p = Path(text)
        why = special_file(p)
        if why == "does not exist":
            raise DataError(f"source {p} does not exist")
        if why is not None:
            raise DataError(f"{p} {why}", hint=_HINT)
        if p.is_dir() and p.suffix.lower() == ".zarr":  # an OME-Zarr image (asfyolo_rt.data.omezarr)
            add(p)
        elif p.is_dir():
            found = [Path(d, f) for d, _, files in _walk(p) for f in files] if recursive else _list(p)
            add_listed(found, f"folder {p}" + (" (searched recursively)" if recursive else ""))
        elif p.suffix.lower() not in _SUPPORTED:
            raise DataError(f"{p}: unsupported file type {p.suffix!r}", hint=_HINT)
        else:
            add(p)
    return out


def _list(folder: Path) -> list[Path]:
    """The files of one folder (no subfolders; a note names the subfolders left out)."""
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise DataError(f"folder {folder}: cannot be listed ({exc.strerror or exc})") from exc
    files = [Path(folder, e.name) for e in entries if not e.is_dir()]
    subs = sorted((e.name for e in entries if e.is_dir() and not e.name.startswith(".")
                   and not e.name.lower().endswith(".zarr")), key=natural_key)
    if subs:
        logger.warning("folder %s: %d subfolder(s) not searched (%s%s); search them with --recursive", folder,
                       len(subs), ", ".join(subs[:3]), ", ..." if len(subs) > 3 else "")
    return files


def _walk(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """os.walk following symlinked folders, each real folder entered once (a link loop ends there), hidden
    and .zarr folders not entered. Yields (folder, every subfolder name, file names), naturally sorted."""
    entered: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in entered:
            dirs[:] = []
            continue
        entered.add(real)
        every = sorted(dirs, key=natural_key)
        dirs[:] = [d for d in every if not d.startswith(".") and not d.lower().endswith(".zarr")]
        yield Path(folder), every, sorted(files, key=natural_key)


def _glob(pattern: str) -> list[Path]:
    """Glob matches, naturally sorted; `**` matched by a loop-safe walk (glob.glob follows link loops)."""
    if "**" not in pattern:
        return sorted((Path(p) for p in glob.glob(pattern)), key=natural_key)
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if any(c in part for c in "*?["))
    root = Path(*parts[:fixed]) if fixed else Path()
    wanted = parts[fixed:]
    found = []
    for folder, dirs, files in _walk(root):
        rel = folder.relative_to(root).parts if folder != root else ()
        found += [folder / n for n in (*dirs, *files) if _match(wanted, (*rel, n))]
    return sorted(found, key=natural_key)


def _match(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Whether path parts match glob parts (`**`: any number of folders); hidden names need a leading dot."""
    if not pattern:
        return not parts
    head = pattern[0]
    if head == "**":
        return any(_match(pattern[1:], parts[i:]) for i in range(len(parts) + 1)
                   if not any(p.startswith(".") for p in parts[:i]))
    if not parts or (parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], head) and _match(pattern[1:], parts[1:])


def unique_names(paths: Sequence[Path]) -> dict[Path, str]:
    """Every input's output name, unique within `paths` (case-insensitively); the rule is documented in
    asfyolo_rt.infer.writers. Depends only on the paths and their order."""
    paths = list(dict.fromkeys(paths))  # a path given twice is one input
    groups: dict[str, list[Path]] = {}
    for p in paths:
        groups.setdefault(input_stem(p).casefold(), []).append(p)
    names: dict[Path, str] = {}
    for group in groups.values():
        if len(group) == 1:
            names[group[0]] = input_stem(group[0])
            continue
        parents = [Path(os.path.abspath(p)).parent for p in group]
        common = Path(os.path.commonpath(parents))
        for p, parent in zip(group, parents):
            stem = input_stem(p)
            name = "__".join((*parent.relative_to(common).parts, stem))
            if parents.count(parent) > 1:  # same stem in one folder: add the extension
                name += p.name[len(stem):].replace(".", "_")
            names[p] = name
    taken: set[str] = set()
    for p in paths:  # a name still taken (e.g. `x__a.png` next to `x/a.png` and `y/a.png`): _2, _3, ...
        name, k = names[p], 2
        while names[p].casefold() in taken:
            names[p], k = f"{name}_{k}", k + 1
        taken.add(names[p].casefold())
    return {p: names[p] for p in paths}


def iter_frames(paths: Sequence[Path], *, video_stride: int = 1, channel: int | None = None,
                names: Mapping[Path, str] | None = None, skip_bad: bool = False,
                skipped: list[BadInput] | None = None) -> Iterator[Frame]:
    """Read every image, every plane of a multi-plane TIFF, and every `video_stride`-th frame of every video,
    as RGB uint8. channel: the channel to segment (0-based) of multichannel images (asfyolo_rt.data.stacks).

    names: each input's output name (default `unique_names(paths)`). A TIFF holding several images of
    different sizes gives each series as an input of its own, `<name>_s<k>` (k from 0), at its own size.
    skip_bad: a file that cannot be read (DataError, OSError) is logged, appended to `skipped` as a
    `BadInput` and passed over instead of raising; the other inputs are still read.
    """
    names = unique_names(paths) if names is None else names
    for p in paths:
        name = names.get(p) or input_stem(p)
        try:
            yield from _frames_of(p, name, video_stride, channel)
        except (DataError, OSError) as exc:
            if not skip_bad:
                raise
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logger.warning("skipped %s: %s", p, reason)
            if skipped is not None:
                skipped.append(BadInput(p, reason))


def _frames_of(p: Path, name: str, video_stride: int, channel: int | None) -> Iterator[Frame]:
    from asfyolo_rt.data.io import read_image, read_image_raw, read_pixel_size, to_uint8_rgb
    from asfyolo_rt.data.stacks import stack_layouts

    why = special_file(p)
    if why is not None:  # a FIFO would block the reader: refuse before opening
        raise DataError(f"{p} {why}")
    if p.suffix.lower() in VIDEO_SUFFIXES:
        yield from _video_frames(p, name, video_stride)
    elif p.suffix.lower() == ".zarr":
        from asfyolo_rt.data.omezarr import zarr_layout

        yield from _stack_frames(zarr_layout(p, channel), name)
    elif p.suffix.lower() in (".tif", ".tiff"):
        layouts = stack_layouts(p, channel)
        if len(layouts) > 1:
            logger.warning("%s holds %d images of different sizes (%s): each is segmented at its own size as "
                           "%s_s0 ... %s_s%d", p, len(layouts), ", ".join(
                               "x".join(str(n) for n in lay.shape) for lay in layouts), name, name, len(layouts) - 1)
        for lay in layouts:
            if (note := blend_note(lay)) is not None:
                logger.warning("%s", note)
        if len(layouts) > 1:
            for k, lay in enumerate(layouts):
                yield from _stack_frames(lay, f"{name}_s{k}", planes=True)
        elif layouts[0].is_stack or layouts[0].channel is not None:
            yield from _stack_frames(layouts[0], name)
        else:
            yield Frame(name, p, read_image(p), pixel_size_um=read_pixel_size(p), input_name=name)
    elif channel is not None:
        raw = read_image_raw(p)
        if raw.ndim != 3 or channel >= raw.shape[2]:
            raise DataError(f"--channel {channel}: {p} has {1 if raw.ndim == 2 else raw.shape[2]} channel(s)",
                            hint="omit --channel, or pass a 0-based channel the image has")
        yield Frame(name, p, to_uint8_rgb(raw[:, :, channel]), pixel_size_um=read_pixel_size(p), input_name=name)
    else:
        yield Frame(name, p, read_image(p), pixel_size_um=read_pixel_size(p), input_name=name)


def _stack_frames(layout: StackLayout, name: str, *, planes: bool = False) -> Iterator[Frame]:
    """The frames of a layout; planes=True: as stack planes even when there is one (a series of a file)."""
    from asfyolo_rt.data.io import to_uint8_rgb
    from asfyolo_rt.data.stacks import iter_planes

    if layout.kind == "ome-zarr" and (note := blend_note(layout)) is not None:
        logger.warning("%s", note)
    for plane, pixels in iter_planes(layout):
        if not planes and not layout.is_stack and layout.kind != "ome-zarr":  # a channel of a CYX TIFF: an image
            yield Frame(name, layout.path, to_uint8_rgb(pixels), pixel_size_um=layout.size.x, input_name=name)
            continue
        yield Frame(f"{name}{plane.suffix()}", layout.path, to_uint8_rgb(pixels), plane.index,
                    pixel_size_um=layout.size.x, plane=plane, input_name=name)


def _video_frames(path: Path, name: str, stride: int) -> Iterator[Frame]:
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
                yield Frame(f"{name}_{i:06d}", path, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), i, input_name=name)
            i += 1
        if i == 0:
            raise DataError(f"{path}: the video has no readable frames")
    finally:
        cap.release()
