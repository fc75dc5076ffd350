"""Inference geometry: tile grids, stitching across tile edges, static shapes, backends agreeing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.eval.dsb import instance_f1
from asfyolo_rt.infer.protocol import PlainBackend
from asfyolo_rt.runtime.stages import Geometry, PostConfig, Runner, plan_tiles, tile_starts


class OracleBackend(PlainBackend):
    """A perfect model that sees only its tile: every bright connected component of the tile becomes one
    detection (box = the visible part, score 0.9) whose mask is the bright region (protos channel 0 =
    brightness logit, coefficient [1, 0, ...]). A disc cut by the tile edge gives a *partial* detection,
    exactly what a real model does, so stitching has to drop it and keep the whole copy."""

    name = "oracle"
    precision = "fp32"
    nc = 1
    names = {0: "cell"}

    def __init__(self, input_shape=None, max_batch=None):
        self.input_shape = input_shape
        self.max_batch = max_batch
        self.calls = 0
        self.batches: list[int] = []

    def __call__(self, images: torch.Tensor):
        import cv2

        self.calls += 1
        self.batches.append(int(images.shape[0]))
        b, _, h, w = images.shape
        n = 64
        pred = torch.zeros((b, n, 5 + 1 + 32))
        protos = torch.zeros((b, 32, h // 4, w // 4))
        for i in range(b):
            grey = images[i].mean(0).numpy()
            binary = (grey > 0.5).astype(np.uint8)
            k, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
            for j in range(1, min(k, n + 1)):
                x, y, bw, bh, _ = stats[j]
                pred[i, j - 1, :4] = torch.tensor([x + bw / 2, y + bh / 2, bw, bh], dtype=torch.float32)
                pred[i, j - 1, 4] = 0.9
                pred[i, j - 1, 5] = 1.0
                pred[i, j - 1, 6] = 1.0
            small = cv2.resize(grey, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
            protos[i, 0] = torch.from_numpy((small - 0.5) * 40.0)
        return pred, protos


def disc_frame(h: int, w: int, centres: list[tuple[int, int]], r: int = 14) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    img = np.zeros((h, w, 3), np.uint8)
    gt = np.zeros((h, w), np.int32)
    for k, (cx, cy) in enumerate(centres, 1):
        cv2.circle(img, (cx, cy), r, (230, 230, 230), -1)
        cv2.circle(gt, (cx, cy), r, k, -1)
    return img, gt


def run(backend, img, **geo):
    post = PostConfig(conf=0.25, iou=0.45, max_det=300, kernel_impl="torch")
    res = Runner(backend, Geometry("native", **geo), post)(img)
    return res, res.label_map()


# ------------------------------------------------------------------------------------------ tile grid
@pytest.mark.parametrize("length,tile,overlap", [(100, 128, 32), (128, 128, 32), (129, 128, 32), (2048, 640, 144),
                                                 (8192, 320, 144), (700, 256, 200)])
def test_tile_starts_cover_with_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0
    if length <= tile:
        assert starts == [0]
        return
    assert starts[-1] == length - tile
    shared = [a + tile - b for a, b in zip(starts, starts[1:])]
    assert min(shared) >= overlap  # every neighbour pair shares at least the overlap
    # and no fewer tiles would do: one tile less cannot keep the overlap
    n = len(starts)
    assert n == 2 or (n - 1) * tile - (n - 2) * overlap < length


def test_tile_starts_rejects_overlap_not_smaller_than_tile():
    with pytest.raises(ConfigError, match="overlap"):
        tile_starts(1000, 128, 128)


def test_cores_partition_the_image():
    tiles = plan_tiles(700, 1000, (256, 256), 64, static=True)
    owner = np.zeros((700, 1000), np.int32)
    ys, xs = np.mgrid[0:700, 0:1000] + 0.5
    for t in tiles:
        x0, y0, x1, y1 = t.core
        owner += ((xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)).astype(np.int32)
        # a core lies inside its tile, at least half the overlap away from every inner edge
        assert t.x0 <= x0 and x1 <= t.x0 + t.w and t.y0 <= y0 and y1 <= t.y0 + t.h
    assert (owner == 1).all()  # every pixel has exactly one owning tile


def test_dynamic_backend_gets_small_tiles_for_small_images():
    (t,) = plan_tiles(200, 300, (640, 640), 128, static=False)
    assert (t.h, t.w) == (224, 320)
    (t,) = plan_tiles(200, 300, (640, 640), 128, static=True)
    assert (t.h, t.w) == (640, 640)


# ------------------------------------------------------------------------------------------ stitching
def test_instances_across_tile_edges_found_once_and_whole():
    # tiles of 128 with overlap 48 on a 320 x 320 frame: starts 0, 64, 128, 192 on both axes
    centres = [(128, 40),  # cut by one vertical edge (tile 0 ends at 128)
               (128, 128),  # at a corner of four tiles
               (192, 250), (64, 64), (250, 192), (40, 300), (300, 300), (160, 200)]
    img, gt = disc_frame(320, 320, centres)
    backend = OracleBackend(input_shape=(128, 128), max_batch=None)
    res, labels = run(backend, img, tile_overlap=48, batch=3)
    assert res.tiles == 16
    f1 = instance_f1(gt, labels, 0.5)
    assert (f1.tp, f1.fp, f1.fn) == (len(centres), 0, 0)
    iou = __import__("asfyolo_rt.eval.dsb", fromlist=["instance_iou"]).instance_iou(gt, labels)
    assert iou.max(1).min() > 0.85  # whole discs, not halves
    assert backend.batches[:-1] == [3] * (len(backend.batches) - 1)  # --batch tiles per call


def test_without_ownership_the_same_frame_has_duplicates_and_halves():
    """The stitching test above can fail: keeping every tile's detections gives duplicates and halves."""
    centres = [(128, 40), (128, 128)]
    img, gt = disc_frame(320, 320, centres)
    backend = OracleBackend(input_shape=(128, 128))
    runner = Runner(backend, Geometry("native", tile_overlap=48), PostConfig(kernel_impl="torch"))
    tiles = plan_tiles(320, 320, (128, 128), 48, static=True)
    # the disc at the four-tile corner is seen by 4 tiles, 3 of which cut it
    visible = 0
    for t in tiles:
        crop = img[t.y0:t.y0 + t.h, t.x0:t.x0 + t.w]
        x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
        pred, _ = backend(x)
        visible += int((pred[0, :, 4] > 0).sum())
    assert visible > len(centres) * 2
    res = runner(img)
    assert len(res) == len(centres)


def test_static_batch_gets_padded_last_batch():
    img, _ = disc_frame(300, 300, [(150, 150)])
    backend = OracleBackend(input_shape=(128, 128), max_batch=4)
    res, _ = run(backend, img, tile_overlap=32)
    assert res.tiles == 9  # 3 x 3
    assert backend.batches == [4, 4, 4]  # 9 tiles -> 4 + 4 + 1 padded to 4


def test_static_shape_conflicting_img_size_is_an_error():
    backend = OracleBackend(input_shape=(128, 128))
    with pytest.raises(ConfigError, match="conflicts"):
        Runner(backend, Geometry("native", img_size=640), PostConfig())
    with pytest.raises(ConfigError, match="conflicts"):
        Runner(backend, Geometry("fit", img_size=640), PostConfig())


def test_batch_larger_than_static_batch_is_an_error():
    with pytest.raises(ConfigError, match="fixed batch"):
        Runner(OracleBackend(input_shape=(128, 128), max_batch=2), Geometry("native", batch=4), PostConfig())


def test_model_scale_maps_back_to_original_pixels():
    """At model scale 0.5 a 640 frame is processed at 320 and boxes come back in original pixels."""
    centres = [(100, 100), (400, 300), (320, 320)]
    img, gt = disc_frame(640, 640, centres, r=24)
    res, labels = run(OracleBackend(), img, model_scale=0.5, img_size=128, tile_overlap=48)
    assert res.tiles > 1
    f1 = instance_f1(gt, labels, 0.5)
    assert (f1.tp, f1.fp, f1.fn) == (3, 0, 0)
    cx = ((res.boxes[:, 0] + res.boxes[:, 2]) / 2).sort().values
    assert torch.allclose(cx, torch.tensor([100.0, 320.0, 400.0]), atol=3)


def test_fit_letterboxes_the_whole_image_once():
    img, gt = disc_frame(300, 500, [(100, 100), (400, 200)], r=20)
    backend = OracleBackend()
    post = PostConfig(kernel_impl="torch")
    res = Runner(backend, Geometry("fit", img_size=256), post)(img)
    assert backend.calls == 1 and res.tiles == 1 and res.transform is not None
    f1 = instance_f1(gt, res.label_map(), 0.5)
    assert f1.tp == 2


def test_geometry_rejects_bad_values():
    for kw in ({"scale": "tiles"}, {"img_size": 100}, {"tile_overlap": -1}, {"batch": 0}, {"model_scale": 0.0}):
        with pytest.raises(ConfigError):
            Geometry(**kw)


def test_final_labels_drop_detections_hidden_under_higher_scoring_cells():
    """A duplicate mask mostly covered by a higher-scoring cell is dropped; a cell that is only touched is kept."""
    from asfyolo_rt.kernels.mask_assembly import PackedMasks

    from asfyolo_rt.runtime.stages import FrameResult, concat_packed

    def packed(x0, y0, m):
        m = torch.as_tensor(m, dtype=torch.uint8)
        return PackedMasks(m.reshape(-1), torch.tensor([0, m.numel()]), torch.tensor([[x0, y0, m.shape[1], m.shape[0]]],
                           dtype=torch.int32), torch.zeros(1, dtype=torch.int64), (40, 40))

    big = np.ones((10, 10), np.uint8)
    parts = [packed(5, 5, big), packed(6, 6, np.ones((8, 8), np.uint8)), packed(13, 5, big)]
    res = FrameResult(torch.tensor([[5, 5, 15, 15], [6, 6, 14, 14], [13, 5, 23, 15]], dtype=torch.float32),
                      torch.tensor([0.9, 0.8, 0.7]), torch.zeros(3, dtype=torch.int64), concat_packed(parts, (40, 40)),
                      (40, 40))
    kept, lm = res.final_labels(0.5)
    assert len(kept) == 2 and kept.scores.tolist() == pytest.approx([0.9, 0.7])  # the covered duplicate is gone
    assert set(np.unique(lm).tolist()) == {0, 1, 2}
    assert (lm == 2).sum() == 80  # the touching cell keeps its own 8 visible columns x 10 rows
    kept, _ = res.final_labels(0.0)
    assert len(kept) == 3


def test_cells_larger_than_the_overlap_are_seen_whole_in_a_tile_centred_on_them(monkeypatch):
    """Overlap 16 px, discs of 44 px: the tile owning a disc sees it cut by its inner edge; a tile centred on
    the disc sees it whole, and that copy is kept (one cell each, whole). Without the rescue: halves."""
    import asfyolo_rt.runtime.stages as stages
    from asfyolo_rt.eval.dsb import instance_iou

    # 128 tiles at starts 0, 96, 192 with cores [0, 112), [112, 208), [208, 320) on both axes: a disc centred
    # at 110 is owned by tile 0 (0..128) and crosses its edge at 128; one at 210 by tile 2 (192..320)
    centres = [(110, 50), (50, 210), (210, 110), (110, 210), (270, 270)]
    img, gt = disc_frame(320, 320, centres, r=22)
    res, labels = run(OracleBackend(input_shape=(128, 128)), img, tile_overlap=16, batch=2)
    f1 = instance_f1(gt, labels, 0.5)
    assert (f1.tp, f1.fp, f1.fn) == (len(centres), 0, 0)
    assert instance_iou(gt, labels).max(1).min() > 0.85  # whole discs

    monkeypatch.setattr(stages, "cut_by_tile", lambda det, tile, plan: torch.zeros(len(det), dtype=torch.bool))
    _, cut_labels = run(OracleBackend(input_shape=(128, 128)), img, tile_overlap=16, batch=2)
    assert instance_iou(gt, cut_labels).max(1).min() < 0.8  # the same frame without the rescue: cut cells


def test_cut_by_tile_only_counts_inner_edges():
    from asfyolo_rt.infer.nms import Detections
    from asfyolo_rt.runtime.stages import cut_by_tile, plan_image

    plan = plan_image((300, 300), model_scale=1.0, tile_hw=(128, 128), overlap=16, static=True)
    first, last = plan.tiles[0], plan.tiles[-1]
    boxes = torch.tensor([[0.0, 10, 20, 30], [100, 10, 128, 30], [10, 50, 40, 127.5]])
    det = Detections(boxes, torch.ones(3), torch.zeros(3, dtype=torch.int64), torch.zeros(3, 32))
    assert cut_by_tile(det, first, plan).tolist() == [False, True, True]  # left/top are the image's edges
    assert cut_by_tile(det, last, plan).tolist() == [True, False, False]  # right/bottom are the image's edges
