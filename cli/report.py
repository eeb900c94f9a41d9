"""``clustersim report PLAN_DIR -o report.html``: the self-contained HTML report of a plan
folder (Pareto frontiers, the recommended plan re-simulated, validation errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import console, user_errors
from reports import plan_report
from simulator import write_text

__all__ = ["report_command"]


@user_errors
def report_command(
    plan_dir: Annotated[Path, typer.Argument(help="folder written by 'clustersim plan'")],
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write")],
    plan: Annotated[list[int] | None, typer.Option(
        help="also detail this Pareto plan (repeatable)")] = None,
) -> None:
    """Write a self-contained HTML report of a plan folder."""
    text = plan_report(plan_dir, plan or [])
    write_text(output, text)
    console.print(f"wrote {output} ({len(text.encode()) / 1024:.0f} KiB)")
