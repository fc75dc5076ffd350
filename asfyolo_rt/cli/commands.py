"""Imports every command module so that each registers itself on the root app."""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

# Each module defines its commands on `asfyolo_rt.cli.main.app` (or adds a sub-app) at import.
_MODULES = [
    "asfyolo_rt.cli.info",
    "asfyolo_rt.cli.weights",
    "asfyolo_rt.cli.data",
    "asfyolo_rt.cli.kernels",
    "asfyolo_rt.cli.train",
    "asfyolo_rt.cli.val",
    "asfyolo_rt.cli.predict",
    "asfyolo_rt.cli.watch",
    "asfyolo_rt.cli.export",
    "asfyolo_rt.cli.parity",
    "asfyolo_rt.cli.bench",
    "asfyolo_rt.cli.view",
]

for _name in _MODULES:
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as exc:
        # A command module that does not exist yet is skipped; a missing dependency inside one is not.
        if exc.name != _name:
            raise
