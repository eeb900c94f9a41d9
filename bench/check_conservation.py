"""Check: conservation at scale. Simulates N requests (a million by default) and checks
that every request id comes back exactly once, that every request produced exactly the
tokens it asked for, that its timestamps are causal (arrival <= first scheduled <= first
token <= finish), that no output is NaN, and that submitted = finished + rejected.
Prints the wall time and the peak memory of the process.

    python bench/check_conservation.py [--num-requests 1000000] [--replicas 8]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

from simulator import build_deployment, simulate
from workloads.generators import GeneratorSpec, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-requests", type=int, default=1_000_000)
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    args = parser.parse_args()
    started = time.perf_counter()
    trace = generate(GeneratorSpec(
        num_requests=args.num_requests, arrival={"kind": "poisson", "rate_per_s": args.rate},
        prompt={"kind": "lognormal", "mean": 600, "sigma": 0.6, "max": 4000},
        output={"kind": "lognormal", "mean": 120, "sigma": 0.8, "max": 1000}, seed=11))
    deployment = build_deployment({"model": "llama-3-8b", "gpu": "h100",
                                   "replicas": args.replicas})
    result = simulate(deployment, trace)
    elapsed = time.perf_counter() - started
    if not result.ok or result.requests is None or result.summary is None:
        sys.exit(f"simulation failed: {result.error}")
    rows = result.requests
    ids = rows["request_id"].to_numpy()
    checks = {
        "every id exactly once": len(ids) == len(trace) and len(np.unique(ids)) == len(ids)
        and set(ids.tolist()) == set(range(len(trace))),
        "tokens conserved": bool((rows.sort_values("request_id")["output_tokens"].to_numpy()
                                  == trace.output_tokens).all()),
        "arrival <= first scheduled": bool((rows["first_scheduled_s"]
                                            >= rows["arrival_s"]).all()),
        "first scheduled <= first token": bool((rows["first_token_s"]
                                                >= rows["first_scheduled_s"]).all()),
        "first token <= finish": bool((rows["finish_s"] >= rows["first_token_s"]).all()),
        "no NaN latency": not rows[["arrival_s", "first_scheduled_s", "first_token_s",
                                    "finish_s", "ttft_s", "e2e_s"]].isna().any().any(),
        "submitted = finished + rejected": result.summary["requests"]["submitted"]
        == result.summary["requests"]["finished"] + result.summary["requests"]["rejected"]
        == len(trace),
    }
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print(f"{len(trace):,} requests on {args.replicas} x H100 (vLLM 0.15 preset): "
          f"{result.summary['batches']['num_steps']:,} steps, {elapsed:.1f} s wall "
          f"(simulation {result.runtime_s:.1f} s), peak memory {peak_mib:,.0f} MiB")
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
