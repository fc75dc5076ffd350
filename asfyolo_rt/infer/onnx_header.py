"""What `ModelInfo` needs from an ONNX file, read from its protobuf without the `onnx` package (whose import
costs ~0.6 s: more than the rest of a PyTorch-free prediction's start-up).

Only the fields read are decoded: the model's ``metadata_props`` (ModelProto field 14), the graph's inputs
(GraphProto 11) minus its initializers (5, by name: old files list weights as inputs) with their dims, and its
output names (12). Everything else (weights included) is skipped by length. Field numbers: onnx/onnx.proto.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


@dataclass
class OnnxHeader:
    metadata: dict[str, str] = field(default_factory=dict)
    input_dims: list[int | None] = field(default_factory=list)  # first non-initializer input; None = symbolic
    outputs: list[str] = field(default_factory=list)


class ProtoError(ValueError):
    """Not a well-formed protobuf message."""


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ProtoError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: memoryview):  # type: ignore[no-untyped-def]
    """(field number, wire type, value) of a message: ints for varints, memoryviews for the rest."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == _VARINT:
            v, i = _varint(buf, i)
            yield num, wire, v
        elif wire == _LEN:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ProtoError("truncated field")
            yield num, wire, buf[i : i + n]
            i += n
        elif wire == _I64:
            i += 8
        elif wire == _I32:
            i += 4
        else:
            raise ProtoError(f"wire type {wire}")


def _string(buf: memoryview, num: int) -> str | None:
    for n, w, v in _fields(buf):
        if n == num and w == _LEN:
            return bytes(v).decode("utf-8", "replace")
    return None


def _sub(buf: memoryview, num: int) -> memoryview | None:
    for n, w, v in _fields(buf):
        if n == num and w == _LEN:
            return v
    return None


def _dims(value_info: memoryview) -> list[int | None]:
    """Dims of a ValueInfoProto (type 2 -> tensor_type 1 -> shape 2 -> dim 1 -> dim_value 1 / dim_param 2)."""
    t = _sub(value_info, 2)
    tensor = _sub(t, 1) if t is not None else None
    shape = _sub(tensor, 2) if tensor is not None else None
    out: list[int | None] = []
    if shape is None:
        return out
    for n, w, dim in _fields(shape):
        if n != 1 or w != _LEN:
            continue
        value: int | None = None
        for dn, dw, dv in _fields(dim):
            if dn == 1 and dw == _VARINT:
                value = int(dv) - (1 << 64) if int(dv) >= 1 << 63 else int(dv)  # int64, two's complement
        out.append(value)
    return out


def read_onnx_header(path: str | Path) -> OnnxHeader:
    """Metadata, first input's dims and output names of an ONNX file. ProtoError when it is no ONNX model. Read
    once per file version in a process (predict's option check, ModelInfo and the backend all ask); a copy each time."""
    p = Path(path)
    st = p.stat()
    head = _read(str(p.resolve()), st.st_mtime_ns, st.st_size)
    return OnnxHeader(dict(head.metadata), list(head.input_dims), list(head.outputs))


@lru_cache(maxsize=32)
def _read(path: str, mtime_ns: int, size: int) -> OnnxHeader:
    data = memoryview(Path(path).read_bytes())
    head = OnnxHeader()
    graph: memoryview | None = None
    for n, w, v in _fields(data):
        if n == 7 and w == _LEN:
            graph = v
        elif n == 14 and w == _LEN:
            key, value = _string(v, 1), _string(v, 2)
            if key is not None:
                head.metadata[key] = value or ""
    if graph is None:
        raise ProtoError("no graph")
    inits: set[str] = set()
    inputs: list[memoryview] = []
    for n, w, v in _fields(graph):
        if w != _LEN:
            continue
        if n == 5:
            name = _string(v, 8)
            if name is not None:
                inits.add(name)
        elif n == 11:
            inputs.append(v)
        elif n == 12:
            head.outputs.append(_string(v, 1) or "")
    for v in inputs:
        if (_string(v, 1) or "") not in inits:
            head.input_dims = _dims(v)
            break
    return head
