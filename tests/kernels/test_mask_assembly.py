"""Mask assembly: reference against a dense, literal specification; Triton against the reference.

The literal specification computes every detection's logits at every output pixel with
F.interpolate (identity mapping) or F.grid_sample (letterbox mapping), applies sigmoid > threshold
and the pixel-centre box test, and builds the label map by painting masks in ascending priority.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from asfyolo_rt.kernels.mask_assembly import PackedMasks, box_windows, mask_assembly
from asfyolo_rt.kernels.mask_assembly import _triton as tri
from asfyolo_rt.kernels.mask_assembly import reference as ref
from kernel_env import CUDA, DEVICE, require_runnable

from asfyolo_rt.errors import ConfigError

# Large tiles and one program per detection in the interpreter (it pays ~10 ms per program
# instance); the production tiles on a GPU.
BIG = tri.MaskConfig() if CUDA else tri.MaskConfig(block_h=32, block_w=32, block_k=32, progs_per_det=1)

# Allowed disagreements, per prototype dtype. Both sides compute logits in float32 (float16
# prototypes are converted exactly), but in different orders (dense matmul then interpolation,
# windowed dot products then interpolation, per-prototype interpolation then dot product). With 32
# terms of magnitude <= ~4 the logits differ by < 32 * 4 * 2**-24 ~ 1e-5; a mask bit may therefore
# differ only where |logit - logit(threshold)| < NEAR. At most MAX_FLIP_FRACTION of the pixels a
# detection's window covers may flip (random data puts ~1e-5 of them that close to the threshold).
NEAR = {torch.float32: 1e-4, torch.float16: 1e-4}
MAX_FLIP_FRACTION = 1e-3


@pytest.fixture(scope="module", autouse=True)
def _runnable() -> None:
    require_runnable(tri)


def _scene(n: int, b: int, hp: int, wp: int, out_size: tuple[int, int], *, seed: int = 0,
           dtype: torch.dtype = torch.float32, max_box: float = 20.0):
    """Random prototypes and cell-like detections; ~10% of boxes lie partly or wholly outside the
    image, a few have zero or negative width."""
    g = torch.Generator().manual_seed(seed)
    h, w = out_size
    protos = torch.randn(b, 32, hp, wp, generator=g)
    coeffs = torch.randn(n, 32, generator=g) * 0.6
    cx = torch.rand(n, generator=g) * w * 1.2 - 0.1 * w
    cy = torch.rand(n, generator=g) * h * 1.2 - 0.1 * h
    bw = torch.rand(n, generator=g) * max_box + 0.3
    bh = torch.rand(n, generator=g) * max_box + 0.3
    boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=1)
    if n >= 8:
        boxes[1, 2] = boxes[1, 0]  # zero width
        boxes[2, 3] = boxes[2, 1] - 3.0  # negative height
        boxes[3] = torch.tensor([w + 5.0, 2.0, w + 20.0, 9.0])  # wholly outside
        boxes[4] = torch.tensor([-7.0, -3.0, 6.3, 5.2])  # partly outside (top-left corner)
    batch = torch.randint(0, b, (n,), generator=g)
    scores = torch.rand(n, generator=g)
    return (protos.to(DEVICE, dtype), coeffs.to(DEVICE), boxes.to(DEVICE), batch.to(DEVICE), scores.to(DEVICE))


def _literal_logits(protos, coeffs, batch, out_size, scale=1.0, pad=(0.0, 0.0)):
    """(N, H, W) float32 logits at every output pixel (F.interpolate / F.grid_sample semantics)."""
    protos, coeffs, batch = protos.float().cpu(), coeffs.float().cpu(), batch.cpu()
    hp, wp = protos.shape[2:]
    low = torch.einsum("nk,nkhw->nhw", coeffs, protos[batch])[:, None]  # (N, 1, Hp, Wp)
    h, w = out_size
    if scale == 1.0 and pad == (0.0, 0.0) and out_size == (4 * hp, 4 * wp):
        return F.interpolate(low, size=out_size, mode="bilinear", align_corners=False)[:, 0]
    sx = ((torch.arange(w) + 0.5) * scale + pad[0]) / 4 - 0.5  # proto-pixel source coordinates
    sy = ((torch.arange(h) + 0.5) * scale + pad[1]) / 4 - 0.5
    gx = (2 * sx + 1) / wp - 1  # grid_sample's normalised coordinates (align_corners=False)
    gy = (2 * sy + 1) / hp - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1).expand(low.shape[0], h, w, 2)
    return F.grid_sample(low, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]


def _literal_masks(logits, boxes, threshold=0.5):
    _, h, w = logits.shape
    boxes = boxes.float().cpu()
    xs = torch.arange(w) + 0.5
    ys = torch.arange(h) + 0.5
    inside_x = (xs >= boxes[:, 0, None]) & (xs < boxes[:, 2, None])
    inside_y = (ys >= boxes[:, 1, None]) & (ys < boxes[:, 3, None])
    inbox = inside_y[:, :, None] & inside_x[:, None, :]
    return ((torch.sigmoid(logits) > threshold) & inbox).to(torch.uint8), inbox


def _literal_label_map(masks, scores, batch, b):
    _, h, w = masks.shape
    label = torch.zeros((b, h, w), dtype=torch.int32)
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    for i in reversed(order):  # paint lowest priority first
        label[int(batch[i])][masks[i].bool()] = i + 1
    return label


def _near(logits, inbox, dtype, threshold=0.5):
    return ((logits - math.log(threshold / (1 - threshold))).abs() < NEAR[dtype]) & inbox


def _assert_masks_close(got, expected, ambiguous, window_pixels):
    diff = got.cpu() != expected.cpu()
    assert not (diff & ~ambiguous).any(), f"{int((diff & ~ambiguous).sum())} pixels differ away from the threshold"
    assert int(diff.sum()) <= max(1, MAX_FLIP_FRACTION * window_pixels)


def _assert_labels_close(got, expected, masks_ambiguous, batch, b):
    # A label may differ only at pixels where some covering detection is ambiguous.
    amb = torch.zeros_like(expected, dtype=torch.bool)
    for i in range(masks_ambiguous.shape[0]):
        amb[int(batch[i])] |= masks_ambiguous[i]
    diff = got.cpu() != expected.cpu()
    assert not (diff & ~amb).any(), f"{int((diff & ~amb).sum())} labels differ away from the threshold"


# ------------------------------------------------------------------------------- reference = spec

# (N, B, Hp, Wp, out_size, scale, pad, proto dtype)
SPEC_GRID = [
    (0, 1, 8, 8, (32, 32), 1.0, (0.0, 0.0), torch.float32),  # no detections
    (1, 1, 8, 8, (32, 32), 1.0, (0.0, 0.0), torch.float32),  # one
    (300, 2, 16, 16, (64, 64), 1.0, (0.0, 0.0), torch.float32),  # NMS max_det, B = 2
    (40, 1, 13, 19, (52, 76), 1.0, (0.0, 0.0), torch.float16),  # non-power-of-two, fp16 prototypes
    (40, 2, 16, 16, (45, 61), 1.05, (0.0, 11.0), torch.float32),  # letterbox: original 61x45 -> 64x64
    (25, 1, 16, 16, (100, 80), 0.64, (6.4, 0.0), torch.float32),  # letterbox, upsampled original
]


@pytest.mark.parametrize("n,b,hp,wp,size,scale,pad,dtype", SPEC_GRID)
def test_reference_matches_literal_spec(n, b, hp, wp, size, scale, pad, dtype) -> None:
    protos, coeffs, boxes, batch, scores = _scene(n, b, hp, wp, size, dtype=dtype)
    logits = _literal_logits(protos, coeffs, batch, size, scale, pad)
    masks, inbox = _literal_masks(logits, boxes)
    amb = _near(logits, inbox, dtype)
    kw = {"scale": scale, "pad": pad, "impl": "torch"}
    dense = mask_assembly(protos, coeffs, boxes, batch, scores, size, output="dense", **kw)
    assert dense.shape == (n, *size) and dense.dtype == torch.uint8
    _assert_masks_close(dense, masks, amb, int(inbox.sum()))
    label = mask_assembly(protos, coeffs, boxes, batch, scores, size, output="label_map", **kw)
    assert label.shape == (b, *size) and label.dtype == torch.int32
    _assert_labels_close(label, _literal_label_map(masks, scores.cpu(), batch.cpu(), b), amb, batch, b)
    packed = mask_assembly(protos, coeffs, boxes, batch, scores, size, output="masks", **kw)
    assert torch.equal(packed.to_dense(), dense)
    if n:
        assert 0 < int(label.max()) <= n


def test_box_windows_follow_pixel_centres() -> None:
    boxes = torch.tensor([
        [0.5, 0.5, 2.5, 1.5],  # centres 0.5, 1.5 in x (2.5 excluded); 0.5 in y
        [0.49, 0.0, 0.51, 10.0],  # only centre 0.5 in x
        [3.0, 3.0, 3.0, 9.0],  # zero width
        [-10.0, -10.0, 100.0, 100.0],  # clipped to the image
        [20.0, 1.0, 30.0, 2.0],  # wholly outside (image is 16 wide)
        [float("nan"), 0.0, 4.0, 4.0],  # NaN -> empty
    ])
    win = box_windows(boxes, (12, 16))
    assert win.dtype == torch.int32
    assert win.tolist() == [[0, 0, 2, 1], [0, 0, 1, 10], [3, 3, 0, 6], [0, 0, 16, 12], [16, 1, 0, 1],
                            [0, 0, 0, 4]]


def test_reads_only_the_prototypes_under_the_box() -> None:
    # Poison every prototype pixel outside the corners that the box's samples use: the result must
    # not change (the reference gathers proto windows; the kernel gathers corners).
    protos, coeffs, _, batch, scores = _scene(1, 1, 16, 16, (64, 64))
    boxes = torch.tensor([[13.2, 20.7, 29.9, 33.1]], device=DEVICE)
    clean = mask_assembly(protos, coeffs, boxes, batch, scores, (64, 64), output="dense", impl="torch")
    win = box_windows(boxes.cpu(), (64, 64))[0].tolist()
    x_lo, _, _ = ref.source_index(torch.tensor(win[0]), 1.0, 0.0, 16)
    _, x_hi, _ = ref.source_index(torch.tensor(win[0] + win[2] - 1), 1.0, 0.0, 16)
    y_lo, _, _ = ref.source_index(torch.tensor(win[1]), 1.0, 0.0, 16)
    _, y_hi, _ = ref.source_index(torch.tensor(win[1] + win[3] - 1), 1.0, 0.0, 16)
    poisoned = torch.full_like(protos, float("nan"))
    poisoned[..., y_lo : y_hi + 1, x_lo : x_hi + 1] = protos[..., y_lo : y_hi + 1, x_lo : x_hi + 1]
    for impl, cfg in (("torch", None), ("triton", BIG)):
        if impl == "torch":
            got = mask_assembly(poisoned, coeffs, boxes, batch, scores, (64, 64), output="dense", impl="torch")
        else:
            got = tri.dense_triton(poisoned, coeffs, box_windows(boxes, (64, 64)), batch.int(), (64, 64), 0.0,
                                   1.0, (0.0, 0.0), config=cfg)
        assert torch.equal(got, clean), impl
    assert int(clean.sum()) > 0


# ------------------------------------------------------------------------------ triton = reference


def _run_triton(output, protos, coeffs, boxes, batch, scores, size, scale, pad, cfg, threshold=0.5):
    thr = ref.logit_threshold(threshold)
    win = box_windows(boxes, size)
    b32 = batch.to(torch.int32)
    if output == "label_map":
        order, rank = ref.rank_by_score(scores)
        return tri.label_map_triton(protos, coeffs, win, b32, rank.int(), order.int(), size, thr, scale, pad, cfg)
    if output == "dense":
        return tri.dense_triton(protos, coeffs, win, b32, size, thr, scale, pad, cfg)
    area = win[:, 2].long() * win[:, 3].long()
    offsets = torch.cat([area.new_zeros(1), area.cumsum(0)])
    return tri.packed_triton(protos, coeffs, win, b32, offsets, thr, scale, pad, cfg)


# (id, N, B, Hp, Wp, out_size, scale, pad, proto dtype, outputs, config)
ALL = ("label_map", "dense", "masks")
TRITON_GRID = [
    ("n0", 0, 1, 8, 8, (32, 32), 1.0, (0.0, 0.0), torch.float32, ALL, BIG),
    ("n1", 1, 1, 8, 8, (32, 32), 1.0, (0.0, 0.0), torch.float32, ALL, BIG),
    ("odd-sizes-b2", 37, 2, 13, 19, (52, 76), 1.0, (0.0, 0.0), torch.float32, ALL, BIG),
    ("fp16", 24, 1, 16, 16, (64, 64), 1.0, (0.0, 0.0), torch.float16, ALL, BIG),
    ("letterbox", 24, 2, 16, 16, (45, 61), 1.05, (0.0, 11.0), torch.float32, ("label_map", "masks"), BIG),
    # Production (GPU) tiles: 16 x 16, 4 programs per detection, 8 prototypes per step; boxes up to
    # 40 px, so detections span several tiles and programs loop.
    ("production-config", 12, 1, 16, 16, (64, 64), 1.0, (0.0, 0.0), torch.float32, ("label_map", "masks"),
     tri.MaskConfig()),
    ("n300", 300, 2, 16, 16, (64, 64), 1.0, (0.0, 0.0), torch.float32, ("label_map",), BIG),
    pytest.param("n1000", 1000, 1, 16, 16, (64, 64), 1.0, (0.0, 0.0), torch.float32, ("label_map",), BIG,
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("case,n,b,hp,wp,size,scale,pad,dtype,outputs,cfg", TRITON_GRID,
                         ids=[c.values[0] if hasattr(c, "marks") else c[0] for c in TRITON_GRID])
def test_triton_matches_reference(case, n, b, hp, wp, size, scale, pad, dtype, outputs, cfg) -> None:
    max_box = 40.0 if case == "production-config" else 20.0
    protos, coeffs, boxes, batch, scores = _scene(n, b, hp, wp, size, dtype=dtype, max_box=max_box, seed=3)
    logits = _literal_logits(protos, coeffs, batch, size, scale, pad)
    _, inbox = _literal_masks(logits, boxes)
    amb = _near(logits, inbox, dtype)
    thr = ref.logit_threshold(0.5)
    win = box_windows(boxes, size)
    for output in outputs:
        got = _run_triton(output, protos, coeffs, boxes, batch, scores, size, scale, pad, cfg)
        if output == "label_map":
            expected = ref.label_map_reference(protos, coeffs, win, batch, scores, size, thr, scale, pad)
            assert got.dtype == torch.int32 and got.shape == (b, *size)
            _assert_labels_close(got, expected, amb, batch.cpu(), b)
            if n:
                assert int((got > 0).sum()) > 0
        elif output == "dense":
            expected = ref.dense_reference(protos, coeffs, win, batch, size, thr, scale, pad)
            assert got.dtype == torch.uint8 and got.shape == (n, *size)
            _assert_masks_close(got, expected, amb, int(inbox.sum()))
        else:
            expected = ref.packed_reference(protos, coeffs, win, batch, thr, scale, pad)
            assert got.dtype == torch.uint8 and got.shape == expected.shape
            assert int(got.numel()) == int((win[:, 2].long() * win[:, 3].long()).sum())
            diff = int((got != expected).sum())
            assert diff <= int(amb.sum()), f"{diff} packed mask bytes differ"


# Through the public API (production tiles): (id, B, Hp, Wp, out_size, scale, pad, proto dtype)
PUBLIC_GRID = [
    ("odd-sizes-b2", 2, 13, 19, (52, 76), 1.0, (0.0, 0.0), torch.float32),
    ("fp16", 1, 16, 16, (64, 64), 1.0, (0.0, 0.0), torch.float16),
    ("letterbox", 1, 16, 16, (100, 80), 0.64, (6.4, 0.0), torch.float32),
]


@pytest.mark.parametrize("case,b,hp,wp,size,scale,pad,dtype", PUBLIC_GRID, ids=[c[0] for c in PUBLIC_GRID])
def test_public_triton_equals_torch(case, b, hp, wp, size, scale, pad, dtype) -> None:
    protos, coeffs, boxes, batch, scores = _scene(12, b, hp, wp, size, dtype=dtype, seed=11)
    logits = _literal_logits(protos, coeffs, batch, size, scale, pad)
    _, inbox = _literal_masks(logits, boxes)
    amb = _near(logits, inbox, dtype)
    args = (protos, coeffs, boxes, batch, scores, size)
    kw = {"scale": scale, "pad": pad}
    lt = mask_assembly(*args, output="label_map", impl="triton", **kw)
    lr = mask_assembly(*args, output="label_map", impl="torch", **kw)
    _assert_labels_close(lt, lr, amb, batch.cpu(), b)
    dt = mask_assembly(*args, output="dense", impl="triton", **kw)
    dr = mask_assembly(*args, output="dense", impl="torch", **kw)
    _assert_masks_close(dt, dr, amb, int(inbox.sum()))
    mt = mask_assembly(*args, output="masks", impl="triton", **kw)
    assert torch.equal(mt.offsets, mask_assembly(*args, output="masks", impl="torch", **kw).offsets)
    assert torch.equal(mt.to_dense(), dt)
    assert int((lr > 0).sum()) > 0


def test_public_triton_equals_torch_with_ties() -> None:
    # Detection 2 duplicates detection 0 (same box, coefficients and score): lower index wins.
    protos, coeffs, boxes, batch, scores = _scene(6, 1, 16, 16, (64, 64), seed=7)
    coeffs[2], boxes[2], batch[2], scores[2] = coeffs[0], boxes[0], batch[0], scores[0]
    args = (protos, coeffs, boxes, batch, scores, (64, 64))
    lt = mask_assembly(*args, output="label_map", impl="triton")
    lr = mask_assembly(*args, output="label_map", impl="torch")
    assert torch.equal(lt, lr)
    assert not (lr == 3).any() and (lr == 1).any()
    mt = mask_assembly(*args, output="masks", impl="triton")
    mr = mask_assembly(*args, output="masks", impl="torch")
    assert isinstance(mt, PackedMasks) and torch.equal(mt.data, mr.data) and torch.equal(mt.offsets, mr.offsets)
    assert torch.equal(mask_assembly(*args, output="dense", impl="triton"), mr.to_dense())


def test_threshold_is_respected() -> None:
    protos, coeffs, boxes, batch, scores = _scene(10, 1, 8, 8, (32, 32), seed=2)
    args = (protos, coeffs, boxes, batch, scores, (32, 32))
    low = mask_assembly(*args, threshold=0.2, output="dense", impl="torch")
    high = mask_assembly(*args, threshold=0.8, output="dense", impl="torch")
    assert int(low.sum()) > int(high.sum()) > 0 and bool((high <= low).all())
    logits = _literal_logits(protos, coeffs, batch, (32, 32))
    expected, _ = _literal_masks(logits, boxes, threshold=0.8)
    assert torch.equal(high.cpu(), expected)
    tri_high = mask_assembly(*args, threshold=0.8, output="dense", impl="triton")
    assert torch.equal(tri_high, high)


def test_packed_masks_scale_with_box_area() -> None:
    protos, coeffs, boxes, batch, scores = _scene(50, 1, 16, 16, (64, 64), seed=4)
    packed = mask_assembly(protos, coeffs, boxes, batch, scores, (64, 64), output="masks", impl="torch")
    win = packed.windows.long()
    assert packed.data.numel() == int((win[:, 2] * win[:, 3]).sum()) < 50 * 64 * 64 // 4
    assert packed.offsets[0] == 0 and torch.equal(packed.offsets[1:], (win[:, 2] * win[:, 3]).cumsum(0))
    i = int(torch.argmax(win[:, 2] * win[:, 3]))
    x0, y0, w, h = win[i].tolist()
    dense = packed.to_dense()
    assert packed.mask(i).shape == (h, w) and torch.equal(dense[i, y0 : y0 + h, x0 : x0 + w], packed.mask(i))
    assert len(packed) == 50


@pytest.mark.gpu
def test_auto_on_cuda_uses_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("auto on CUDA must launch Triton")

    monkeypatch.setattr(ref, "label_map_reference", boom)
    protos, coeffs, boxes, batch, scores = _scene(5, 1, 8, 8, (32, 32))
    assert mask_assembly(protos, coeffs, boxes, batch, scores, (32, 32)).is_cuda


def test_auto_on_cpu_uses_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("auto on CPU must not launch Triton")

    for name in ("label_map_triton", "dense_triton", "packed_triton"):
        monkeypatch.setattr(tri, name, boom)
    protos, coeffs, boxes, batch, scores = (x.cpu() for x in _scene(5, 1, 8, 8, (32, 32)))
    for output in ALL:
        mask_assembly(protos, coeffs, boxes, batch, scores, (32, 32), output=output)


# --------------------------------------------------------------------------------------- bad input


def _bad_cases():
    p = torch.randn(1, 32, 8, 8)
    c = torch.randn(3, 32)
    bx = torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 3)
    bi = torch.zeros(3, dtype=torch.long)
    sc = torch.ones(3)
    return [
        ("protos rank", lambda: mask_assembly(p[0], c, bx, bi, sc, (32, 32)), "NM, Hp, Wp"),
        ("protos dtype", lambda: mask_assembly(p.long(), c, bx, bi, sc, (32, 32)), "float32 or float16"),
        ("coeffs NM", lambda: mask_assembly(p, c[:, :16], bx, bi, sc, (32, 32)), r"\(N, 32\)"),
        ("boxes N", lambda: mask_assembly(p, c, bx[:2], bi, sc, (32, 32)), r"\(3, 4\)"),
        ("boxes rank", lambda: mask_assembly(p, c, bx[0], bi, sc, (32, 32)), r"\(3, 4\)"),
        ("batch float", lambda: mask_assembly(p, c, bx, bi.float(), sc, (32, 32)), "integer"),
        ("batch range", lambda: mask_assembly(p, c, bx, bi + 1, sc, (32, 32)), r"\[0, 0\]"),
        ("scores N", lambda: mask_assembly(p, c, bx, bi, sc[:1], (32, 32)), r"\(3,\)"),
        ("scores None", lambda: mask_assembly(p, c, bx, bi, None, (32, 32)), "needs scores"),
        ("out_size", lambda: mask_assembly(p, c, bx, bi, sc, (32, 0)), "positive integers"),
        ("threshold", lambda: mask_assembly(p, c, bx, bi, sc, (32, 32), threshold=1.0), r"\(0, 1\)"),
        ("scale", lambda: mask_assembly(p, c, bx, bi, sc, (32, 32), scale=0.0), "scale"),
        ("pad", lambda: mask_assembly(p, c, bx, bi, sc, (32, 32), pad=(0.0,)), "pad"),
        ("output", lambda: mask_assembly(p, c, bx, bi, sc, (32, 32), output="polygons"), "output"),
        ("impl", lambda: mask_assembly(p, c, bx, bi, sc, (32, 32), impl="cuda"), "impl"),
    ]


@pytest.mark.parametrize("name,call,needle", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_inputs_raise_config_error(name, call, needle) -> None:
    with pytest.raises(ConfigError, match=needle):
        call()


def test_masks_output_without_scores_is_fine() -> None:
    protos, coeffs, boxes, batch, _ = (x.cpu() for x in _scene(4, 1, 8, 8, (32, 32)))
    out = mask_assembly(protos, coeffs, boxes, batch, None, (32, 32), output="masks")
    assert isinstance(out, PackedMasks) and len(out) == 4


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_real_size_on_gpu(dtype: torch.dtype) -> None:
    # 300 cell-sized detections at 640 x 640, production tiles. Too large for the literal spec, so
    # the bound is a count: flips need a logit within float32 rounding of the threshold.
    protos, coeffs, boxes, batch, scores = _scene(300, 1, 160, 160, (640, 640), dtype=dtype, max_box=80.0)
    args = (protos, coeffs, boxes, batch, scores, (640, 640))
    lt = mask_assembly(*args, output="label_map", impl="triton")
    lr = mask_assembly(*args, output="label_map", impl="torch")
    assert int((lt != lr).sum()) <= 1e-4 * lr.numel() and int((lr > 0).sum()) > 0
    mt = mask_assembly(*args, output="masks", impl="triton")
    mr = mask_assembly(*args, output="masks", impl="torch")
    assert torch.equal(mt.offsets, mr.offsets) and int((mt.data != mr.data).sum()) <= 1e-4 * mr.data.numel()
