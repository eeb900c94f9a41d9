"""The ``clustersim`` command, assembled from one module per command group, and the
``simulate`` command of its own.

    clustersim simulate | workload {generate,chat,stats} | plan | plan-training | report
               | sweep | compare | place-experts
               | validate | profile [check] | reference {run,compare,record} | models | gpus

The command line sits at the top of the import graph (workloads, profiles → simulator →
validation → planners → reports → cli), so it may call any library function; nothing
below imports it. A user error prints ``error: <what and the fix>`` and exits with 2.
"""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from cli import (
    catalog,
    experts,
    plan,
    profile,
    reference,
    report,
    simulate,
    sweep,
    validate,
    workload,
)

__all__ = ["app", "main", "simulate_app", "simulate_main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="clustersim: simulate and plan LLM serving and training clusters.")


def _version() -> str:
    """The installed package's version (the checkout's pyproject when not installed)."""
    try:
        return metadata.version("clustersim")
    except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"clustersim {_version()}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="print the version and exit")] = False) -> None:
    """clustersim: simulate and plan LLM serving and training clusters."""
# NOTE: the order of registration is the order of `clustersim --help` (commands first,
# then groups), kept as it was before the command line had a package of its own.
app.command("simulate")(simulate.simulate_command)
app.command("validate")(validate.validate_command)
app.command("models")(catalog.models_command)
app.command("gpus")(catalog.gpus_command)
app.command("plan")(plan.plan_command)
app.command("plan-training")(plan.plan_training_command)
app.command("report")(report.report_command)
app.command("sweep")(sweep.sweep_command)
app.command("compare")(sweep.compare_command)
app.command("place-experts")(experts.place_experts_command)
app.add_typer(workload.app, name="workload")
app.add_typer(profile.app, name="profile")
app.add_typer(reference.app, name="reference")

simulate_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
simulate_app.command()(simulate.simulate_command)


def main() -> None:
    """Entry point of the ``clustersim`` command."""
    app()


def simulate_main() -> None:
    """Entry point of the ``simulate`` command (same options as ``clustersim simulate``)."""
    simulate_app()
