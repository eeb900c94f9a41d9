"""``clustersim plan`` and ``clustersim plan-training``: the planners on the command line,
with a progress bar, a table of the best plans and the plan folder."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import console, fail, progress_bar, step_breakdown_table, user_errors
from planners.disaggregation import DisaggregationSpace
from planners.launch import launch_commands, training_launch
from planners.objectives import SteadyState
from planners.output import write_plan
from planners.serving import plan_serving
from planners.space import GPUChoice, ServingSpace
from planners.training import TrainingSpace, plan_training
from profiles.errors import ClusterSimError
from profiles.hardware import load_gpu
from profiles.models import load_model
from simulator import build_deployment, check_output_folder
from validation.error_bars import training_interval, training_range_text
from workloads.loaders import load_workload
from workloads.training import load_training_job

__all__ = ["plan_command", "plan_training_command"]


def _choices(text: str, option: str, allowed: tuple[str, ...]) -> list[str]:
    values = [part for part in text.split(",") if part]
    bad = [value for value in values if value not in allowed]
    if bad or not values:
        raise ClusterSimError(f"{option} {text!r}: expected one or more of "
                              f"{', '.join(allowed)}, comma-separated")
    return values


def _parsed(text: str, option: str, kind: type, what: str) -> list[Any]:
    try:
        return [kind(part) for part in text.split(",") if part]
    except ValueError:
        raise ClusterSimError(f"{option} {text!r}: expected comma-separated {what}") \
            from None


def _ints(text: str, option: str, minimum: int = 1, maximum: int | None = None) -> list[int]:
    """Comma-separated integers, each in [minimum, maximum] (degrees, counts and sizes
    start at 1)."""
    values = _parsed(text, option, int, "integers")
    bad = [v for v in values if v < minimum or (maximum is not None and v > maximum)]
    if bad or not values:
        bounds = f"{minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise ClusterSimError(f"{option} {text!r}: expected comma-separated integers, "
                              f"each {bounds}")
    return values


def _price(usd: float, shown: str) -> float:
    """``usd`` if it is a price in USD per GPU-hour: a finite number, 0 or more
    (``shown``: the option as the user gave it, for the error)."""
    if not (math.isfinite(usd) and usd >= 0):
        raise ClusterSimError(f"{shown}: expected USD per GPU-hour, 0 or more")
    return usd


def _switch(text: str | None) -> list[bool] | None:
    """``--expert-parallel on|off|both`` as the values to try (None: the default)."""
    if text is None:
        return None
    choices = {"on": [True], "off": [False], "both": [False, True]}
    if text not in choices:
        fail(f"--expert-parallel {text!r}: use on, off or both")
    return choices[text]


def _floats(text: str, option: str) -> list[float]:
    return _parsed(text, option, float, "numbers")


@user_errors
def plan_command(
    model: Annotated[str, typer.Option(help="catalog name or config.json path")],
    workload: Annotated[Path, typer.Option(help="trace whose shape is replayed")],
    ttft_slo: Annotated[float, typer.Option(help="TTFT SLO, seconds")],
    tpot_slo: Annotated[float, typer.Option(help="TPOT SLO, seconds")],
    gpu: Annotated[list[str], typer.Option(
        help="GPU type and how many at most, NAME:MAX (repeat for several types)")],
    tp: Annotated[str, typer.Option(help="TP degrees to try")] = "1,2,4,8",
    pp: Annotated[str, typer.Option(help="PP degrees to try")] = "1",
    dp: Annotated[str | None, typer.Option(
        help="MoE: data-parallel attention ranks per replica to try (default 1,2,4,8,16 "
             "for a MoE model)")] = None,
    expert_parallel: Annotated[str | None, typer.Option(
        help="MoE: expert parallelism to try, on, off or both (default both for a MoE "
             "model)")] = None,
    policies: Annotated[str, typer.Option(help="scheduler policies to try")] = "running-first",
    max_num_seqs: Annotated[str | None, typer.Option(
        help="max_num_seqs values to try (default: each policy's)")] = None,
    max_num_batched_tokens: Annotated[str | None, typer.Option(
        help="token budgets / chunk sizes to try (default: each policy's)")] = None,
    attainment: Annotated[float, typer.Option(
        help="share of requests that must meet both SLOs")] = 0.9,
    price: Annotated[list[str] | None, typer.Option(
        help="USD per GPU-hour, NAME=USD (repeatable)")] = None,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
    prune: Annotated[bool, typer.Option(help="prune dominated candidates")] = True,
    ray_address: Annotated[str | None, typer.Option(
        help="run on a Ray cluster at this address ('local' starts one)")] = None,
    cpu_offload_gb: Annotated[str | None, typer.Option(
        help="weight offload sizes to try, GiB per GPU (vLLM --cpu-offload-gb), e.g. 0,40")
    ] = None,
    disaggregate: Annotated[bool, typer.Option(
        help="also size prefill/decode pools from each phase's measured goodput")] = False,
    colocated: Annotated[bool, typer.Option(help="include colocated deployments")] = True,
    prefill_tp: Annotated[str | None, typer.Option(
        help="prefill-pool TP degrees (default: --tp)")] = None,
    decode_tp: Annotated[str | None, typer.Option(
        help="decode-pool TP degrees (default: --tp)")] = None,
    prefill_gpu: Annotated[str | None, typer.Option(
        help="prefill-pool GPU types, comma-separated (default: every --gpu)")] = None,
    decode_gpu: Annotated[str | None, typer.Option(
        help="decode-pool GPU types, comma-separated (default: every --gpu)")] = None,
    placement: Annotated[str, typer.Option(
        help="disaggregated placements: by_pool (fast network), paired (P+D per node)")
    ] = "by_pool",
    steady_requests: Annotated[int, typer.Option(
        min=50, help="each goodput probe replays at least this many requests")] = 1000,
    steady_seconds: Annotated[float, typer.Option(
        min=1.0, help="... spanning at least this many seconds of arrivals")] = 60.0,
    steady_lifetimes: Annotated[float, typer.Option(
        min=0.0, help="... and this many lifetimes of the longest requests at the TPOT "
                      "SLO (the first is warm-up)")] = 3.0,
    error_bars: Annotated[bool, typer.Option(
        help="search the recommended plan's goodput range under the validated error bars "
             "(two more goodput searches)")] = True,
    out: Annotated[Path | None, typer.Option(help="output folder")] = None,
    top: Annotated[int, typer.Option(help="plans to print")] = 10,
) -> None:
    """Search deployments for goodput under TTFT and TPOT SLOs; print the best plans."""
    choices = []
    for entry in gpu:
        name, _, count = entry.partition(":")
        if not count.isdigit() or int(count) < 1:
            fail(f"--gpu {entry!r}: expected NAME:MAX, e.g. h100:8")
        choices.append(GPUChoice(name=name, max_gpus=int(count)))
    prices = {}
    for entry in price or []:
        name, _, usd = entry.partition("=")
        try:
            value = float(usd)
        except ValueError:
            fail(f"--price {entry!r}: expected NAME=USD per GPU-hour, e.g. a100=5.0")
        prices[load_gpu(name).name] = _price(value, f"--price {entry!r}")
    names = [choice.name for choice in choices]
    disaggregation = None
    if disaggregate:
        for option, value in (("--prefill-gpu", prefill_gpu), ("--decode-gpu", decode_gpu)):
            unknown = [g for g in (value or "").split(",") if g and g not in names]
            if unknown:
                fail(f"{option} {unknown[0]!r}: not one of the --gpu types ({', '.join(names)})")
        disaggregation = DisaggregationSpace(
            prefill_gpus=[g for g in prefill_gpu.split(",") if g] if prefill_gpu else None,
            decode_gpus=[g for g in decode_gpu.split(",") if g] if decode_gpu else None,
            prefill_tp=_ints(prefill_tp or tp, "--prefill-tp"),
            decode_tp=_ints(decode_tp or tp, "--decode-tp"),
            placements=_choices(placement, "--placement", ("by_pool", "paired")))  # type: ignore[arg-type]
    elif not colocated:
        fail("--no-colocated leaves nothing to search; add --disaggregate")
    space = ServingSpace(
        gpus=choices, tp=_ints(tp, "--tp"), pp=_ints(pp, "--pp"),
        dp=_ints(dp, "--dp") if dp else None,
        expert_parallel=_switch(expert_parallel),
        policies=[p for p in policies.split(",") if p],
        max_num_seqs=_ints(max_num_seqs, "--max-num-seqs") if max_num_seqs else [None],
        max_num_batched_tokens=(_ints(max_num_batched_tokens, "--max-num-batched-tokens")
                                if max_num_batched_tokens else [None]),
        colocated=colocated, disaggregation=disaggregation,
        extra={"offload.cpu_offload_gb": _floats(cpu_offload_gb, "--cpu-offload-gb")}
        if cpu_offload_gb else {})
    trace = load_workload(workload)
    if out is not None:
        check_output_folder(out)
    with progress_bar("planning: candidates settled") as progress:
        plan = plan_serving(model, trace, ttft_slo_s=ttft_slo, tpot_slo_s=tpot_slo,
                            space=space, attainment=attainment, prices=prices,
                            workers=workers, prune=prune, ray_address=ray_address,
                            progress=progress,
                            steady=SteadyState(min_requests=steady_requests,
                                               min_span_s=steady_seconds,
                                               lifetimes=steady_lifetimes),
                            error_bars=error_bars)
    evaluated = [c for c in plan.candidates if c.status == "evaluated"]
    table = Table("#", "gpu", "GPUs", "layout", "policy", "goodput req/s",
                  "per GPU", "TTFT p90 ms", "TPOT p90 ms", "$/Mtok", "Pareto")
    for c in sorted(evaluated, key=lambda c: -c.goodput_per_gpu)[:top]:
        d = c.deployment
        layout = c.ratio or (f"{d['replicas']} x tp{d['parallelism']['tp']}"
                             f" pp{d['parallelism']['pp']}")
        offloaded = d.get("offload", {}).get("cpu_offload_gb")
        if offloaded:
            layout += f", {offloaded:g} GiB offloaded"
        table.add_row(str(c.index), c.gpu, str(c.num_gpus), layout,
                      d["scheduler"]["policy"], f"{c.goodput_rate_per_s:.2f}",
                      f"{c.goodput_per_gpu:.2f}", f"{c.ttft_p90_s * 1e3:.0f}",
                      f"{c.tpot_p90_s * 1e3:.1f}",
                      "-" if c.cost_per_mtok_usd is None else f"{c.cost_per_mtok_usd:.3f}",
                      "*" if c.index in plan.pareto else "")
    console.print(table)
    by_index = {c.index: c for c in plan.candidates}
    if "goodput_per_gpu" in plan.best:
        console.print(f"recommended #{plan.best['goodput_per_gpu']}: "
                      f"{plan.reasons['goodput_per_gpu']}", soft_wrap=True)
        best = by_index[plan.best["goodput_per_gpu"]]
        bars = plan.goodput_interval
        if bars:
            console.print(f"  goodput {bars['rate_per_s']:.3g} req/s; validated range "
                          f"{bars['low_rate_per_s']:.3g}-{bars['high_rate_per_s']:.3g} req/s "
                          f"({bars['group']}, {bars['runs']} real runs; the SLOs scaled by "
                          "the 10th-90th percentile errors of mean TTFT and TPOT)",
                          soft_wrap=True)
        for engine, command in launch_commands(build_deployment(best.deployment)).items():
            console.print(f"  {engine}: {command}", soft_wrap=True, markup=False)
    both = [plan.best.get(f"{mode}_goodput_per_gpu") for mode in ("colocated", "disaggregated")]
    if None not in both:
        co, dis = (by_index[i] for i in both if i is not None)
        console.print(
            f"best disaggregated #{dis.index} {dis.ratio}: {dis.goodput_per_gpu:.2f} req/s "
            f"per GPU; best colocated #{co.index}: {co.goodput_per_gpu:.2f}; "
            f"disaggregated / colocated {dis.goodput_per_gpu / co.goodput_per_gpu:.2f}x",
            soft_wrap=True)
    counts = {status: sum(c.status == status for c in plan.candidates)
              for status in ("evaluated", "pruned", "infeasible", "failed")}
    console.print(f"{len(plan.candidates)} candidates: {counts['evaluated']} evaluated, "
                  f"{counts['pruned']} pruned, {counts['infeasible']} infeasible"
                  + (f", {counts['failed']} failed (worker lost)" if counts["failed"] else "")
                  + "; "
                  f"{plan.num_simulations} simulations; best per GPU: #"
                  f"{plan.best.get('goodput_per_gpu', '-')}")
    if out is not None:
        written = write_plan(plan, out, trace)
        console.print("wrote " + ", ".join(str(p) for p in written))


@user_errors
def plan_training_command(
    job: Annotated[Path, typer.Option(help="training job file (its plan is ignored)")],
    num_gpus: Annotated[str, typer.Option(help="GPU counts to try")],
    tp: Annotated[str, typer.Option(help="TP degrees")] = "1,2,4,8",
    pp: Annotated[str, typer.Option(help="PP degrees")] = "1,2,4,8",
    cp: Annotated[str, typer.Option(help="CP degrees")] = "1",
    zero_stage: Annotated[str | None, typer.Option(
        help="ZeRO stages (default 0,1; 0,1,3 for a job run as torchtitan runs: FSDP is 3 "
             "without PP, 1 with it)")] = None,
    offload: Annotated[str, typer.Option(
        help="offload choices: none, cpu (ZeRO-Offload), nvme (ZeRO-Infinity)")] = "none",
    activation_offload: Annotated[str, typer.Option(
        help="layers whose activations go to the host (Megatron-Core's CPU offloading, "
             "without PP or recomputation), e.g. 0,20,40")] = "0",
    micro_batch: Annotated[str, typer.Option(help="micro-batch sizes")] = "1,2",
    recompute: Annotated[str | None, typer.Option(
        help="none, selective, full, op (default none,selective,full; none,op,full for a "
             "job run as torchtitan runs)")] = None,
    schedules: Annotated[str, typer.Option(help="gpipe, 1f1b, interleaved")] = "1f1b,interleaved",
    price: Annotated[float | None, typer.Option(help="USD per GPU-hour")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder")] = None,
    top: Annotated[int, typer.Option(help="plans to print")] = 10,
) -> None:
    """Simulate every training plan of a space; print the fastest and the Pareto set."""
    training_job = load_training_job(job)
    # A job whose plan names torchtitan's kernels or recomputation policy is planned with
    # what torchtitan runs: DDP or FSDP, and its per-op policy instead of Megatron's.
    torchtitan = training_job.plan.torchtitan_only
    if zero_stage is None:
        zero_stage = "0,1,3" if torchtitan else "0,1"
    if recompute is None:
        recompute = "none,op,full" if torchtitan else "none,selective,full"
    space = TrainingSpace(
        num_gpus=_ints(num_gpus, "--num-gpus"), tp=_ints(tp, "--tp"), pp=_ints(pp, "--pp"),
        cp=_ints(cp, "--cp"), zero_stage=_ints(zero_stage, "--zero-stage", 0, 3),
        offload=_choices(offload, "--offload", ("none", "cpu", "nvme")),
        activation_offload_layers=_ints(activation_offload, "--activation-offload", 0),
        micro_batch=_ints(micro_batch, "--micro-batch"),
        recompute=_choices(recompute, "--recompute", ("none", "selective", "full", "op")),
        schedules=_choices(schedules, "--schedules", ("gpipe", "1f1b", "interleaved")))
    if out is not None:
        check_output_folder(out)
    plan = plan_training(training_job, space, price_usd_per_gpu_hour=(
        None if price is None else _price(price, f"--price {price}")))
    if not plan.candidates:
        fail(f"no plan of the space uses {num_gpus} GPUs: tp x pp x cp must divide the GPU "
             f"count; change --num-gpus, --tp, --pp or --cp")
    evaluated = sorted((c for c in plan.candidates if c.status == "evaluated"),
                       key=lambda c: c.step_s)
    table = Table("#", "GPUs", "tp", "pp", "dp", "cp", "ZeRO", "offload", "mbs", "recompute",
                  "schedule", "step s", "MFU", "$/step", "headroom GiB", "Pareto")
    for c in evaluated[:top]:
        p = c.plan
        table.add_row(str(c.index), str(p["tp"] * p["pp"] * p["dp"] * p["cp"]), str(p["tp"]),
                      str(p["pp"]), str(p["dp"]), str(p["cp"]), str(p["zero_stage"]),
                      p["offload"] + (f", {p['activation_offload_layers']} layers' "
                                      f"activations" if p["activation_offload_layers"] else ""),
                      str(c.micro_batch), p["recompute"], p["schedule"], f"{c.step_s:.3f}",
                      f"{c.mfu:.1%}",
                      "-" if c.cost_per_step_usd is None else f"{c.cost_per_step_usd:.3f}",
                      f"{c.memory_headroom_gib:.1f}", "*" if c.index in plan.pareto else "")
    console.print(table)
    console.print(f"{len(plan.candidates)} plans: {len(evaluated)} simulated, "
                  f"{len(plan.candidates) - len(evaluated)} cannot run (see candidates.csv)")
    if "step_s" in plan.best:
        fastest = next(c for c in plan.candidates if c.index == plan.best["step_s"])
        job = training_job.model_copy(update={
            "plan": training_job.plan.model_copy(update=fastest.plan),
            "micro_batch": fastest.micro_batch})
        try:
            framework, arguments = training_launch(job, load_model(job.model).num_layers)
            console.print(f"fastest #{fastest.index} as {framework} arguments: {arguments}",
                          soft_wrap=True, markup=False)
        except ClusterSimError as error:
            console.print(f"fastest #{fastest.index}: {error}", soft_wrap=True, markup=False)
        bars = training_interval(load_gpu(training_job.gpu).name, fastest.step_s,
                                 job.global_batch * job.seq_len / fastest.step_s
                                 ) if training_job.gpu else {}
        if bars:
            console.print(f"fastest #{fastest.index} "
                          + training_range_text(bars, with_tokens=False))
        console.print(step_breakdown_table(fastest.breakdown, fastest.step_s))
    if out is not None:
        console.print("wrote " + ", ".join(str(p) for p in write_plan(plan, out)))
