"""The Perfetto trace: slices that never overlap on a track, named tracks, counters,
balanced per-request spans, and a bounded number of traced requests."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import pytest

from simulator import build_deployment, simulate
from workloads.generators import GeneratorSpec, generate

TRACE = generate(GeneratorSpec(
    num_requests=300, arrival={"kind": "poisson", "rate_per_s": 30},
    prompt={"kind": "lognormal", "mean": 700, "sigma": 0.6, "max": 3000},
    output={"kind": "lognormal", "mean": 60, "sigma": 0.6, "max": 400}, seed=5))

DEPLOYMENTS = {
    "tp2 pp2": {"model": "llama-3-8b", "gpu": "h100", "replicas": 2,
                "parallelism": {"tp": 2, "pp": 2}, "scheduler": {"policy": "stall-free"}},
    "vllm-v1 engine": {"model": "llama-3-8b", "gpu": "a100", "engine": "vllm-v1"},
    "disaggregated": {"model": "llama-3-8b", "gpu": "h100", "disaggregation": {
        "prefill": {"replicas": 1}, "decode": {"replicas": 2, "gpu": "a100"}}},
}


def _ns(us: float) -> int:
    return round(us * 1000)


def check_trace(doc: dict[str, Any]) -> dict[str, Any]:
    events = doc["traceEvents"]
    by_track: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    names = {}
    counters = 0
    open_spans: dict[tuple[int, str], int] = {}
    spans = defaultdict(set)
    for event in events:
        assert {"ph", "pid"} <= set(event), event
        if event["ph"] == "X":
            assert event["dur"] >= 0
            by_track[(event["pid"], event["tid"])].append((_ns(event["ts"]),
                                                            _ns(event["dur"])))
        elif event["ph"] == "M" and event["name"] == "process_name":
            names[event["pid"]] = event["args"]["name"]
        elif event["ph"] == "C":
            counters += 1
            assert set(event["args"]) == {"requests", "tokens", "kv_used_blocks"}
        elif event["ph"] == "b":
            key = (event["id"], event["name"])
            assert key not in open_spans
            open_spans[key] = _ns(event["ts"])
            spans[event["id"]].add(event["name"])
        elif event["ph"] == "e":
            start = open_spans.pop((event["id"], event["name"]))
            assert _ns(event["ts"]) > start
    assert not open_spans, "every async slice is closed"
    for track, slices in by_track.items():
        slices.sort()
        for (start, dur), (next_start, _) in itertools.pairwise(slices):
            assert start + dur <= next_start, (track, start, dur, next_start)
    return {"names": names, "counters": counters, "spans": spans}


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_trace_is_well_formed_and_never_overlaps(name: str) -> None:
    result = simulate(build_deployment(DEPLOYMENTS[name]), TRACE, record_trace=True,
                      trace_requests=100)
    assert result.ok, result.error
    found = check_trace(result.trace)
    assert found["counters"] == result.summary["batches"]["num_steps"]
    assert any(name.startswith("requests (first 100)") for name in found["names"].values())
    assert len(found["spans"]) == 100  # the first 100 requests only
    assert all({"prefill"} <= phases for phases in found["spans"].values())
    replicas = [n for n in found["names"].values() if "replica" in n]
    assert replicas and all("(" in n and "tp=" in n for n in replicas)


def test_colocated_request_spans_match_the_request_rows() -> None:
    result = simulate(build_deployment(DEPLOYMENTS["vllm-v1 engine"]), TRACE,
                      record_trace=True, trace_requests=5)
    events = [e for e in result.trace["traceEvents"] if e["ph"] in "be" and e["id"] == 0]
    row = result.requests.iloc[0]
    begins = {e["name"]: e["ts"] for e in events if e["ph"] == "b"}
    ends = {e["name"]: e["ts"] for e in events if e["ph"] == "e"}
    assert begins["prefill"] == pytest.approx(row["first_scheduled_s"] * 1e6, abs=1e-3)
    assert ends["decode"] == pytest.approx(row["finish_s"] * 1e6, abs=1e-3)
    assert ends["prefill"] == begins["decode"]


@pytest.mark.parametrize("plan", [
    {"tp": 2, "pp": 4, "dp": 1, "schedule": "1f1b"},
    {"tp": 2, "pp": 2, "dp": 2, "schedule": "interleaved", "virtual_stages": 2,
     "recompute": "selective", "sequence_parallel": True},
])
def test_a_training_trace_is_well_formed_named_and_never_overlaps(plan: dict) -> None:
    from simulator import simulate_training
    from workloads.training import TrainingJob

    job = TrainingJob(model="llama-3-8b", gpu="h100", seq_len=4096, global_batch=16,
                      micro_batch=1, plan=plan)
    result = simulate_training(job, record_trace=True)
    found = check_trace(result.trace)
    assert set(found["names"].values()) == {f"pipeline stage {s}" for s in range(plan["pp"])}
    slices = [e for e in result.trace["traceEvents"] if e["ph"] == "X"]
    assert {e["name"] for e in slices} >= {"optimizer", "dp grad reduce"}
    ends = max(_ns(e["ts"]) + _ns(e["dur"]) for e in slices)
    assert ends == pytest.approx(round(result.step_s * 1e9), abs=len(slices))
