"""Ahead-of-time compilation of the production Triton kernels to PTX and cubin, without a GPU.

`compile_kernels(["sm_87"], out_dir)` runs one worker subprocess (`python -m asfyolo_rt.kernels.aot`)
with TRITON_INTERPRET=0 (a kernel decorated under the interpreter cannot be compiled) and
TRITON_CACHE_DIR=<out_dir>/.triton-cache. The worker compiles every production variant (listed by
`aot_variants()` of each kernel's `_triton` module) with `triton.compile(ASTSource, GPUTarget)`,
refuses variants whose dynamic shared memory exceeds the arch's limit (no file is written for them),
and writes, per arch, `<out_dir>/<arch>/<variant>.ptx` and `.cubin`. The parent writes
`<out_dir>/manifest.json` atomically:

    {"triton_version", "created_by", "kernels": [ {variant, kernel, module, arch, target, signature
     (ordered arg -> type, "constexpr" for compile-time args), constexprs, num_warps, shared,
     ptx_version, registers/spill bytes (from cuobjdump when available), files: {ptx|cubin: {path,
     sha256, bytes}}} ], "refused": [ {variant, arch, shared, limit, reason} ]}

Float parameters (thresholds) are constexpr in every variant: TensorRT AOT plugins pass integer
scalars only (TENSORRT.md §3). Capability 90 yields `.target sm_90a` (Hopper-only features allowed).
`signature` lists the kernel's parameters in launch order; for the TensorRT plugin kernel
(`mask_qdp_dense_fp32`, read by export/engine/plugin.py) that is (inputs, int32 scalars, output), and its
entry must report global_scratch_size 0 (TensorRT supplies no Triton scratch memory). Every variant
passes the same shared-memory gate; registers and spills are recorded for review.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asfyolo_rt.errors import ConfigError, KernelUnavailableError

log = logging.getLogger(__name__)

# Largest dynamic shared memory per block (bytes) by compute capability (CUDA programming guide,
# "Technical Specifications per Compute Capability"); TOOLCHAIN.md lists 87, 89 and 90.
SHARED_LIMITS: dict[int, int] = {
    75: 64 * 1024,
    80: 163 * 1024,
    86: 99 * 1024,
    87: 163 * 1024,
    89: 99 * 1024,
    90: 227 * 1024,
    120: 99 * 1024,
}
KERNEL_MODULES = ("asfyolo_rt.kernels.cpam._triton", "asfyolo_rt.kernels.mask_assembly._triton")


@dataclass(frozen=True)
class AotResult:
    """What `compile_kernels` produced: the manifest path, compiled entries and refused variants."""

    manifest: Path
    compiled: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)


def parse_arch(arch: str) -> int:
    """'sm_87' | '87' | 'sm_90a' -> 87 / 90; raises ConfigError for unknown architectures."""
    m = re.fullmatch(r"(?:sm_?)?(\d{2,3})a?", arch.strip().lower())
    if not m or int(m.group(1)) not in SHARED_LIMITS:
        known = ", ".join(f"sm_{c}" for c in SHARED_LIMITS)
        raise ConfigError(f"unknown GPU architecture {arch!r}; expected one of {known}")
    return int(m.group(1))


def shared_memory_problem(shared: int, capability: int, limits: dict[int, int] | None = None) -> str | None:
    """None if `shared` bytes of dynamic shared memory fit the arch, else the reason for refusing."""
    limit = (limits or SHARED_LIMITS)[capability]
    if shared > limit:
        return f"needs {shared} B of shared memory; sm_{capability} allows at most {limit} B per block"
    return None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compile_kernels(
    archs: Sequence[str],
    out_dir: Path,
    *,
    variants: Sequence[str] | None = None,
    mask_threshold: float = 0.5,
    ptx_version: str | None = None,
    shared_limits: dict[int, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AotResult:
    """Compile the production variants for each arch into `out_dir` and write its manifest.json.

    archs: e.g. ["sm_87", "sm_89", "sm_90"]. variants: names or name prefixes (e.g. "mask_label",
    "cpam") to compile a subset; None = all. mask_threshold: baked into the mask kernels as a
    constexpr. ptx_version: PTX ISA to declare, e.g. "8.5" for a JetPack 6 driver (CUDA 12.6 drivers JIT
    PTX up to 8.5); None = what the pinned Triton's ptxas emits (8.8 with CUDA 12.9). shared_limits: override of SHARED_LIMITS (tests). Raises ConfigError for bad
    arguments and KernelUnavailableError when the compiler worker fails.
    """
    caps = sorted({parse_arch(a) for a in archs})
    if not caps:
        raise ConfigError("no architecture given; expected e.g. --arch sm_87,sm_89,sm_90")
    if not 0.0 < mask_threshold < 1.0:
        raise ConfigError(f"mask threshold {mask_threshold}; expected a probability in (0, 1)")
    ptx_int = None
    if ptx_version is not None:
        m = re.fullmatch(r"(\d)\.(\d)", ptx_version.strip())
        if not m:
            raise ConfigError(f"PTX version {ptx_version!r}; expected MAJOR.MINOR such as 8.5")
        ptx_int = int(m.group(1)) * 10 + int(m.group(2))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    request = {
        "caps": caps,
        "out": str(out_dir.resolve()),
        "variants": list(variants) if variants else None,
        "mask_threshold": mask_threshold,
        "ptx_version": ptx_int,
        "limits": {str(k): v for k, v in (shared_limits or SHARED_LIMITS).items()},
    }
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(out_dir.resolve() / ".triton-cache"))
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "0")
    compiled: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    error: str | None = None
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: a chatty stderr cannot block the worker
        proc = subprocess.Popen(
            [sys.executable, "-m", "asfyolo_rt.kernels.aot", json.dumps(request)],
            stdout=subprocess.PIPE, stderr=err, text=True, env=env,
        )
        for line in proc.stdout or []:  # one JSON object per line: header, then one per (variant, arch)
            msg = json.loads(line)
            if msg["type"] == "header":
                meta = msg
            elif msg["type"] == "compiled":
                compiled.append(msg["entry"])
            elif msg["type"] == "refused":
                refused.append(msg["entry"])
            elif msg["type"] == "error":
                error = msg["message"]
            if progress is not None and meta and msg["type"] != "header":
                progress(len(compiled) + len(refused), meta["total"])
        code = proc.wait()
        err.seek(0)
        stderr = err.read()
    if error is not None:
        raise ConfigError(error, hint="names: cpam_stats_fp32|fp16, cpam_apply_fp32|fp16, cpam_gates_r16|r32, "
                          "mask_{label,packed,dense}_{fp32,fp16}, mask_label_finalize, mask_qdp_dense_fp32 "
                          "(the TensorRT plugin kernel), or a prefix such as 'mask'")
    if code != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise KernelUnavailableError(
            f"ahead-of-time compilation failed (worker exit code {code}):\n{tail}",
            hint="run with --debug; check that the pinned triton is installed (pip show triton)",
        )
    if not meta:
        raise KernelUnavailableError("ahead-of-time compilation produced no output", hint=stderr[-500:])
    manifest = {
        "triton_version": meta["triton_version"],
        "created_by": "asfyolo-rt kernels compile",
        "mask_threshold": mask_threshold,
        "ptx_version": ptx_version,
        "archs": [f"sm_{c}" for c in caps],
        "kernels": compiled,
        "refused": refused,
    }
    path = out_dir / "manifest.json"
    _write_atomic(path, json.dumps(manifest, indent=2) + "\n")
    return AotResult(manifest=path, compiled=compiled, refused=refused)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- worker (subprocess)


def _resource_usage(cubin: Path) -> dict[str, int]:
    """REG / STACK / LOCAL of a cubin via the cuobjdump that ships with triton ({} if unavailable)."""
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not tool.exists():
        return {}
    try:
        out = subprocess.run([str(tool), "--dump-resource-usage", str(cubin)], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found = dict(re.findall(r"\b(REG|STACK|LOCAL):(\d+)", out))
    return {"registers": int(found.get("REG", 0)), "stack_bytes": int(found.get("STACK", 0)),
            "spill_bytes": int(found.get("LOCAL", 0))}


def _selected(name: str, wanted: list[str] | None) -> bool:
    return wanted is None or any(name == w or name.startswith(w) for w in wanted)


def _worker(request: dict[str, Any]) -> None:
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget

    out = Path(request["out"])
    limits = {int(k): v for k, v in request["limits"].items()}
    specs: list[dict[str, Any]] = []
    for mod_name in KERNEL_MODULES:
        mod = importlib.import_module(mod_name)
        if getattr(mod, "INTERPRETED", False):
            raise RuntimeError("TRITON_INTERPRET is set in the compiler worker; it must be 0")
        specs += [dict(s, module=mod_name) for s in mod.aot_variants(mask_threshold=request["mask_threshold"])]
    specs = [s for s in specs if _selected(s["name"], request["variants"])]
    if not specs:
        _emit({"type": "error", "message": f"no kernel variant matches {request['variants']}"})
        return
    total = len(specs) * len(request["caps"])
    _emit({"type": "header", "triton_version": triton.__version__, "total": total})
    for cap in request["caps"]:
        arch = f"sm_{cap}"
        (out / arch).mkdir(parents=True, exist_ok=True)
        for spec in specs:
            fn = spec["fn"]
            signature = {a: spec["pointers"].get(a, "i32") for a in fn.arg_names}
            signature.update({k: "constexpr" for k in spec["constexprs"]})
            options = {"num_warps": spec["num_warps"], "enable_fp_fusion": spec.get("fp_fusion", False)}
            if request["ptx_version"] is not None:
                options["ptx_version"] = request["ptx_version"]
            src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=spec["constexprs"])
            kernel = triton.compile(src, target=GPUTarget("cuda", cap, 32), options=options)
            shared = int(kernel.metadata.shared)
            base = {"variant": spec["name"], "kernel": fn.__name__, "arch": arch, "shared": shared}
            problem = shared_memory_problem(shared, cap, limits)
            if problem is not None:
                _emit({"type": "refused", "entry": dict(base, limit=limits[cap], reason=problem)})
                continue
            ptx_text = kernel.asm["ptx"]
            files = {}
            for ext, data in (("ptx", ptx_text.encode()), ("cubin", kernel.asm["cubin"])):
                path = out / arch / f"{spec['name']}.{ext}"
                _write_bytes_atomic(path, data)
                files[ext] = {"path": f"{arch}/{path.name}", "sha256": sha256(path), "bytes": len(data)}
            target = re.search(r"^\.target\s+(\S+)", ptx_text, re.MULTILINE)
            version = re.search(r"^\.version\s+(\S+)", ptx_text, re.MULTILINE)
            entry = dict(
                base,
                module=spec["module"],
                target=target.group(1) if target else None,
                signature=signature,
                constexprs=spec["constexprs"],
                num_warps=spec["num_warps"],
                fp_fusion=options["enable_fp_fusion"],
                grid=spec.get("grid", ""),
                ptx_version=version.group(1) if version else None,  # the driver must support this PTX ISA
                global_scratch_size=getattr(kernel.metadata, "global_scratch_size", 0),
                triton_version=triton.__version__,
                files=files,
                **_resource_usage(out / arch / f"{spec['name']}.cubin"),
            )
            _emit({"type": "compiled", "entry": entry})


def _emit(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        sys.exit("asfyolo_rt.kernels.aot: TRITON_INTERPRET must be 0 in the compiler worker")
    _worker(json.loads(sys.argv[1]))
