"""Prefill/decode disaggregation: exact single-request times, transfers on shared links,
decode-pool admission, routing between pools, placements and bad deployments."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.cost_model import BatchShape
from profiles.errors import ClusterSimError
from profiles.hardware import GB, load_gpu
from profiles.models import load_model
from simulator import build_deployment, simulate
from simulator.serving.build import resolve_pools
from simulator.serving.disagg import DISAGG_COLUMNS
from simulator.serving.metrics import REQUEST_COLUMNS
from simulator.serving.transfers import LinkSharing
from tests.conftest import make_trace


def disagg(prefill: dict[str, Any] | None = None, decode: dict[str, Any] | None = None,
           model: str = "llama-3-8b", gpu: str = "h100", **extra: Any) -> Any:
    block: dict[str, Any] = {"prefill": prefill or {}, "decode": decode or {},
                             "transfer": {"mode": "after_prefill"}}
    block.update(extra)
    return build_deployment({"model": model, "gpu": gpu, "engine": "none",
                             "disaggregation": block})


def nic_bytes_per_s(gpu: str) -> float:
    spec = load_gpu(gpu)
    return spec.nic_bandwidth_gbps * GB * spec.efficiency.network


def test_single_request_e2e_is_prefill_plus_transfer_plus_decode() -> None:
    deployment = disagg({"gpu": "h100"}, {"gpu": "a100"})
    prompt, outputs = 900, 6
    result = simulate(deployment, make_trace([0.0], [prompt], [outputs]))
    assert result.ok, result.error
    pools = resolve_pools(deployment)
    prefill_s = pools.prefill.cost_models[0].predict(BatchShape([prompt], [0], 1)).total_s
    kv_bytes = prompt * load_model("llama-3-8b").kv_bytes_per_token
    bandwidth = min(nic_bytes_per_s("h100"), nic_bytes_per_s("a100"))
    # the path: GPU - node switch - network - node switch - GPU
    latency = (load_gpu("h100").scale_up.latency_us + load_gpu("h100").nic_latency_us
               + load_gpu("a100").nic_latency_us + load_gpu("a100").scale_up.latency_us) * 1e-6
    transfer_s = kv_bytes / bandwidth + latency
    decode = pools.decode.cost_models[0]
    decode_s = sum(decode.predict(BatchShape([1], [prompt + k], 1)).total_s
                   for k in range(outputs - 1))
    assert list(result.requests.columns) == [*REQUEST_COLUMNS, *DISAGG_COLUMNS]
    row = result.requests.iloc[0]
    assert row["ttft_s"] == pytest.approx(prefill_s, rel=1e-12)
    assert row["kv_transfer_s"] == pytest.approx(transfer_s, rel=1e-9)
    assert row["e2e_s"] == pytest.approx(prefill_s + transfer_s + decode_s, rel=1e-9)
    assert row["kv_wait_s"] == 0.0
    assert row["prefill_replica_id"] == 0 and row["replica_id"] == 1
    summary = result.summary
    assert summary["disaggregation"]["ratio"] == "1P:1D"
    assert summary["disaggregation"]["transfer"]["bytes"] == pytest.approx(kv_bytes)
    assert summary["run"]["gpu"] == "H100-SXM5-80GB + A100-SXM4-80GB"


@pytest.mark.parametrize("decode_gpu", ["h100", "a100"])
def test_transfer_time_scales_with_prompt_length_and_link_bandwidth(decode_gpu: str) -> None:
    deployment = disagg({"gpu": "h100"}, {"gpu": decode_gpu})
    times = {}
    for prompt in (512, 1024, 2048):
        row = simulate(deployment, make_trace([0.0], [prompt], [3])).requests.iloc[0]
        times[prompt] = row["kv_transfer_s"]
    latency = 2 * times[512] - times[1024]  # t = latency + bytes / bandwidth
    assert times[2048] - latency == pytest.approx(4 * (times[512] - latency), rel=1e-9)
    bandwidth = min(nic_bytes_per_s("h100"), nic_bytes_per_s(decode_gpu))
    per_token = load_model("llama-3-8b").kv_bytes_per_token
    assert times[1024] - latency == pytest.approx(1024 * per_token / bandwidth, rel=1e-9)


def test_two_transfers_sharing_a_port_each_take_twice_as_long() -> None:
    env = simpy.Environment()
    port_a, port_b, port_c = ("a", "out", "network"), ("b", "in", "network"), \
        ("c", "in", "network")
    links = LinkSharing(env, {port_a: 10.0, port_b: 10.0, port_c: 10.0})
    ends: dict[str, float] = {}
    links.send([((port_a, port_b), 100.0)], 0.0, lambda: ends.setdefault("alone", env.now))
    env.run()
    start = env.now
    links.send([((port_a, port_b), 100.0)], 0.0, lambda: ends.setdefault("one", env.now))
    links.send([((port_a, port_c), 100.0)], 0.0, lambda: ends.setdefault("two", env.now))
    env.run()
    assert ends["alone"] == pytest.approx(10.0)
    assert ends["one"] - start == pytest.approx(20.0)
    assert ends["two"] - start == pytest.approx(20.0)


def test_a_late_flow_slows_an_early_one_only_while_both_run() -> None:
    """Max-min sharing: 100 bytes at 10 B/s, a second 30-byte flow joins at t=5 on the
    same port (the first has 50 left); both run at 5 B/s until the second ends at t=11,
    then the first has 20 bytes left at 10 B/s: it ends at 13."""
    env = simpy.Environment()
    port = ("a", "out", "network")
    links = LinkSharing(env, {port: 10.0})
    ends: dict[str, float] = {}
    links.send([((port,), 100.0)], 0.0, lambda: ends.setdefault("first", env.now))

    def later() -> Any:
        yield env.timeout(5.0)
        links.send([((port,), 30.0)], 0.0, lambda: ends.setdefault("second", env.now))

    env.process(later())
    env.run()
    assert ends["second"] == pytest.approx(11.0)
    assert ends["first"] == pytest.approx(13.0)
    assert links.stats[port].bytes == pytest.approx(130.0)
    assert links.stats[port].busy_s == pytest.approx(13.0)


def test_two_simultaneous_transfers_into_one_decode_replica_share_its_link() -> None:
    """Two prefill replicas finish equal prompts at the same instant and both send to
    the one decode replica: its NIC carries both, so each transfer takes twice as long
    (minus the latency) as one alone."""
    deployment = disagg({"replicas": 2}, {"replicas": 1})
    alone = simulate(deployment, make_trace([0.0], [1000], [4])).requests
    both = simulate(deployment, make_trace([0.0, 0.0], [1000, 1000], [4, 4])).requests
    assert set(both["prefill_replica_id"]) == {0, 1}
    gpu = load_gpu("h100")
    latency = 2 * (gpu.scale_up.latency_us + gpu.nic_latency_us) * 1e-6
    one = alone["kv_transfer_s"].iloc[0] - latency
    assert (both["kv_transfer_s"] - latency).tolist() == pytest.approx([2 * one, 2 * one],
                                                                      rel=1e-9)


def test_decode_pool_kv_exhaustion_delays_admission_and_loses_nothing() -> None:
    """A decode replica with room for about two requests' KV: the rest wait, holding
    their prefill-side KV, and every request still finishes with all its tokens."""
    deployment = disagg(
        {"replicas": 2},
        {"scheduler": {"num_gpu_blocks_override": 48, "max_model_len": 768}})
    n = 12
    trace = make_trace(np.linspace(0, 0.05, n).tolist(), [300] * n, [40] * n)
    result = simulate(deployment, trace)
    assert result.ok, result.error
    rows = result.requests
    assert len(rows) == n and rows["finish_s"].notna().all()
    assert (rows["output_tokens"] == 40).all()
    assert rows["kv_wait_s"].max() > 0.05  # some waited for decode-side blocks
    assert (rows["kv_wait_s"] >= 0).all()
    # causality: prefill, then the wait, then the transfer, then decode
    assert (rows["first_token_s"] <= rows["first_token_s"] + rows["kv_wait_s"]).all()
    assert (rows["finish_s"] >= rows["first_token_s"] + rows["kv_wait_s"]
            + rows["kv_transfer_s"]).all()
    assert result.summary["kv_cache"]["peak_usage"] <= 1.0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.floats(0, 2), st.integers(1, 1500), st.integers(1, 60)),
                min_size=1, max_size=25),
       st.integers(0, 800), st.sampled_from(["layerwise", "after_prefill"]),
       st.sampled_from(["least_kv", "round_robin", "nearest"]))
def test_every_request_finishes_once_in_causal_order(
        requests: list[tuple[float, int, int]], threshold: int, mode: str,
        router: str) -> None:
    requests.sort()
    deployment = build_deployment({
        "model": "llama-3-8b", "gpu": "h100", "disaggregation": {
            "prefill": {"replicas": 2}, "decode": {"replicas": 2, "gpu": "a100",
                                                   "scheduler": {"num_gpu_blocks_override": 300,
                                                                 "max_model_len": 2048}},
            "threshold_tokens": threshold, "transfer": {"mode": mode},
            "decode_router": router}})
    arrival, prompt, output = zip(*requests, strict=True)
    result = simulate(deployment, make_trace(arrival, prompt, output))
    assert result.ok, result.error
    rows = result.requests
    assert len(rows) == len(requests)
    assert (rows["arrival_s"] <= rows["first_scheduled_s"]).all()
    assert (rows["first_scheduled_s"] < rows["first_token_s"]).all()
    assert (rows["first_token_s"] <= rows["finish_s"]).all()
    local = rows["prompt_tokens"] <= threshold
    assert (rows.loc[local, "prefilled_on"] == "decode_pool").all()
    assert rows.loc[local, "kv_transfer_s"].isna().all()
    moved = ~local & (rows["output_tokens"] > 1)
    assert (rows.loc[moved, "kv_transfer_s"] > 0).all()


def test_threshold_keeps_short_prompts_on_the_decode_pool() -> None:
    deployment = disagg(threshold_tokens=256)
    rows = simulate(deployment, make_trace([0.0, 0.0], [100, 2000], [5, 5])).requests
    assert rows["prefilled_on"].tolist() == ["decode_pool", "prefill_pool"]
    assert np.isnan(rows["kv_transfer_s"].iloc[0]) and rows["kv_transfer_s"].iloc[1] > 0


def test_paired_placement_keeps_the_kv_inside_the_node() -> None:
    deployment = disagg({"replicas": 2, "parallelism": {"tp": 2}},
                        {"replicas": 2, "parallelism": {"tp": 2}}, placement="paired",
                        decode_router="nearest")
    result = simulate(deployment, make_trace([0.0, 0.0], [1200, 1200], [4, 4]))
    assert result.ok, result.error
    links = result.summary["disaggregation"]["links"]
    assert set(links) == {"scale_up"}
    pools = resolve_pools(deployment)
    nodes = {gpu.split(".")[0] for placement in pools.prefill.placements[:1]
             + pools.decode.placements[:1] for stage in placement.stage_gpus
             for gpu in stage}
    assert nodes == {"n0"}


def test_one_output_token_ends_at_the_prefill() -> None:
    rows = simulate(disagg(), make_trace([0.0], [500], [1])).requests
    assert rows["finish_s"].iloc[0] == rows["first_token_s"].iloc[0]
    assert np.isnan(rows["kv_transfer_s"].iloc[0])


def test_the_prefill_pool_budget_defaults_to_its_saturation_length() -> None:
    pools = resolve_pools(disagg({"scheduler": {"policy": "running-first"}}))  # chunked prefill
    budget = pools.prefill.scheduler.max_num_batched_tokens
    cost = pools.prefill.cost_models[0]
    per_token = {n: cost.predict(BatchShape([n], [0], 1)).total_s / n
                 for n in (512, 1024, 2048, 4096, 8192)}
    assert per_token[budget] <= 1.1 * min(per_token.values())
    smaller = [n for n in per_token if n < budget]
    assert all(per_token[n] > 1.1 * min(per_token.values()) for n in smaller)
    explicit = resolve_pools(disagg({"scheduler": {"max_num_batched_tokens": 3000,
                                                   "policy": "running-first"}}))
    assert explicit.prefill.scheduler.max_num_batched_tokens == 3000
    whole = resolve_pools(disagg({"scheduler": {"policy": "prefill-first"}}))  # no chunking
    assert whole.prefill.scheduler.max_num_batched_tokens == 8192  # the longest prompt


@pytest.mark.parametrize(("mapping", "message"), [
    ({"model": "llama-3-8b", "gpu": "h100", "replicas": 2,
      "disaggregation": {"prefill": {}, "decode": {}}}, "replicas: a disaggregated"),
    ({"model": "llama-3-8b", "disaggregation": {"prefill": {"gpu": "h100"}, "decode": {}}},
     "disaggregation.decode.gpu: missing"),
])
def test_bad_disaggregated_deployments_name_the_field(mapping: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(ClusterSimError, match=message):
        build_deployment(mapping)


def test_paired_placement_refuses_two_gpu_types() -> None:
    deployment = disagg({"gpu": "h100"}, {"gpu": "a100"}, placement="paired")
    result = simulate(deployment, make_trace([0.0], [100], [2]))
    assert not result.ok and "one GPU type" in str(result.error)


def test_a_pool_that_cannot_hold_the_model_is_named() -> None:
    deployment = disagg({"gpu": "h100", "parallelism": {"tp": 4}}, {"gpu": "l40s"},
                        model="llama-3-70b")
    result = simulate(deployment, make_trace([0.0], [100], [2]))
    assert not result.ok
    assert str(result.error).startswith("disaggregation.decode: llama-3-70b on L40S")
