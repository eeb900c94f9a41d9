"""Study: expert placement under skewed routing (simulated predictions).

Mixtral-8x7B on 8 H100s and DeepSeek-V3 on 16 and 32 H200s, each one replica with data-
parallel attention and the experts sharded over every GPU (EP = DP), Zipf-skewed routing
(exponent 1.0, hot experts drawn per layer, an inter-layer affinity of 0.6). For each
placement, a decode step (256 sequences over all the ranks, 1,000 tokens of context
each) and a prefill step (8,192 tokens), averaged over 32 routing draws:

    naive       experts [r E/ep, (r+1) E/ep) on GPU r (vLLM's default, "linear")
    planned     the placement planner's (greedy + local search), balance only
    +copies     planned with redundant copies of hot experts (DeepSeek's EPLB: 32 for
                DeepSeek-V3, one per GPU for Mixtral)
    +affinity   planned with the affinity terms (pairs changing GPU, and node, between
                layers; 8 GPUs a node), run with ExFlow's coherent dispatch (tokens stay
                on their expert's GPU: one all-to-all per layer)

Reported: expert GEMM time of the busiest GPUs, all-to-all time, the step's time, the
expected busiest-GPU load over the mean, and the share of routed pairs that cross GPUs
per MoE layer; ratios against naive next to the published figures (ExFlow: up to 67%
less cross-GPU routing latency, up to 2.2x throughput; DeepSeek-V3 deploys 32 redundant
experts for prefill, Sec. 3.4, with no speedup figure published).

    python bench/study_moe.py [--out bench/results]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from planners.placement import plan_placement
from profiles.cluster import LinkCost
from profiles.cost_model import BatchShape
from profiles.files import write_text
from profiles.hardware import GB, load_gpu
from profiles.models import load_model
from profiles.moe import EPLinks, ExpertLayers, ExpertPlacement, RoutingConfig, routing_stats
from profiles.roofline import RooflineCostModel

DRAWS = 32


@dataclass(frozen=True)
class Case:
    model: str
    gpu: str
    ep: int
    redundant: int


CASES = (Case("mixtral-8x7b", "h100", 8, 8), Case("deepseek-v3", "h200", 16, 32),
         Case("deepseek-v3", "h200", 32, 32))


def _links(gpu_name: str, ep: int) -> EPLinks:
    gpu = load_gpu(gpu_name)
    return EPLinks(ranks_per_node=min(8, ep),
                   scale_up_bytes_per_s=gpu.scale_up.bandwidth_gbps * GB
                   * gpu.efficiency.scale_up,
                   nic_bytes_per_s=gpu.nic_bandwidth_gbps * GB * gpu.efficiency.network,
                   scale_up_latency_s=gpu.scale_up.latency_us * 1e-6,
                   nic_latency_s=gpu.nic_latency_us * 1e-6)


def _measure(case: Case, placement: ExpertPlacement, dispatch: str,
             routing: RoutingConfig) -> dict[str, float]:
    model, gpu = load_model(case.model), load_gpu(case.gpu)
    stats = routing_stats(routing, model)
    layers = ExpertLayers(model, gpu, tp=1, ep=case.ep, tokens_spread=True, stats=stats,
                          placement=placement, links=_links(case.gpu, case.ep), seed=0,
                          dispatch=dispatch)  # type: ignore[arg-type]
    link = LinkCost(bandwidth_bytes_per_s=float("inf"), latency_s=0.0)
    cost = RooflineCostModel(model, gpu, 1, 1, link, link, dp=case.ep, moe=layers)
    out: dict[str, float] = {"imbalance": layers.imbalance(),
                             "crossing": layers.crossing_share(),
                             "node_crossing": layers.node_crossing_share(),
                             "prefill_a2a_gb": layers.all_to_all_bytes(8192) / 1e9}
    for name, batch in (("decode", BatchShape([1] * 256, [1000] * 256, 256)),
                        ("prefill", BatchShape([2048] * 4, [0] * 4, 4))):
        steps = [cost.predict(batch) for _ in range(DRAWS)]
        ops = [step.operator_s for step in steps]
        out[f"{name}_step_ms"] = 1e3 * float(np.mean([s.total_s for s in steps]))
        out[f"{name}_a2a_ms"] = 1e3 * float(np.mean([o["ep_all_to_all"] for o in ops]))
        out[f"{name}_mlp_ms"] = 1e3 * float(np.mean([o["mlp"] for o in ops]))
    return out


def run_case(case: Case) -> list[tuple[str, dict[str, float], float]]:
    model = load_model(case.model)
    gpu = load_gpu(case.gpu)
    routing = RoutingConfig(kind="zipf", zipf_s=1.0, affinity=0.6, seed=0)
    stats = routing_stats(routing, model)
    rows = []
    naive = ExpertPlacement.linear(model.num_moe_layers, model.num_experts, case.ep)
    rows.append(("naive", _measure(case, naive, "home", routing), 0.0))
    for label, redundant, weight, dispatch in (
            ("planned", 0, 0.0, "home"), ("+copies", case.redundant, 0.0, "home"),
            ("+affinity", 0, 1.0, "coherent")):
        started = time.perf_counter()
        result = plan_placement(model, stats, case.ep, gpu=gpu, redundant=redundant,
                                affinity_weight=weight, ranks_per_node=8,
                                node_weight=weight)
        planning_s = time.perf_counter() - started
        rows.append((label, _measure(case, result.placement(), dispatch, routing),
                     planning_s))
    naive_coherent = _measure(case, naive, "coherent", routing)
    rows.append(("naive, coherent", naive_coherent, 0.0))
    return rows


def _table(case: Case, rows: list[tuple[str, dict[str, float], float]]) -> list[str]:
    base = rows[0][1]
    lines = [f"### {case.model} on {case.ep} x {case.gpu} (EP {case.ep}, DP attention)", "",
             "| placement | busiest/mean | pairs crossing GPUs (nodes) | a2a GB per prefill "
             "step | decode step ms (a2a) | prefill step ms (a2a) | decode vs naive | "
             "prefill vs naive | a2a time vs naive (prefill) | planning s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, m, planning_s in rows:
        lines.append(
            f"| {label} | {m['imbalance']:.2f} | {m['crossing']:.1%} "
            f"({m['node_crossing']:.1%}) | {m['prefill_a2a_gb']:.1f} | "
            f"{m['decode_step_ms']:.1f} ({m['decode_a2a_ms']:.1f}) | "
            f"{m['prefill_step_ms']:.1f} ({m['prefill_a2a_ms']:.1f}) | "
            f"{m['decode_step_ms'] / base['decode_step_ms']:.2f}x | "
            f"{m['prefill_step_ms'] / base['prefill_step_ms']:.2f}x | "
            f"{m['prefill_a2a_ms'] / base['prefill_a2a_ms']:.2f}x | {planning_s:.1f} |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    started = time.perf_counter()
    lines = ["# Expert placement study (simulated predictions)", "",
             "Generated by `python bench/study_moe.py`; Zipf routing s = 1.0, affinity "
             "0.6, seed 0; a decode step of 256 sequences at 1,000 tokens of context and "
             f"a prefill step of 8,192 tokens, each averaged over {DRAWS} routing draws.",
             ""]
    for case in CASES:
        rows = run_case(case)
        lines += _table(case, rows)
        print("\n".join(_table(case, rows)))
    lines += [
        "Published figures to compare with: ExFlow (Yao et al. 2024) places experts by "
        "inter-layer affinity and reports up to 67% less cross-GPU routing latency and up "
        "to 2.2x inference throughput against two-all-to-all expert parallelism; "
        "DeepSeek-V3's report (Sec. 3.4) deploys 32 redundant experts for prefill at EP32 "
        "to balance the load, with no speedup figure.", "",
        f"Study wall time {time.perf_counter() - started:.0f} s."]
    path = args.out / "moe_placement_study.md"
    write_text(path, "\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
