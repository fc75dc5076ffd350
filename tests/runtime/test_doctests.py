"""The runtime layer's docstring examples run as written (they are the API's first documentation)."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["asfyolo_rt.runtime.info", "asfyolo_rt.runtime.registry",
                                    "asfyolo_rt.runtime.segmenter"])
def test_docstring_examples_run(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{module} has no examples"
    assert result.failed == 0
