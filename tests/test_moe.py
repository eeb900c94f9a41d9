"""Mixture of experts: routing, expert-parallel pricing, all-to-all volume, placement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from planners.objectives import SteadyState
from planners.placement import (
    PlacementProblem,
    expert_slots_that_fit,
    plan_placement,
    solve_greedy,
    solve_ilp,
)
from planners.serving import plan_serving
from planners.space import GPUChoice, ServingSpace
from profiles.cost_model import BatchShape
from profiles.errors import ClusterSimError
from profiles.expert_cache import ExpertCache
from profiles.hardware import load_gpu
from profiles.models import load_model
from profiles.moe import (
    EPLinks,
    ExpertLayers,
    ExpertPlacement,
    RoutingConfig,
    RoutingStats,
    load_placement,
    load_routing_trace,
    routing_stats,
)
from simulator import simulate, simulate_training
from simulator.serving.build import resolve
from simulator.serving.config import build_deployment
from workloads.loaders import load_workload
from workloads.schema import RequestTrace
from workloads.training import TrainingJob

LINKS = EPLinks(ranks_per_node=8, scale_up_bytes_per_s=400e9, nic_bytes_per_s=45e9,
                scale_up_latency_s=3e-6, nic_latency_s=10e-6)


def _layers(model_name: str, ep: int, routing: RoutingConfig, *, spread: bool = True,
            placement: ExpertPlacement | None = None) -> ExpertLayers:
    model = load_model(model_name)
    return ExpertLayers(model, load_gpu("h100"), tp=1, ep=ep, tokens_spread=spread,
                        stats=routing_stats(routing, model), placement=placement,
                        links=LINKS, seed=0)


def test_uniform_all_to_all_bytes_equal_the_hand_computed_figure() -> None:
    """Mixtral-8x7B, EP 8, 512 tokens, top-2: each dispatch moves the T·k pairs whose
    expert is on another rank, (ep-1)/ep of them, 4096 x 2 bytes each, per MoE layer."""
    layers = _layers("mixtral-8x7b", 8, RoutingConfig())
    tokens, k, h = 512, 2, 4096
    loads = layers.draw_loads(tokens)
    assert loads.sum(axis=1) == pytest.approx(tokens * k)
    received = layers.dispatch_bytes(loads)
    hand = tokens * k * (8 - 1) / 8 * h * 2
    assert received.sum(axis=1) == pytest.approx(np.full(32, hand))
    # Without DP attention the tokens are on every rank already: no all-to-all.
    replicated = _layers("mixtral-8x7b", 8, RoutingConfig(), spread=False)
    assert replicated.dispatch_bytes(loads).sum() == 0
    assert replicated.step_s(tokens)[1] == 0


def test_skewed_routing_step_time_follows_the_busiest_rank() -> None:
    """All of a layer's pairs on experts of rank 0: the expert time is that rank's
    grouped GEMM alone, and a placement spreading the hot experts halves it or better."""
    model = load_model("mixtral-8x7b")
    shares = np.tile(np.array([0.5, 0.5, 0, 0, 0, 0, 0, 0]) + 1e-12, (32, 1))
    shares /= shares.sum(axis=1, keepdims=True)
    stats = RoutingStats(shares)
    gpu = load_gpu("h100")
    skewed = ExpertLayers(model, gpu, tp=1, ep=4, tokens_spread=False, stats=stats)
    loads = np.tile(np.array([512.0, 512, 0, 0, 0, 0, 0, 0]), (32, 1))
    per_rank = skewed.grouped_gemm_s(skewed.slot_rows(loads))
    assert (per_rank[:, 1:] == 0).all()  # experts 0 and 1 both live on rank 0
    assert per_rank.max(axis=1).sum() == pytest.approx(per_rank[:, 0].sum())
    spread = ExpertPlacement.round_robin(32, 8, 4)  # experts 0 and 1 on ranks 0 and 1
    balanced = ExpertLayers(model, gpu, tp=1, ep=4, tokens_spread=False, stats=stats,
                            placement=spread)
    assert balanced.grouped_gemm_s(balanced.slot_rows(loads)).max(axis=1).sum() < \
        0.6 * per_rank[:, 0].sum()
    assert skewed.imbalance() == pytest.approx(4.0, rel=1e-6)
    assert balanced.imbalance() == pytest.approx(2.0, rel=1e-6)


def test_zipf_routing_is_seeded_and_skewed() -> None:
    model = load_model("deepseek-v3")
    a = routing_stats(RoutingConfig(kind="zipf", zipf_s=1.0, seed=3), model)
    b = routing_stats(RoutingConfig(kind="zipf", zipf_s=1.0, seed=3), model)
    assert np.array_equal(a.shares, b.shares)
    assert a.shares.shape == (58, 256)
    assert np.allclose(a.shares.sum(axis=1), 1.0)
    assert a.shares.max() > 20 / 256  # the hottest expert far above the mean
    uniform = routing_stats(RoutingConfig(), model)
    assert np.allclose(uniform.shares, 1 / 256)


def test_routing_trace_round_trip_and_refusals(tmp_path: Path) -> None:
    trace = {"format": "clustersim-routing/1", "num_experts": 4, "top_k": 2, "layers": [
        {"expert_counts": [4, 2, 1, 1], "coactivation_next": np.eye(4).tolist()},
        {"expert_counts": [1, 1, 1, 1]}]}
    path = tmp_path / "routing.json"
    path.write_text(json.dumps(trace))
    stats = load_routing_trace(path)
    assert stats.shares[0].tolist() == [0.5, 0.25, 0.125, 0.125]
    assert stats.coactivation is not None and stats.coactivation.shape == (1, 4, 4)
    trace["layers"][1]["expert_counts"] = [1, 1]
    path.write_text(json.dumps(trace))
    with pytest.raises(ClusterSimError, match=r"layers\[1\]\.expert_counts"):
        load_routing_trace(path)
    trace["layers"][1]["expert_counts"] = [1, 1, 1, 1]
    path.write_text(json.dumps(trace))
    with pytest.raises(ClusterSimError, match="32 MoE layers of 8"):
        routing_stats(RoutingConfig(kind="trace", trace=str(tmp_path / "routing.json")),
                      load_model("mixtral-8x7b"))


def test_placement_ilp_finds_the_known_optimum() -> None:
    """Shares 0.4, 0.3, 0.2, 0.1 on two GPUs of two slots: {0.4, 0.1} and {0.3, 0.2}
    balance at 0.5; with one copy of the 0.4 expert and three slots, 0.5 again (a
    perfect split), and the copy takes exactly the share that levels the ranks."""
    problem = PlacementProblem(np.array([[0.4, 0.3, 0.2, 0.1]]), ranks=2, slots=2)
    result = solve_ilp(problem)
    assert result.balance == pytest.approx(0.5)
    together = {frozenset(np.flatnonzero(result.share[0, :, r] > 0)) for r in range(2)}
    assert together == {frozenset({0, 3}), frozenset({1, 2})}
    skewed = PlacementProblem(np.array([[0.7, 0.1, 0.1, 0.1]]), ranks=2, slots=3,
                              redundant=1)
    assert solve_ilp(skewed).balance == pytest.approx(0.5)
    assert solve_greedy(skewed).balance == pytest.approx(0.5)
    assert solve_greedy(PlacementProblem(np.array([[0.7, 0.1, 0.1, 0.1]]), 2, 2)).balance \
        == pytest.approx(0.8)


@pytest.mark.parametrize("seed", range(8))
def test_greedy_placement_within_five_percent_of_the_ilp(seed: int) -> None:
    """Random small instances, balance with copies and balance plus affinity."""
    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.full(6, 0.6), size=2)
    copies = PlacementProblem(shares[:1], ranks=3, slots=3, redundant=int(seed % 3))
    assert solve_greedy(copies).objective <= 1.05 * solve_ilp(copies).objective + 1e-9
    follow = np.eye(6)[rng.permutation(6)]
    coactivation = (0.5 * np.outer(shares[0], shares[1])
                    + 0.5 * shares[0][:, None] * follow)[None]
    affinity = PlacementProblem(shares, ranks=3, slots=2, coactivation=coactivation,
                                affinity_weight=1.0)
    exact = solve_ilp(affinity)
    assert solve_greedy(affinity).objective <= 1.05 * exact.objective + 1e-9
    # Two nodes of two GPUs: pairs that change node weigh more than those that change GPU.
    wide = rng.dirichlet(np.full(6, 0.6), size=2)
    follow = np.eye(6)[rng.permutation(6)]
    nodes = PlacementProblem(wide, ranks=4, slots=2, coactivation=(
        0.5 * np.outer(wide[0], wide[1]) + 0.5 * wide[0][:, None] * follow)[None],
        affinity_weight=0.5, ranks_per_node=2, node_weight=1.0)
    assert solve_greedy(nodes).objective <= 1.05 * solve_ilp(nodes).objective + 1e-9


def test_node_term_keeps_coactivated_experts_on_one_node() -> None:
    """Uniform shares, layer 0's expert i always followed by layer 1's expert i, four
    GPUs of one slot on two nodes, and only node changes priced: the optimum keeps every
    pair on its node (any GPU of it), and so does the heuristic."""
    shares = np.full((2, 4), 0.25)
    coactivation = (np.eye(4) * 0.25)[None]
    problem = PlacementProblem(shares, ranks=4, slots=1, coactivation=coactivation,
                               ranks_per_node=2, node_weight=1.0)
    for result in (solve_ilp(problem), solve_greedy(problem)):
        assert result.node_traffic == pytest.approx(0.0, abs=1e-9)
        assert result.balance == pytest.approx(0.5)


def test_placement_never_exceeds_gpu_memory() -> None:
    """Every rank holds at most its slots, and the slots are what the memory allows."""
    model = load_model("deepseek-v3")
    stats = routing_stats(RoutingConfig(kind="zipf", zipf_s=1.0), model)
    h200 = load_gpu("h200")
    fits = expert_slots_that_fit(model, h200, 32)
    assert 8 <= fits < 256
    result = plan_placement(model, stats, 32, gpu=h200, redundant=32)
    held = (result.share > 0).sum(axis=1)  # [layers, ranks]
    assert held.max() <= -(-(256 + 32) // 32) <= fits
    assert np.allclose(result.share.sum(axis=2), 1.0)
    with pytest.raises(ClusterSimError, match="slots per GPU"):
        plan_placement(model, stats, 4, gpu=h200)  # 64 experts per GPU do not fit


def test_planned_placement_beats_linear_under_skew(tmp_path: Path) -> None:
    """The planner's placement (with hot-expert copies) lowers the busiest rank's load,
    and the simulator reads it back from its file."""
    model = load_model("mixtral-8x7b")
    stats = routing_stats(RoutingConfig(kind="zipf", zipf_s=1.2, seed=1), model)
    linear = ExpertPlacement.linear(32, 8, 4)
    planned = plan_placement(model, stats, 4, gpu=load_gpu("h100"), redundant=4)
    naive_busiest = linear.rank_loads(stats.shares).max(axis=1).sum()
    assert planned.balance < 0.8 * naive_busiest
    path = tmp_path / "placement.json"
    path.write_text(planned.placement().to_json())
    again = load_placement(path, 32, 8, 4)
    assert again.rank_loads(stats.shares).max(axis=1).sum() == pytest.approx(planned.balance)


def test_serving_honours_ep_and_dp_attention() -> None:
    """DeepSeek-V2-Lite on 8 H100s: EP 8 with DP attention shards the experts (8 per
    GPU), gives each rank its own KV cache, and prices the all-to-alls."""
    base = {"model": "deepseek-v2-lite", "gpu": "h100", "seed": 0,
            "scheduler": {"policy": "running-first", "max_num_seqs": 32,
                          "max_num_batched_tokens": 1024, "max_model_len": 4096}}
    tp8 = resolve(build_deployment(base | {"parallelism": {"tp": 8}}))
    ep8 = resolve(build_deployment(base | {"parallelism": {"tp": 1, "dp": 8, "ep": 8}}))
    assert ep8.scheduler.max_num_seqs == 8 * 32
    assert ep8.memory.num_gpu_blocks > 4 * tp8.memory.num_gpu_blocks  # MLA: no TP split
    batch = BatchShape([1] * 64, [1000] * 64, 64)
    ops = ep8.cost_models[0].predict(batch).operator_s
    assert ops["ep_all_to_all"] > 0 and ops["tp_allreduce"] == 0
    assert tp8.cost_models[0].predict(batch).operator_s["ep_all_to_all"] == 0
    with pytest.raises(ClusterSimError, match="tp x dp"):
        build_deployment(base | {"parallelism": {"tp": 2, "ep": 8}})
    with pytest.raises(ClusterSimError, match="dense model"):
        resolve(build_deployment({"model": "llama-3-8b", "gpu": "h100",
                                  "parallelism": {"tp": 2, "dp": 1, "ep": 2}}))


def test_serving_space_searches_expert_parallel_layouts_for_moe_models() -> None:
    """A MoE model's space adds EP (TP x DP ranks) with and without DP attention; a
    dense model's does not, and every candidate is a valid deployment."""
    space = ServingSpace(gpus=[GPUChoice(name="h100", max_gpus=4)], tp=[1, 2, 4],
                         replicas=[1])
    layouts = {(c["parallelism"]["tp"], c["parallelism"].get("dp", 1),
                c["parallelism"].get("ep", 1)) for c in space.candidates("deepseek-v2-lite")}
    assert layouts == {(1, 1, 1), (2, 1, 1), (4, 1, 1), (2, 1, 2), (4, 1, 4), (1, 2, 2),
                       (1, 4, 4), (2, 2, 4)}
    dense = {c["parallelism"].get("ep", 1) for c in space.candidates("llama-3-8b")}
    assert dense == {1}
    for candidate in space.candidates("deepseek-v2-lite"):
        build_deployment(candidate)


def test_serving_planner_weighs_expert_parallel_plans() -> None:
    """On two H100s the planner simulates TP, TP + EP and DP-attention + EP plans of
    DeepSeek-V2-Lite; with MLA's KV replicated under TP, DP attention holds more."""
    space = ServingSpace(gpus=[GPUChoice(name="h100", max_gpus=2)], tp=[1, 2],
                         replicas=[1], max_num_batched_tokens=[2048])
    trace = load_workload(str(Path(__file__).parent.parent / "workloads" / "examples"
                              / "chat.json"))
    plan = plan_serving("deepseek-v2-lite", trace, ttft_slo_s=1.0, tpot_slo_s=0.1,
                        space=space, prune=False,
                        steady=SteadyState(min_requests=200, min_span_s=5.0, lifetimes=0.0))
    by_layout = {(c.deployment["parallelism"]["tp"],
                  c.deployment["parallelism"].get("dp", 1)): c for c in plan.candidates}
    assert set(by_layout) == {(1, 1), (2, 1), (1, 2)}
    assert all(c.goodput_rate_per_s is not None for c in plan.candidates)
    dp_attention = by_layout[(1, 2)]
    assert dp_attention.status == "evaluated"
    assert dp_attention.row()["ep"] == 2


def test_expert_cache_lru_by_hand() -> None:
    """One layer, one GPU, four experts, two resident (warm: the two hottest). Touching
    {0, 2} hits 0, copies 2 and evicts 1 (least recent); touching {1} copies 1 and
    evicts 0 (ties go to the lower slot); touching {2} hits."""
    slots = np.arange(4).reshape(1, 1, 4)
    predicted = np.array([0.4, 0.3, 0.2, 0.1]).reshape(1, 1, 4)
    cache = ExpertCache(slots, 2, "lru", expert_bytes=1e9, host_bytes_per_s=50e9,
                        predicted=predicted)
    assert cache.resident.tolist() == [[[True, True, False, False]]]
    compute = np.array([1e-3])
    wait = cache.step(np.array([[[5.0, 0, 3, 0]]]), compute)
    assert wait == pytest.approx(1e9 / 50e9)  # one expert copied before the layer runs
    assert cache.resident.tolist() == [[[True, False, True, False]]]
    cache.step(np.array([[[0.0, 1, 0, 0]]]), compute)
    assert cache.resident.tolist() == [[[False, True, True, False]]]
    assert cache.step(np.array([[[0.0, 0, 2, 0]]]), compute) == 0.0
    assert (cache.stats.hits, cache.stats.misses) == (2, 2)
    assert cache.stats.bytes_copied == pytest.approx(2e9)


def test_expert_offload_fits_mixtral_on_one_gpu_and_reports_hits() -> None:
    """Mixtral-8x7B's 93 GB of weights do not fit one H100; with 4 of 8 experts per
    layer resident (the rest in host memory) it runs, more resident experts hit more,
    and prefetching by predicted routing hides copies behind the previous layer."""
    trace = load_workload(str(Path(__file__).parent.parent / "workloads" / "examples"
                              / "chat.json"))
    base = {"model": "mixtral-8x7b", "gpu": "h100", "engine": "vllm-v1",
            "scheduler": {"max_num_seqs": 8, "max_model_len": 8192},
            "moe": {"routing": {"kind": "zipf", "zipf_s": 1.2}}}
    with pytest.raises(ClusterSimError, match="weights need"):
        resolve(build_deployment(base))

    def run(resident: int, policy: str) -> dict:
        deployment = build_deployment(base | {"moe": base["moe"] | {
            "offload": {"gpu_experts": resident, "policy": policy}}})
        result = simulate(deployment, trace)
        assert result.ok, result.error
        return result.summary

    four, six = run(4, "lru"), run(6, "lru")
    cache4, cache6 = four["run"]["moe"]["expert_cache"], six["run"]["moe"]["expert_cache"]
    assert 0 < cache4["hit_rate"] < cache6["hit_rate"] < 1
    assert cache4["misses"] > cache6["misses"]
    assert four["tpot_s"]["mean"] > six["tpot_s"]["mean"]
    prefetch = run(4, "prefetch")
    assert prefetch["tpot_s"]["mean"] <= four["tpot_s"]["mean"]
    with pytest.raises(ClusterSimError, match="gpu_experts=8"):
        resolve(build_deployment(base | {"moe": {"offload": {"gpu_experts": 8}}}))


def test_training_step_waits_for_the_busiest_expert_rank() -> None:
    """Qwen3-30B-A3B with EP 8: uniform routing (an auxiliary balance loss) prices the
    routed experts at the mean rank; Zipf routing's busiest rank makes the step slower,
    and the attention-only part of the layer is unchanged."""
    job = {"kind": "training", "model": "qwen3-30b-a3b", "gpu": "h100", "num_gpus": 16,
           "seq_len": 4096, "global_batch": 64, "micro_batch": 1,
           "plan": {"tp": 1, "pp": 1, "dp": 16, "ep": 8, "recompute": "full",
                    "zero_stage": 1}}
    balanced = simulate_training(TrainingJob(**job))
    skewed = simulate_training(TrainingJob(**job | {"routing": {"kind": "zipf",
                                                                "zipf_s": 1.0}}))
    assert skewed.step_s > 1.2 * balanced.step_s
    model = load_model("qwen3-30b-a3b")
    stats = routing_stats(RoutingConfig(kind="zipf", zipf_s=1.0), model)
    busiest = ExpertPlacement.linear(48, 128, 8).rank_loads(stats.shares).max(axis=1)
    assert float(busiest.mean() * 8) > 1.2  # the imbalance the step pays


def test_cli_runs_deepseek_v3_on_16_h200_with_ep_and_refuses_stray_flags(
        tmp_path: Path) -> None:
    """The bundled DeepSeek-V3 example (16 H200s, DP attention, EP 16) runs from the
    command line, with a placement from ``place-experts``; a training flag on a serving
    run is refused, not ignored."""
    from typer.testing import CliRunner

    from cli import app

    root = Path(__file__).parent.parent / "workloads" / "examples"
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps({"requests": [
        {"arrival_s": 0.05 * i, "prompt_tokens": 300 + 7 * i, "output_tokens": 40}
        for i in range(60)]}))
    runner = CliRunner()
    placement = tmp_path / "placement.json"
    made = runner.invoke(app, ["place-experts", "--model", "deepseek-v3", "--gpu", "h200",
                               "--ep", "16", "--routing", "zipf:0.8", "--redundant", "16",
                               "--out", str(placement)])
    assert made.exit_code == 0, made.output
    for extra in ([], ["--expert-placement", str(placement)]):
        result = runner.invoke(app, ["simulate", "--workload", str(trace), "--deployment",
                                     str(root / "deepseek_v3_ep.yaml"), "--out",
                                     str(tmp_path / "out"), *extra])
        assert result.exit_code == 0, result.output
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summary["run"]["num_gpus"] == 16
        assert summary["run"]["moe"]["ep"] == 16
    assert summary["run"]["moe"]["slots_per_gpu"] == 17  # 256 + 16 copies over 16 GPUs
    assert summary["run"]["moe"]["expected_imbalance"] < 1.01
    refused = runner.invoke(app, ["simulate", "--workload", str(trace), "--deployment",
                                  str(root / "deepseek_v3_ep.yaml"), "--cp", "2"])
    assert refused.exit_code == 2 and "--cp does not apply" in refused.output


def test_sliding_window_layers_hold_only_their_window() -> None:
    """Gemma 3 1B: 22 of 26 layers keep the last 512 tokens. A 4,096-token request holds
    the blocks of 512 + 4/26 x 3,584 tokens (67 of 16), not 256; a dense model's 256."""
    from simulator.serving.kv_cache import KVCacheManager
    from simulator.serving.request import Request

    gemma = load_model("gemma-3-1b")
    assert gemma.kv_token_equivalents(4096) == pytest.approx(512 + 4 / 26 * 3584)
    assert gemma.kv_token_equivalents(300) == 300
    windowed = KVCacheManager(1000, 16, window=512, global_share=4 / 26)
    dense = KVCacheManager(1000, 16)
    for cache in (windowed, dense):
        request = Request(request_id=0, arrival_s=0.0, prompt_tokens=4096, output_tokens=1)
        assert cache.allocate_slots(request, 4096) is not None
        cache.check()
    assert windowed.num_used_blocks == 67 and dense.num_used_blocks == 256
    assert windowed.blocks_for(512) == dense.blocks_for(512) == 32
    # A block is every layer's KV; 2,000 blocks hold 3 requests of 8,050 tokens counted
    # whole, but 19 counted by their windows: the run batches far more than 3.
    resolved = resolve(build_deployment({"model": "gemma-3-1b", "gpu": "l40s",
                                         "scheduler": {"policy": "running-first"}}))
    assert resolved.memory.kv_block_bytes == 26 * 2 * 256 * 2 * 16
    trace = RequestTrace.from_columns(arrival_s=[0.0] * 20, prompt_tokens=[8000] * 20,
                                      output_tokens=[50] * 20)
    summary = simulate(build_deployment({
        "model": "gemma-3-1b", "gpu": "l40s", "scheduler": {
            "policy": "running-first", "num_gpu_blocks_override": 2000,
            "max_model_len": 8192}}), trace).summary
    assert summary["batches"]["max_batch_size"] > 3
    assert summary["preemptions"] == 0


def test_disaggregated_pools_run_expert_parallel() -> None:
    """DeepSeek-style: a prefill pool and a decode pool, each 16 H200s with DP attention
    and EP 16, on 32 GPUs; each pool's stages span its two nodes."""
    deployment = build_deployment({
        "model": "deepseek-v3", "gpu": "h200", "engine": "vllm-v1",
        "scheduler": {"max_num_seqs": 32, "max_model_len": 4096},
        "disaggregation": {"prefill": {"parallelism": {"dp": 16, "ep": 16}},
                           "decode": {"parallelism": {"dp": 16, "ep": 16}}}})
    trace = RequestTrace.from_columns(arrival_s=[0.02 * i for i in range(40)],
                                      prompt_tokens=[600] * 40, output_tokens=[30] * 40)
    result = simulate(deployment, trace)
    assert result.ok, result.error
    assert result.summary["run"]["num_gpus"] == 32
    pools = result.summary["disaggregation"]["pools"]
    assert pools["prefill"]["ep"] == pools["decode"]["ep"] == 16
    assert result.summary["disaggregation"]["transfer"]["num_transfers"] == 40


def test_all_to_all_volume_of_a_step_by_hand() -> None:
    """Mixtral-8x7B, EP 8 with DP attention, 1,000 tokens: home dispatch moves 7/8 of the
    2,000 pairs out and back in each of 32 layers, 4,096 x 2 bytes each."""
    layers = _layers("mixtral-8x7b", 8, RoutingConfig())
    assert layers.all_to_all_bytes(1000) == pytest.approx(
        2 * 2000 * 7 / 8 * 4096 * 2 * 32)
    assert _layers("mixtral-8x7b", 8, RoutingConfig(), spread=False).all_to_all_bytes(
        1000) == 0
