"""Skipped decode runs give the step loop's results to the last bit, and skip steps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from profiles.cost_model import BatchShape
from simulator.serving import arrival_prefills, decode_runs
from simulator.serving.build import resolve
from simulator.serving.engine import simulate
from simulator.serving.scheduler import Scheduler
from tests.conftest import make_deployment
from workloads.schema import RequestTrace


def _trace(seed: int, num_requests: int, rate: float) -> RequestTrace:
    """Random arrivals and lengths; a third of the prompts start with one of two shared
    256-token system prompts (which only prefix caching sees)."""
    rng = np.random.default_rng(seed)
    prompts = rng.integers(1, 900, num_requests)
    shared = [f"sys-{rng.integers(2)}" if p > 300 and rng.random() < 0.33 else None
              for p in prompts]
    return RequestTrace.from_columns(
        np.cumsum(rng.exponential(1 / rate, num_requests)), prompts,
        rng.integers(1, 400, num_requests),
        extras={"prefix_id": shared, "prefix_tokens": [256 if s else None for s in shared]})


CASES = {
    # the bare vLLM V0 policy, as the speed benchmark runs it
    "prefill-first": ({"scheduler.policy": "prefill-first"}, 0, 300, 8.0),
    # one replica with prefill-first: runs take the arrivals and their prefill steps
    # themselves, and go on through idle gaps at this low rate
    "prefill-first-idle": ({"scheduler.policy": "prefill-first"}, 7, 200, 0.5),
    # ... and through a pool small enough to preempt, where runs stop for the step loop
    "prefill-first-preempting": ({"scheduler.policy": "prefill-first",
                                  "scheduler.num_gpu_blocks_override": 300,
                                  "scheduler.max_model_len": 1400}, 8, 300, 30.0),
    # ... and with prefix caching over shared system prompts
    "prefill-first-caching": ({"scheduler.policy": "prefill-first",
                               "scheduler.enable_prefix_caching": True}, 13, 300, 8.0),
    # vLLM V0: prefill-first with its CPU overhead before every step
    "vllm-v0": ({"engine": "vllm-v0"}, 9, 300, 8.0),
    # Sarathi-Serve: chunked prefills mixed with decodes, its CPU overhead per step
    "sarathi": ({"engine": "sarathi-serve"}, 1, 300, 12.0),
    # two replicas behind a router; a pool small enough to preempt (its queue never
    # empties, so few runs are skipped: a waiting request may be admitted at any step)
    "replicas-preempting": ({"replicas": 2, "router": "least_kv",
                             "scheduler.num_gpu_blocks_override": 300,
                             "scheduler.max_model_len": 1400}, 2, 400, 40.0),
    # today's vLLM (the default engine): asynchronous scheduling's admission lag
    "vllm-v1-0.15": ({"engine": "vllm-v1-0.15", "replicas": 2}, 6, 300, 15.0),
    # ... with device time per sequence of a step (a filtering sampler)
    "device-per-seq": ({"engine": "vllm-v1-0.15", "cpu_overhead.device_step_s": 5e-4,
                        "cpu_overhead.device_per_seq_s": 3e-5,
                        "cpu_overhead.async_scheduling": True}, 14, 300, 12.0),
    # three replicas, routed blind to load: runs take the steps arrivals come during
    "round-robin": ({"replicas": 3, "router": "round_robin"}, 4, 400, 25.0),
    # prefix caching with shared system prompts: runs once requests are past them
    "prefix-caching": ({"scheduler.enable_prefix_caching": True}, 5, 300, 8.0),
    # TP 2 on a fitted GPU
    "tp2": ({"parallelism.tp": 2, "gpu": "h100"}, 3, 200, 10.0),
    # two pipeline stages, lightly loaded (runs of the one micro-batch) and loaded
    "pp2-light": ({"parallelism.pp": 2}, 10, 150, 0.5),
    "pp2-loaded": ({"parallelism.pp": 2, "replicas": 2}, 11, 300, 12.0),
    # ... with vLLM V0's host overhead before each step
    "pp2-vllm-v0": ({"parallelism.pp": 2, "engine": "vllm-v0"}, 12, 150, 1.0),
}


@pytest.mark.parametrize("name", sorted(name for name in CASES
                                         if name.startswith(("prefill-first", "vllm-v0"))))
def test_a_fused_prefill_step_is_the_schedulers(name: str, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    """With decode runs taking the arrivals, the fused prefill-only step
    (arrival_prefills) gives what the scheduler's own calls give, exactly, and runs."""
    fields, seed, num_requests, rate = CASES[name]
    deployment = make_deployment("llama-3-8b", "a100", **fields)
    workload = _trace(seed, num_requests, rate)
    calls = {"n": 0}
    fused_step = arrival_prefills.prefill_step

    def counted(*args):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return fused_step(*args)

    monkeypatch.setattr(decode_runs, "prefill_step", counted)
    results = {}
    for fused in (False, True):
        monkeypatch.setattr(arrival_prefills, "FUSED", fused)
        results[fused] = simulate(deployment, workload)
    assert results[True].ok and results[False].ok
    pd.testing.assert_frame_equal(results[True].requests, results[False].requests,
                                  check_exact=True)
    assert {k: v for k, v in results[True].summary.items() if k != "run"} == \
        {k: v for k, v in results[False].summary.items() if k != "run"}
    if name.endswith(("preempting", "caching")):
        # the queue rarely empties, or a third of the prompts share a system prompt (those
        # steps stay the scheduler's): fewer fused steps
        assert calls["n"] > 0
    else:
        assert calls["n"] > num_requests // 4, calls["n"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_skipping_decode_runs_changes_no_result(name: str, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    """Rows, summaries and step counts are equal (exactly: check_exact) with and without
    the skipping, and the skipping builds fewer steps through the scheduler (far fewer
    where the queue empties between arrivals)."""
    fields, seed, num_requests, rate = CASES[name]
    fields = dict(fields)
    gpu = fields.pop("gpu", "a100")
    deployment = make_deployment("llama-3-8b", gpu, **fields)
    workload = _trace(seed, num_requests, rate)
    calls = {"n": 0}
    schedule = Scheduler.schedule

    def counted(self: Scheduler, now_s: float):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return schedule(self, now_s)

    monkeypatch.setattr(Scheduler, "schedule", counted)
    results = {}
    for skip in (False, True):
        monkeypatch.setattr(decode_runs, "SKIP_STEPS", skip)
        calls["n"] = 0
        results[skip] = (simulate(deployment, workload), calls["n"])
    (reference, stepped), (fast, skipped) = results[False], results[True]
    assert reference.ok and fast.ok, (reference.error, fast.error)
    pd.testing.assert_frame_equal(fast.requests, reference.requests, check_exact=True)
    assert {k: v for k, v in fast.summary.items() if k != "run"} == \
        {k: v for k, v in reference.summary.items() if k != "run"}
    if name in ("prefill-first", "prefill-first-idle", "vllm-v0"):
        # arrivals and their prefills run inside the runs: few decisions are left
        assert skipped < 0.25 * stepped, (skipped, stepped)
    if name == "pp2-loaded":
        # micro-batches overlap in the stages under load: few runs (a run is the one
        # micro-batch's), the same results
        assert skipped <= stepped
    elif name.endswith("preempting"):
        assert reference.summary["preemptions"] > 0 and skipped < stepped
    elif name == "prefix-caching":
        assert reference.summary["prefix_cache"]["hit_rate"] > 0.05
        assert skipped < 0.7 * stepped, (skipped, stepped)
    else:
        assert skipped < 0.7 * stepped, (skipped, stepped)


def test_an_observer_of_every_step_sees_every_step() -> None:
    """A step recorder (tests, the Perfetto trace) turns the skipping off: it is called
    once per step, as many steps as the summary counts."""
    seen = []

    class Recorder:
        def on_step(self, replica_id, spans, plan, cost, used):  # type: ignore[no-untyped-def]
            seen.append(len(plan.requests))

    result = simulate(make_deployment("llama-3-8b", "a100"), _trace(4, 50, 5.0),
                      recorders=[Recorder()])
    assert result.ok and len(seen) == result.summary["batches"]["num_steps"]


@pytest.mark.parametrize(("model", "gpu", "tp", "fields"), [
    ("llama-3-8b", "a100", 1, {}), ("llama-3-8b", "h100", 2, {}),
    ("llama-3-70b", "h100", 4, {"quantization": "fp8"}),
    ("llama-3-8b", "l40s", 1, {"kv_cache_dtype": "fp8"}),
])
def test_a_decode_step_is_priced_as_predict_prices_it(model: str, gpu: str, tp: int,
                                                      fields: dict[str, str]) -> None:
    """decode_step's seconds and FLOPs equal predict's for the same decode-only batch,
    exactly, over batch sizes 1-300 and contexts up to 128k tokens each."""
    cost = resolve(make_deployment(model, gpu, **{"parallelism.tp": tp}, **fields)
                   ).cost_models[0]
    assert cost.prices_decodes_alone
    rng = np.random.default_rng(0)
    for num_seqs in [1, 2, 3, 7, 16, 64, 127, 128, 255, 300]:
        for _ in range(20):
            contexts = rng.integers(1, 128_000, num_seqs).tolist()
            predicted = cost.predict(BatchShape([1] * num_seqs, contexts, num_seqs))
            assert cost.decode_step(num_seqs, sum(contexts)) == (predicted.stage_s[0],
                                                                  predicted.flops)


@pytest.mark.parametrize(("gpu", "pp"), [("a100", 2), ("h100", 4), ("l40s", 2)])
def test_decode_stages_are_priced_as_predict_prices_them(gpu: str, pp: int) -> None:
    """With pipeline stages, decode_stages gives predict's stage times and FLOPs for a
    decode-only batch, exactly (a pipelined replica's decode runs)."""
    cost = resolve(make_deployment("llama-3-8b", gpu, **{"parallelism.pp": pp})
                   ).cost_models[0]
    assert cost.prices_decodes_alone and cost.num_stages == pp
    rng = np.random.default_rng(1)
    for num_seqs in [1, 2, 5, 33, 128]:
        for _ in range(10):
            contexts = rng.integers(1, 32_000, num_seqs).tolist()
            predicted = cost.predict(BatchShape([1] * num_seqs, contexts, num_seqs))
            assert cost.decode_stages(num_seqs, sum(contexts)) == (predicted.stage_s,
                                                                   predicted.flops)


def test_a_run_pauses_the_collector_and_leaves_it_as_it_was() -> None:
    """simulate() pauses the cyclic collector while it runs (simulator.collection) and
    restores its state after, on success and on error."""
    import gc

    from simulator.collection import collector_paused

    deployment = make_deployment("llama-3-8b", "a100")
    workload = _trace(0, 20, 5.0)
    assert gc.isenabled()
    assert simulate(deployment, workload).ok
    assert gc.isenabled()
    gc.disable()
    try:
        assert simulate(deployment, workload).ok
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(ZeroDivisionError), collector_paused():
        assert not gc.isenabled()
        _ = 1 / 0
    assert gc.isenabled()
