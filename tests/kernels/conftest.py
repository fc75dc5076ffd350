"""Kernel tests run natively on CUDA, else in the Triton interpreter: see kernel_env.py (imported
here so that TRITON_INTERPRET=1 is set before any test module imports Triton)."""

from __future__ import annotations

import kernel_env  # noqa: F401  (sets TRITON_INTERPRET=1 without CUDA)
