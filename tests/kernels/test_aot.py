"""Ahead-of-time compilation to PTX/cubin without a GPU (`asfyolo-rt kernels compile`)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from asfyolo_rt.kernels.aot import SHARED_LIMITS, compile_kernels, parse_arch, shared_memory_problem

from asfyolo_rt.errors import ConfigError


def _ptx_header(path: Path) -> dict[str, str]:
    text = path.read_text()
    return {k: re.search(rf"^\.{k}\s+(\S+)", text, re.MULTILINE).group(1) for k in ("version", "target")}


def test_cli_compiles_one_kernel_for_orin(cli, tmp_path: Path) -> None:
    # Fast case: one kernel variant, one arch (~3 s).
    r = cli("kernels", "compile", "--arch", "sm_87", "--kernel", "mask_label_fp32", "--out", tmp_path, "--json")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["archs"] == ["sm_87"] and manifest["triton_version"]
    (entry,) = manifest["kernels"]
    assert entry["variant"] == "mask_label_fp32" and entry["kernel"] == "_mask_assembly_kernel"
    assert entry["arch"] == "sm_87" and entry["target"] == "sm_87" and entry["num_warps"] == 4
    ptx = tmp_path / entry["files"]["ptx"]["path"]
    cubin = tmp_path / entry["files"]["cubin"]["path"]
    assert _ptx_header(ptx)["target"] == "sm_87"
    assert f".entry {entry['kernel']}(" in ptx.read_text()
    for f, meta in ((ptx, entry["files"]["ptx"]), (cubin, entry["files"]["cubin"])):
        assert hashlib.sha256(f.read_bytes()).hexdigest() == meta["sha256"] and f.stat().st_size == meta["bytes"]
    # TensorRT AOT plugins take integer scalars only: the threshold is baked in, no float argument.
    assert entry["constexprs"]["THR"] == 0.0 and entry["constexprs"]["MODE"] == 0
    assert all(t.startswith("*") or t in ("i32", "constexpr") for t in entry["signature"].values())
    assert entry["shared"] <= SHARED_LIMITS[87]
    assert (tmp_path / ".triton-cache").is_dir()


def test_shared_memory_gate_refuses_and_writes_nothing(tmp_path: Path) -> None:
    # With an artificial 1 KB limit, the gates kernel (~6 KB of reduction scratch) is refused and
    # the apply kernel (no shared memory) is written.
    result = compile_kernels(["sm_87"], tmp_path, variants=["cpam_gates_r16", "cpam_apply_fp32"],
                             shared_limits={87: 1024})
    assert [e["variant"] for e in result.compiled] == ["cpam_apply_fp32"]
    (refused,) = result.refused
    assert refused["variant"] == "cpam_gates_r16" and refused["shared"] > 1024 and refused["limit"] == 1024
    assert not (tmp_path / "sm_87" / "cpam_gates_r16.ptx").exists()
    assert (tmp_path / "sm_87" / "cpam_apply_fp32.ptx").exists()
    manifest = json.loads(result.manifest.read_text())
    assert manifest["refused"][0]["variant"] == "cpam_gates_r16"


def test_shared_memory_limits_per_arch() -> None:
    assert shared_memory_problem(100 * 1024, 87) is None  # Orin: 163 KB
    assert "sm_89" in (shared_memory_problem(100 * 1024, 89) or "")  # Ada: 99 KB
    assert shared_memory_problem(200 * 1024, 90) is None  # Hopper: 227 KB
    assert shared_memory_problem(228 * 1024, 90) is not None


@pytest.mark.parametrize("text,cap", [("sm_87", 87), ("87", 87), ("SM_90a", 90), (" sm_89 ", 89)])
def test_parse_arch(text: str, cap: int) -> None:
    assert parse_arch(text) == cap


def test_unknown_arch_is_refused(cli, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sm_87"):
        parse_arch("sm_77")
    r = cli("kernels", "compile", "--arch", "sm_77", "--out", tmp_path)
    assert r.exit_code == 1 and "unknown GPU architecture" in r.output
    assert not (tmp_path / "manifest.json").exists()


def test_unknown_variant_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no kernel variant matches"):
        compile_kernels(["sm_87"], tmp_path, variants=["no_such_kernel"])


@pytest.mark.slow
def test_all_production_variants_for_three_archs(tmp_path: Path) -> None:
    # ~40 compilations (~20-60 s on 2 shared cores).
    result = compile_kernels(["sm_87", "sm_89", "sm_90"], tmp_path)
    assert not result.refused
    targets = {(e["arch"], e["target"]) for e in result.compiled}
    assert targets == {("sm_87", "sm_87"), ("sm_89", "sm_89"), ("sm_90", "sm_90a")}
    names = {e["variant"] for e in result.compiled}
    assert {"cpam_stats_fp16", "cpam_gates_r16", "cpam_apply_fp16", "mask_label_fp16", "mask_packed_fp32",
            "mask_dense_fp32", "mask_label_finalize"} <= names
    for e in result.compiled:
        assert _ptx_header(tmp_path / e["files"]["ptx"]["path"])["target"] == e["target"]
        assert e.get("spill_bytes", 0) == 0, e
