"""INT8 for CPUs through OpenVINO: NNCF post-training quantization of model.onnx -> model.int8-openvino.xml/.bin.

`quantize_openvino(fp32_onnx, out_xml, calib)` reads the FP32 ONNX with OpenVINO, runs
`nncf.quantize` (preset "mixed": asymmetric INT8 activations, symmetric per-channel INT8 weights; FakeQuantize
placement by OpenVINO's CPU rules; on 8 DSB2018 val images at 320 it lost 0.2 mask mAP50 points, "performance"
0.5) calibrated on the same `CalibrationSet` as the two ONNX INT8 flavours
(every image: `subset_size = len(calib)`), keeps the layers the ONNX flavours keep in FP32 unquantized (head
decode, head prediction convs, first conv, prototype output: `calib.quantize.exclusions`; OpenVINO names a
biased Conv "<name>/WithoutBiases"), and writes the IR with FP32 weights storage
(`compress_to_fp16=False`: the FP32 remainder stays FP32). The ONNX metadata (names, nc, geometry,
weights_sha256, ...) travels in the IR's rt_info section `asfyolo_rt`, with precision "int8" and the
quantizer version. Both files are written atomically; the result names them for bundle.json.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
from asfyolo_rt.calib.dataset import CalibrationSet

from asfyolo_rt.atomic import atomic_write_bytes, file_sha256
from asfyolo_rt.errors import CalibrationError, ConfigError
from asfyolo_rt.infer.openvino import error_line

log = logging.getLogger(__name__)
INSTALL_HINT = "pip install 'asfyolo-rt[openvino]' (openvino, nncf), or export without the OpenVINO INT8 file"


@dataclass
class OpenVinoQuantResult:
    xml: Path
    bin: Path
    sha256: dict[str, str]  # file name -> sha256
    images: int
    quantizer: str
    ignored: list[str] = field(default_factory=list)  # nodes kept in FP32 (the head decode)
    fake_quantize: int = 0  # FakeQuantize ops in the IR (how much of the graph runs in INT8)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"xml": self.xml.name, "bin": self.bin.name, "sha256": self.sha256, "images": self.images,
                "quantizer": self.quantizer, "ignored": len(self.ignored), "fake_quantize": self.fake_quantize,
                "seconds": round(self.seconds, 2)}


def openvino_available() -> bool:
    try:
        importlib.metadata.version("openvino")
        importlib.metadata.version("nncf")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _versions() -> str:
    return (f"nncf {importlib.metadata.version('nncf')} / openvino {importlib.metadata.version('openvino')}")


def quantize_openvino(
    fp32_path: str | Path,
    out_xml: str | Path,
    calib: CalibrationSet,
    cfg: Any = None,
    *,
    preset: str = "mixed",
    progress: Callable[[int, int], None] | None = None,
) -> OpenVinoQuantResult:
    """NNCF PTQ of `fp32_path` on `calib`; writes out_xml and its .bin (module docstring)."""
    if not openvino_available():
        raise ConfigError("the OpenVINO INT8 file needs openvino and nncf", hint=INSTALL_HINT)
    try:
        import nncf
        import openvino as ov
    except Exception as exc:  # installed but not importable (a broken or mismatched install)
        raise ConfigError(f"NNCF or OpenVINO does not import: {type(exc).__name__}: {exc}", hint=INSTALL_HINT) from exc

    presets = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    if preset not in presets:
        raise ConfigError(f"NNCF preset {preset!r}: expected {' or '.join(presets)}")
    nncf.set_log_level(logging.WARNING)  # its INFO lines list every skipped quantizer
    t0 = time.perf_counter()
    fp32_path, out_xml = Path(fp32_path), Path(out_xml)
    if out_xml.suffix != ".xml":
        raise ConfigError(f"{out_xml}: an OpenVINO IR is an .xml file (with a .bin beside it)")
    source = onnx.load(str(fp32_path), load_external_data=False)
    meta = {p.key: p.value for p in source.metadata_props}
    from asfyolo_rt.calib.quantize import QuantConfig, exclusions

    ignored = sorted(exclusions(source, cfg or QuantConfig()))  # the same layers the ONNX flavours keep in FP32
    # convert_model, not Core.read_model: its conversion folds the ONNX frontend's shape arithmetic (the conv
    # biases) and fuses SiLU into Swish, so that NNCF places FakeQuantize where the CPU plugin fuses it into the
    # INT8 convolutions; on read_model's graph every activation stayed a separate BF16 pass and INT8 ran no
    # faster than BF16
    try:
        model = ov.convert_model(str(fp32_path))
    except Exception as exc:
        raise CalibrationError(f"OpenVINO cannot convert {fp32_path}: {error_line(exc)}") from exc
    names = {op.get_friendly_name() for op in model.get_ops()}
    # OpenVINO's ONNX frontend names a Conv with bias "<name>/WithoutBiases" (the Add gets "<name>")
    ignored = sorted({m for n in ignored for m in (n, f"{n}/WithoutBiases") if m in names})
    total = len(calib)
    seen = [0]

    def transform(i: int) -> Any:
        seen[0] += 1
        if progress:
            progress(min(seen[0], total), total)
        return calib.float_images(i, i + 1)

    try:
        with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bar: never into a command's --json output
            q = nncf.quantize(model, nncf.Dataset(range(total), transform), subset_size=total, preset=presets[preset],
                              ignored_scope=nncf.IgnoredScope(names=ignored, validate=False))
    except Exception as exc:
        raise CalibrationError(f"NNCF quantization of {fp32_path} failed: {type(exc).__name__}: {error_line(exc)}") from exc
    qname = _versions()
    meta.update({"precision": "int8", "int8_flavour": "openvino", "quantizer": qname, "calib_images": str(total)})
    for k, v in meta.items():
        q.set_rt_info(v, ["asfyolo_rt", k])
    fq = sum(op.get_type_name() == "FakeQuantize" for op in q.get_ops())
    bin_path = out_xml.with_suffix(".bin")
    with tempfile.TemporaryDirectory(prefix="asfyolo-ov-int8-") as tmp:
        tmp_xml = Path(tmp) / out_xml.name
        ov.save_model(q, str(tmp_xml), compress_to_fp16=False)
        atomic_write_bytes(bin_path, tmp_xml.with_suffix(".bin").read_bytes())  # weights first, then the graph
        atomic_write_bytes(out_xml, tmp_xml.read_bytes())
    log.info("OpenVINO INT8: %d FakeQuantize ops, %d decode nodes kept FP32", fq, len(ignored))
    return OpenVinoQuantResult(out_xml, bin_path, {p.name: file_sha256(p) for p in (out_xml, bin_path)}, total, qname,
                               ignored, fq, time.perf_counter() - t0)
