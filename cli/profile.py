"""``clustersim profile``: measure a kernel profile on this machine's device (torch), or
check one's interpolation error.

    clustersim profile --gpu h100 --out my-h100/ --models llama-3-8b --tp 1,2,4,8
    clustersim profile check my-h100/
    clustersim profile import vidur VIDUR_DATA/ --gpu a100 --out my-a100/
    clustersim profile import splitwise perf_model.csv --gpu h100 --out my-h100-steps/
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from cli.common import console, fail, progress_bar, user_errors
from profiles.hardware import load_gpu
from profiles.importers import import_splitwise, import_vidur, left_out_note
from profiles.profile_check import profile_errors
from profiles.profile_format import KernelProfile, command_line, load_profile

__all__ = ["app"]


app = typer.Typer(add_completion=False, invoke_without_command=True,
                          help="Measure kernel profiles on this machine's device, or check one.")


@app.callback()
@user_errors
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
        fail("give --out DIR and --gpu NAME (or use 'clustersim profile check DIR')")
    if dtype not in ("bf16", "fp16", "fp32"):
        fail(f"--dtype {dtype!r} is not profiled; use bf16, fp16 or fp32")
    try:
        from profiles.measure import run_profile
    except ImportError:
        fail("the profiler needs torch: pip install 'clustersim[profile]'")
    gpu_name = load_gpu(str(gpu)).name
    try:
        with progress_bar("profile: shape groups measured") as progress:
            profile = run_profile(
                str(out), gpu=gpu_name, models=[m for m in models.split(",") if m],
                tp_degrees=[int(t) for t in tp.split(",") if t], device=device,
                dtype=dtype,  # type: ignore[arg-type]
                tiny=tiny, repetitions=repetitions, warmup=warmup, collectives=collectives,
                progress=progress)
    except RuntimeError as error:
        fail(str(error))
    console.print(f"wrote {out}: " + ", ".join(
        f"{op} {len(table)} rows" for op, table in profile.tables.items()))


@app.command("check")
@user_errors
def profile_check_command(
    folder: Annotated[Path, typer.Argument(help="profile folder")],
) -> None:
    """Leave-one-out interpolation error per operation of a profile."""
    profile = load_profile(folder)
    table = Table("operation", "status", "rows", "families", "checked points",
                  "median error", "p90 error", "max error")
    for op, errors in profile_errors(profile).items():
        families, points, values = errors
        status = profile.status(op)
        if values:
            table.add_row(op, status, str(len(profile.tables[op])), str(families),
                          str(points), f"{float(np.median(values)):.2%}",
                          f"{float(np.percentile(values, 90)):.2%}", f"{max(values):.2%}")
        else:
            table.add_row(op, status, str(len(profile.tables[op])), str(families), "0",
                          "-", "-", "-")
    console.print(table)


import_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Convert another tool's measured tables into a profile folder.")
app.add_typer(import_app, name="import")

ImportGpu = Annotated[str, typer.Option(help="a100 or h100 (the GPUs the sources measure)")]
ImportOut = Annotated[Path, typer.Option(help="profile folder to write")]


@import_app.command("vidur")
@user_errors
def import_vidur_command(
    folder: Annotated[Path, typer.Argument(help="Vidur's data/profiling folder")],
    gpu: ImportGpu, out: ImportOut,
    node: Annotated[str | None, typer.Option(
        help="network/ node folder for collectives (default <sku>_dgx)")] = None,
    attention: Annotated[Path | None, typer.Option(
        help="an attention.csv (default: the SKU's own, when present)")] = None,
) -> None:
    """Vidur's per-operator and collective tables as a profile (use with --profile)."""
    profile = import_vidur(folder, gpu, out, node=node, attention=attention,
                           command=command_line())
    _report_import(out, profile)


@import_app.command("splitwise")
@user_errors
def import_splitwise_command(
    csv: Annotated[Path, typer.Argument(help="Splitwise's perf_model.csv")],
    gpu: ImportGpu, out: ImportOut,
) -> None:
    """Splitwise's measured forward passes (prompt phase, decode step) as step tables."""
    profile = import_splitwise(csv, gpu, out, command=command_line())
    _report_import(out, profile)
    note = left_out_note(profile)  # configurations that did not run as one batch
    if note:
        console.print(note)


def _report_import(out: Path, profile: KernelProfile) -> None:
    console.print(f"wrote {out}: " + ", ".join(
        f"{op} {len(table):,} rows" for op, table in profile.tables.items())
        + f"; models: {', '.join(profile.metadata.models)}")
