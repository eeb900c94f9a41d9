"""The command line: thin typer commands, each calling one library function.

    clustersim simulate --workload trace.json --model llama-3-8b --gpu h100 --out results/
    clustersim workload generate --num-requests 1000 --rate 2 --prompt ... --out w.json
    clustersim workload stats trace.json
    clustersim models | clustersim gpus

``simulate`` is also installed as a command of its own. A user error prints one line,
``error: <what and the fix>``, and exits with status 2.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from profiles.errors import ClusterSimError, format_validation_error
from profiles.hardware import list_gpus, load_gpu
from profiles.models import list_models, load_model
from profiles.profile_check import profile_errors
from profiles.profile_format import load_profile
from simulator import validation
from simulator.config import DeploymentConfig, build_deployment, load_deployment, read_mapping
from simulator.engine import simulate
from simulator.outputs import to_json_text, write_folder, write_outputs
from simulator.training import simulate_training
from workloads.generators import (
    ChatSpec,
    GeneratorSpec,
    generate,
    generate_chat,
    parse_distribution,
)
from workloads.loaders import FORMATS, load_workload, save_workload
from workloads.schema import RequestTrace
from workloads.training import is_training_file, load_training_job

__all__ = ["app", "main", "simulate_main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="clustersim: simulate and plan LLM serving and training clusters.")
workload_app = typer.Typer(add_completion=False, no_args_is_help=True,
                           help="Generate and inspect request traces.")
app.add_typer(workload_app, name="workload")
console = Console()

# The HTML run report lives in reports/, above the simulator in the import graph; the
# reports package registers its writer here when the command starts (see reports.cli).
RUN_REPORT_WRITERS: list[Callable[[Any], str]] = []

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _user_errors(function: F) -> F:
    """Turn ClusterSimError into the one-line error and exit status 2."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ClusterSimError as error:
            _fail(str(error))
    return wrapper  # type: ignore[return-value]


def deployment_from_flags(deployment: Path | None, overrides: dict[str, Any]
                          ) -> DeploymentConfig:
    """The deployment file with the flags set over it, or the flags alone (which must
    then name the model and the GPU)."""
    if deployment is not None:
        return load_deployment(deployment, overrides)
    if overrides.get("model") is None or overrides.get("gpu") is None:
        _fail("give --model and --gpu, or a --deployment file")
    return build_deployment({}, overrides, source="flags")


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value * 1e3:,.1f}"


def _print_summary(summary: dict[str, Any], runtime_s: float) -> None:
    run = summary["run"]
    sched = run["scheduler"]
    p = run["deployment"]["parallelism"]
    engine = run["engine"]["preset"]
    console.print(
        f"[bold]{run['model']}[/] on {run['num_gpus']} x {run['gpu']} "
        f"({run['deployment']['replicas']} replica(s), tp={p['tp']}, pp={p['pp']}), "
        f"policy {sched['policy']}" + (f", engine {engine}" if engine else "")
        + f", {summary['num_requests']:,} requests"
    )
    table = Table(show_header=True, header_style="bold")
    table.add_column("latency (ms)")
    for column in ("mean", "p50", "p90", "p99"):
        table.add_column(column, justify="right")
    for key, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("tbt_s", "TBT (ITL)"),
                       ("e2e_s", "E2E"), ("queueing_delay_s", "queueing")):
        row = summary[key]
        table.add_row(label, *(_fmt_ms(row[c]) for c in ("mean", "p50", "p90", "p99")))
    console.print(table)
    tp = summary["throughput"]
    good = summary["goodput"]
    console.print(
        f"throughput {tp['requests_per_s']:.3f} req/s, {tp['output_tokens_per_s']:,.0f} output "
        f"tok/s, {tp['total_tokens_per_s']:,.0f} total tok/s; MFU {summary['mfu']:.1%}; "
        f"KV peak {summary['kv_cache']['peak_usage']:.1%}; "
        f"mean batch {summary['batches']['mean_batch_size']:.1f}; "
        f"preemptions {summary['preemptions']}"
    )
    cost = run["cost_model"]
    if cost["kind"] == "profiled":
        console.print(f"cost model: profile {cost['profile']} ({cost['profile_gpu']}, "
                      f"{cost['profile_date']}); {cost['measured_share']:.1%} of predicted "
                      f"time from measured tables")
    cache = summary["prefix_cache"]
    if cache["enabled"]:
        console.print(f"prefix cache hit rate {cache['hit_rate']:.1%} "
                      f"({cache['hit_tokens']:,} of {cache['query_tokens']:,} prompt tokens)")
    if good["slo_attainment"] is not None:
        console.print(f"goodput {good['requests_per_s']:.3f} req/s "
                      f"(SLO attainment {good['slo_attainment']:.1%})")
    console.print(f"simulated {summary['makespan_s']:,.1f} s in {runtime_s:.2f} s "
                  f"({summary['batches']['num_steps']:,} steps)")


@app.command("simulate")
@_user_errors
def simulate_command(
    workload: Annotated[Path, typer.Option(help="trace file (.json, .jsonl, .csv)")],
    deployment: Annotated[Path | None, typer.Option(
        help="deployment file (YAML or JSON); flags override its fields")] = None,
    model: Annotated[str | None, typer.Option(help="catalog name or config.json path")] = None,
    gpu: Annotated[str | None, typer.Option(help="catalog name or GPU JSON file")] = None,
    tp: Annotated[int | None, typer.Option(help="tensor-parallel degree")] = None,
    pp: Annotated[int | None, typer.Option(help="pipeline-parallel degree")] = None,
    replicas: Annotated[int | None, typer.Option(help="model replicas (data parallel)")] = None,
    engine: Annotated[str | None, typer.Option(
        help="engine preset: vllm-v1, vllm-v0, sarathi (defaults and CPU overhead)")] = None,
    async_scheduling: Annotated[bool | None, typer.Option(
        "--async-scheduling/--no-async-scheduling",
        help="overlap the engine's CPU overhead with the GPU step")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="policy: vllm, vllm-v1, sarathi, orca, static")] = None,
    max_num_seqs: Annotated[int | None, typer.Option()] = None,
    max_num_batched_tokens: Annotated[int | None, typer.Option()] = None,
    block_size: Annotated[int | None, typer.Option()] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option()] = None,
    enable_chunked_prefill: Annotated[bool | None, typer.Option(
        "--enable-chunked-prefill/--no-enable-chunked-prefill")] = None,
    enable_prefix_caching: Annotated[bool | None, typer.Option(
        "--enable-prefix-caching/--no-enable-prefix-caching")] = None,
    preemption_mode: Annotated[str | None, typer.Option(help="recompute or swap")] = None,
    max_model_len: Annotated[int | None, typer.Option()] = None,
    router: Annotated[str | None, typer.Option(
        help="round_robin, least_outstanding, least_kv")] = None,
    num_nodes: Annotated[int | None, typer.Option(help="cluster nodes")] = None,
    gpus_per_node: Annotated[int | None, typer.Option()] = None,
    ttft_slo: Annotated[float | None, typer.Option(help="TTFT SLO in seconds")] = None,
    tpot_slo: Annotated[float | None, typer.Option(help="TPOT SLO in seconds")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    profile: Annotated[str | None, typer.Option(
        help="kernel profile folder (measured tables; roofline elsewhere)")] = None,
    workload_format: Annotated[str | None, typer.Option(
        help=f"trace format: {', '.join(FORMATS)} (detected when omitted)")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for the output files")] = None,
    output_format: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
    trace: Annotated[bool, typer.Option(help="also write a Perfetto trace.json")] = False,
    report: Annotated[Path | None, typer.Option(
        help="also write the single-run HTML report to this file")] = None,
    dp: Annotated[int | None, typer.Option(help="training: data-parallel degree")] = None,
    cp: Annotated[int | None, typer.Option(help="training: context-parallel degree")] = None,
    ep: Annotated[int | None, typer.Option(help="training: expert-parallel degree")] = None,
    virtual_stages: Annotated[int | None, typer.Option(
        help="training: model chunks per stage (interleaved schedule)")] = None,
    schedule: Annotated[str | None, typer.Option(
        help="training: gpipe, 1f1b or interleaved")] = None,
    sequence_parallel: Annotated[bool | None, typer.Option(
        "--sequence-parallel/--no-sequence-parallel")] = None,
    recompute: Annotated[str | None, typer.Option(
        help="training: none, selective or full")] = None,
    zero_stage: Annotated[int | None, typer.Option(help="training: ZeRO stage 0-3")] = None,
    micro_batch: Annotated[int | None, typer.Option(help="training: sequences")] = None,
    global_batch: Annotated[int | None, typer.Option(help="training: sequences")] = None,
    num_gpus: Annotated[int | None, typer.Option(
        help="training: GPUs, checked against the plan's degrees")] = None,
) -> None:
    """Simulate a serving deployment on a request trace, or a training job's step."""
    if is_training_file(workload):
        plan_overrides = {
            "plan.tp": tp, "plan.pp": pp, "plan.dp": dp, "plan.cp": cp, "plan.ep": ep,
            "plan.virtual_stages": virtual_stages, "plan.schedule": schedule,
            "plan.sequence_parallel": sequence_parallel, "plan.recompute": recompute,
            "plan.zero_stage": zero_stage, "micro_batch": micro_batch,
            "global_batch": global_batch, "gpu": gpu, "model": model, "num_gpus": num_gpus,
        }
        if deployment is not None:  # a plan file: its fields, then the flags, win
            plan_file = {f"plan.{key}": value
                         for key, value in read_mapping(deployment, "plan file").items()}
            plan_overrides = plan_file | {k: v for k, v in plan_overrides.items()
                                          if v is not None}
        _train(workload, plan_overrides, gpus_per_node or 8, out, trace)
        return
    overrides: dict[str, Any] = {
        "model": model, "gpu": gpu, "replicas": replicas, "router": router, "seed": seed,
        "engine": engine, "async_scheduling": async_scheduling, "profile": profile,
        "scheduler.enable_prefix_caching": enable_prefix_caching,
        "parallelism.tp": tp, "parallelism.pp": pp,
        "scheduler.policy": scheduler, "scheduler.max_num_seqs": max_num_seqs,
        "scheduler.max_num_batched_tokens": max_num_batched_tokens,
        "scheduler.block_size": block_size,
        "scheduler.gpu_memory_utilization": gpu_memory_utilization,
        "scheduler.enable_chunked_prefill": enable_chunked_prefill,
        "scheduler.preemption_mode": preemption_mode, "scheduler.max_model_len": max_model_len,
        "cluster.num_nodes": num_nodes, "cluster.gpus_per_node": gpus_per_node,
        "slo.ttft_s": ttft_slo, "slo.tpot_s": tpot_slo,
    }
    config = deployment_from_flags(deployment, overrides)
    if output_format not in ("csv", "parquet"):
        _fail(f"--format {output_format!r} is unknown; use csv or parquet")
    trace_data = load_workload(workload, workload_format)
    result = simulate(config, trace_data, record_trace=trace or report is not None)
    if not result.ok:
        _fail(str(result.error))
    assert result.summary is not None
    _print_summary(result.summary, result.runtime_s)
    if report is not None:
        if not RUN_REPORT_WRITERS:
            _fail("--report needs the reports package; run the 'clustersim' or 'simulate' "
                  "command of the installed distribution")
        _write_text(report, RUN_REPORT_WRITERS[0](result))
        console.print(f"wrote {report}")
    if out is not None:
        if not trace:
            result.trace = None  # recorded for the report only
        written = write_outputs(result, out, output_format)
        console.print("wrote " + ", ".join(str(path) for path in written))


def _arrival_spec(arrival: str, rate: float, cv: float | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"kind": arrival, "rate_per_s": rate}
    if cv is not None:
        spec["cv"] = cv
    return spec


def _save_and_report(trace: RequestTrace, out: Path) -> None:
    save_workload(trace, out)
    stats = trace.stats()
    console.print(f"wrote {out}: {stats['num_requests']:,} requests over "
                  f"{stats['duration_s']:,.1f} s, prompt mean {stats['prompt_tokens_mean']:.0f}, "
                  f"output mean {stats['output_tokens_mean']:.0f}")


def _train(path: Path, overrides: dict[str, Any], gpus_per_node: int, out: Path | None,
           trace: bool) -> None:
    """The training branch of ``simulate``: one step's time, MFU and memory."""
    job = load_training_job(path, overrides)
    result = simulate_training(job, gpus_per_node=gpus_per_node, num_gpus=job.num_gpus,
                               record_trace=trace)
    plan = job.plan
    console.print(
        f"[bold]{job.model}[/] training on {result.num_gpus} x {job.gpu}: tp={plan.tp} "
        f"pp={plan.pp} dp={plan.dp} cp={plan.cp} ep={plan.ep}, {plan.schedule}"
        + (f" (v={plan.virtual_stages})" if plan.virtual_stages > 1 else "")
        + f", recompute {plan.recompute}, ZeRO {plan.zero_stage}, "
        f"{result.num_micro_batches} micro-batches of {job.micro_batch}")
    console.print(
        f"step {result.step_s:.3f} s, {result.tokens_per_s:,.0f} tokens/s, "
        f"{result.tflops_per_gpu:.1f} model TFLOP/s per GPU, MFU {result.mfu:.1%}, "
        f"HFU {result.hfu:.1%}; pipeline bubble {result.bubble_fraction:.1%}, "
        f"DP reduction {result.dp_comm_s * 1e3:.0f} ms, optimizer "
        f"{result.optimizer_s * 1e3:.0f} ms")
    memory = result.memory.as_gib()
    console.print("memory per GPU (GiB): " + ", ".join(
        f"{name} {memory[name]:.1f}" for name in
        ("weights", "gradients", "optimizer", "activations", "buffers", "total", "capacity")))
    if out is not None:
        summary = to_json_text(result.summary() | {"job": job.model_dump(mode="json")})
        writers: dict[str, Callable[[Path], object]] = {
            "training_summary.json": lambda path: path.write_text(summary)}
        if result.trace is not None:
            timeline = json.dumps(result.trace)
            writers["trace.json"] = lambda path: path.write_text(timeline)
        written = write_folder(out, writers)
        console.print("wrote " + ", ".join(str(path) for path in written))


@workload_app.command("generate")
@_user_errors
def generate_command(
    out: Annotated[Path, typer.Option(help="trace file to write (.json or .jsonl)")],
    num_requests: Annotated[int, typer.Option(help="requests to generate")],
    rate: Annotated[float, typer.Option(help="mean arrival rate, requests per second")],
    prompt: Annotated[str, typer.Option(
        help="prompt lengths, e.g. lognormal:mean=1155,sigma=0.5,max=8192")],
    output: Annotated[str, typer.Option(help="output lengths, e.g. fixed:value=128")],
    arrival: Annotated[str, typer.Option(help="poisson or gamma")] = "poisson",
    cv: Annotated[float | None, typer.Option(
        help="gamma arrivals: coefficient of variation of the gaps")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Generate a synthetic trace (seeded: the same flags give the same file)."""
    arrival_spec = _arrival_spec(arrival, rate, cv)
    try:
        spec = GeneratorSpec(num_requests=num_requests, arrival=arrival_spec,  # type: ignore[arg-type]
                             prompt=parse_distribution(prompt, "--prompt"),
                             output=parse_distribution(output, "--output"), seed=seed)
    except ValidationError as error:
        _fail(format_validation_error(error, "workload generate"))
    trace = generate(spec)
    _save_and_report(trace, out)


@workload_app.command("chat")
@_user_errors
def chat_command(
    out: Annotated[Path, typer.Option(help="trace file to write (.json or .jsonl)")],
    num_requests: Annotated[int, typer.Option(help="requests to generate")],
    rate: Annotated[float, typer.Option(help="mean arrival rate, requests per second")],
    num_system_prompts: Annotated[int, typer.Option(help="distinct system prompts")],
    users_per_prompt: Annotated[int, typer.Option(help="users sharing each system prompt")],
    system_prompt_tokens: Annotated[int, typer.Option(help="tokens of each system prompt")],
    question: Annotated[str, typer.Option(help="question lengths, e.g. fixed:value=450")],
    output: Annotated[str, typer.Option(help="output lengths, e.g. fixed:value=250")],
    turns: Annotated[int, typer.Option(help="turns per conversation")] = 1,
    think_time: Annotated[float, typer.Option(
        help="seconds a user waits between its turns' arrivals")] = 0.0,
    arrival: Annotated[str, typer.Option(help="poisson or gamma")] = "poisson",
    cv: Annotated[float | None, typer.Option(help="gamma arrivals: CV of the gaps")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Generate a shared-prefix, multi-turn chat trace (for prefix caching studies)."""
    arrival_spec = _arrival_spec(arrival, rate, cv)
    try:
        spec = ChatSpec(
            num_requests=num_requests, arrival=arrival_spec,  # type: ignore[arg-type]
            num_system_prompts=num_system_prompts, users_per_prompt=users_per_prompt,
            system_prompt_tokens=system_prompt_tokens,
            question=parse_distribution(question, "--question"),
            output=parse_distribution(output, "--output"), turns_per_session=turns,
            think_time_s=think_time, seed=seed)
    except ValidationError as error:
        _fail(format_validation_error(error, "workload chat"))
    trace = generate_chat(spec)
    _save_and_report(trace, out)


@workload_app.command("stats")
@_user_errors
def stats_command(
    path: Annotated[Path, typer.Argument(help="trace file")],
    workload_format: Annotated[str | None, typer.Option("--format")] = None,
) -> None:
    """Print a trace's request count, rate and length statistics as JSON."""
    trace = load_workload(path, workload_format)
    sys.stdout.write(to_json_text(trace.stats() | {"metadata": trace.metadata}))


@app.command("validate")
@_user_errors
def validate_command(
    records: Annotated[Path | None, typer.Option(help="folder of record files")] = None,
    baseline: Annotated[Path | None, typer.Option(help="baseline errors file")] = None,
    out: Annotated[Path | None, typer.Option(
        help="folder for validation.json and validation.csv")] = None,
    html: Annotated[Path | None, typer.Option(help="also write a scatter-plot page")] = None,
    update_baseline: Annotated[bool, typer.Option(
        help="write the current errors as the new baseline")] = False,
    update_readme: Annotated[Path | None, typer.Option(
        help="rewrite the accuracy block of this README")] = None,
) -> None:
    """Predict every measured-run record; print errors; gate against the baseline."""
    loaded = validation.load_records(records)
    rows = validation.predict_records(loaded)
    pending = validation.pending_records(loaded)
    table = Table("record", "group", "role", "metric", "measured", "predicted", "error")
    for r in rows.itertuples():
        table.add_row(r.id, r.group, r.role, f"{r.metric} ({r.unit})", f"{r.measured:,.4g}",
                      f"{r.predicted:,.4g}", f"{r.error_pct:.1f}%")
    console.print(table)
    groups = validation.group_errors(rows)
    summary = Table("group", "role", "records", "median error", "p90 error", "max error")
    for g in groups.itertuples():
        summary.add_row(g.group, g.role, str(g.num_records), f"{g.median_error_pct:.1f}%",
                        f"{g.p90_error_pct:.1f}%", f"{g.max_error_pct:.1f}%")
    console.print(summary)
    for waiting_for, ids in pending.items():
        console.print(f"{len(ids)} measured records await {waiting_for}")
    baseline_path = baseline or validation.default_records_dir().parent / "baseline.json"
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        document = {"records": rows.to_dict(orient="records"),
                    "groups": groups.to_dict(orient="records")}
        _write_text(out / "validation.json", to_json_text(document))
        _write_text(out / "validation.csv", rows.to_csv(index=False))
    if html is not None:
        _write_text(html, validation.scatter_html(rows))
    if update_readme is not None:
        text = update_readme.read_text(encoding="utf-8")
        _write_text(update_readme, validation.replace_accuracy_block(
            text, validation.accuracy_markdown(rows, pending)))
    current = {r.id: round(float(r.error_pct), 4) for r in rows.itertuples()}
    before = (json.loads(baseline_path.read_text())["error_pct"] if baseline_path.is_file()
              else {})
    regressions, movements = validation.compare_to_baseline(rows, before)
    for line in movements:
        console.print(f"moved: {line}")
    if update_baseline:
        _write_text(baseline_path, to_json_text({
            "_comment": "Per-record absolute percentage errors; update with "
                        "`clustersim validate --update-baseline` and review the moves.",
            "error_pct": current}))
        console.print(f"wrote {baseline_path}")
        return
    for line in regressions:
        typer.echo(f"regression: {line}", err=True)
    if regressions:
        raise typer.Exit(code=1)


def _write_text(path: Path, text: str) -> None:
    """Write a file whole or not at all (a partial file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


profile_app = typer.Typer(add_completion=False, invoke_without_command=True,
                          help="Measure kernel profiles on this machine's device, or check one.")
app.add_typer(profile_app, name="profile")


@profile_app.callback()
@_user_errors
def profile_command(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="profile folder to write")] = None,
    gpu: Annotated[str | None, typer.Option(
        help="catalog GPU the profile is for (e.g. h100)")] = None,
    models: Annotated[str, typer.Option(
        help="comma-separated catalog names or config paths whose shapes to measure")
    ] = "llama-3-8b,llama-3-70b",
    tp: Annotated[str, typer.Option(help="comma-separated TP degrees")] = "1,2,4,8",
    device: Annotated[str, typer.Option(help="cuda (also ROCm) or cpu")] = "cuda",
    dtype: Annotated[str, typer.Option(help="bf16, fp16 or fp32")] = "bf16",
    tiny: Annotated[bool, typer.Option(help="tiny grid (CPU smoke runs)")] = False,
    repetitions: Annotated[int, typer.Option()] = 10,
    warmup: Annotated[int, typer.Option()] = 3,
    collectives: Annotated[int, typer.Option(
        help="processes (GPUs) for collectives; 0 skips them")] = 0,
) -> None:
    """Measure kernel times into a profile folder (needs the 'profile' extra: torch)."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None or gpu is None:
        _fail("give --out DIR and --gpu NAME (or use 'clustersim profile check DIR')")
    if dtype not in ("bf16", "fp16", "fp32"):
        _fail(f"--dtype {dtype!r} is not profiled; use bf16, fp16 or fp32")
    try:
        from profiles.profiler import run_profile
    except ImportError:
        _fail("the profiler needs torch: pip install 'clustersim[profile]'")
    gpu_name = load_gpu(str(gpu)).name
    try:
        profile = run_profile(
            str(out), gpu=gpu_name, models=[m for m in models.split(",") if m],
            tp_degrees=[int(t) for t in tp.split(",") if t], device=device,
            dtype=dtype,  # type: ignore[arg-type]
            tiny=tiny, repetitions=repetitions, warmup=warmup, collectives=collectives)
    except RuntimeError as error:
        _fail(str(error))
    console.print(f"wrote {out}: " + ", ".join(
        f"{op} {len(table)} rows" for op, table in profile.tables.items()))


@profile_app.command("check")
@_user_errors
def profile_check_command(
    folder: Annotated[Path, typer.Argument(help="profile folder")],
) -> None:
    """Leave-one-out interpolation error per operation of a profile."""
    profile = load_profile(folder)
    table = Table("operation", "status", "rows", "families", "checked points",
                  "median error", "max error")
    for op, errors in profile_errors(profile).items():
        families, points, values = errors
        status = profile.status(op)
        if values:
            table.add_row(op, status, str(len(profile.tables[op])), str(families),
                          str(points), f"{statistics.median(values):.2%}",
                          f"{max(values):.2%}")
        else:
            table.add_row(op, status, str(len(profile.tables[op])), str(families), "0",
                          "-", "-")
    console.print(table)


@app.command("models")
def models_command() -> None:
    """List the model catalog with derived parameter counts (sources: models.json)."""
    table = Table("params (B)", "active (B)", "layers", "hidden", "heads/kv", "KV KiB/token")
    table.add_column("name", no_wrap=True)
    for entry in list_models():
        spec = load_model(entry["name"])
        table.add_row(f"{spec.num_params / 1e9:.2f}", f"{spec.num_active_params / 1e9:.2f}",
                      str(spec.num_layers), str(spec.hidden_size),
                      f"{spec.num_attention_heads}/{spec.num_kv_heads}",
                      f"{spec.kv_bytes_per_token / 1024:.0f}", spec.name)
    console.print(table)


@app.command("gpus")
def gpus_command() -> None:
    """List the GPU catalog."""
    table = Table("name", "short", "BF16 TFLOP/s", "FP8 TFLOP/s", "HBM GiB", "HBM GB/s",
                  "scale-up GB/s", "NIC GB/s")
    for gpu in list_gpus():
        table.add_row(gpu.name, gpu.aliases[0] if gpu.aliases else "",
                      f"{gpu.peak_tflops.bf16:g}",
                      "-" if gpu.peak_tflops.fp8 is None else f"{gpu.peak_tflops.fp8:g}",
                      f"{gpu.hbm_gib:g}", f"{gpu.hbm_bandwidth_gbps:g}",
                      f"{gpu.scale_up.bandwidth_gbps:g}", f"{gpu.nic_bandwidth_gbps:g}")
    console.print(table)


def main() -> None:
    """Entry point of the ``clustersim`` command."""
    app()


simulate_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
simulate_app.command()(simulate_command)


def simulate_main() -> None:
    """Entry point of the ``simulate`` command (same options as ``clustersim simulate``)."""
    simulate_app()
