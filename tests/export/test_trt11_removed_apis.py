"""Lint rule: TensorRT-11-removed APIs only inside version-guarded legacy functions.

TensorRT 11 removed BuilderFlag.FP16/INT8 (and the other precision flags), the IInt8*Calibrator family,
`config.int8_calibrator` and `builder.platform_has_fast_*` (TENSORRT.md §1.1). Code may use them only inside a
function named `_legacy_*` that checks the TensorRT major version itself, and every call of such a function
must sit under an `if` that compares a major version with 11.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = ["asfyolo_rt", "export", "calib", "kernels", "bench"]
_CALIB = re.compile(r"^IInt8\w*Calibrator\w*$")


def _removed_api(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        base = node.value
        base_name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
        if base_name == "BuilderFlag" and node.attr in ("FP16", "BF16", "INT8", "FP8", "INT4", "FP4"):
            return f"BuilderFlag.{node.attr}"
        if node.attr == "int8_calibrator" or node.attr.startswith("platform_has_fast_") or _CALIB.match(node.attr):
            return node.attr
    if isinstance(node, ast.Name) and _CALIB.match(node.id):
        return node.id
    return None


def violations(source: str, filename: str = "<src>") -> list[str]:
    """Problems in one module's source (empty list = clean)."""
    tree = ast.parse(source, filename)
    parents: dict[ast.AST, ast.AST] = {}
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            parents[child] = parent

    def enclosing(node: ast.AST, kind: type | tuple[type, ...]) -> list[ast.AST]:
        out = []
        while node in parents:
            node = parents[node]
            if isinstance(node, kind):
                out.append(node)
        return out

    problems = []
    for node in ast.walk(tree):
        api = _removed_api(node)
        if api is not None:
            funcs = enclosing(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            fn = funcs[0] if funcs else None
            guarded = fn is not None and fn.name.startswith("_legacy_") and re.search(  # type: ignore[union-attr]
                r"(>=|<)\s*11", ast.unparse(fn))
            if not guarded:
                problems.append(f"{filename}:{node.lineno}: {api} outside a version-guarded _legacy_* function")
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name.startswith("_legacy_"):
                ifs = [n for n in enclosing(node, ast.If) if re.search(r"<\s*11\b", ast.unparse(n.test))]
                if not ifs:
                    problems.append(f"{filename}:{node.lineno}: call of {name} without an `if ... < 11` guard")
    return problems


def test_repository_uses_removed_apis_only_behind_guards():
    problems = []
    for folder in SCANNED:
        for path in sorted((REPO / folder).rglob("*.py")) if (REPO / folder).is_dir() else []:
            problems += violations(path.read_text(), str(path.relative_to(REPO)))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("snippet", [
    "def f(trt, c):\n    c.set_flag(trt.BuilderFlag.FP16)\n",
    "def f(trt, c):\n    c.int8_calibrator = None\n",
    "class C(trt.IInt8EntropyCalibrator2):\n    pass\n",
    "def f(b):\n    return b.platform_has_fast_int8\n",
    "def _legacy_f(trt, c):\n    c.set_flag(trt.BuilderFlag.INT8)\n",  # legacy name but no version check
    ("def _legacy_f(trt, c):\n    if major >= 11:\n        raise E\n    c.set_flag(trt.BuilderFlag.INT8)\n"
     "def g(c):\n    _legacy_f(trt, c)\n"),  # unguarded call
])
def test_rule_flags_violations(snippet):
    assert violations(snippet)


def test_rule_accepts_guarded_use():
    ok = ("def _legacy_f(trt, c):\n    if major(trt) >= 11:\n        raise E\n    c.set_flag(trt.BuilderFlag.FP16)\n"
          "def g(trt, c, major):\n    if major < 11:\n        _legacy_f(trt, c)\n")
    assert violations(ok) == []
