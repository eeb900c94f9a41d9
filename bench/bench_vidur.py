"""Benchmark: clustersim and Vidur side by side on one trace, when a Vidur checkout is given.

    python bench/bench_vidur.py --vidur PATH [--vidur-python PY] [--num-requests 10000]
                                [--vidur-arg=--flag=value ...] [--out FILE]

The setup of the speed issue: Llama-3-8B on one A100, TP 1, vLLM's V0 policy with 128
sequences and 4,096 tokens a step, Poisson arrivals at 6.45 req/s with the serving
benchmark's Azure-like lengths (bench/bench_serving.py). The same requests go to both:

* clustersim: the ``simulate`` command on the trace as JSON, in a child process;
* Vidur: ``python -m vidur.main`` in the checkout, replaying the trace as its
  ``trace_replay`` CSV (Date, Time, PromptTokenCount, CompletionTokenCount, scale factors
  1), run twice: cold, then warm (its predictor trained and cached by the first run).

Reported, each against the other in the same run: CPU seconds of each whole process
(the child's user + system time), the ratio, and each tool's TTFT and TPOT median and p90
(Vidur's ``prefill_e2e_time`` and ``decode_time_execution_plus_preemption_normalized``
from its request_metrics.csv, where its version writes them). Vidur's flags differ between
its versions: pass more or other ones with ``--vidur-arg``. Without ``--vidur`` the script
says it is skipped and exits 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_serving, facts beside it

from bench_serving import DEPLOYMENT, workload_spec
from facts import run_facts

from workloads.generators import generate
from workloads.loaders import save_workload
from workloads.schema import RequestTrace

ROOT = Path(__file__).resolve().parent.parent
TRACE_DATE = "2024-01-01"  # Vidur's trace replay keeps the rows of one date


def vidur_trace_csv(trace: RequestTrace, path: Path) -> None:
    """The trace as Vidur's trace-replay CSV: arrival seconds and token counts per row."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Date", "Time", "PromptTokenCount", "CompletionTokenCount"])
        for arrival, prompt, output in zip(trace.arrival_s.tolist(),
                                           trace.prompt_tokens.tolist(),
                                           trace.output_tokens.tolist(), strict=True):
            writer.writerow([TRACE_DATE, repr(arrival), prompt, output])


def vidur_args(trace_csv: Path, out_dir: Path) -> list[str]:
    """Vidur's flags for the benchmark's deployment (its main's argparse names)."""
    scheduler = DEPLOYMENT["scheduler"]
    return [
        "--replica_config_device", "a100",
        "--replica_config_model_name", "meta-llama/Meta-Llama-3-8B",
        "--cluster_config_num_replicas", "1",
        "--replica_config_tensor_parallel_size", "1",
        "--replica_config_num_pipeline_stages", "1",
        "--request_generator_config_type", "trace_replay",
        "--trace_request_generator_config_trace_file", str(trace_csv),
        "--trace_request_generator_config_date", TRACE_DATE,
        "--trace_request_generator_config_prefill_scale_factor", "1",
        "--trace_request_generator_config_decode_scale_factor", "1",
        "--trace_request_generator_config_time_scale_factor", "1",
        "--trace_request_generator_config_max_tokens", str(scheduler["max_model_len"]),
        "--replica_scheduler_config_type", "vllm",
        "--vllm_scheduler_config_batch_size_cap", str(scheduler["max_num_seqs"]),
        "--vllm_scheduler_config_max_tokens_in_batch",
        str(scheduler["max_num_batched_tokens"]),
        "--metrics_config_output_dir", str(out_dir),
    ]


def child_cpu_s(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child process; it must exit 0."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"error: {' '.join(argv[:3])} ... exited {done.returncode}: "
                         + " | ".join(tail))
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall)


def _stats(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if not len(array):
        return {}
    return {"p50": float(np.percentile(array, 50)), "p90": float(np.percentile(array, 90))}


def _column(path: Path, name: str) -> list[float]:
    with path.open(newline="") as handle:
        return [float(row[name]) for row in csv.DictReader(handle) if row.get(name)]


def clustersim_latencies(out_dir: Path) -> dict[str, dict[str, float]]:
    requests = out_dir / "requests.csv"
    return {"ttft_s": _stats(_column(requests, "ttft_s")),
            "tpot_s": _stats(_column(requests, "tpot_s"))}


def vidur_latencies(out_dir: Path) -> dict[str, dict[str, float]]:
    """TTFT and TPOT from the newest request_metrics.csv under ``out_dir`` ({} if none)."""
    found = sorted(out_dir.rglob("request_metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not found:
        return {}
    metrics = found[-1]
    with metrics.open(newline="") as handle:
        header = next(csv.reader(handle), [])
    latencies = {}
    for ours, theirs in (("ttft_s", "prefill_e2e_time"),
                         ("tpot_s", "decode_time_execution_plus_preemption_normalized")):
        if theirs in header:
            latencies[ours] = _stats(_column(metrics, theirs))
    return latencies


def side_by_side(vidur: Path, python: str, num_requests: int,
                 extra: list[str]) -> dict[str, Any]:
    trace = generate(workload_spec(num_requests))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        trace_json, trace_csv = folder / "trace.json", folder / "trace.csv"
        deployment = folder / "deployment.json"
        save_workload(trace, trace_json)
        vidur_trace_csv(trace, trace_csv)
        deployment.write_text(json.dumps(DEPLOYMENT))
        ours_out = folder / "clustersim"
        ours_cpu, ours_wall = child_cpu_s(
            [sys.executable, "-c", "import cli; cli.simulate_main()", "--workload",
             str(trace_json), "--deployment", str(deployment), "--out", str(ours_out)],
            ROOT)
        runs = []
        for attempt in ("cold", "warm"):
            out = folder / f"vidur-{attempt}"
            cpu, wall = child_cpu_s([python, "-m", "vidur.main",
                                     *vidur_args(trace_csv, out), *extra], vidur)
            runs.append((attempt, cpu, wall, out))
        warm_cpu = runs[-1][1]
        return {
            "num_requests": num_requests,
            "clustersim_cpu_s": ours_cpu, "clustersim_wall_s": ours_wall,
            "vidur_cold_cpu_s": runs[0][1], "vidur_warm_cpu_s": warm_cpu,
            "vidur_warm_wall_s": runs[-1][2],
            "vidur_warm_vs_clustersim_cpu": warm_cpu / ours_cpu,
            "clustersim_latency": clustersim_latencies(ours_out),
            "vidur_latency": vidur_latencies(runs[-1][3]),
        }


def markdown(result: dict[str, Any], facts: str) -> str:
    lines = ["# clustersim and Vidur side by side", "", facts, "", "| figure | value |",
             "|---|---|"]
    for key, value in result.items():
        if isinstance(value, dict):
            for metric, stats in value.items():
                for name, number in stats.items():
                    lines.append(f"| {key} {metric} {name} | {number:.4g} |")
        else:
            lines.append(f"| {key} | {value:.4g} |" if isinstance(value, float)
                         else f"| {key} | {value} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vidur", type=Path, help="a Vidur checkout (its repository root)")
    parser.add_argument("--vidur-python", default=sys.executable,
                        help="the interpreter of Vidur's environment")
    parser.add_argument("--num-requests", type=int, default=10_000)
    parser.add_argument("--vidur-arg", action="append", default=[],
                        help="one more flag for Vidur's main, as --vidur-arg=--name=value")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/vidur.md")
    args = parser.parse_args(argv)
    if args.vidur is None:
        print("skipped: no Vidur checkout given (--vidur PATH)")
        return 0
    if not (args.vidur / "vidur" / "main.py").is_file():
        print(f"error: --vidur {args.vidur}: no vidur/main.py there; pass the root of a "
              "Vidur checkout", file=sys.stderr)
        return 2
    if args.num_requests < 1:
        print("error: --num-requests must be at least 1", file=sys.stderr)
        return 2
    result = side_by_side(args.vidur.resolve(), args.vidur_python, args.num_requests,
                          args.vidur_arg)
    command = "python bench/bench_vidur.py " + " ".join(argv if argv is not None
                                                        else sys.argv[1:])
    text = markdown(result, f"`{command}`, {run_facts()}.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
