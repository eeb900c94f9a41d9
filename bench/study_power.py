"""Study: what a board power limit costs and saves (simulated predictions).

A power limit (``h100@450W``, ``profiles/power.py``) slows compute-bound kernels and
leaves memory-bound ones alone. Three views on H100 at 700 (its TDP), 600, 500 and 400 W:

    steps      Llama-2-70B at TP8: a 2,048-token prefill and a 32-sequence decode step
               (1,024 tokens of context each): Splitwise's split, prefill slower and
               decode as fast (its capped DGX-H100 at 70%: 1.3x and 1.0x)
    training   torchtitan's Llama 3.1 8B job on 8 GPUs (the bundled example): tokens/s
               per GPU; with the measured pack beside the checkout, torchtitan's
               published 500 W row of the same job (t605, on 96 GB parts) beside it
    serving    the planner on the bundled chat trace, Llama-3-8B on up to 2 GPUs per
               limit, TTFT 0.5 s / TPOT 50 ms at 90%: goodput per GPU and energy per
               token (the planner's stated energy model: busy at the board's limit)

    python bench/study_power.py [--out bench/results]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from planners.serving import plan_serving
from planners.space import GPUChoice, ServingSpace
from profiles.cost_model import BatchShape
from profiles.files import write_text
from profiles.hardware import load_gpu
from profiles.power import power_cap_fit
from simulator.training.step import simulate_training
from validation.operators import splitwise_cost_model
from workloads.loaders import load_workload
from workloads.training import build_training_job

LIMITS_W = (700, 600, 500, 400)
EXAMPLES = Path(__file__).parent.parent / "workloads" / "examples"
MEASURED = Path(__file__).parent.parent.parent / "shared" / "measured" / "training_runs.csv"


def _gpu(watts: int) -> str:
    return "h100" if watts >= 700 else f"h100@{watts}W"


def steps() -> list[str]:
    rows, base = [], None
    for watts in LIMITS_W:
        gpu = load_gpu(_gpu(watts))
        cost = splitwise_cost_model("llama2-70b", 8, gpu)  # Splitwise's shape, one DGX
        prefill = cost.predict(BatchShape([2048], [0], 1)).total_s
        decode = cost.predict(BatchShape([1] * 32, [1024] * 32, 32)).total_s
        base = base or (prefill, decode)
        rows.append(f"| {watts} | {gpu.clock_fraction:.3f} | {prefill * 1e3:.1f} "
                    f"({prefill / base[0]:.2f}x) | {decode * 1e3:.2f} "
                    f"({decode / base[1]:.2f}x) |")
    return ["## Steps: Llama-2-70B, TP8", "",
            "| limit (W) | compute clock | prefill 2,048 tokens, ms | decode 32 x 1,024, ms |",
            "| --- | --- | --- | --- |", *rows, ""]


def training() -> list[str]:
    fields = json.loads((EXAMPLES / "train_llama3_8b_torchtitan.json").read_text())
    rows, base = [], None
    for watts in LIMITS_W:
        job = build_training_job(fields | {"gpu": _gpu(watts)})
        result = simulate_training(job)
        per_gpu = result.tokens_per_s / result.num_gpus
        base = base or per_gpu
        rows.append(f"| {watts} | {per_gpu:,.0f} ({per_gpu / base:.2f}x) | "
                    f"{result.mfu:.1%} |")
    lines = ["## Training: torchtitan's Llama 3.1 8B job, 8 GPUs", "",
             f"Plan: `{json.dumps(fields['plan'])}`, sequence {fields['seq_len']}, global "
             f"batch {fields['global_batch']}.", "",
             "| limit (W) | tokens/s per GPU | MFU (of the datasheet peak) |",
             "| --- | --- | --- |", *rows, ""]
    if MEASURED.is_file():
        with MEASURED.open() as handle:
            row = next((r for r in csv.DictReader(handle) if r["id"] == "t605"), None)
        if row is not None:
            lines += [f"torchtitan's published row t605, the same job on 8 H100s with 96 GB "
                      f"of HBM2e at 2.4 TB/s (not 3.35) held at 500 W: "
                      f"{float(row['value']):,.0f} tokens/s per GPU.", ""]
    return lines


def serving() -> list[str]:
    trace = load_workload(EXAMPLES / "chat.json")
    space = ServingSpace(gpus=[GPUChoice(name=_gpu(w), max_gpus=2) for w in LIMITS_W],
                         tp=[1], replicas=[2])
    plan = plan_serving("llama-3-8b", trace, ttft_slo_s=0.5, tpot_slo_s=0.05, space=space,
                        prune=False)
    rows = []
    for candidate in sorted(plan.candidates, key=lambda c: -c.goodput_per_gpu):
        if candidate.status != "evaluated":
            rows.append(f"| {candidate.gpu} | {candidate.status}: {candidate.reason} | | | |")
            continue
        energy = candidate.energy_j_per_token
        rows.append(f"| {candidate.gpu} | {candidate.goodput_per_gpu:.2f} | "
                    f"{candidate.ttft_p90_s * 1e3:.0f} | {candidate.tpot_p90_s * 1e3:.1f} | "
                    f"{'-' if energy is None else f'{energy:.3f}'} |")
    return ["## Serving: Llama-3-8B, chat trace, 2 x H100 per limit", "",
            "| GPU | goodput per GPU (req/s) | TTFT p90 ms | TPOT p90 ms | J per token |",
            "| --- | --- | --- | --- | --- |", *rows, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    start = time.perf_counter()
    lines = ["# Power limits on H100 (simulated predictions)", "",
             "Written by `python bench/study_power.py`. The compute clock under a limit is "
             f"(limit / 700 W) ** {power_cap_fit()['exponent']} (profiles/power.py; the "
             "exponent is Splitwise's capped DGX-H100).", "", *steps(), *training(), *serving()]
    lines.append(f"Ran in {time.perf_counter() - start:.0f} s.")
    text = "\n".join(lines) + "\n"
    print(text)
    write_text(args.out / "power_study.md", text)


if __name__ == "__main__":
    main()
