"""Pipeline schedules: hand-checkable bubbles."""

from __future__ import annotations

import pytest

from simulator.training.pipeline import run_pipeline, stage_order


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p, m", [(4, 8), (8, 8), (2, 16), (4, 1)])
def test_bubble_is_p_minus_1_over_m_plus_p_minus_1(schedule: str, p: int, m: int) -> None:
    """Uniform passes, no communication: step = (m + p - 1)(f + b), so the bubble is
    (p-1)/(m+p-1) of the step."""
    run = run_pipeline(schedule, p, m, 1, [1.0] * p, [2.0] * p, send_s=0.0)
    ideal = m * 3.0
    assert run.makespan_s == pytest.approx((m + p - 1) * 3.0)
    assert (run.makespan_s - ideal) / run.makespan_s == pytest.approx((p - 1) / (m + p - 1))


@pytest.mark.parametrize("p, m, v", [(4, 8, 2), (4, 8, 4), (8, 16, 2), (2, 4, 3)])
def test_interleaving_shrinks_the_bubble_by_v(p: int, m: int, v: int) -> None:
    """v chunks per stage of 1/v the work each: the bubble is (p-1)(f+b)/v."""
    plain = run_pipeline("1f1b", p, m, 1, [1.0] * p, [2.0] * p, send_s=0.0)
    inter = run_pipeline("interleaved", p, m, v, [1.0 / v] * (p * v), [2.0 / v] * (p * v),
                         send_s=0.0)
    ideal = m * 3.0
    assert inter.makespan_s - ideal == pytest.approx((plain.makespan_s - ideal) / v)


def test_every_pass_runs_once_in_dependency_order() -> None:
    p, m, v = 4, 8, 2
    for stage in range(p):
        order = stage_order("interleaved", p, m, v, stage)
        assert sorted(order) == sorted({(k, c, i) for k in "FB" for c in range(v)
                                        for i in range(m)})
    run = run_pipeline("interleaved", p, m, v, [0.5] * (p * v), [1.0] * (p * v), send_s=0.1)
    for ((kind, chunk, i), stage), (start, _) in run.spans.items():
        if kind == "B":
            assert start >= run.spans[(("F", chunk, i), stage)][1]


def test_one_f_one_b_keeps_at_most_p_micro_batches_in_flight_on_stage_0() -> None:
    order = stage_order("1f1b", 4, 8, 1, 0)
    in_flight = peak = 0
    for kind, _, _ in order:
        in_flight += 1 if kind == "F" else -1
        peak = max(peak, in_flight)
    assert peak == 4


@pytest.mark.parametrize("schedule, v", [("gpipe", 1), ("1f1b", 1), ("interleaved", 2)])
def test_a_run_without_spans_times_the_step_the_same(schedule: str, v: int) -> None:
    """Planners skip the per-pass spans; the step's times are the ones a timeline has."""
    p, m = 4, 8
    forward = [0.5 + 0.1 * u for u in range(p * v)]
    backward = [1.0 + 0.2 * u for u in range(p * v)]
    full = run_pipeline(schedule, p, m, v, forward, backward, send_s=0.05)
    lean = run_pipeline(schedule, p, m, v, forward, backward, send_s=0.05,
                        record_spans=False)
    assert lean.spans == {} and len(full.spans) == 2 * p * m * v
    assert (lean.stage_end_s, lean.last_backward_start_s, lean.busy_s) == \
        (full.stage_end_s, full.last_backward_start_s, full.busy_s)
