"""ASF-YOLO in PyTorch: building blocks, the three ASF modules, the YOLOv5-seg head, variants."""

from asfyolo_rt.model.asfyolo import ASFYOLO, VARIANTS, build_model, get_variant
from asfyolo_rt.model.head import DEFAULT_ANCHORS, SegmentHead
from asfyolo_rt.model.neck import ChannelPositionAttention, ScaleSequenceFusion, TripleFeatureEncoder

__all__ = [
    "ASFYOLO",
    "DEFAULT_ANCHORS",
    "VARIANTS",
    "ChannelPositionAttention",
    "ScaleSequenceFusion",
    "SegmentHead",
    "TripleFeatureEncoder",
    "build_model",
    "get_variant",
]
