"""Study: what prefix caching and CPU overhead do to a shared-prefix chat workload.

The fidelity issue's setup: Llama-2-7B on one H100, vLLM V1 engine preset; 9 system
prompts x 5 users, 100-token system prompts, ~450-token questions and ~250-token outputs
(lognormal, sigma 0.2), single-turn, Poisson arrivals at 8 and then 20 req/s. Four
variants per rate: prefix caching off/on x CPU overhead off/on (the preset's estimate).
Prints, and writes to bench/results/prefix_caching_study.md, TTFT, ITL and E2E means and
p90s per variant. These are simulated predictions, not measurements.

    python bench/study_prefix_caching.py [--num-requests 3000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from profiles.files import write_text
from simulator.serving.config import build_deployment
from simulator.serving.engine import simulate
from workloads.generators import ChatSpec, generate_chat

VARIANTS = {  # name: (prefix caching, CPU overhead from the preset)
    "no cache, no CPU": (False, False),
    "cache, no CPU": (True, False),
    "no cache, CPU": (False, True),
    "cache, CPU (vllm-v1 default)": (True, True),
}


def workload(rate_per_s: float, num_requests: int):
    return generate_chat(ChatSpec(
        num_requests=num_requests, arrival={"kind": "poisson", "rate_per_s": rate_per_s},
        num_system_prompts=9, users_per_prompt=5, system_prompt_tokens=100,
        question={"kind": "lognormal", "mean": 450, "sigma": 0.2, "max": 2000},
        output={"kind": "lognormal", "mean": 250, "sigma": 0.2, "max": 1000},
        turns_per_session=1, seed=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-requests", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results",
                        help="folder for prefix_caching_study.md (as the other studies)")
    args = parser.parse_args()
    lines = [
        "# Prefix caching and CPU overhead: shared-prefix chat, Llama-2-7B, one H100",
        "",
        f"Simulated with `python bench/study_prefix_caching.py --num-requests "
        f"{args.num_requests}` (engine preset vllm-v1, roofline cost model; CPU overhead "
        f"is the preset's documented estimate). Milliseconds.",
        "",
        "| rate (req/s) | variant | hit rate | TTFT mean | TTFT p90 | ITL mean | ITL p90 "
        "| E2E mean | E2E p90 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rate in (8.0, 20.0):
        trace = workload(rate, args.num_requests)
        for name, (caching, cpu) in VARIANTS.items():
            deployment = build_deployment({
                "model": "llama-2-7b", "gpu": "h100", "engine": "vllm-v1",
                "scheduler": {"enable_prefix_caching": caching},
                **({} if cpu else {"cpu_overhead": {}}),
            })
            result = simulate(deployment, trace)
            if not result.ok:
                raise SystemExit(f"error: {result.error}")
            s = result.summary
            assert s is not None
            ms = {key: (s[key]["mean"] * 1e3, s[key]["p90"] * 1e3)
                  for key in ("ttft_s", "tbt_s", "e2e_s")}
            lines.append(
                f"| {rate:g} | {name} | {s['prefix_cache']['hit_rate']:.1%} | "
                + " | ".join(f"{mean:,.1f} | {p90:,.1f}" for mean, p90 in ms.values()) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    path = args.out / "prefix_caching_study.md"
    write_text(path, text)  # whole or not at all, as every output
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
