"""asfyolo_rt.export"""
