"""Study: what offloading buys, in training and serving (simulated predictions).

1. The largest model trainable on one 80 GB GPU (A100 and H100) without offloading, with
   ZeRO-Offload and with ZeRO-Infinity: models of Llama-2-13B's width (hidden 5,120, 40
   heads, MLP 13,824) with as many layers as fit, sequence 2,048, micro-batch 1, full
   recomputation, ZeRO stage 1 (3 for ZeRO-Infinity); step time and MFU of the largest.
2. The largest catalog model servable on one H100 with weight offloading (host DRAM, then
   NVMe) and its decode throughput on a small batch.
3. The TTFT gain of a host-memory tier for the prefix cache on a multi-turn chat trace
   whose sessions outgrow the GPU's KV cache.
4. The planner's pick for Llama-3-70B on at most 2, then 1 H100 (tight budgets) with
   and without weight offloading among its choices.

    python bench/study_offload.py [--out bench/results]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from planners.serving import plan_serving
from planners.space import ServingSpace
from profiles.errors import ClusterSimError
from profiles.models import ModelSpec
from simulator import build_deployment, simulate, simulate_training
from simulator.files import write_text
from workloads.generators import ChatSpec, GeneratorSpec, generate, generate_chat
from workloads.training import TrainingJob

WIDTH = {"hidden_size": 5120, "num_attention_heads": 40, "num_kv_heads": 40,
         "head_dim": 128, "intermediate_size": 13824, "vocab_size": 32000,
         "max_position_embeddings": 4096}


def _fits(gpu: str, layers: int, offload: str) -> Any:
    model = ModelSpec(name=f"llama-width-{layers}L", num_layers=layers, **WIDTH)
    job = TrainingJob(model="custom", gpu=gpu, num_gpus=1, seq_len=2048, global_batch=8,
                      micro_batch=1, dtype="bf16", plan={
                          "recompute": "full", "offload": offload,
                          "zero_stage": 3 if offload == "nvme" else 1})
    try:
        return model, simulate_training(job, model=model)
    except ClusterSimError:
        return model, None


def largest_trainable() -> list[str]:
    lines = ["## 1. Largest model trainable on one GPU", "",
             "| GPU | offload | layers | parameters (B) | step s | MFU | GPU GiB | host GiB | "
             "NVMe GiB |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for gpu in ("a100", "h100"):
        for offload in ("none", "cpu", "nvme"):
            low, high = 0, 2048  # layers: low fits (or 0), high does not
            while high - low > 1:
                middle = (low + high) // 2
                if _fits(gpu, middle, offload)[1] is not None:
                    low = middle
                else:
                    high = middle
            if low == 0:
                lines.append(f"| {gpu} | {offload} | none fits | | | | | | |")
                continue
            model, result = _fits(gpu, low, offload)
            memory = result.memory.as_gib()
            lines.append(
                f"| {gpu} | {offload} | {low} | {model.num_params / 1e9:.1f} | "
                f"{result.step_s:.1f} | {result.mfu:.1%} | {memory['total']:.1f} | "
                f"{memory['host']:.0f} | {memory['nvme']:.0f} |")
            print(lines[-1], flush=True)
    lines += ["", "ZeRO-Offload's paper: 13B on one 32 GB V100 (10x PyTorch's 1.4B); the "
              "host's DRAM bounds it here (14 bytes per parameter on the host).", ""]
    return lines


def largest_servable() -> list[str]:
    lines = ["## 2. Largest model servable on one H100 with weight offloading", "",
             "| model | offload | GiB offloaded | output tokens/s (8 requests of 256 + 32 "
             "tokens) | TPOT mean s |",
             "| --- | --- | --- | --- | --- |"]
    trace = generate(GeneratorSpec(num_requests=8, arrival={"kind": "poisson",
                                                             "rate_per_s": 100},
                                   prompt={"kind": "fixed", "value": 256},
                                   output={"kind": "fixed", "value": 32}, seed=0))
    for model, gib, tier in (("llama-3-8b", 0, "host"), ("llama-3-70b", 80, "host"),
                             ("llama-3-70b", 80, "nvme"), ("llama-3.1-405b", 700, "nvme")):
        deployment = build_deployment({
            "model": model, "gpu": "h100", "scheduler": {"max_model_len": 4096},
            "offload": {"cpu_offload_gb": gib, "weights_tier": tier}})
        result = simulate(deployment, trace)
        if not result.ok:
            lines.append(f"| {model} | {tier} | {gib} | {result.error} | |")
            continue
        s = result.summary
        lines.append(f"| {model} | {tier if gib else '-'} | {gib} | "
                     f"{s['throughput']['output_tokens_per_s']:.1f} | "
                     f"{s['tpot_s']['mean']:.3f} |")
        print(lines[-1], flush=True)
    return [*lines, ""]


def host_prefix_tier() -> list[str]:
    trace = generate_chat(ChatSpec(
        num_requests=600, arrival={"kind": "poisson", "rate_per_s": 6},
        num_system_prompts=20, users_per_prompt=10, system_prompt_tokens=1500,
        question={"kind": "lognormal", "mean": 300, "sigma": 0.3, "max": 2000},
        output={"kind": "lognormal", "mean": 150, "sigma": 0.3, "max": 1000},
        turns_per_session=3, seed=0))
    lines = ["## 3. Host-memory tier of the prefix cache (multi-turn chat)", "",
             "Llama-3-8B on one H100, vLLM V1 preset, the GPU KV cache held to 1,500 blocks "
             "(24,000 tokens) so that 200 three-turn sessions with 1,500-token system "
             "prompts outgrow it; 600 requests at 6 req/s.", "",
             "| host tier GiB | TTFT mean ms | TTFT p90 ms | hit rate | tokens from host |",
             "| --- | --- | --- | --- | --- |"]
    means = {}
    for size in (0.0, 16.0, 64.0):
        deployment = build_deployment({
            "model": "llama-3-8b", "gpu": "h100", "engine": "vllm-v1",
            "scheduler": {"num_gpu_blocks_override": 1500},
            "offload": {"kv_offloading_size": size}})
        s = simulate(deployment, trace).summary
        assert s is not None
        means[size] = s["ttft_s"]["mean"]
        cache = s["prefix_cache"]
        lines.append(f"| {size:g} | {s['ttft_s']['mean'] * 1e3:.1f} | "
                     f"{s['ttft_s']['p90'] * 1e3:.1f} | {cache['hit_rate']:.1%} | "
                     f"{cache['host_hit_tokens']:,} |")
        print(lines[-1], flush=True)
    lines += ["", f"TTFT mean with 64 GiB on the host: {means[64.0] / means[0.0]:.2f}x of "
              "without.", ""]
    return lines


def planner_pick() -> list[str]:
    trace = generate(GeneratorSpec(
        num_requests=200, arrival={"kind": "poisson", "rate_per_s": 1},
        prompt={"kind": "lognormal", "mean": 1155, "sigma": 0.5, "max": 3000},
        output={"kind": "lognormal", "mean": 211, "sigma": 0.99, "max": 1000}, seed=1))
    lines = ["## 4. Planner: Llama-3-70B on a tight budget of H100s", "",
             "A batch-like service: SLOs TTFT 30 s / TPOT 2.5 s for 90% of requests; TP 1 "
             "or 2; replicas as the budget allows.", "",
             "| H100s at most | offload choices (GiB per GPU) | candidates evaluated | best "
             "plan | goodput req/s | USD per million tokens |",
             "| --- | --- | --- | --- | --- | --- |"]
    for max_gpus, choices in ((2, [0.0]), (2, [0.0, 40.0, 80.0]), (1, [0.0]),
                              (1, [0.0, 80.0])):
        space = ServingSpace(gpus=[{"name": "h100", "max_gpus": max_gpus}], tp=[1, 2],
                             extra={"offload.cpu_offload_gb": choices})
        plan = plan_serving("llama-3-70b", trace, ttft_slo_s=30.0, tpot_slo_s=2.5,
                            space=space)
        best = plan.best.get("goodput")
        evaluated = sum(c.status == "evaluated" for c in plan.candidates)
        if best is None:
            lines.append(f"| {max_gpus} | {choices} | {evaluated} | none fits or meets the "
                         f"SLOs | | |")
            continue
        c = plan.candidates[best]
        d = c.deployment
        layout = (f"{d['replicas']} x tp{d['parallelism']['tp']}, "
                  f"{d.get('offload', {}).get('cpu_offload_gb', 0):g} GiB offloaded")
        lines.append(f"| {max_gpus} | {choices} | {evaluated} | #{best} {layout} | "
                     f"{c.goodput_rate_per_s:.3f} | {c.cost_per_mtok_usd or 0:.2f} |")
        print(lines[-1], flush=True)
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    started = time.perf_counter()
    lines = ["# Offloading study (simulated predictions, not measurements)", "",
             "`python bench/study_offload.py`", ""]
    for part in (largest_trainable, largest_servable, host_prefix_tier, planner_pick):
        lines += part()
    lines.append(f"Run time {time.perf_counter() - started:.0f} s.")
    path = args.out / "offload_study.md"
    write_text(path, "\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
