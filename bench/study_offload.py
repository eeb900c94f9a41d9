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
6. Activation offloading against recomputation (Megatron-Core's CPU offloading): Llama 3
   70B, sequence 8,192, FP8, Megatron FSDP over 64 GB200 (NVLink-C2C to the host) and 64
   H100 (PCIe): full and selective recomputation, and the fewest offloaded layers that
   fit without recomputation, at micro-batches 1 and 2.
5. The measured CPU-KV-offload pair of the measured pack (``vllm_runs_label_only.csv``:
   Llama-3.1-8B on one H100, runs 16 off and 24 on, same knobs): the predicted on/off
   difference against the measured one and against the spread of the off-runs whose other
   knobs should not matter at that load (runs 16, 23, 25). The runs' workload label
   (``general``) has no published profile; the study assumes the nearest published one
   (``general-lite``: 100 + 447 prompt tokens, 248 output tokens, which the runs' own
   (E2E - TTFT) / TPOT of ~237 tokens agrees with) and says so.

    python bench/study_offload.py [--out bench/results] [--measured ../shared/measured]
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path
from typing import Any

from planners.serving import plan_serving
from planners.space import ServingSpace
from profiles.errors import ClusterSimError
from profiles.files import write_text
from profiles.models import ModelSpec
from simulator import build_deployment, simulate, simulate_training
from validation.serving_runs import inference_perf_config
from workloads.benchmark_tools import InferencePerfConfig, from_inference_perf
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


OFFLOAD_PAIR = {16: "off", 24: "on"}  # label-only runs: same knobs, CPU KV offload off / on
SPREAD_RUNS = (16, 23, 25)  # off, with max_num_batched_tokens 8192 / gpu-mem 0.95 instead


def _profile_config(measured: Path, label: str) -> InferencePerfConfig:
    import pandas as pd
    row = pd.read_csv(measured / "vllm_workload_profiles.csv").set_index(
        "workload_label").loc[label]
    return inference_perf_config(row, [(row[f"stage{i}_rate_rps"], row[f"stage{i}_duration_s"])
                                       for i in range(int(row["n_stages"]))])


def measured_offload_pair(measured: Path) -> list[str]:
    import pandas as pd
    lines = ["## 5. The measured CPU KV offload pair (real vLLM runs)", ""]
    path = measured / "vllm_runs_label_only.csv"
    if not path.is_file():
        return [*lines, f"Skipped: {path} is absent.", ""]
    runs = pd.read_csv(path)
    whole = runs[runs["stage_index"] == -1].set_index("run_id")
    config = _profile_config(measured, "general-lite")
    trace = from_inference_perf(config)
    output_len = config.data.shared_prefix.output_len
    predicted: dict[str, dict[str, float]] = {}
    cache_rows = []
    for run_id, state in OFFLOAD_PAIR.items():
        first = whole.loc[run_id]
        # NOTE: the runs do not publish the host tier's size; 16 GiB is assumed, and the
        # prediction does not depend on it while the GPU pool evicts nothing.
        deployment = build_deployment({
            "model": "llama-3.1-8b", "gpu": "h100", "engine": "vllm-v1-0.15",
            "parallelism": {"tp": int(first["tp"])},
            "scheduler": {"max_num_batched_tokens": int(first["max_num_batched_tokens"]),
                          "gpu_memory_utilization": float(first["gpu_memory_utilization"])},
            "offload": {"kv_offloading_size": 16.0 if state == "on" else 0.0}})
        result = simulate(deployment, trace)
        s, requests = result.summary, result.requests
        assert s is not None and requests is not None
        e2e, ttft = float(requests["e2e_s"].mean()) * 1e3, float(requests["ttft_s"].mean()) * 1e3
        predicted[state] = {"ttft": ttft, "tpot": (e2e - ttft) / (output_len - 1), "e2e": e2e}
        cache = s["prefix_cache"]
        cache_rows.append(f"| {state} | {s['kv_cache']['peak_usage']:.1%} | "
                          f"{cache['hit_rate']:.1%} | {cache['host_hit_tokens']:,} |")
    measured_ms = {state: {"ttft": float(whole.loc[run_id, "ttft_mean_ms"]),
                           "tpot": float(whole.loc[run_id, "tpot_mean_ms"]),
                           "e2e": float(whole.loc[run_id, "e2e_mean_ms"])}
                   for run_id, state in OFFLOAD_PAIR.items()}
    lines += ["Llama-3.1-8B on one H100, vLLM 0.15 preset, max_num_batched_tokens 2048, "
              "gpu_memory_utilization 0.9; runs 16 (offload off) and 24 (on) of "
              "`vllm_runs_label_only.csv`, whole-run means. Workload assumed: the published "
              "`general-lite` profile (the `general` label's own is not published).", "",
              "| offload | KV peak | prefix hit rate | tokens from host |",
              "| --- | --- | --- | --- |", *cache_rows, "",
              "| metric | measured off ms | measured on ms | measured on/off | predicted "
              "on/off | spread of off-runs 16, 23, 25 |",
              "| --- | --- | --- | --- | --- | --- |"]
    columns = {"ttft": "ttft_mean_ms", "tpot": "tpot_mean_ms", "e2e": "e2e_mean_ms"}
    verdicts = []
    for metric, column in columns.items():
        off, on = measured_ms["off"][metric], measured_ms["on"][metric]
        spread = whole.loc[list(SPREAD_RUNS), column]
        ratio = predicted["on"][metric] / predicted["off"][metric]
        lines.append(f"| {metric.upper()} | {off:.2f} | {on:.2f} | {on / off - 1:+.1%} | "
                     f"{ratio - 1:+.1%} | {spread.min():.2f}-{spread.max():.2f} "
                     f"({spread.max() / spread.min() - 1:.1%}) |")
        print(lines[-1], flush=True)
        low, high = spread.min(), spread.max()
        beyond = on / high - 1 if on > high else on / low - 1 if on < low else 0.0
        verdicts.append(f"{metric.upper()} on is " + (f"{beyond:+.1%} outside" if beyond
                                                       else "within") + " the off-runs' range")
    lines += ["", "The simulator predicts no difference: the workload's distinct prompts stay "
              "in the GPU's prefix cache, so no block is evicted to the host tier and none is "
              "read back. Measured: " + "; ".join(verdicts) + ". What the simulator leaves "
              "out is the offloading connector's own per-step work (its block lookups and "
              "store launches), which no parameter prices: one measured pair is too little "
              "to fit one. A workload whose working set outgrows the GPU cache is where the "
              "tier pays (section 3).", ""]
    return lines


def _activation_plan(gpu: str, micro_batch: int, **plan: Any) -> Any:
    job = TrainingJob(model="llama-3-70b", gpu=gpu, seq_len=8192, global_batch=256,
                      micro_batch=micro_batch, dtype="fp8",
                      plan={"dp": 64, "zero_stage": 3} | plan)
    try:
        return simulate_training(job)
    except ClusterSimError:
        return None


def activation_offload() -> list[str]:
    lines = ["## 6. Activation offloading against recomputation (Llama 3 70B, 64 GPUs, "
             "FSDP, FP8)", "",
             "| GPU | micro-batch | plan | step s | MFU | GPU GiB | host GiB | copies exposed s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for gpu in ("gb200", "h100"):
        for micro_batch in (1, 2):
            low, high = 0, 80  # offloaded layers: high fits (or none does), low does not
            if _activation_plan(gpu, micro_batch) is not None:
                high = 0
            while high - low > 1:
                middle = (low + high) // 2
                if _activation_plan(gpu, micro_batch, activation_offload_layers=middle):
                    high = middle
                else:
                    low = middle
            choices = [("full recomputation", {"recompute": "full"}),
                       ("selective recomputation", {"recompute": "selective"})]
            if high == 0:
                choices.append(("neither (it fits as it is)", {}))
            elif high < 80:
                choices.append((f"{high} layers offloaded",
                                {"activation_offload_layers": high}))
            else:
                choices.append(("no offload fits (the host's share is too small)",
                                {"activation_offload_layers": 79}))
            for label, plan in choices:
                result = _activation_plan(gpu, micro_batch, **plan)
                if result is None:
                    lines.append(f"| {gpu} | {micro_batch} | {label} | does not fit | | | | |")
                    continue
                memory = result.memory.as_gib()
                lines.append(
                    f"| {gpu} | {micro_batch} | {label} | {result.step_s:.2f} | "
                    f"{result.mfu:.1%} | {memory['total']:.1f} | "
                    f"{memory['host_activations']:.0f} | "
                    f"{result.breakdown['activation_offload']:.2f} |")
                print(lines[-1], flush=True)
    lines += ["", "Offloading costs what the host link cannot hide behind a layer's pass: "
              "little over GB200's NVLink-C2C, a lot over an H100's PCIe.", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--measured", type=Path, default=Path("../shared/measured"),
                        help="the measured pack (section 5 is skipped without it)")
    parser.add_argument("--only", type=int, choices=range(1, 7), help="run one section")
    args = parser.parse_args()
    started = time.perf_counter()
    lines = ["# Offloading study (simulated predictions, not measurements)", "",
             "`python bench/study_offload.py`", ""]
    parts = (largest_trainable, largest_servable, host_prefix_tier, planner_pick,
             partial(measured_offload_pair, args.measured), activation_offload)
    for number, part in enumerate(parts, start=1):
        if args.only is None or args.only == number:
            lines += part()
    lines.append(f"Run time {time.perf_counter() - started:.0f} s.")
    path = args.out / "offload_study.md"
    write_text(path, "\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
