"""bench's machine view: the noisy verdict on injected load values, GFLOPs checked against an independent count."""

from __future__ import annotations

import pytest


def test_noisy_when_other_processes_were_busy_just_before() -> None:
    from asfyolo_rt.bench_machine import noise_verdict

    steady = [10.0, 10.1, 10.0, 9.9, 10.05]
    assert noise_verdict(0.4, 0.2, 2, steady) == (False, "")
    noisy, why = noise_verdict(1.27, 0.2, 2, steady)
    assert noisy and "other processes used 1.27 cores just before the run" in why and "half of 2 cores" in why
    assert noise_verdict(1.0, 0.2, 2, steady)[0] is False  # exactly half is still quiet
    assert noise_verdict(3.9, 0.2, 8, steady)[0] is False and noise_verdict(4.1, 0.2, 8, steady)[0] is True
    assert noise_verdict(None, 0.2, 2, steady) == (False, "")  # no /proc/stat: that check is skipped


class _Recorded:
    """Clocks that return recorded readings, one per call (wall, this process's CPU, the machine's busy CPU)."""

    def __init__(self, *values: float | None) -> None:
        self.values = list(values)

    def __call__(self) -> float | None:
        return self.values.pop(0)


def _probe(wall: tuple[float, float], own_cpu: tuple[float, float], busy: tuple[float | None, float | None]):
    from asfyolo_rt.bench_machine import LoadProbe

    return LoadProbe(wall=_Recorded(*wall), own_cpu=_Recorded(*own_cpu), busy=_Recorded(*busy),
                     load=lambda: 1.5)


def test_busy_before_sees_another_process_and_not_this_ones_history() -> None:
    """busy_before counts only other processes, only in its window: injected readings, no live load.

    The 1-minute load average keeps this process's own earlier work (1.5 here); busy_before does not: a
    process that burned 40 s of CPU before the window (own CPU clock at 40.0) and sleeps through it sees 0
    other cores when the machine's busy counter did not move beyond its own 0.01 s; 1 core when it moved
    by 1.01 s over the 1 s window; and this process's own CPU time in the window is never counted."""
    from asfyolo_rt.bench_machine import busy_before

    slept: list[float] = []
    # quiet machine after this process's own history: busy counter +0.01 s, all of it this process's
    quiet = busy_before(1.0, sleep=slept.append, probe=_probe((10.0, 11.0), (40.0, 40.01), (500.0, 500.01)))
    assert quiet == 0.0 and slept == [1.0]
    # another process spinning one core during the window
    busy = busy_before(1.0, sleep=slept.append, probe=_probe((10.0, 11.0), (40.0, 40.01), (500.0, 501.01)))
    assert busy == pytest.approx(1.0)
    # this process's own work inside the window (0.8 s of CPU) is not another process's
    own = busy_before(0.5, sleep=slept.append, probe=_probe((0.0, 0.5), (3.0, 3.8), (100.0, 100.8)))
    assert own == 0.0
    # two other cores busy over 2 s, plus this process's 0.3 s
    two = busy_before(2.0, sleep=slept.append, probe=_probe((0.0, 2.0), (1.0, 1.3), (50.0, 54.3)))
    assert two == pytest.approx(2.0)
    # no /proc/stat (not Linux): unknown, and the verdict skips that check
    assert busy_before(1.0, sleep=slept.append, probe=_probe((0.0, 1.0), (0.0, 0.0), (None, None))) is None


def test_load_probe_reports_wall_own_cpu_and_the_load_average() -> None:
    probe = _probe((2.0, 4.5), (1.0, 3.0), (10.0, 15.0))
    with probe:
        pass
    s = probe.sample
    assert (s.wall_s, s.cpu_s, s.load_during) == (2.5, 2.0, 1.5)
    assert s.others_cores == pytest.approx((5.0 - 2.0) / 2.5)  # machine 5 s busy, 2 s of them this process


def test_cores_used_by_others_never_negative_and_unknown_without_counters() -> None:
    from asfyolo_rt.bench_machine import cores_used_by_others

    assert cores_used_by_others(10.0, 10.0, 0.02, 1.0) == 0.0  # the two counters tick at different rates
    assert cores_used_by_others(None, 10.0, 0.0, 1.0) is None
    assert cores_used_by_others(11.0, 10.0, 0.0, 0.0) is None  # no time passed


def test_busy_seconds_of_a_proc_stat_line() -> None:
    """user nice system idle iowait irq softirq steal guest guest_nice, in clock ticks."""
    from asfyolo_rt.bench_machine import busy_seconds_of

    stat = "cpu  1000 50 300 9000 200 10 20 400 30 5\ncpu0 500 25 150 4500 100 5 10 200 15 2\n"
    # busy = user + nice + system + irq + softirq = 1380 ticks; idle, iowait, steal and guest excluded
    assert busy_seconds_of(stat, clk_tck=100) == pytest.approx(13.8)
    assert busy_seconds_of("cpu 100 0 100 800\n", clk_tck=100) == pytest.approx(2.0)  # old kernels: 4 fields


def test_noisy_when_other_processes_load_the_cpus_during_the_run() -> None:
    from asfyolo_rt.bench_machine import noise_verdict

    steady = [5.0] * 6
    noisy, why = noise_verdict(0.1, 1.73, 2, steady)
    assert noisy and "other processes used 1.73 cores" in why
    assert noise_verdict(0.1, None, 2, steady) == (False, "")  # no /proc/stat: that check is skipped


def test_noisy_when_repeats_disagree_by_more_than_20_percent() -> None:
    from asfyolo_rt.bench_machine import noise_verdict, spread

    assert spread([279.0] * 5) == 0.0
    issue_12 = [279.0, 281.0, 290.0, 1986.0, 300.0]  # p50 279 ms then 1986 ms for the same command
    noisy, why = noise_verdict(0.0, 0.0, 2, issue_12)
    assert noisy and "repeats disagree" in why
    assert spread([100.0, 105.0, 110.0, 108.0, 102.0]) < 0.2
    assert noise_verdict(0.0, 0.0, 2, [100.0, 105.0, 110.0, 108.0, 102.0])[0] is False


def test_row_perf_uses_the_int8_peak_for_int8_rows() -> None:
    from asfyolo_rt.bench_machine import LoadSample, Peak
    from asfyolo_rt.benchmark import PerfContext, row_perf

    ctx = PerfContext(gflops=1.8, peak=Peak(fp32_gflops=100.0, int8_gops=400.0, isa="avx512_vnni", n=1024),
                      load_before=0.2)
    sample = LoadSample(wall_s=2.0, cpu_s=3.8, others_cores=0.1, load_during=1.9)
    p = row_perf(ctx, "int8", 1.8, 0.009, sample, [9.0, 9.1, 9.0])
    assert (p.achieved_gflops_per_s, p.peak_kind, p.pct_of_peak) == (200.0, "int8 gemm", 50.0)
    q = row_perf(ctx, "fp32", 3.6, 0.009, sample, [9.0, 9.1, 9.0])  # batch 2: twice the work in one forward
    assert (q.achieved_gflops_per_s, q.peak_kind, q.pct_of_peak, q.noisy) == (400.0, "fp32 gemm", 400.0, False)
    assert (q.cpu_s, q.wall_s, q.load_before) == (3.8, 2.0, 0.2)


def test_a_peak_halved_by_a_passing_load_is_rescored_with_the_higher_measurement() -> None:
    from dataclasses import fields

    from asfyolo_rt.bench_levers import LeverRow, rescore
    from asfyolo_rt.bench_machine import Peak, best_peak

    first = Peak(fp32_gflops=197.1, int8_gops=833.0, isa="avx512_bf16", n=1024, bf16_gflops=216.0)
    again = Peak(fp32_gflops=196.8, int8_gops=None, isa="avx512_bf16", n=1024, bf16_gflops=430.2)
    best = best_peak(first, again)
    assert (best.fp32_gflops, best.int8_gops, best.bf16_gflops) == (197.1, 833.0, 430.2)
    row = LeverRow(**{f.name: None for f in fields(LeverRow)})
    row = rescore(_measured(row, "bf16", 233.0), best)
    assert (row.peak_gflop_per_s, row.peak_kind, row.pct_of_peak) == (430.2, "bf16 gemm", 54.2)
    assert rescore(_measured(row, "int8", 306.0), best).pct_of_peak == 36.7


def _measured(row, precision: str, gflop_per_s: float):
    """`row` as run_levers would leave it for a lever of `precision` achieving `gflop_per_s`."""
    from dataclasses import replace

    return replace(row, precision=precision, gflop_per_s=gflop_per_s)


def test_onnx_gflops_match_an_independent_count_of_the_n_model(tmp_path) -> None:
    """Graph count (onnx_flops) vs PyTorch forward hooks on the fused model (model.summary.count_flops)."""
    import copy

    import torch
    from asfyolo_rt.export.onnx_export import export_onnx, load_weights

    from asfyolo_rt.model.summary import count_flops
    from asfyolo_rt.onnx_flops import onnx_gflops
    from asfyolo_rt.weights_registry import default_weights

    model, cfg = load_weights(default_weights())
    art = export_onnx(model, tmp_path / "model.onnx", cfg, img_size=(160, 160))
    hooks = count_flops(copy.deepcopy(model).float().eval().fuse(), torch.zeros(1, 3, 160, 160))
    graph = onnx_gflops(art.path)
    assert graph.conv_gflops == pytest.approx(hooks, rel=1e-4)
    assert graph.gflops == pytest.approx(1.81 / 4, rel=0.01)  # 1.81 GFLOPs at 320 (README), a quarter at 160
