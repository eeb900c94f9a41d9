"""``clustersim reference``: measure a trace on a real device through the project's
scheduler (``run``), compare the simulator with it (``compare``), and add it to the
validation suite (``record``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import console, deployment_from_flags, fail, user_errors
from simulator import resolve, write_text
from validation import add_reference_run
from validation.reference import check_reference_deployment, compare_reference
from workloads.loaders import load_workload

__all__ = ["app"]


app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Real runs on a device, and the simulator against them.")


@app.command("run")
@user_errors
def reference_run_command(
    workload: Annotated[Path, typer.Option(help="trace file (.json, .jsonl, .csv)")],
    out: Annotated[Path, typer.Option(help="run folder to write")],
    deployment: Annotated[Path | None, typer.Option(
        help="deployment file (YAML or JSON); flags override its fields")] = None,
    model: Annotated[str | None, typer.Option(help="catalog name or config.json path")] = None,
    gpu: Annotated[str | None, typer.Option(
        help="catalog GPU the run is on (sizes the KV cache and the prediction)")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="policy: prefill-first, running-first, stall-free, orca")] = None,
    max_num_seqs: Annotated[int | None, typer.Option(help="sequences per step")] = None,
    max_num_batched_tokens: Annotated[int | None, typer.Option(
        help="tokens per step")] = None,
    enable_chunked_prefill: Annotated[bool | None, typer.Option(
        "--enable-chunked-prefill/--no-enable-chunked-prefill",
        help="split prompts across steps")] = None,
    max_model_len: Annotated[int | None, typer.Option(
        help="longest prompt + output a request may have")] = None,
    num_gpu_blocks: Annotated[int | None, typer.Option(
        help="KV blocks instead of the memory plan's")] = None,
    device: Annotated[str, typer.Option(help="cuda (also ROCm) or cpu")] = "cuda",
    dtype: Annotated[str, typer.Option(help="bf16, fp16 or fp32")] = "bf16",
    layers: Annotated[int | None, typer.Option(
        help="build only this many layers (smoke runs; predictions then disagree)")] = None,
    seed: Annotated[int, typer.Option(
        min=0, max=2**32 - 1, help="seeds weights and prompt tokens")] = 0,
) -> None:
    """Replay a trace on a real model with random weights, one scheduled step at a time."""
    overrides: dict[str, Any] = {
        "model": model, "gpu": gpu, "scheduler.policy": scheduler,
        "scheduler.max_num_seqs": max_num_seqs,
        "scheduler.max_num_batched_tokens": max_num_batched_tokens,
        "scheduler.enable_chunked_prefill": enable_chunked_prefill,
        "scheduler.max_model_len": max_model_len,
        "scheduler.num_gpu_blocks_override": num_gpu_blocks, "seed": seed,
        # the bare scheduler unless a file names an engine: the executor measures the
        # host's own costs instead of a preset's
        "engine": "none" if deployment is None else None,
    }
    config = deployment_from_flags(deployment, overrides)
    resolved = resolve(config)
    check_reference_deployment(resolved)
    trace = load_workload(workload)
    try:
        from validation.reference.measure import measure_run, open_executor
    except ImportError:
        fail("the reference executor needs torch: pip install 'clustersim[profile]'")
    executor = open_executor(resolved, device=device, dtype=dtype, num_layers=layers, seed=seed)
    console.print(f"running {len(trace)} requests on {device} "
                  f"({resolved.memory.num_gpu_blocks} KV blocks)")
    run = measure_run(config, resolved, trace, workload, executor, out, device=device,
                      dtype=dtype, num_layers=layers, seed=seed)
    console.print(f"wrote {out}: {len(run.steps)} steps in {run.wall_s:.1f} s")


@app.command("compare")
@user_errors
def reference_compare_command(
    run: Annotated[Path, typer.Argument(help="folder written by 'clustersim reference run'")],
    profile: Annotated[str | None, typer.Option(
        help="kernel profile folder: compare the profiled cost model")] = None,
    out: Annotated[Path | None, typer.Option(help="also write the comparison as JSON")] = None,
) -> None:
    """Per-step and per-request errors of the simulator against a measured run."""
    result = compare_reference(run, profile=profile)
    step = result["per_step"]
    console.print(f"cost model: {result['cost_model']['kind']}; per-step error over "
                  f"{step['num_steps']} steps: median {step['median_error']:.1%}, "
                  f"p90 {step['p90_error']:.1%}")
    for name, row in result["per_request"].items():
        console.print(f"  {name:9s} measured {row['measured_s'] * 1e3:9.2f} ms  predicted "
                      f"{row['predicted_s'] * 1e3:9.2f} ms  error {row['error']:.1%}")
    host = result["host_overhead_fitted"]
    console.print(f"host time per step (fitted): {host['step_base_s'] * 1e3:.3f} ms + "
                  f"{host['per_seq_s'] * 1e6:.1f} us/seq + "
                  f"{host['per_token_s'] * 1e6:.2f} us/token")
    if out is not None:
        write_text(out, json.dumps(result, indent=2) + "\n")


@app.command("record")
@user_errors
def reference_record_command(
    run: Annotated[Path, typer.Argument(help="folder written by 'clustersim reference run'")],
    run_id: Annotated[str, typer.Option("--id", help="record id, e.g. h100-llama3-8b-chat")],
    records: Annotated[Path | None, typer.Option(
        help="validation records folder (default: the project's)")] = None,
) -> None:
    """Add a measured run to the validation suite (its folder and one record per statistic)."""
    added = add_reference_run(run, run_id, records)
    console.print(f"recorded {len(added)} statistics of {run} as {run_id}; review them with "
                  "'clustersim validate', then --update-baseline")
