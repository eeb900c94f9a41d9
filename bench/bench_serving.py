"""Benchmark: 100,000 Llama-3-8B requests on one A100-80GB, vLLM policy.

The setup of the serving-core issue: TP 1, one replica, ``max_num_seqs`` 128,
``max_num_batched_tokens`` 4096 (so ``max_model_len`` 4096, as vLLM v0 requires without
chunked prefill), Poisson arrivals at 6.45 req/s, lognormal prompt and output lengths
matching the Azure LLM inference conversation trace: means 1,155 and 211 tokens (the
issue's figures), medians 1,020 and 129 (Splitwise, Patel et al. 2024, Sec. III), hence
sigma = sqrt(2 ln(mean/median)) = 0.50 and 0.99, clipped so prompt + output <= 4096.

Prints wall time, simulated requests per second, batch steps per second and peak memory
(tracemalloc peak of Python allocations, plus the process's max RSS). The baseline in the
same run is a 10,000-request run of the same setup: the ratio shows how the cost scales.

    python bench/bench_serving.py [--num-requests 100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc

from simulator.serving.config import build_deployment
from simulator.serving.engine import simulate
from workloads.generators import GeneratorSpec, generate

DEPLOYMENT = {
    "model": "llama-3-8b",
    "gpu": "a100",
    "parallelism": {"tp": 1, "pp": 1},
    "replicas": 1,
    "engine": "none",  # the bare vLLM V0 policy, as the Vidur comparison ran it
    "scheduler": {"policy": "prefill-first", "max_num_seqs": 128,
                  "max_num_batched_tokens": 4096, "max_model_len": 4096},
}


def workload_spec(num_requests: int) -> GeneratorSpec:
    return GeneratorSpec(
        num_requests=num_requests,
        arrival={"kind": "poisson", "rate_per_s": 6.45},
        prompt={"kind": "lognormal", "mean": 1155, "sigma": 0.50, "max": 3072},
        output={"kind": "lognormal", "mean": 211, "sigma": 0.99, "max": 1024},
        seed=0,
    )


def run(num_requests: int, measure_memory: bool) -> dict[str, float]:
    trace = generate(workload_spec(num_requests))
    deployment = build_deployment(DEPLOYMENT)
    if measure_memory:
        tracemalloc.start()
    started = time.perf_counter()
    result = simulate(deployment, trace)
    wall_s = time.perf_counter() - started
    peak_bytes = tracemalloc.get_traced_memory()[1] if measure_memory else 0
    if measure_memory:
        tracemalloc.stop()
    if not result.ok:
        sys.exit(f"error: {result.error}")
    assert result.summary is not None
    steps = result.summary["batches"]["num_steps"]
    return {
        "num_requests": num_requests,
        "wall_s": wall_s,
        "requests_per_wall_s": num_requests / wall_s,
        "steps": steps,
        "steps_per_wall_s": steps / wall_s,
        "python_peak_mib": peak_bytes / 2**20,
        "prompt_mean": float(trace.prompt_tokens.mean()),
        "output_mean": float(trace.output_tokens.mean()),
        "simulated_makespan_s": result.summary["makespan_s"],
        "ttft_p50_s": result.summary["ttft_s"]["p50"],
        "tpot_p50_s": result.summary["tpot_s"]["p50"],
        "mean_batch_size": result.summary["batches"]["mean_batch_size"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-requests", type=int, default=100_000)
    parser.add_argument("--baseline-requests", type=int, default=10_000)
    parser.add_argument("--memory", action="store_true",
                        help="also trace Python allocations (slows the run ~2x)")
    args = parser.parse_args()
    baseline = run(args.baseline_requests, measure_memory=False)
    main_run = run(args.num_requests, measure_memory=False)
    if args.memory:
        main_run["python_peak_mib"] = run(args.num_requests, measure_memory=True)[
            "python_peak_mib"]
    main_run["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    main_run["ratio_wall_vs_baseline"] = main_run["wall_s"] / baseline["wall_s"]
    main_run["ratio_requests_vs_baseline"] = args.num_requests / args.baseline_requests
    print(json.dumps({"baseline": baseline, "main": main_run}, indent=2))


if __name__ == "__main__":
    main()
