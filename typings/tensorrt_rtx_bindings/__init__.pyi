# The PyPI wheels (tensorrt-rtx-cu12-bindings) install TensorRT-RTX as `tensorrt_rtx_bindings`: same API
# as `tensorrt_rtx` (typings/tensorrt_rtx).
from tensorrt_rtx import *  # noqa: F403
from tensorrt_rtx import __version__ as __version__
