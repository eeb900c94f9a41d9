"""Offloading in serving: weights streamed from host or NVMe, KV swapped to the host."""

from __future__ import annotations

import pytest

from profiles.cost_model import BatchShape
from profiles.hardware import GB, GIB, load_gpu
from profiles.models import load_model
from simulator import build_deployment, simulate
from simulator.serving.build import resolve
from tests.conftest import make_trace
from workloads.schema import RequestTrace


def seventy_b_on_one_h100(**offload: object) -> object:
    return build_deployment({"model": "llama-3-70b", "gpu": "h100",
                             "scheduler": {"max_model_len": 4096}, "offload": offload})


def test_a_model_larger_than_the_gpu_runs_with_weight_offloading() -> None:
    """Llama-3-70B's 131 GiB of bf16 weights on one 80 GB H100: refused as it is (the
    message names the offload knob), served with 80 GiB offloaded; every step then
    streams those 80 GiB over PCIe, so a decode step takes at least their transfer
    time, and the in-place read (vLLM) adds it to the step."""
    refused = simulate(seventy_b_on_one_h100(), make_trace([0.0], [500], [4]))
    assert not refused.ok and "offload.cpu_offload_gb" in str(refused.error)
    deployment = seventy_b_on_one_h100(cpu_offload_gb=80)
    result = simulate(deployment, make_trace([0.0, 0.5], [500, 900], [6, 6]))
    assert result.ok, result.error
    assert result.requests["finish_s"].notna().all()
    gpu = load_gpu("h100")
    stream_s = 80 * GIB / (gpu.host_link.bandwidth_gbps * GB)
    resolved = resolve(deployment)
    assert resolved.memory.weight_bytes == pytest.approx(
        load_model("llama-3-70b").num_params * 2 - 80 * GIB, rel=0.01)
    cost = resolved.cost_models[0]
    decode = cost.predict(BatchShape([1], [1000], 1))
    assert decode.total_s >= stream_s
    hbm_s = 80 * GIB / (gpu.hbm_bandwidth_gbps * GB * gpu.efficiency.memory)
    assert decode.operator_s["weight_stream"] == pytest.approx(stream_s - hbm_s, rel=1e-9)
    assert result.summary["tpot_s"]["mean"] >= stream_s


def test_prefetch_hides_compute_under_the_stream_or_the_stream_under_compute() -> None:
    """FlexGen-style prefetch: a step takes the longer of its compute and the stream."""
    inplace = resolve(seventy_b_on_one_h100(cpu_offload_gb=80)).cost_models[0]
    prefetch = resolve(seventy_b_on_one_h100(cpu_offload_gb=80, prefetch=True)).cost_models[0]
    plain = resolve(build_deployment({"model": "llama-3-70b", "gpu": "h100",
                                      "parallelism": {"tp": 2}})).cost_models[0]
    stream_s = 80 * GIB / (load_gpu("h100").host_link.bandwidth_gbps * GB)
    for batch in (BatchShape([1], [1000], 1), BatchShape([4096], [0], 1)):
        assert prefetch.predict(batch).total_s == pytest.approx(
            max(stream_s, prefetch.inner.predict(batch).total_s))
        assert prefetch.predict(batch).total_s <= inplace.predict(batch).total_s
    assert plain.predict(BatchShape([1], [1000], 1)).total_s < stream_s


def test_nvme_streams_at_the_drive_rate_and_capacity_is_checked() -> None:
    gpu = load_gpu("h100")
    assert gpu.host is not None
    nvme = resolve(seventy_b_on_one_h100(cpu_offload_gb=80, weights_tier="nvme"))
    stream = nvme.cost_models[0].stream
    assert stream.bandwidth_bytes_per_s == min(gpu.host.nvme_read_gbps,
                                               gpu.host_link.bandwidth_gbps) * GB
    too_much = simulate(build_deployment({
        "model": "llama-3.1-405b", "gpu": "h100", "scheduler": {"max_model_len": 4096},
        "offload": {"cpu_offload_gb": 700}}), make_trace([0.0], [10], [2]))
    assert not too_much.ok and "host DRAM per GPU" in str(too_much.error)
    more_than_weights = simulate(build_deployment({
        "model": "llama-3-8b", "gpu": "h100", "offload": {"cpu_offload_gb": 20}}),
        make_trace([0.0], [10], [2]))
    assert not more_than_weights.ok and "exceeds the" in str(more_than_weights.error)


def test_swapped_kv_returns_intact_and_the_swap_costs_bytes_over_the_host_link() -> None:
    """Swap preemption under a tiny KV pool: every request finishes with all its tokens;
    a step's swap term is exactly the swapped tokens' KV bytes per GPU over PCIe."""
    deployment = build_deployment({
        "model": "llama-3-8b", "gpu": "a100", "parallelism": {"tp": 2}, "engine": "none",
        "scheduler": {"policy": "prefill-first", "preemption_mode": "swap",
                      "num_gpu_blocks_override": 40, "max_model_len": 600}})
    n = 10
    result = simulate(deployment, make_trace([0.0] * n, [200] * n, [150] * n))
    assert result.ok, result.error
    rows = result.requests
    assert result.summary["preemptions"] > 0
    assert rows["finish_s"].notna().all() and (rows["output_tokens"] == 150).all()
    cost = resolve(deployment).cost_models[0]
    base = BatchShape([1, 1], [300, 300], 2)
    swapped = BatchShape([1, 1], [300, 300], 2, swap_in_tokens=320)
    gpu, model = load_gpu("a100"), load_model("llama-3-8b")
    expected = 320 * model.kv_bytes_per_token / 2 / (gpu.host_link.bandwidth_gbps * GB)
    assert swapped.num_tokens == base.num_tokens
    assert cost.predict(swapped).total_s - cost.predict(base).total_s == pytest.approx(
        expected, rel=1e-9)
    assert cost.predict(swapped).operator_s["kv_swap"] == pytest.approx(expected, rel=1e-9)


# ---- training: ZeRO-Offload and ZeRO-Infinity ---------------------------------------

def _job(plan: dict[str, object], model: str = "llama-2-13b", num_gpus: int = 1) -> object:
    from workloads.training import TrainingJob

    return TrainingJob(model=model, gpu="a100", num_gpus=num_gpus, seq_len=2048,
                       global_batch=8 * num_gpus, micro_batch=1, dtype="bf16",
                       plan={"recompute": "full", **plan})


def test_zero_offload_memory_is_the_papers_accounting() -> None:
    """ZeRO-Offload (Ren et al. 2021): 2 bytes per parameter of 16-bit weights stay on
    the GPU; gradients and the optimizer states (2 + 12 bytes per parameter of the GPU's
    partition) live on the host."""
    from simulator.training.step import simulate_training

    kept = simulate_training(_job({"dp": 4, "zero_stage": 2}, num_gpus=4)).memory
    params = kept.weights / 2  # the parameters one GPU holds
    assert kept.gradients == pytest.approx(2 * params / 4)
    assert kept.optimizer == pytest.approx(12 * params / 4)
    result = simulate_training(_job({"dp": 4, "zero_stage": 2, "offload": "cpu"},
                                    num_gpus=4))
    memory = result.memory
    assert memory.weights == pytest.approx(2 * params, rel=1e-12)
    assert memory.gradients == 0 and memory.optimizer == 0
    assert memory.host == pytest.approx((2 + 12) * params / 4, rel=1e-12)
    assert memory.params == pytest.approx(params / 4, rel=1e-12)


def test_a_plan_that_fits_only_with_zero_offload_pays_the_host_update() -> None:
    from simulator.training.step import ADAM_BYTES_PER_PARAM, simulate_training

    with pytest.raises(Exception, match="offload"):
        simulate_training(_job({"zero_stage": 1}))
    result = simulate_training(_job({"zero_stage": 1, "offload": "cpu"}))
    gpu = load_gpu("a100")
    assert gpu.host is not None
    params = result.memory.params
    cpu_adam = ADAM_BYTES_PER_PARAM * params / (gpu.host.dram_bandwidth_gbps * GB)
    upload = 2 * params / (gpu.host_link.bandwidth_gbps * GB)
    assert result.optimizer_s >= cpu_adam + upload
    assert result.optimizer_s <= cpu_adam + 2 * upload + 1e-9
    assert result.memory.total <= result.memory.capacity


def test_zero_infinity_puts_every_model_state_on_nvme() -> None:
    from simulator.training.step import simulate_training
    from workloads.training import ParallelPlan

    with pytest.raises(ValueError, match="zero_stage 3"):
        ParallelPlan(zero_stage=1, offload="nvme")
    with pytest.raises(ValueError, match="zero_stage 1, 2 or 3"):
        ParallelPlan(offload="cpu")
    result = simulate_training(_job({"zero_stage": 3, "offload": "nvme"}, model="llama-2-70b"))
    model = load_model("llama-2-70b")
    assert result.memory.nvme == pytest.approx(16 * result.memory.params, rel=1e-12)
    assert result.memory.params == pytest.approx(model.num_params, rel=0.02)
    layer = (model.attention_params_per_layer + model.mlp_params_per_layer
             + model.norm_params_per_layer)
    assert result.memory.weights == pytest.approx(4 * layer, rel=1e-12)
    assert result.memory.total < result.memory.capacity
    assert result.step_s > result.optimizer_s > 0


def test_the_training_planner_finds_plans_that_fit_only_with_offload() -> None:
    from planners.training import TrainingSpace, plan_training

    space = TrainingSpace(num_gpus=[1], tp=[1], pp=[1], zero_stage=[1, 3],
                          offload=["none", "cpu", "nvme"], micro_batch=[1],
                          recompute=["full"], schedules=["1f1b"])
    plan = plan_training(_job({"zero_stage": 1}), space)
    evaluated = [c for c in plan.candidates if c.status == "evaluated"]
    assert evaluated and all(c.plan["offload"] != "none" for c in evaluated)
    assert any(c.status == "infeasible" and c.plan["offload"] == "none"
               for c in plan.candidates)
    assert all(c.step_s > 0 for c in evaluated)


# ---- serving: the prefix cache's host tier -------------------------------------------

def _prefix_trace():
    from workloads.schema import RequestTrace

    # A (prefix p), then B (unrelated, long enough to evict A's blocks), then C (prefix p)
    return RequestTrace.from_columns(
        [0.0, 5.0, 10.0], [1040, 1598, 1040], [2, 2, 2],
        extras={"prefix_id": ["p", None, "p"], "prefix_tokens": [1024, None, 1024]})


def test_host_tier_returns_evicted_prefix_blocks_at_host_link_cost() -> None:
    """A 100-block GPU pool: B's 100 blocks evict every block of A. Without a host tier C
    recomputes its whole prompt; with one, C's 64 prefix blocks come back from host
    memory and its TTFT is a 16-token prefill over 1,024 cached tokens plus copying
    those 1,024 tokens' KV over PCIe."""
    base = {"model": "llama-3-8b", "gpu": "h100", "engine": "none",
            "scheduler": {"enable_prefix_caching": True, "num_gpu_blocks_override": 100,
                          "max_model_len": 1600}}
    without = simulate(build_deployment(base), _prefix_trace())
    assert without.ok, without.error
    assert without.requests["num_cached_tokens"].tolist() == [0, 0, 0]
    tiered = build_deployment(base | {"offload": {"kv_offloading_size": 1.0}})
    result = simulate(tiered, _prefix_trace())
    assert result.ok, result.error
    rows = result.requests
    assert rows["num_cached_tokens"].tolist() == [0, 0, 1024]
    assert result.summary["prefix_cache"]["host_hit_tokens"] == 1024
    cost = resolve(tiered).cost_models[0]
    expected = cost.predict(BatchShape([16], [1024], 1, swap_in_tokens=1024)).total_s
    assert rows.loc[2, "ttft_s"] == pytest.approx(expected, rel=1e-12)
    copy_s = 1024 * load_model("llama-3-8b").kv_bytes_per_token / (
        load_gpu("h100").host_link.bandwidth_gbps * GB)
    assert expected == pytest.approx(
        cost.predict(BatchShape([16], [1024], 1)).total_s + copy_s, rel=1e-9)
    assert rows.loc[2, "ttft_s"] < without.requests.loc[2, "ttft_s"]


def test_host_tier_changes_nothing_while_the_gpu_pool_evicts_nothing() -> None:
    """The measured CPU-KV-offload pair's prediction (bench/study_offload.py, section 5):
    repeated prompts that all stay in the GPU's prefix cache never touch the host tier, so
    every request's timings are the same with it and without it, to the bit."""
    n = 60
    trace = RequestTrace.from_columns([0.05 * i for i in range(n)], [547] * n, [32] * n,
                                      extras={"prompt_id": [f"q{i % 6}" for i in range(n)]})
    base = {"model": "llama-3-8b", "gpu": "h100", "engine": "vllm-v1-0.15"}
    without = simulate(build_deployment(base), trace)
    tiered = simulate(build_deployment(base | {"offload": {"kv_offloading_size": 16.0}}),
                      trace)
    assert without.ok and tiered.ok
    assert tiered.summary["prefix_cache"]["host_hit_tokens"] == 0
    assert tiered.summary["prefix_cache"]["hit_rate"] > 0.5
    for column in ("ttft_s", "e2e_s", "num_cached_tokens"):
        assert tiered.requests[column].tolist() == without.requests[column].tolist()


def test_host_tier_needs_prefix_caching_and_room_on_the_host() -> None:
    no_cache = simulate(build_deployment({"model": "llama-3-8b", "gpu": "h100",
                                          "scheduler": {"enable_prefix_caching": False},
                                          "offload": {"kv_offloading_size": 8}}),
                        make_trace([0.0], [10], [2]))
    assert not no_cache.ok and "enable_prefix_caching" in str(no_cache.error)
    too_big = simulate(build_deployment({
        "model": "llama-3-8b", "gpu": "h100", "scheduler": {"enable_prefix_caching": True},
        "offload": {"kv_offloading_size": 4000}}), make_trace([0.0], [10], [2]))
    assert not too_big.ok and "host DRAM per GPU" in str(too_big.error)


def test_the_serving_planner_offers_plans_that_fit_only_with_offloading(tmp_path) -> None:
    """Llama-3-70B on one H100: without offloading nothing fits; with 80 GiB offloaded
    the plan is evaluated, with its (slow) goodput and its cost."""
    from typer.testing import CliRunner

    from cli import app
    from workloads.generators import GeneratorSpec, generate
    from workloads.loaders import save_workload

    trace = generate(GeneratorSpec(
        num_requests=30, arrival={"kind": "poisson", "rate_per_s": 0.05},
        prompt={"kind": "fixed", "value": 200}, output={"kind": "fixed", "value": 8},
        seed=0))
    path = tmp_path / "t.json"
    save_workload(trace, path)
    result = CliRunner().invoke(app, [
        "plan", "--model", "llama-3-70b", "--workload", str(path), "--ttft-slo", "30",
        "--tpot-slo", "5", "--gpu", "h100:1", "--tp", "1", "--cpu-offload-gb", "0,80",
        "--out", str(tmp_path / "p"), "--steady-requests", "60", "--steady-seconds", "5",
        "--steady-lifetimes", "0"])
    assert result.exit_code == 0, result.output
    import pandas as pd

    rows = pd.read_csv(tmp_path / "p" / "candidates.csv")
    kept = rows[rows["offload.cpu_offload_gb"] == 0].iloc[0]
    offloaded = rows[rows["offload.cpu_offload_gb"] == 80].iloc[0]
    assert kept["status"] == "infeasible" and "offload" in kept["reason"]
    assert offloaded["status"] == "evaluated" and offloaded["goodput_rate_per_s"] > 0
    assert offloaded["cost_per_mtok_usd"] > 0


# ---- serving: decode attention on a memory pool (Lamina) ------------------------------

def _lamina(**attention: object) -> object:
    return build_deployment({"model": "llama-3-8b", "gpu": "h100", "offload": {
        "decode_attention": {"gpu": "a100", "devices": 2, **attention}}})


def test_decode_attention_offload_moves_attention_and_kv_to_the_pool() -> None:
    """Lamina: the KV cache lives on the attention devices (2 x A100: their memory over
    one block's bytes of every layer); a decode step loses its local attention and gains
    the pool's attention plus each layer's round trip of queries, new K/V and outputs."""
    from profiles.memory import DEFAULT_RUNTIME_OVERHEAD_GIB

    serial = resolve(_lamina(overlap=False))
    model, a100, h100 = load_model("llama-3-8b"), load_gpu("a100"), load_gpu("h100")
    usable = a100.hbm_bytes * 0.9 - DEFAULT_RUNTIME_OVERHEAD_GIB * GIB
    assert serial.memory.num_gpu_blocks == int(2 * usable // (model.kv_bytes_per_token * 16))
    batch = BatchShape([1] * 64, [3000] * 64, 64)
    local = resolve(build_deployment({"model": "llama-3-8b", "gpu": "h100"})).cost_models[0]
    own = local.predict(batch)
    pool = serial.cost_models[0].pool
    _, (per_layer, _) = pool.attention.attention_terms(0.0, 0, 0, 64 * 3001)
    link = min(h100.nic_bandwidth_gbps * h100.efficiency.network,
               a100.nic_bandwidth_gbps * a100.efficiency.network) * GB  # one GPU's NIC
    latency = (h100.nic_latency_us + a100.nic_latency_us) * 1e-6
    round_trip = model.num_layers * (2 * latency + 64 * 2 * (2 * model.q_size
                                                             + 2 * model.kv_size) / link)
    away = model.num_layers * per_layer + round_trip
    rest = own.total_s - own.operator_s["attn_decode"]
    assert serial.cost_models[0].predict(batch).total_s == pytest.approx(rest + away, rel=1e-9)
    overlapped = resolve(_lamina()).cost_models[0].predict(batch).total_s
    assert overlapped == pytest.approx(max(rest, away), rel=1e-9)
    result = simulate(_lamina(), make_trace([0.0] * 20, [800] * 20, [30] * 20))
    assert result.ok, result.error
    assert result.requests["finish_s"].notna().all()


def test_the_attention_devices_are_paid_for() -> None:
    from planners.serving import _pools, _price

    prices = {"H100-SXM5-80GB": 4.0, "A100-SXM4-80GB": 1.5}
    assert _price(_pools(_lamina()), prices) == pytest.approx(4.0 + 2 * 1.5)
    assert _price(_pools(build_deployment({"model": "llama-3-8b", "gpu": "h100"})),
                  prices) == pytest.approx(4.0)


def test_bad_offload_and_placement_choices_are_one_line_errors(tmp_path) -> None:
    from typer.testing import CliRunner

    from cli import app

    job = tmp_path / "job.json"
    job.write_text('{"kind": "training", "model": "llama-2-7b", "gpu": "a100", "seq_len": 2048,'
                   ' "global_batch": 8, "micro_batch": 1}')
    for args, expected in (
            (["plan-training", "--job", str(job), "--num-gpus", "1", "--offload", "bogus"],
             "--offload 'bogus'"),
            (["plan", "--model", "llama-3-8b", "--workload", "workloads/examples/chat.json",
              "--ttft-slo", "1", "--tpot-slo", "0.1", "--gpu", "h100:2", "--disaggregate",
              "--placement", "bogus"], "--placement 'bogus'"),
            (["plan", "--model", "llama-3-8b", "--workload", "workloads/examples/chat.json",
              "--ttft-slo", "1", "--tpot-slo", "0.1", "--gpu", "h100:2",
              "--cpu-offload-gb", "x"], "--cpu-offload-gb 'x'")):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ") and expected in result.output
        assert len(result.output.strip().splitlines()) == 1
