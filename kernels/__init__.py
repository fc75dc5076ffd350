"""asfyolo_rt.kernels"""
