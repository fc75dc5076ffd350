"""No usage telemetry: ONNX Runtime's and OpenVINO's are switched off before either library is imported.

What they do by default (measured with ``HOME`` pointing at an empty folder):

- ONNX Runtime (1.2x-1.3x wheels for Linux) starts a 1DS telemetry client when the library is loaded: it
  writes ``$XDG_CACHE_HOME`` or ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/deviceid`` and queues events
  (interpreter path, OS, device id) in ``onnxruntime.db`` there. The native library reads the environment
  variable ``ORT_DISABLE_TELEMETRY`` once, at load: set to ``1`` before ``import onnxruntime`` nothing is
  written or queued. (``onnxruntime.disable_telemetry_events()`` after the import is too late: the device id
  and the database already exist.)
- OpenVINO's Python package (``openvino.tools.ovc``, imported by ``import openvino``) and NNCF create an
  ``openvino_telemetry.Telemetry`` at import, which without a consent file counts as consent: it writes
  ``~/intel/openvino_ga_cid`` and ``~/intel/stats`` and sends Google Analytics events. Its only switches are
  a consent file in ``~/intel`` (a write into the user's home) or ``CI=true`` (which changes other tools).
  Both packages import ``openvino_telemetry`` inside ``try: ... except ImportError`` and fall back to
  their own no-op stubs, so :func:`disable_telemetry` marks the module as not importable in this process
  (``sys.modules["openvino_telemetry"] = None``, Python's documented way to block an import).

:func:`disable_telemetry` runs when ``asfyolo_rt`` is imported (so before any of these libraries is, in any
module of the project), and again before each import site (``asfyolo_rt.infer.ort.ort_session``,
``asfyolo_rt.infer.openvino.import_openvino``, ``bench``). Importing ``asfyolo_rt`` into another program
therefore switches both off for that whole process.
The environment variable is inherited by every process the project starts; a child that imports OpenVINO
goes through ``import_openvino`` again. The calls are cheap and import nothing heavy.
"""

from __future__ import annotations

import os
import sys

ORT_ENV = "ORT_DISABLE_TELEMETRY"
OPENVINO_TELEMETRY = "openvino_telemetry"


def disable_telemetry() -> None:
    """Switch off ONNX Runtime's and OpenVINO's usage telemetry for this process and the processes it starts.

    Idempotent. Where OpenVINO's telemetry was already imported by someone else, its client is told that
    consent was declined (whatever it wrote at import cannot be undone); ONNX Runtime loaded before this
    call keeps its telemetry (the variable is read at load), which is why every import site calls this first.
    """
    os.environ[ORT_ENV] = "1"
    loaded = sys.modules.get(OPENVINO_TELEMETRY, ...)
    if loaded is ...:
        sys.modules[OPENVINO_TELEMETRY] = None  # type: ignore[assignment]
    elif loaded is not None:
        _decline(loaded)


def _decline(module: object) -> None:
    """Turn off an already created openvino_telemetry.Telemetry singleton (best effort)."""
    cls = getattr(module, "Telemetry", None)
    instance = getattr(cls, "_SingletonMetaClass__single_instance", None) if cls is not None else None
    if instance is not None:
        instance.consent = False
