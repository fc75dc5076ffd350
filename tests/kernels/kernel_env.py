"""Where the Triton kernel tests run: natively on a CUDA GPU, else in the Triton interpreter on CPU.

Triton decides at decoration time (and, for its own helpers, at its first import) whether kernels
are interpreted, so importing this module sets TRITON_INTERPRET=1 on machines without CUDA. The
kernel tests' conftest.py imports it before any test module imports Triton or a `_triton` module.
On a GPU machine nothing is set and the same tests run the compiled kernels on CUDA tensors.
"""

from __future__ import annotations

import os

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"

DEVICE = torch.device("cuda" if CUDA else "cpu")


def require_runnable(triton_module) -> None:
    """Fail clearly when the kernels can run neither natively nor in the interpreter."""
    if not CUDA and not triton_module.INTERPRETED:
        pytest.fail(
            "Triton was imported before tests/kernels/conftest.py could set TRITON_INTERPRET=1; "
            "run the kernel tests on their own: pytest tests/kernels"
        )
