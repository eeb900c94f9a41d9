"""Study: do DistServe's and Splitwise's claims come out of the simulator, and how big?

Both are planner runs over colocated and disaggregated deployments of the same space;
every number is simulated here (a prediction of this simulator, not a measurement),
next to the paper's claim.

* DistServe (Zhong et al. 2024): OPT-13B and OPT-66B on A100s, chatbot SLOs (TTFT 0.25 s
  / TPOT 0.1 s for 13B, 2.5 s / 0.15 s for 66B, attained by 90% of requests),
  ShareGPT-like lengths from our generator (lognormal means 161 prompt / 338 output
  tokens, the ShareGPT means the vLLM paper reports, Kwon et al. 2023, Sec. 6.1).
  Measured: the best goodput per GPU of each mode and their ratio. The paper: up to
  4.48x more requests per GPU than vLLM (its best case over models and applications).
* Splitwise (Patel et al. 2024): Llama-2-70B, Azure-conversation-like lengths (the
  bundled chat trace's generator: means 1,155 / 211), H100 prefill + A100 decode against
  H100 only, 8 GPUs of each type at most. Measured: goodput, cost per million tokens,
  and goodput per dollar-hour of each. The paper: 1.4x throughput at 20% lower cost.
  Prices: H100 from planners/data/prices.json; A100 at ``--a100-price-share`` of it (an
  assumption, stated in the output: no sourced A100 price ships).

    python bench/study_disaggregation.py [--num-requests 400] [--out bench/results]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from planners.objectives import default_prices
from planners.serving import Candidate, ServingPlan, plan_serving
from planners.space import ServingSpace
from profiles.files import write_text
from workloads.generators import GeneratorSpec, generate

DISTSERVE = (("opt-13b", 0.25, 0.1, [1, 2, 4]), ("opt-66b", 2.5, 0.15, [2, 4, 8]))


def _trace(num_requests: int, prompt_mean: float, output_mean: float, sigma_p: float,
           sigma_o: float, max_len: int, seed: int) -> Any:
    return generate(GeneratorSpec(
        num_requests=num_requests, arrival={"kind": "poisson", "rate_per_s": 4},
        prompt={"kind": "lognormal", "mean": prompt_mean, "sigma": sigma_p, "max": max_len},
        output={"kind": "lognormal", "mean": output_mean, "sigma": sigma_o, "max": max_len},
        seed=seed))


def _best(plan: ServingPlan, mode: str, key: str = "goodput_per_gpu",
          gpu: str | None = None, policy: str | None = None) -> Candidate | None:
    served = [c for c in plan.candidates if c.mode == mode and c.goodput_per_gpu > 0
              and (gpu is None or c.gpu == gpu)
              and (policy is None or c.deployment["scheduler"]["policy"] == policy)]
    return max(served, key=lambda c: getattr(c, key)) if served else None


def _why_none(plan: ServingPlan, mode: str) -> str:
    statuses = sorted({c.status for c in plan.candidates if c.mode == mode})
    if not statuses:
        return "no candidate: a phase met no SLO alone"
    return f"none served ({', '.join(statuses)}: pruned = dominated by evaluated plans)"


def _describe(c: Candidate | None, why: str = "none met the SLOs") -> str:
    if c is None:
        return why
    d = c.deployment
    layout = c.ratio or f"{d['replicas']} x tp{d['parallelism']['tp']}"
    return f"#{c.index} {c.gpu} {layout}, {c.num_gpus} GPUs"


def distserve(num_requests: int) -> list[str]:
    lines = ["## DistServe: goodput per GPU, disaggregated vs colocated (A100)", "",
             "Colocated baselines: `vllm` (prefill-first, no chunked prefill: the vLLM "
             "DistServe compared against) and `vllm-v1` (chunked prefill, today's default).",
             "",
             "| model | SLO TTFT / TPOT | colocated baseline | best colocated | req/s per GPU "
             "| best disaggregated | req/s per GPU | ratio |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    # ShareGPT-like: long-tailed lengths within OPT's 2,048-token context
    trace = _trace(num_requests, 161, 338, 1.0, 0.9, 1024, 7)
    for model, ttft, tpot, tps in DISTSERVE:
        space = ServingSpace(gpus=[{"name": "a100", "max_gpus": 8}], tp=tps,
                             replicas=[1, 2], policies=["running-first", "prefill-first"],
                             disaggregation={
                                 "prefill_tp": tps, "decode_tp": tps,
                                 "placements": ["by_pool"]})
        plan = plan_serving(model, trace, ttft_slo_s=ttft, tpot_slo_s=tpot, space=space)
        dis = _best(plan, "disaggregated")
        for policy in ("prefill-first", "running-first"):
            co = _best(plan, "colocated", policy=policy)
            ratio = (f"{dis.goodput_per_gpu / co.goodput_per_gpu:.2f}x" if co and dis
                     else "-")
            lines.append(
                f"| {model} | {ttft} s / {tpot} s | {policy} | {_describe(co)} | "
                f"{co.goodput_per_gpu if co else 0:.3f} | "
                f"{_describe(dis, _why_none(plan, 'disaggregated'))} | "
                f"{dis.goodput_per_gpu if dis else 0:.3f} | {ratio} |")
            print(lines[-1], flush=True)
        print(f"({plan.num_simulations} simulations)", flush=True)
    lines += ["", "DistServe reports up to 4.48x (its best case over models and "
              "applications, against vLLM).", ""]
    return lines


def splitwise(num_requests: int, a100_share: float) -> list[str]:
    h100_price = default_prices()["H100-SXM5-80GB"]
    prices = {"H100-SXM5-80GB": h100_price, "A100-SXM4-80GB": h100_price * a100_share}
    trace = _trace(num_requests, 1155, 211, 0.5, 0.99, 2048, 1)  # within 4,096 tokens
    space = ServingSpace(
        gpus=[{"name": "h100", "max_gpus": 8}, {"name": "a100", "max_gpus": 8}], tp=[4, 8],
        replicas=[1, 2], disaggregation={"prefill_gpus": ["h100"], "decode_gpus": ["a100"],
                                         "prefill_tp": [4, 8], "decode_tp": [4, 8]})
    plan = plan_serving("llama-2-70b", trace, ttft_slo_s=2.5, tpot_slo_s=0.15, space=space,
                        prices=prices)
    h100 = _best(plan, "colocated", "goodput_rate_per_s", gpu="H100-SXM5-80GB")
    mixed = _best(plan, "disaggregated", "goodput_rate_per_s")
    lines = ["## Splitwise: H100 prefill + A100 decode vs H100 only (Llama-2-70B)", "",
             f"Prices: H100 ${h100_price:.2f}/GPU-hour (planners/data/prices.json), A100 "
             f"{a100_share:.0%} of it (${prices['A100-SXM4-80GB']:.2f}, an assumption). "
             "SLOs TTFT 2.5 s / TPOT 0.15 s for 90% of requests.", "",
             "| deployment | goodput req/s | USD per hour | USD per million tokens | "
             "req/s per USD-hour | J per token |", "| --- | --- | --- | --- | --- | --- |"]
    rows = {}
    for name, c in (("H100 only", h100), ("H100 prefill + A100 decode", mixed)):
        if c is None:
            lines.append(f"| {name} | none met the SLOs | | | | |")
            continue
        block = c.deployment.get("disaggregation")
        usd_per_hour = (prices["H100-SXM5-80GB"] * c.num_gpus if block is None else
                        sum(prices[load] * p["replicas"] * p["parallelism"]["tp"]
                            for load, p in (("H100-SXM5-80GB", block["prefill"]),
                                            ("A100-SXM4-80GB", block["decode"]))))
        rows[name] = (c.goodput_rate_per_s, usd_per_hour, c.cost_per_mtok_usd or 0.0,
                      c.energy_j_per_token or 0.0)
        lines.append(f"| {name}: {_describe(c)} | {c.goodput_rate_per_s:.3f} | "
                     f"{usd_per_hour:.2f} | {c.cost_per_mtok_usd or 0:.3f} | "
                     f"{c.goodput_rate_per_s / usd_per_hour:.4f} | "
                     f"{c.energy_j_per_token or 0:.3f} |")
    if len(rows) == 2:
        (r_h, usd_h, mtok_h, j_h), (r_m, usd_m, mtok_m, j_m) = rows["H100 only"], \
            rows["H100 prefill + A100 decode"]
        lines += ["", f"Mixed / H100-only: throughput {r_m / r_h:.2f}x, cost per hour "
                  f"{usd_m / usd_h:.2f}x, cost per million tokens {mtok_m / mtok_h:.2f}x, "
                  f"throughput per dollar {(r_m / usd_m) / (r_h / usd_h):.2f}x, energy per "
                  f"token {j_m / j_h:.2f}x (the planner's TDP-based power model). Splitwise "
                  "reports 1.4x throughput at 20% lower cost (throughput per dollar about "
                  "1.75x)."]
    print("\n".join(lines[-4:]), f"({plan.num_simulations} simulations)", flush=True)
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-requests", type=int, default=400)
    parser.add_argument("--a100-price-share", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    started = time.perf_counter()
    lines = ["# Disaggregation study (simulated predictions, not measurements)", "",
             f"`python bench/study_disaggregation.py --num-requests {args.num_requests} "
             f"--a100-price-share {args.a100_price_share}`", ""]
    lines += distserve(args.num_requests)
    lines += splitwise(args.num_requests, args.a100_price_share)
    lines.append(f"Run time {time.perf_counter() - started:.0f} s.")
    path = args.out / "disaggregation_study.md"
    write_text(path, "\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
