"""validate() end to end: ground truth in, (near-)perfect metrics out; a shifted oracle scores lower."""

from __future__ import annotations

from evalflow_oracle import OracleBackend

from asfyolo_rt.eval.validate import ValConfig, validate


def test_oracle_scores_perfectly(synth_split) -> None:
    backend = OracleBackend(synth_split, img_size=512)
    res = validate(backend, synth_split, ValConfig(img_size=512, batch_size=1, coco=True, dsb=True))
    m = res.metrics
    # the official 101-point interpolation integrates to 0.995 for a perfect detector
    assert abs(m.box_map50 - 0.995) < 1e-3 and abs(m.box_map - 0.995) < 1e-3
    assert m.mask_map50 > 0.98
    assert m.mask_map > 0.85  # masks are rasterised at 1/4 resolution on both sides
    assert res.coco["bbox"]["AP"] > 0.999
    assert res.coco["segm"]["AP50"] > 0.98
    assert res.dsb > 0.6
    assert m.n_instances == sum(len(s.polygons) for s in synth_split.samples)


def test_fixed_shape_oracle_also_perfect(synth_split) -> None:
    backend = OracleBackend(synth_split, img_size=512, fixed=(256, 256))
    res = validate(backend, synth_split, ValConfig(img_size=256, batch_size=1))
    assert abs(res.metrics.box_map50 - 0.995) < 1e-3


def test_shifted_boxes_lose_high_iou_thresholds(synth_split) -> None:
    backend = OracleBackend(synth_split, img_size=512)
    for _, pred, _ in backend.table:
        pred[..., 0] += 0.35 * pred[..., 2]  # shift every box by 35 % of its width: IoU ~ 0.5
    res = validate(backend, synth_split, ValConfig(img_size=512, batch_size=1))
    assert res.metrics.box_map < 0.5  # the perfect oracle scores 0.995 here
