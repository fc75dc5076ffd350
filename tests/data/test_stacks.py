"""Stack layouts (ImageJ, OME-TIFF, plain multi-page), channel choice, label TIFFs with the input's metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from asfyolo_rt.data.stacks import (
    PhysicalSize,
    StackAssembler,
    iter_planes,
    stack_layout,
    write_label_tiff,
)
from asfyolo_rt.errors import ConfigError


def _imagej_zyx(path: Path, planes: int = 5) -> np.ndarray:
    data = np.arange(planes * 12 * 10, dtype=np.uint16).reshape(planes, 12, 10)
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"axes": "ZYX", "unit": "um", "spacing": 2.0})
    return data


def test_imagej_zstack_layout_and_planes(tmp_path: Path) -> None:
    data = _imagej_zyx(tmp_path / "z.tif")
    lay = stack_layout(tmp_path / "z.tif")
    assert (lay.kind, lay.plane_axes, lay.plane_shape, lay.count) == ("imagej", "Z", (5,), 5)
    assert lay.size == PhysicalSize(0.5, 0.5, 2.0)
    planes = list(iter_planes(lay))
    assert [p.coords for p, _ in planes] == [{"Z": k} for k in range(5)]
    assert [p.suffix() for p, _ in planes][:2] == ["_z000", "_z001"]
    assert all(np.array_equal(px, data[k]) for k, (_, px) in enumerate(planes))


def test_ome_hyperstack_channel_pick(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (2, 3, 2, 16, 12), dtype=np.uint16)  # T Z C Y X
    tifffile.imwrite(tmp_path / "h.ome.tif", data, ome=True,
                     metadata={"axes": "TZCYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.3, "PhysicalSizeZ": 1.5})
    with pytest.raises(ConfigError, match="has 2 channels"):
        stack_layout(tmp_path / "h.ome.tif")  # 2 channels: which one is the nuclear stain?
    with pytest.raises(ConfigError, match="expected 0..1"):
        stack_layout(tmp_path / "h.ome.tif", channel=2)
    lay = stack_layout(tmp_path / "h.ome.tif", channel=1)
    assert (lay.kind, lay.plane_axes, lay.plane_shape, lay.rgb) == ("ome", "TZ", (2, 3), False)
    assert lay.size == PhysicalSize(0.25, 0.3, 1.5)
    planes = list(iter_planes(lay))
    assert len(planes) == 6
    plane, px = planes[4]  # t=1, z=1
    assert plane.coords == {"T": 1, "Z": 1} and plane.suffix() == "_t001_z001"
    assert np.array_equal(px, data[1, 1, 1])


def test_plain_multipage_and_single_plane(tmp_path: Path) -> None:
    data = np.zeros((4, 8, 8), np.uint8)
    data[:, 2, 3] = np.arange(4)
    tifffile.imwrite(tmp_path / "p.tif", data, photometric="minisblack")
    lay = stack_layout(tmp_path / "p.tif")
    assert lay.is_stack and lay.count == 4 and lay.kind == "tiff"
    assert [p.suffix() for p, _ in iter_planes(lay)] == ["_p0000", "_p0001", "_p0002", "_p0003"]
    tifffile.imwrite(tmp_path / "one.tif", data[0])
    assert not stack_layout(tmp_path / "one.tif").is_stack


@pytest.mark.parametrize("kind", ["imagej", "ome", "tiff"])
def test_label_tiff_keeps_axes_and_pixel_size(tmp_path: Path, kind: str) -> None:
    labels = np.zeros((2, 3, 16, 12), np.uint16)
    labels[1, 2, 4:8, 3:6] = 7
    size = PhysicalSize(0.25, 0.25, 1.5)
    path = write_label_tiff(tmp_path / "l.tif", labels, "TZYX", kind, size)
    with tifffile.TiffFile(path) as tif:
        back = tif.series[0].asarray()
        axes = tif.series[0].axes
    assert np.array_equal(back.reshape(labels.shape), labels)
    lay = stack_layout(path)
    if kind == "tiff":  # a plain TIFF records x/y resolution only, and the shape (axes "QQYX" when read back)
        assert lay.size.x == pytest.approx(0.25) and lay.count == 6
    else:
        assert axes == "TZYX" and lay.plane_shape == (2, 3)
        assert lay.size.x == pytest.approx(0.25) and lay.size.z == pytest.approx(1.5)


def test_assembler_runs_ids_on_across_planes(tmp_path: Path) -> None:
    _imagej_zyx(tmp_path / "z.tif", planes=2)
    lay = stack_layout(tmp_path / "z.tif")
    asm = StackAssembler(lay, 12, 10)
    planes = [p for p, _ in iter_planes(lay)]
    a = np.zeros((12, 10), np.int32)
    a[0:2, 0:2], a[5:7, 5:7] = 1, 2
    assert asm.add(planes[0], a, 2) == 0 and not asm.complete
    assert asm.add(planes[1], a, 3) == 2 and asm.complete  # 3 detections, the third hidden
    vol = asm.labels()
    assert vol.dtype == np.uint16 and vol.shape == (2, 12, 10)
    assert sorted(np.unique(vol[1]).tolist()) == [0, 3, 4]


def test_iter_frames_channel_of_2d_multichannel_and_rgb(tmp_path: Path) -> None:
    from asfyolo_rt.data.io import to_uint8_rgb, write_image
    from asfyolo_rt.infer.sources import iter_frames

    rng = np.random.default_rng(1)
    cyx = rng.integers(0, 4000, (2, 20, 16), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "two.tif", cyx, photometric="minisblack", metadata={"axes": "CYX"})
    (frame,) = iter_frames([tmp_path / "two.tif"], channel=1)
    assert frame.plane is None and frame.name == "two"
    assert np.array_equal(frame.image, to_uint8_rgb(cyx[1]))
    rgb = rng.integers(0, 255, (20, 16, 3), dtype=np.uint8)
    write_image(tmp_path / "rgb.png", rgb)
    (frame,) = iter_frames([tmp_path / "rgb.png"], channel=2)  # the blue (DAPI) channel of an RGB picture
    assert np.array_equal(frame.image[..., 0], rgb[..., 2])
    with pytest.raises(Exception, match="--channel 3"):
        list(iter_frames([tmp_path / "rgb.png"], channel=3))
