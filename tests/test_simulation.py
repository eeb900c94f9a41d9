"""End-to-end simulations: exact single-request times, ordering, invariants, preemption."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.cost_model import BatchShape
from simulator.serving.engine import resolve, simulate
from simulator.serving.metrics import stability
from simulator.serving.request import RequestStatus
from tests.conftest import StepChecker, make_deployment, make_trace
from workloads.schema import RequestTrace


def test_single_request_times_equal_the_cost_model_exactly() -> None:
    """TTFT is one prefill step; E2E adds one decode step per further output token."""
    deployment = make_deployment("llama-3-8b", "a100")
    prompt, outputs = 700, 5
    result = simulate(deployment, make_trace([0.0], [prompt], [outputs]))
    assert result.ok, result.error
    cost_model = resolve(deployment).cost_models[0]
    clock = cost_model.predict(BatchShape([prompt], [0], num_sampled=1)).total_s
    row = result.requests.iloc[0]
    assert row["ttft_s"] == clock
    for k in range(outputs - 1):
        clock = clock + cost_model.predict(BatchShape([1], [prompt + k], num_sampled=1)).total_s
    assert row["e2e_s"] == clock
    assert row["tpot_s"] == pytest.approx((clock - row["ttft_s"]) / (outputs - 1), rel=1e-15)


def test_single_request_arriving_later_keeps_its_times() -> None:
    deployment = make_deployment("mistral-7b", "h100", **{"scheduler.policy": "stall-free"})
    early = simulate(deployment, make_trace([0.0], [300], [4])).requests.iloc[0]
    late = simulate(deployment, make_trace([12.5], [300], [4])).requests.iloc[0]
    assert late["ttft_s"] == pytest.approx(early["ttft_s"], rel=1e-12)
    assert late["e2e_s"] == pytest.approx(early["e2e_s"], rel=1e-12)


def test_an_arrival_at_t_is_seen_by_the_scheduling_decision_at_t() -> None:
    """Request B arrives exactly when A's prefill step ends: the step that starts then
    (vLLM: prefill-first) must already include B."""
    deployment = make_deployment("llama-3-8b", "a100")
    cost_model = resolve(deployment).cost_models[0]
    t = cost_model.predict(BatchShape([500], [0], num_sampled=1)).total_s
    result = simulate(deployment, make_trace([0.0, t], [500, 200], [3, 3]))
    rows = result.requests
    assert rows.loc[1, "first_scheduled_s"] == t
    assert rows.loc[1, "queueing_delay_s"] == 0.0


def test_same_time_arrivals_keep_trace_order() -> None:
    deployment = make_deployment("llama-3-8b", "a100",
                                 **{"scheduler.max_num_seqs": 1})
    result = simulate(deployment, make_trace([1.0, 1.0, 1.0], [50, 50, 50], [2, 2, 2]))
    order = result.requests.sort_values("first_scheduled_s")["request_id"].tolist()
    assert order == [0, 1, 2]


def _check_finishes_once(checker_counts: Counter, num_requests: int) -> None:
    assert sorted(checker_counts) == list(range(num_requests))
    assert set(checker_counts.values()) == {1}


class FinishCounter:
    """Counts, per request id, the steps in which the request finished."""

    def __init__(self) -> None:
        self.finished: Counter = Counter()

    def on_step(self, replica_id, stage_spans_s, plan, cost, kv_used_blocks) -> None:
        end_s = stage_spans_s[-1][1]
        for request in plan.requests:
            if request.status is RequestStatus.FINISHED and request.finish_s == end_s:
                self.finished[request.request_id] += 1


traces = st.integers(min_value=1, max_value=25).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0, 5, allow_nan=False), min_size=n, max_size=n),
    st.lists(st.integers(1, 200), min_size=n, max_size=n),
    st.lists(st.integers(1, 40), min_size=n, max_size=n),
))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    trace=traces,
    policy=st.sampled_from(["prefill-first", "stall-free", "orca", "static"]),
    max_num_seqs=st.integers(1, 8),
    budget=st.sampled_from([32, 64, 256]),
    chunked=st.booleans(),
    preemption=st.sampled_from(["recompute", "swap"]),
    num_blocks=st.integers(16, 40),
    replicas=st.integers(1, 3),
    pp=st.sampled_from([1, 2]),
    caching=st.booleans(),
    prefix_choice=st.lists(st.sampled_from([None, "a", "b"]), min_size=25, max_size=25),
)
def test_invariants_over_random_traces_and_settings(
    tiny_model_path: str, trace, policy, max_num_seqs, budget, chunked, preemption,
    num_blocks, replicas, pp, caching, prefix_choice,
) -> None:
    """Every request finishes exactly once with all its tokens; per step the token budget,
    max_num_seqs and KV capacity hold; time never runs backwards; all KV returns. With
    prefix caching, requests share random system prompts."""
    arrivals, prompts, outputs = trace
    caching = caching and policy in ("prefill-first", "stall-free") and preemption == "recompute"
    max_model_len = 256
    if not chunked and policy != "stall-free":
        budget = max(budget, max_model_len)
    deployment = make_deployment(
        tiny_model_path, "a100", replicas=replicas, router="least_kv", **{
            "parallelism.pp": pp,
            "scheduler.policy": policy, "scheduler.max_num_seqs": max_num_seqs,
            "scheduler.max_num_batched_tokens": budget,
            "scheduler.enable_chunked_prefill": chunked or policy == "stall-free",
            "scheduler.preemption_mode": preemption, "scheduler.swap_space_gib": 0.0001,
            "scheduler.max_model_len": max_model_len,
            "scheduler.num_gpu_blocks_override": num_blocks,
            "scheduler.enable_prefix_caching": caching,
        })
    checker = StepChecker(budget, max_num_seqs, num_blocks, chunked)
    finishes = FinishCounter()
    prefixes = prefix_choice[:len(arrivals)]
    workload = RequestTrace.from_columns(
        arrivals, prompts, outputs,
        extras={"prefix_id": prefixes,
                "prefix_tokens": [None if p is None else min(50, n)
                                  for p, n in zip(prefixes, prompts, strict=True)]})
    result = simulate(deployment, workload, recorders=[checker, finishes])
    assert result.ok, result.error
    _check_finishes_once(finishes.finished, len(arrivals))
    rows = result.requests
    assert rows["output_tokens"].sum() == sum(outputs)  # tokens conserved
    assert (rows["first_scheduled_s"] >= rows["arrival_s"]).all()
    assert (rows["first_token_s"] > rows["first_scheduled_s"]).all()
    assert (rows["finish_s"] >= rows["first_token_s"]).all()
    assert result.summary["batches"]["num_steps"] == checker.num_steps


def test_kv_pressure_preempts_and_everyone_still_finishes(tiny_model_path: str) -> None:
    """20 requests of 100+60 tokens on 40 blocks of 16 (640 tokens): preemption must
    happen, and every request still produces all its tokens."""
    for mode in ("recompute", "swap"):
        deployment = make_deployment(tiny_model_path, "a100", **{
            "scheduler.policy": "stall-free", "scheduler.max_num_batched_tokens": 512,
            "scheduler.preemption_mode": mode, "scheduler.max_model_len": 256,
            "scheduler.num_gpu_blocks_override": 40,
        })
        checker = StepChecker(512, 256, 40, chunked=True)
        result = simulate(deployment, make_trace([0.0] * 20, [100] * 20, [60] * 20),
                          recorders=[checker])
        assert result.ok
        assert checker.num_preempted > 0 and result.summary["preemptions"] > 0
        assert checker.max_used_blocks <= 40
        preempted = result.requests[result.requests["num_preemptions"] > 0]
        assert len(preempted) > 0 and preempted["finish_s"].notna().all()
        assert result.summary["kv_cache"]["peak_usage"] <= 1.0


def test_pipeline_parallel_keeps_several_micro_batches_in_flight() -> None:
    """With pp=4, four requests arriving together run as overlapping micro-batches, so the
    last first token comes well before 4 x one request's TTFT."""
    deployment = make_deployment("llama-3-8b", "a100", **{
        "parallelism.pp": 4, "scheduler.policy": "stall-free",
        "scheduler.max_num_batched_tokens": 512})
    one = simulate(deployment, make_trace([0.0], [512], [1])).requests["ttft_s"].iloc[0]
    four = simulate(deployment, make_trace([0.0] * 4, [512] * 4, [1] * 4)).requests
    assert four["ttft_s"].max() < 2.0 * one
    assert four["ttft_s"].max() > one


def test_routers_spread_requests() -> None:
    """12 long requests 1 ms apart on 3 replicas: round robin and least-outstanding split
    them 4/4/4 (none finishes meanwhile); least-KV sends the first three to distinct
    replicas (each new one sees the others' KV already allocated)."""
    trace = make_trace(list(np.arange(12) * 0.001), [100] * 12, [500] * 12)
    for router in ("round_robin", "least_outstanding"):
        result = simulate(make_deployment("llama-3-8b", "h100", replicas=3, router=router),
                          trace)
        assert sorted(result.requests["replica_id"].value_counts().tolist()) == [4, 4, 4]
    result = simulate(make_deployment("llama-3-8b", "h100", replicas=3, router="least_kv"),
                      trace)
    assert sorted(result.requests["replica_id"].iloc[:3]) == [0, 1, 2]


def test_goodput_counts_requests_meeting_both_slos() -> None:
    """One request at a time: the second waits for the first, so a TTFT SLO just above the
    first's TTFT is met by half the requests."""
    trace = make_trace([0.0, 0.0], [100, 100], [10, 10])
    serial = {"scheduler.max_num_seqs": 1}
    base = simulate(make_deployment("llama-3-8b", "a100", **serial), trace).requests
    ttft_slo = float(base["ttft_s"].min()) * 1.01
    result = simulate(make_deployment("llama-3-8b", "a100", **serial,
                                      **{"slo.ttft_s": ttft_slo}), trace)
    goodput = result.summary["goodput"]
    assert goodput["slo_attainment"] == 0.5
    assert goodput["requests_per_s"] == pytest.approx(1 / result.summary["makespan_s"])


def test_weights_that_do_not_fit_are_a_clear_error() -> None:
    result = simulate(make_deployment("llama-3-70b", "a100"), make_trace([0.0], [10], [1]))
    assert not result.ok
    assert "weights need 131.4 GiB" in result.error and "raise tp or pp" in result.error
    assert "\n" not in result.error


def test_a_request_longer_than_max_model_len_is_rejected_and_the_run_goes_on() -> None:
    """As vLLM answers 400: the long request is counted and named in the summary, the
    others run, and submitted = finished + rejected."""
    result = simulate(make_deployment("llama-2-7b", "a100"),
                      make_trace([0.0, 1.0, 2.0], [100, 4000, 50], [10, 200, 5]))
    assert result.ok, result.error
    assert result.requests["request_id"].tolist() == [0, 2]
    admitted = result.summary["requests"]
    assert (admitted["submitted"], admitted["finished"], admitted["rejected"]) == (3, 2, 1)
    assert admitted["rejected_requests"][0]["request_id"] == 1
    assert "max_model_len=4096" in admitted["rejected_requests"][0]["reason"]
    assert result.summary["num_requests"] == 2
    everyone = simulate(make_deployment("llama-2-7b", "a100"), make_trace([0.0], [4000], [200]))
    assert not everyone.ok and "every request is longer than max_model_len=4096" in everyone.error


def test_max_model_len_that_does_not_fit_kv_names_the_fix() -> None:
    """100 blocks of 16 hold 1,600 tokens, below Llama-3-8B's 8,192-token context."""
    result = simulate(make_deployment("llama-3-8b", "h100",
                                      **{"scheduler.num_gpu_blocks_override": 100}),
                      make_trace([0.0], [10], [1]))
    assert not result.ok and "--max-model-len 1600" in result.error


def test_tpot_of_means_is_the_runs_per_token_figure() -> None:
    """(mean E2E - mean TTFT) / (mean outputs - 1), over the whole run: with outputs of 5
    and 9 tokens, mean 7, it divides by 6, not per request."""
    result = simulate(make_deployment("llama-3-8b", "h100"), make_trace([0.0, 50.0], [64, 64],
                                                                        [5, 9]))
    rows = result.requests
    expected = (rows["e2e_s"].mean() - rows["ttft_s"].mean()) / 6
    assert result.summary["tpot_of_means_s"] == pytest.approx(expected, rel=1e-12)


def test_stability_reads_the_queue_trend() -> None:
    """Hand-made rows: a queue that stays at 50 ms is STABLE (slope 0); one growing by 0.2 s
    per second of arrivals is OVERLOADED, the slope reported."""
    arrival = np.linspace(0, 100, 200)
    flat = pd.DataFrame({"arrival_s": arrival, "queueing_delay_s": np.full(200, 0.05)})
    growing = pd.DataFrame({"arrival_s": arrival, "queueing_delay_s": 0.2 * arrival})
    assert stability(flat)["state"] == "STABLE"
    assert stability(flat)["queueing_slope"] == pytest.approx(0.0, abs=1e-9)
    assert stability(growing)["state"] == "OVERLOADED"
    assert stability(growing)["queueing_slope"] == pytest.approx(0.2)


def test_a_rate_beyond_capacity_is_overloaded_and_a_low_one_is_not() -> None:
    """One H100 and 1,000-token prompts: 2 req/s is served, 200 req/s is not."""
    lengths = [1000] * 400
    for rate, state in ((2.0, "STABLE"), (200.0, "OVERLOADED")):
        trace = make_trace([i / rate for i in range(400)], lengths, [100] * 400)
        summary = simulate(make_deployment("llama-3-8b", "h100"), trace).summary
        assert summary["stability"]["state"] == state, summary["stability"]
