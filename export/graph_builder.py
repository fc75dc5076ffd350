"""GraphBuilder: appends ONNX nodes and initializers with unique names (the end-to-end graph's post-processing
and the mask-assembly plugin node are built with it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["GraphBuilder"]


class GraphBuilder:
    """Appends nodes/initializers with unique names under a prefix."""

    def __init__(self, prefix: str = "/post") -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._k = 0

    def _name(self, base: str) -> str:
        self._k += 1
        return f"{self.prefix}/{base}_{self._k}"

    def const(self, value: np.ndarray | float | list[int], base: str = "c", dtype: type = np.float32) -> str:
        arr = np.asarray(value, dtype=dtype)
        name = self._name(base)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def i64(self, values: Sequence[int] | int) -> str:
        return self.const(np.asarray(values, np.int64), "i64", np.int64)

    def op(self, op_type: str, inputs: Sequence[str], base: str | None = None, n_out: int = 1,
           outputs: Sequence[str] | None = None, domain: str = "", **attrs: object) -> str | list[str]:
        name = self._name(base or op_type)
        outs = list(outputs) if outputs is not None else [f"{name}_out{i}" if n_out > 1 else f"{name}_out"
                                                           for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, domain=domain, **attrs))
        return outs if n_out > 1 else outs[0]

    def one(self, op_type: str, inputs: Sequence[str], base: str | None = None, **attrs: object) -> str:
        out = self.op(op_type, inputs, base, **attrs)
        assert isinstance(out, str)
        return out

    def slice_last(self, x: str, start: int, end: int) -> str:
        return self.one("Slice", [x, self.i64([start]), self.i64([end]), self.i64([-1])])
