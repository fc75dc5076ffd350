"""asfyolo_rt.calib"""
