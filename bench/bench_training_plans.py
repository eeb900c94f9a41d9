"""Benchmark: evaluate 10,000 training plans of Llama-3-70B and report plans per second.

Each plan is a full evaluation as a planner would do it: plan checks, the analytic
memory model, and (when it fits) a simulated step with the pipeline schedule executed on
stage streams. The plans cover GPU counts 64-1,024 H100s, TP 1-8, PP 1-16, CP 1-2,
micro-batches 1-4, the three recomputation modes, ZeRO 0-3 and the three schedules, in a
fixed order. The baseline in the same run is the memory check alone.

    python bench/bench_training_plans.py [--num-plans 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import time
from typing import Any

from profiles.errors import ClusterSimError
from profiles.models import load_model
from simulator.training.step import check_plan, simulate_training
from workloads.training import ParallelPlan, TrainingJob


def plans(limit: int) -> list[TrainingJob]:
    jobs: list[TrainingJob] = []
    grid = itertools.product(
        (64, 128, 256, 512, 1024), (1, 2, 4, 8), (1, 2, 4, 8, 16), (1, 2), (1, 2, 4),
        ("none", "selective", "full"), (0, 1, 2, 3),
        (("1f1b", 1), ("interleaved", 2), ("gpipe", 1)),
    )
    for gpus, tp, pp, cp, mbs, recompute, zero, (schedule, v) in grid:
        if gpus % (tp * pp * cp):
            continue
        dp = gpus // (tp * pp * cp)
        try:
            plan = ParallelPlan(tp=tp, pp=pp, dp=dp, cp=cp, schedule=schedule,
                                virtual_stages=v, sequence_parallel=tp > 1,
                                recompute=recompute, zero_stage=zero)
        except ValueError:
            continue
        jobs.append(TrainingJob(model="llama-3-70b", gpu="h100", seq_len=8192,
                                global_batch=1024, micro_batch=mbs, plan=plan))
        if len(jobs) == limit:
            break
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-plans", type=int, default=10_000)
    args = parser.parse_args()
    jobs = plans(args.num_plans)
    model = load_model("llama-3-70b")

    started = time.perf_counter()
    for job in jobs:
        with contextlib.suppress(ClusterSimError):
            check_plan(job, model)
    check_s = time.perf_counter() - started

    started = time.perf_counter()
    outcome: dict[str, int] = {"simulated": 0, "rejected": 0}
    best: dict[str, Any] = {"mfu": 0.0}
    simulate_s = 0.0
    for job in jobs:
        begun = time.perf_counter()
        try:
            result = simulate_training(job, model=model)
        except ClusterSimError:
            outcome["rejected"] += 1
            continue
        simulate_s += time.perf_counter() - begun
        outcome["simulated"] += 1
        if result.mfu > best["mfu"]:
            best = {"mfu": result.mfu, "step_s": result.step_s,
                    "plan": job.plan.model_dump(), "micro_batch": job.micro_batch}
    wall_s = time.perf_counter() - started
    print(json.dumps({
        "num_plans": len(jobs), **outcome, "wall_s": round(wall_s, 3),
        "plans_per_s": round(len(jobs) / wall_s, 1),
        "simulated_plans_per_s": round(outcome["simulated"] / simulate_s, 1),
        "baseline_plan_checks_per_s": round(len(jobs) / check_s, 1),
        "ratio_full_vs_checks": round(wall_s / check_s, 1),
        "best_plan_by_mfu": best,
    }, indent=2))


if __name__ == "__main__":
    main()
