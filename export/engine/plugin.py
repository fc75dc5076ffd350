"""Registration of the `asfyolo_rt::mask_assembly` TensorRT quickly-deployable plugin (AOT, TensorRT >= 10.9).

Importable only where TensorRT >= 10.9 with `tensorrt.plugin` exists: elsewhere importing this module raises
EngineBuildError saying so (the engine builder imports it lazily, only for graphs with plugin nodes).

The ahead-of-time implementation returns PTX that `asfyolo-rt kernels compile` produced (no Triton is
needed on the device): it reads the kernels manifest.json, picks the variant compiled for this device's
architecture (the highest arch <= the device's) with the graph's mask threshold baked in, and returns
(kernel name, PTX, launch parameters, integer scalar arguments). QDP AOT launches a kernel with its
parameters ordered (input pointers, extra integer scalars, output pointers): the manifest entry must be a
kernel with that order (`QDP_VARIANT`); other orders are refused with a clear error instead of launching
a kernel with shuffled arguments.

Plugin contract (see export/end2end_masks.py): inputs protos (B, NM, Hp, Wp) float32, coeffs (B, D, NM)
float32, boxes (B, D, 4) float32 xyxy network pixels, num_dets (B,) int32; output masks (B, D, Hp, Wp) uint8.
Kernel scalars: B, D, Hp, Wp (int32). Grid: (B * D, QDP_PROGRAMS_PER_DET).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from asfyolo_rt.export.end2end_masks import PLUGIN_ID

from asfyolo_rt.errors import EngineBuildError

try:
    import tensorrt as trt
    import tensorrt.plugin as trtp
except ImportError as exc:  # pragma: no cover - depends on the machine
    raise EngineBuildError(
        "the asfyolo_rt::mask_assembly TensorRT plugin needs TensorRT >= 10.9 with tensorrt.plugin "
        f"(import failed: {exc})",
        hint="export end-to-end models with the pure-ONNX mask assembly (the default) for older TensorRT",
    ) from exc

if not hasattr(trtp, "aot_impl"):  # pragma: no cover  # ahead-of-time QDP plugins: TensorRT >= 10.9
    raise EngineBuildError(f"TensorRT {trt.__version__} has no ahead-of-time plugin support (needs >= 10.9)",
                           hint="export end-to-end models with the pure-ONNX mask assembly")

QDP_VARIANT = "mask_qdp_dense_fp32"
QDP_PROGRAMS_PER_DET = 4  # = asfyolo_rt.kernels.mask_assembly._triton.QDP_PROGRAMS_PER_DET (manifest "grid")
# Runtime parameter types of the kernel (`_mask_qdp_dense_kernel`), in launch order: protos, coeffs, boxes,
# num_dets, then B, D, Hp, Wp, then the masks output.
QDP_SIGNATURE = ("*fp32", "*fp32", "*fp32", "*i32", "i32", "i32", "i32", "i32", "*u8")
_STATE: dict[str, Any] = {"manifest": None, "registered": False}


def _capability() -> int:
    from asfyolo_rt.infer.cuda import device_info

    major, minor = device_info(0).compute_capability.split(".")
    return int(major) * 10 + int(minor)


def select_kernel(manifest_path: Path, capability: int, mask_threshold: float,
                  nm: int = 32) -> tuple[dict[str, Any], str]:
    """(manifest entry, PTX text) of the QDP variant for the highest arch <= capability."""
    doc = json.loads(Path(manifest_path).read_text())
    baked = float(doc.get("mask_threshold", 0.5))
    if not math.isclose(baked, mask_threshold, rel_tol=0, abs_tol=1e-6):
        raise EngineBuildError(
            f"the kernels in {manifest_path} have mask threshold {baked} baked in, the graph asks for {mask_threshold}",
            hint=f"recompile: asfyolo-rt kernels compile --mask-threshold {mask_threshold}")
    entries = [e for e in doc.get("kernels", []) if e.get("variant") == QDP_VARIANT]
    usable = [e for e in entries if int(str(e["arch"]).removeprefix("sm_").rstrip("a")) <= capability]
    if not usable:
        have = sorted({e["arch"] for e in doc.get("kernels", [])})
        raise EngineBuildError(
            f"{manifest_path} has no {QDP_VARIANT} kernel for sm_{capability} or below (archs: {have})",
            hint=f"compile one for this device: asfyolo-rt kernels compile --arch sm_{capability}")
    entry = max(usable, key=lambda e: int(str(e["arch"]).removeprefix("sm_").rstrip("a")))
    order = [k for k, v in entry["signature"].items() if v != "constexpr"]
    types = tuple(entry["signature"][k] for k in order)
    if types != QDP_SIGNATURE:
        raise EngineBuildError(
            f"{QDP_VARIANT} in {manifest_path} has parameters {order} of types {list(types)}; TensorRT AOT "
            "plugins launch kernels with (inputs..., integer scalars..., outputs...), here "
            f"{list(QDP_SIGNATURE)}",
            hint="recompile the kernels with this version: asfyolo-rt kernels compile")
    if int(entry.get("constexprs", {}).get("NM", -1)) != nm:
        raise EngineBuildError(f"{QDP_VARIANT} in {manifest_path} was compiled for "
                               f"NM={entry.get('constexprs', {}).get('NM')} prototypes; the graph has nm={nm}")
    if int(entry.get("global_scratch_size", 0)):  # TensorRT's launcher allocates no Triton scratch memory
        raise EngineBuildError(f"{QDP_VARIANT} in {manifest_path} needs {entry['global_scratch_size']} B of "
                               "Triton global scratch memory, which TensorRT plugins cannot provide")
    ptx = (Path(manifest_path).parent / entry["files"]["ptx"]["path"]).read_text()
    return entry, ptx


def register_mask_plugin(manifest: Path | None) -> None:
    """Define the plugin's shape function and AOT implementation (idempotent)."""
    if manifest is None or not Path(manifest).is_file():
        raise EngineBuildError("building a graph with the mask-assembly plugin needs the kernels manifest.json",
                               hint="asfyolo-rt kernels compile --arch sm_XX --out kernels-out, then pass its "
                               "manifest.json to the build")
    _STATE["manifest"] = Path(manifest)
    if _STATE["registered"]:
        return

    @trtp.register(PLUGIN_ID)
    def _desc(protos: trtp.TensorDesc, coeffs: trtp.TensorDesc, boxes: trtp.TensorDesc, num_dets: trtp.TensorDesc,
              mask_threshold: float, nm: int) -> trtp.TensorDesc:
        shape = coeffs.like().shape_expr  # (B, D, NM) -> (B, D, Hp, Wp)
        out = trtp.from_shape_expr((shape[0], shape[1], protos.shape_expr[2], protos.shape_expr[3]), dtype=trt.uint8)
        return out

    @trtp.aot_impl(PLUGIN_ID)
    def _aot(protos: trtp.TensorDesc, coeffs: trtp.TensorDesc, boxes: trtp.TensorDesc, num_dets: trtp.TensorDesc,
             mask_threshold: float, nm: int, outputs: tuple[trtp.TensorDesc, ...], tactic: int) -> tuple[Any, ...]:
        # The kernel reads float32 / int32 inputs: refuse other I/O types (e.g. float16 protos of an FP16
        # engine) rather than misread them. Cast them to float32 before the plugin node.
        for name, desc, want in (("protos", protos, trt.float32), ("coeffs", coeffs, trt.float32),
                                 ("boxes", boxes, trt.float32), ("num_dets", num_dets, trt.int32)):
            if desc.dtype != want:
                raise EngineBuildError(f"{PLUGIN_ID}: input {name} is {desc.dtype}; the {QDP_VARIANT} kernel "
                                       f"needs {want}", hint="cast it to that type in the graph before the plugin")
        entry, ptx = select_kernel(_STATE["manifest"], _capability(), float(mask_threshold), int(nm))
        params = trtp.KernelLaunchParams()
        params.grid_x = coeffs.shape_expr[0] * coeffs.shape_expr[1]
        params.grid_y = QDP_PROGRAMS_PER_DET
        params.block_x = int(entry["num_warps"]) * 32
        params.shared_mem = int(entry["shared"])
        extra = trtp.SymIntExprs(4)
        extra[0] = trtp.SymInt32(coeffs.shape_expr[0])
        extra[1] = trtp.SymInt32(coeffs.shape_expr[1])
        extra[2] = trtp.SymInt32(protos.shape_expr[2])
        extra[3] = trtp.SymInt32(protos.shape_expr[3])
        return str(entry["kernel"]), ptx, params, extra

    _STATE["registered"] = True
