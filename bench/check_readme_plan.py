"""Check: the README's planning example recommends a plan that holds its goodput.

Runs the README's ``clustersim plan`` example through the library (Llama-3-8B on the
bundled chat trace, TTFT p90 <= 0.5 s, TPOT p90 <= 50 ms, up to 4 H100 and 4 A100, TP 1
or 2, A100 at 5 USD per hour), then replays the recommended plan at its reported goodput
on a fresh trace ten times the goodput search's probe (the chat trace's own requests and
gaps resampled with another seed) and reports the SLO attainment and stability there,
with the launch commands the planner prints.

    python bench/check_readme_plan.py [--workers 2] [--out bench/results]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from planners.launch import launch_commands
from planners.objectives import (
    STEADY,
    extended_trace,
    request_lifetime_s,
    scaled_trace,
    slo_attainment,
)
from planners.serving import plan_serving
from planners.space import ServingSpace
from profiles.files import write_text
from simulator import build_deployment, simulate
from workloads.loaders import load_workload

TTFT_SLO_S, TPOT_SLO_S, ATTAINMENT = 0.5, 0.05, 0.9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    started = time.perf_counter()
    trace = load_workload("workloads/examples/chat.json")
    space = ServingSpace(gpus=[{"name": "h100", "max_gpus": 4}, {"name": "a100", "max_gpus": 4}],
                         tp=[1, 2])
    plan = plan_serving("llama-3-8b", trace, ttft_slo_s=TTFT_SLO_S, tpot_slo_s=TPOT_SLO_S,
                        space=space, prices={"A100-SXM4-80GB": 5.0}, workers=args.workers)
    planned_s = time.perf_counter() - started
    best = next(c for c in plan.candidates if c.index == plan.best["goodput_per_gpu"])
    rate = best.goodput_rate_per_s
    probe = STEADY.needed(rate, request_lifetime_s(trace, TPOT_SLO_S))
    fresh = extended_trace(scaled_trace(trace, rate), 10 * probe, seed=2026)
    result = simulate(build_deployment(best.deployment), fresh)
    assert result.requests is not None and result.summary is not None
    met = slo_attainment(result.requests, TTFT_SLO_S, TPOT_SLO_S)
    state = result.summary["stability"]["state"]
    commands = launch_commands(build_deployment(best.deployment))
    lines = [
        "# The README's planning example, re-simulated (simulated, not measured)", "",
        "`python bench/check_readme_plan.py`", "",
        f"Planned in {planned_s:.0f} s: {len(plan.candidates)} candidates, "
        f"{plan.num_simulations} simulations.", "",
        f"Recommended #{best.index}: {plan.reasons['goodput_per_gpu']}.", "",
        f"- deployment: `{best.deployment}`",
        f"- goodput {rate:.3f} req/s ({best.goodput_per_gpu:.3f} per GPU), TTFT p90 "
        f"{best.ttft_p90_s * 1e3:.0f} ms, TPOT p90 {best.tpot_p90_s * 1e3:.1f} ms at it",
        f"- fresh trace: {len(fresh):,} requests at {rate:.3f} req/s (10 x the probe's "
        f"{probe:,}), resampled from the chat trace with seed 2026",
        f"- SLO attainment there: {met:.1%} (target {ATTAINMENT:.0%}); {state}; TTFT p90 "
        f"{result.summary['ttft_s']['p90'] * 1e3:.0f} ms, TPOT p90 "
        f"{result.summary['tpot_s']['p90'] * 1e3:.1f} ms", "",
        "Launch commands the planner prints:", "",
        *(f"- {engine}: `{command}`" for engine, command in commands.items()), "",
        f"{'PASS' if met >= ATTAINMENT and state == 'STABLE' else 'FAIL'}; run time "
        f"{time.perf_counter() - started:.0f} s.", ""]
    path = args.out / "readme_plan_check.md"
    write_text(path, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
