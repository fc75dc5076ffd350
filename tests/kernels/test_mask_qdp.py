"""The TensorRT plugin's mask kernel (`_mask_qdp_dense_kernel`, variant `mask_qdp_dense_fp32`).

Kernel against `reference.qdp_dense_reference`, the reference against `process_masks_proto`, a
hand-computed crop, and the ahead-of-time compile for Orin (sm_87) with the parameter order TensorRT
AOT plugins launch with: (inputs, integer scalars, output).
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import pytest
import torch
from asfyolo_rt.kernels.aot import compile_kernels
from asfyolo_rt.kernels.mask_assembly import _triton as tri
from asfyolo_rt.kernels.mask_assembly import reference as ref
from kernel_env import CUDA, DEVICE, require_runnable

from asfyolo_rt.errors import ConfigError
from asfyolo_rt.infer.masks import process_masks_proto

PLUGIN_PY = Path(__file__).resolve().parents[2] / "export" / "engine" / "plugin.py"
# Small blocks in the interpreter so that a 13 x 21 plane spans several blocks (the last one partial) and
# programs loop over more than one block; the production configuration as well.
SMALL = tri.QdpConfig(block=64, block_k=32, progs_per_det=2)
CONFIGS = [pytest.param(SMALL, id="small-blocks"), pytest.param(tri.QdpConfig(), id="production")]
# Kernel and reference sum the 32 products in different orders (logits differ by ~1e-6) and test
# logit > logit(t) rather than sigmoid > t: bits may differ only where the logit is this close to logit(t).
NEAR = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _runnable() -> None:
    require_runnable(tri)


def _batch(b: int, d: int, hp: int, wp: int, num_dets: list[int], *, seed: int = 0):
    """Random prototypes and coefficients; boxes in network pixels (4 * Wp x 4 * Hp) with special cases
    in the first rows of image 0 (partly outside, zero width, fractional, whole image) and image 1
    (wholly outside, negative height, NaN). Padding rows hold junk that must not leak into the masks."""
    g = torch.Generator().manual_seed(seed)
    w_net, h_net = 4 * wp, 4 * hp
    protos = torch.randn(b, 32, hp, wp, generator=g)
    coeffs = torch.randn(b, d, 32, generator=g) * 0.6
    x1 = torch.rand(b, d, generator=g) * w_net * 0.8
    y1 = torch.rand(b, d, generator=g) * h_net * 0.8
    bw = torch.rand(b, d, generator=g) * w_net * 0.5 + 0.7
    bh = torch.rand(b, d, generator=g) * h_net * 0.5 + 0.7
    boxes = torch.stack([x1, y1, x1 + bw, y1 + bh], dim=-1)
    special = [
        [[-20.0, -8.0, 30.5, 22.3], [40.0, 10.0, 40.0, 40.0], [5.5, 3.1, 41.9, 50.7], [-5.0, -5.0, 500.0, 500.0]],
        [[w_net + 6.0, 5.0, w_net + 30.0, 30.0], [10.0, 30.0, 50.0, 20.0], [math.nan, 0.0, 30.0, 30.0]],
    ]
    for img in range(min(b, 2)):
        for row, box in enumerate(special[img][:d]):
            boxes[img, row] = torch.tensor(box)
    nd = torch.tensor(num_dets, dtype=torch.int32)
    return protos.to(DEVICE), coeffs.to(DEVICE), boxes.to(DEVICE), nd.to(DEVICE)


def _near(protos, coeffs, threshold: float = 0.5):
    """(B, D, Hp, Wp) bool: exact (float64) logit within NEAR of logit(threshold)."""
    logits = torch.einsum("bdk,bkhw->bdhw", coeffs.double().cpu(), protos.double().cpu())
    return (logits - math.log(threshold / (1.0 - threshold))).abs() < NEAR


def _check_equal(got, want, near) -> None:
    got, want = got.cpu(), want.cpu()
    assert got.dtype == torch.uint8 and set(got.unique().tolist()) <= {0, 1}
    differ = got != want
    assert not (differ & ~near).any(), f"{int((differ & ~near).sum())} mask bits differ away from the threshold"


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("b,d,hp,wp,num_dets", [(1, 6, 13, 21, [4]), (2, 8, 13, 21, [5, 8]), (2, 4, 9, 7, [0, 4])])
def test_kernel_matches_reference_and_validation_masks(config, b, d, hp, wp, num_dets) -> None:
    protos, coeffs, boxes, nd = _batch(b, d, hp, wp, num_dets)
    out = torch.full((b, d, hp, wp), 255, dtype=torch.uint8, device=DEVICE)  # every element must be written
    got = tri.mask_qdp_dense(protos, coeffs, boxes, nd, out=out, config=config)
    assert got.data_ptr() == out.data_ptr() and tuple(got.shape) == (b, d, hp, wp)
    near = _near(protos, coeffs)
    _check_equal(got, ref.qdp_dense_reference(protos, coeffs, boxes, nd), near)
    for img in range(b):  # the official validation masks, image by image; padding rows all zero
        n = num_dets[img]
        want = process_masks_proto(protos[img], coeffs[img, :n], boxes[img, :n], (4 * hp, 4 * wp))
        _check_equal(got[img, :n], want.to(torch.uint8), near[img, :n])
        assert not got[img, n:].any()
    assert got.sum() > 0  # the scene has masks at all


def test_reference_is_process_masks_proto() -> None:
    protos, coeffs, boxes, nd = _batch(2, 8, 13, 21, [5, 8], seed=3)
    masks = ref.qdp_dense_reference(protos, coeffs, boxes, nd).cpu()
    for img, n in enumerate([5, 8]):
        want = process_masks_proto(protos[img], coeffs[img, :n], boxes[img, :n], (52, 84)).to(torch.uint8)
        assert torch.equal(masks[img, :n], want.cpu())
        assert not masks[img, n:].any()
    # The special boxes: partly outside keeps the top-left corner region, zero width / wholly outside /
    # negative height / NaN keep nothing.
    assert masks[0, 0, 6:, :].sum() == 0 and masks[0, 0, :, 8:].sum() == 0 and masks[0, 0].sum() > 0
    assert masks[0, 1].sum() == 0 and masks[1, 0].sum() == 0 and masks[1, 1].sum() == 0 and masks[1, 2].sum() == 0


@pytest.mark.parametrize("impl", ["kernel", "reference"])
def test_crop_is_box_over_four_without_rounding(impl: str) -> None:
    # All logits = 32 > 0: the mask is exactly the crop. Box [5, 9, 13, 17] / 4 = [1.25, 2.25, 3.25, 4.25]
    # keeps cols 2, 3 and rows 3, 4; box [4, 8, 12, 16] / 4 = [1, 2, 3, 4] keeps cols 1, 2 and rows 2, 3.
    protos = torch.ones(1, 32, 7, 6, device=DEVICE)
    coeffs = torch.ones(1, 3, 32, device=DEVICE)
    boxes = torch.tensor([[[5.0, 9.0, 13.0, 17.0], [4.0, 8.0, 12.0, 16.0], [0.0, 0.0, 24.0, 28.0]]], device=DEVICE)
    nd = torch.tensor([2], dtype=torch.int32, device=DEVICE)
    fn = (lambda *a: tri.mask_qdp_dense(*a, config=SMALL)) if impl == "kernel" else ref.qdp_dense_reference
    masks = fn(protos, coeffs, boxes, nd).cpu()
    want = torch.zeros(3, 7, 6, dtype=torch.uint8)
    want[0, 3:5, 2:4] = 1
    want[1, 2:4, 1:3] = 1  # row 2 is padding: stays 0 although its box covers the image
    assert torch.equal(masks[0], want)


@pytest.mark.parametrize("threshold", [0.3, 0.7])
def test_threshold_and_num_dets_edges(threshold: float) -> None:
    # num_dets beyond D means all rows, negative means none.
    protos, coeffs, boxes, _ = _batch(2, 3, 9, 11, [3, 0], seed=1)
    nd = torch.tensor([7, -2], dtype=torch.int32, device=DEVICE)
    got = tri.mask_qdp_dense(protos, coeffs, boxes, nd, threshold, config=SMALL)
    want = ref.qdp_dense_reference(protos, coeffs, boxes, nd, threshold)
    _check_equal(got, want, _near(protos, coeffs, threshold))
    assert got[0].sum() > 0 and not got[1].any()
    half = ref.qdp_dense_reference(protos, coeffs, boxes, nd, 0.5)
    assert not torch.equal(want.cpu(), half.cpu())  # the threshold is honoured


@pytest.mark.parametrize("bad", ["coeffs_nm", "boxes_shape", "num_dets_float", "threshold", "out_dtype"])
def test_bad_inputs_are_config_errors(bad: str) -> None:
    protos, coeffs, boxes, nd = _batch(1, 2, 5, 5, [2])
    kwargs = {}
    if bad == "coeffs_nm":
        coeffs = coeffs[..., :16]
    elif bad == "boxes_shape":
        boxes = boxes[:, :1]
    elif bad == "num_dets_float":
        nd = nd.float()
    elif bad == "threshold":
        kwargs["threshold"] = 1.0
    else:
        kwargs["out"] = torch.zeros(1, 2, 5, 5, dtype=torch.int32, device=DEVICE)
    with pytest.raises(ConfigError, match="mask_qdp_dense"):
        tri.mask_qdp_dense(protos, coeffs, boxes, nd, **kwargs)
    if bad != "out_dtype":
        with pytest.raises(ConfigError, match="mask_qdp_dense"):
            ref.qdp_dense_reference(protos, coeffs, boxes, nd, **kwargs)


def _plugin_constants() -> dict[str, object]:
    """Literal module constants of export/engine/plugin.py (it imports only where TensorRT >= 10.9 exists)."""
    tree = ast.parse(PLUGIN_PY.read_text())
    return {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name) and t.id.startswith("QDP_")}


def test_aot_variant_for_orin_has_tensorrt_parameter_order(tmp_path: Path) -> None:
    # One variant, one arch (~4 s): what plugin.py's select_kernel reads.
    result = compile_kernels(["sm_87"], tmp_path, variants=["mask_qdp_dense_fp32"], mask_threshold=0.5)
    assert not result.refused
    (entry,) = json.loads(result.manifest.read_text())["kernels"]
    assert entry["variant"] == "mask_qdp_dense_fp32" and entry["kernel"] == "_mask_qdp_dense_kernel"
    assert entry["arch"] == "sm_87" and entry["target"] == "sm_87"
    runtime = [(k, v) for k, v in entry["signature"].items() if v != "constexpr"]
    assert runtime == [("protos_ptr", "*fp32"), ("coeffs_ptr", "*fp32"), ("boxes_ptr", "*fp32"),
                       ("num_dets_ptr", "*i32"), ("B", "i32"), ("D", "i32"), ("Hp", "i32"), ("Wp", "i32"),
                       ("masks_ptr", "*u8")]  # inputs, integer scalars, output last
    assert list(entry["signature"])[len(runtime):] == ["THR", "NM", "BLOCK_K", "BLOCK"]
    assert entry["constexprs"]["THR"] == 0.0 and entry["constexprs"]["NM"] == 32  # logit(0.5), baked in
    assert entry["global_scratch_size"] == 0 and entry["shared"] == 0 and entry.get("spill_bytes", 0) == 0
    # The PTX entry declares the same ABI: 4 pointers, 4 x 32-bit scalars, the output pointer (then
    # Triton's trailing scratch pointers, unused: global_scratch_size is 0).
    ptx = (tmp_path / entry["files"]["ptx"]["path"]).read_text()
    assert re.search(r"^\.target\s+sm_87\b", ptx, re.MULTILINE)
    head = ptx[ptx.index(".entry _mask_qdp_dense_kernel("):]
    params = re.findall(r"\.param \.(u64|u32)\b[^,)]*_param_(\d+)", head[:head.index(")")])
    assert [t for t, _ in params[:9]] == ["u64"] * 4 + ["u32"] * 4 + ["u64"]
    # plugin.py agrees: variant name, launch signature, programs per detection (grid (B * D, P)).
    consts = _plugin_constants()
    assert consts["QDP_VARIANT"] == entry["variant"]
    assert consts["QDP_SIGNATURE"] == tuple(v for _, v in runtime)
    assert entry["grid"] == f"(B * D, {consts['QDP_PROGRAMS_PER_DET']})" == f"(B * D, {tri.QDP_PROGRAMS_PER_DET})"
    assert entry["num_warps"] == tri.NUM_WARPS


@pytest.mark.skipif(not CUDA, reason="native launch needs CUDA")
def test_large_batch_on_gpu() -> None:  # pragma: no cover - GPU only
    protos, coeffs, boxes, nd = _batch(2, 300, 160, 160, [300, 17], seed=5)
    got = tri.mask_qdp_dense(protos, coeffs, boxes, nd)
    _check_equal(got, ref.qdp_dense_reference(protos, coeffs, boxes, nd), _near(protos, coeffs))
