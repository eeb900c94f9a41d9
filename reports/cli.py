"""``clustersim report``, and the ``clustersim`` command assembled at the top of the
import graph (reports import planners, which import the simulator)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import simulator.reference_cli  # noqa: F401  (registers the "clustersim reference" commands)
from planners.cli import app
from reports.html import plan_report, run_report
from simulator.cli import RUN_REPORT_WRITERS, _user_errors, _write_text, console, simulate_app

__all__ = ["main", "simulate_main"]

RUN_REPORT_WRITERS.append(run_report)


@app.command("report")
@_user_errors
def report_command(
    plan_dir: Annotated[Path, typer.Argument(help="folder written by 'clustersim plan'")],
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write")],
    plan: Annotated[list[int] | None, typer.Option(
        help="also detail this Pareto plan (repeatable)")] = None,
) -> None:
    """Write a self-contained HTML report of a plan folder."""
    text = plan_report(plan_dir, plan or [])
    _write_text(output, text)
    console.print(f"wrote {output} ({len(text.encode()) / 1024:.0f} KiB)")


def main() -> None:
    """Entry point of the ``clustersim`` command."""
    app()


def simulate_main() -> None:
    """Entry point of the ``simulate`` command (with ``--report``)."""
    simulate_app()
