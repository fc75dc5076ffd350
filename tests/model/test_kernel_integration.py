"""The model with the fused Triton CPAM (interpreted on CPU) equals the reference model."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

CODE = textwrap.dedent("""
    import torch
    from asfyolo_rt.model import build_model
    torch.manual_seed(0)
    m = build_model("n").eval()
    with torch.no_grad():
        for name, b in m.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
        x = torch.rand(1, 3, 64, 96)
        ref_pred, ref_protos = m(x)
        m.set_kernel_impl("triton")
        pred, protos = m(x)
    print(float((pred - ref_pred).abs().max()), float((protos - ref_protos).abs().max()))
""")


def test_model_with_triton_cpam_equals_reference() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    d_pred, d_protos = map(float, out.stdout.split())
    assert d_pred < 1e-3 and d_protos < 1e-4


def test_explicit_triton_without_gpu_or_interpreter_is_a_clear_error() -> None:
    code = ("import torch\nfrom asfyolo_rt.model import build_model\nm = build_model('n').eval()\n"
            "m.set_kernel_impl('triton')\ntry:\n    m(torch.rand(1, 3, 64, 64))\nexcept Exception as e:\n"
            "    print(type(e).__name__)\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    if "cuda" in out.stdout.lower():
        pytest.skip("a GPU is present")
    assert out.stdout.strip() == "KernelUnavailableError", out.stdout + out.stderr[-1000:]
