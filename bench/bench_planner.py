"""Benchmark: plan Llama-3-70B serving on up to 16 GPUs of two kinds, pruned vs exhaustive.

Chat-like trace (Azure-conversation-like lengths, Poisson), TTFT p90 <= 1 s and TPOT p90
<= 50 ms (90% attainment), H100 and A100 up to 16 each, TP 2/4/8, PP 1/2, replicas as
the GPUs allow, policy running-first. Prints wall and CPU seconds (this process and its
workers), candidates, simulations and the chosen plan for the pruned search, then the
same for an exhaustive one, their ratios and whether the Pareto sets are the same; writes
them to ``--out`` (default bench/results/planner.md).

    python bench/bench_planner.py [--num-requests 300] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # facts beside it

from facts import run_facts

from planners.serving import plan_serving
from planners.space import ServingSpace
from workloads.generators import GeneratorSpec, generate

PRICES = {"A100-SXM4-80GB": 5.12}  # the H100 default comes from the sourced price file


def run(prune: bool, num_requests: int, workers: int) -> dict[str, object]:
    trace = generate(GeneratorSpec(
        num_requests=num_requests, arrival={"kind": "poisson", "rate_per_s": 2.0},
        prompt={"kind": "lognormal", "mean": 1155, "sigma": 0.5, "max": 4000},
        output={"kind": "lognormal", "mean": 211, "sigma": 0.99, "max": 1000}, seed=0))
    space = ServingSpace(gpus=[{"name": "h100", "max_gpus": 16}, {"name": "a100", "max_gpus": 16}],
                         tp=[2, 4, 8], pp=[1, 2])
    started = time.perf_counter()
    cpu_started = _cpu_s()
    plan = plan_serving("llama-3-70b", trace, ttft_slo_s=1.0, tpot_slo_s=0.05, space=space,
                        prices=PRICES, workers=workers, prune=prune)
    wall = time.perf_counter() - started
    cpu = _cpu_s() - cpu_started
    best = next(c for c in plan.candidates if c.index == plan.best.get("goodput_per_gpu", -1))
    return {
        "prune": prune, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "candidates": len(plan.candidates),
        "evaluated": sum(c.status == "evaluated" for c in plan.candidates),
        "pruned": sum(c.status == "pruned" for c in plan.candidates),
        "infeasible": sum(c.status == "infeasible" for c in plan.candidates),
        "simulations": plan.num_simulations, "pareto": plan.pareto,
        "best_per_gpu": {"index": best.index, "gpu": best.gpu, "num_gpus": best.num_gpus,
                         **best.deployment["parallelism"], "replicas": best.deployment["replicas"],
                         "goodput_req_per_s": round(best.goodput_rate_per_s, 3)},
    }


def _cpu_s() -> float:
    """CPU seconds of this process and of its finished worker processes."""
    own, workers = (resource.getrusage(resource.RUSAGE_SELF),
                    resource.getrusage(resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-requests", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "planner.md")
    args = parser.parse_args()
    pruned = run(True, args.num_requests, args.workers)
    exhaustive = run(False, args.num_requests, args.workers)
    result = {"pruned": pruned, "exhaustive": exhaustive,
              "same_best_plan": pruned["best_per_gpu"] == exhaustive["best_per_gpu"],
              "same_pareto_set": pruned["pareto"] == exhaustive["pareto"],
              "time_ratio_pruned_vs_exhaustive":
                  round(float(pruned["wall_s"]) / float(exhaustive["wall_s"]), 3),
              "cpu_ratio_pruned_vs_exhaustive":
                  round(float(pruned["cpu_s"]) / float(exhaustive["cpu_s"]), 3)}
    text = json.dumps(result, indent=2)
    print(text)
    command = ("python bench/bench_planner.py --num-requests "
               f"{args.num_requests} --workers {args.workers}")
    args.out.write_text(f"# Planner speed\n\n`{command}`, {run_facts()}.\n\n"
                        f"```json\n{text}\n```\n")


if __name__ == "__main__":
    main()
