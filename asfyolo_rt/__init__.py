"""asfyolo-rt: ASF-YOLO cell instance segmentation from PyTorch to TensorRT."""

__version__ = "0.1.0"
