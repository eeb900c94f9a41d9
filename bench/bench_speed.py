"""Benchmark: the simulator's speed, each figure against a baseline in the same run.

    python bench/bench_speed.py [--num-requests 100000] [--million] [--out FILE]

* engine: the serving benchmark (Llama-3-8B, one A100, vLLM V0's prefill-first policy,
  6.45 req/s, Azure-like lengths: bench/bench_serving.py's setup) with decode runs
  skipped against the step loop (``decode_runs.SKIP_STEPS = False``) on the same trace:
  CPU seconds of each, the ratio, and whether every request's row is identical; then
  the whole ``simulate`` command on that trace in a fresh process (start-up, reading
  the trace file, writing the outputs) against the run alone.
  ``--million`` also runs 1,000,000 requests skipped, in a fresh process, for its CPU
  seconds and peak memory (max RSS).
* start-up: ``simulate --help`` and a 100-request ``simulate`` run, each in a fresh
  process (best of 5, CPU seconds of the child, bytecode caches written), against the
  bare interpreter importing typer (the floor a typer command line cannot go under).
* prefix caching: the engine benchmark's trace (no prompt shares a prefix) with
  prefix caching on against off.

Writes a Markdown table (``--out``, default bench/results/speed.md) with the run's facts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_serving, facts beside it

from bench_serving import DEPLOYMENT, workload_spec
from facts import run_facts

from simulator.serving import decode_runs
from simulator.serving.config import build_deployment
from simulator.serving.engine import simulate
from workloads.generators import generate
from workloads.loaders import save_workload

ROOT = Path(__file__).resolve().parent.parent


def _cpu_run(deployment: dict[str, Any], trace: Any, skip: bool) -> tuple[float, Any]:
    decode_runs.SKIP_STEPS = skip
    try:
        started = time.process_time()
        result = simulate(build_deployment(deployment), trace)
        return time.process_time() - started, result
    finally:
        decode_runs.SKIP_STEPS = True


def engine(num_requests: int) -> dict[str, Any]:
    trace = generate(workload_spec(num_requests))
    stepped_s, stepped = _cpu_run(DEPLOYMENT, trace, skip=False)
    skipped_s, skipped = _cpu_run(DEPLOYMENT, trace, skip=True)
    assert stepped.ok and skipped.ok
    try:
        pd.testing.assert_frame_equal(skipped.requests, stepped.requests, check_exact=True)
        same = True
    except AssertionError:
        same = False
    same_summary = ({k: v for k, v in skipped.summary.items() if k != "run"}
                    == {k: v for k, v in stepped.summary.items() if k != "run"})
    return {"num_requests": num_requests, "steps": skipped.summary["batches"]["num_steps"],
            "step_loop_cpu_s": stepped_s, "skipping_cpu_s": skipped_s,
            "speedup": stepped_s / skipped_s, "rows_identical": same,
            "summary_identical": same_summary}


def end_to_end(num_requests: int, in_process_cpu_s: float) -> dict[str, Any]:
    """The whole ``simulate`` command on the engine benchmark's trace, in a fresh process
    (start-up, reading the trace file, the run, writing requests.csv and summary.json),
    against the run alone in this process (``in_process_cpu_s``)."""
    folder = Path(tempfile.mkdtemp())
    trace, deployment = folder / "trace.json", folder / "deployment.json"
    save_workload(generate(workload_spec(num_requests)), trace)
    deployment.write_text(json.dumps(DEPLOYMENT))
    out = folder / "out"
    cpu = _child_cpu_s([sys.executable, "-c", "from cli.main import simulate_main; "
                        "simulate_main()", "--workload", str(trace), "--deployment",
                        str(deployment), "--out", str(out)], repeats=3)
    return {"num_requests": num_requests, "simulate_command_cpu_s": cpu,
            "run_alone_cpu_s": in_process_cpu_s, "command_vs_run": cpu / in_process_cpu_s}


def million() -> dict[str, Any]:
    """1,000,000 requests skipped, in a child process (its own peak memory)."""
    script = (
        "import sys, time, resource, json\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "from bench_serving import DEPLOYMENT, workload_spec\n"
        "from simulator.serving.config import build_deployment\n"
        "from simulator.serving.engine import simulate\n"
        "from workloads.generators import generate\n"
        "trace = generate(workload_spec(1_000_000))\n"
        "started = time.process_time()\n"
        "result = simulate(build_deployment(DEPLOYMENT), trace)\n"
        "cpu = time.process_time() - started\n"
        "print(json.dumps({'cpu_s': cpu, 'ok': result.ok,\n"
        "    'max_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child_cpu_s(argv: list[str], repeats: int = 5) -> float:
    """Best CPU seconds (user + system) of a fresh process running ``argv``, after one
    run that writes the bytecode caches (as an installed package has them)."""
    env = {key: value for key, value in os.environ.items()
           if key != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(argv, cwd=ROOT, capture_output=True, check=True, env=env)
    best = float("inf")
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, cwd=ROOT, capture_output=True, check=True, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return best


def startup() -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp())
    trace = folder / "trace.json"
    save_workload(generate(workload_spec(100)), trace)
    simulate_cli = [sys.executable, "-c", "from cli.main import simulate_main; simulate_main()"]
    floor = _child_cpu_s([sys.executable, "-c", "import typer"])
    helped = _child_cpu_s([*simulate_cli, "--help"])
    ran = _child_cpu_s([*simulate_cli, "--workload", str(trace), "--model", "llama-3-8b",
                        "--gpu", "a100", "--engine", "none"])
    return {"python_import_typer_cpu_s": floor, "simulate_help_cpu_s": helped,
            "help_vs_floor": helped / floor, "simulate_100_requests_cpu_s": ran,
            "run_vs_floor": ran / floor}


def prefix_caching(num_requests: int) -> dict[str, Any]:
    trace = generate(workload_spec(num_requests))
    cached = {**DEPLOYMENT, "scheduler": {**DEPLOYMENT["scheduler"],
                                          "enable_prefix_caching": True}}
    best = {"off": float("inf"), "on": float("inf")}
    for _ in range(5):  # interleaved, best of 5: the machine's noise is a few percent
        best["off"] = min(best["off"], _cpu_run(DEPLOYMENT, trace, skip=True)[0])
        best["on"] = min(best["on"], _cpu_run(cached, trace, skip=True)[0])
    return {"num_requests": num_requests, "caching_off_cpu_s": best["off"],
            "caching_on_cpu_s": best["on"], "on_vs_off": best["on"] / best["off"]}


def markdown(results: dict[str, Any]) -> str:
    lines = ["# Speed", "", f"`python bench/bench_speed.py {' '.join(sys.argv[1:])}`, "
             f"{run_facts()}.", ""]
    for name, figures in results.items():
        lines += [f"## {name}", "", "| figure | value |", "|---|---|"]
        lines += [f"| {key} | {value:.4g} |" if isinstance(value, float)
                  else f"| {key} | {value} |" for key, value in figures.items()]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-requests", type=int, default=100_000)
    parser.add_argument("--prefix-requests", type=int, default=20_000)
    parser.add_argument("--million", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/speed.md")
    args = parser.parse_args()
    results: dict[str, Any] = {"engine": engine(args.num_requests)}
    results["engine, the whole simulate command"] = end_to_end(
        args.num_requests, results["engine"]["skipping_cpu_s"])
    if args.million:
        results["engine, 1,000,000 requests (skipping)"] = million()
    results["start-up"] = startup()
    results["prefix caching, no shared prefixes"] = prefix_caching(args.prefix_requests)
    text = markdown(results)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
