"""``clustersim validate``: every measured-run record predicted, the errors printed, and
the CI gate against the baseline (exit status 1 on a regression)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import console, progress_bar, user_errors
from simulator import check_output_folder
from validation import validate
from validation.render import reason_kind
from validation.serving_runs import overload_counts, serving_group_table

__all__ = ["validate_command"]


@user_errors
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
    measured: Annotated[Path | None, typer.Option(
        help="measured pack for the operator group (default: the shared folder's)")] = None,
) -> None:
    """Predict every measured-run record; print errors; gate against the baseline."""
    if out is not None:
        check_output_folder(out)
    with progress_bar("validate: vLLM runs replayed") as progress:
        report = validate(records, baseline, out=out, html=html,
                          update_baseline=update_baseline, update_readme=update_readme,
                          measured=measured, progress=progress)
    table = Table("record", "group", "role", "metric", "measured", "predicted", "error")
    for r in report.rows.itertuples():
        table.add_row(r.id, r.group, r.role, f"{r.metric} ({r.unit})", f"{r.measured:,.4g}",
                      f"{r.predicted:,.4g}", f"{r.error_pct:.1f}%")
    console.print(table)
    summary = Table("group", "role", "records", "median error", "p90 error", "max error")
    for g in report.groups.itertuples():
        summary.add_row(g.group, g.role, str(g.num_records), f"{g.median_error_pct:.1f}%",
                        f"{g.p90_error_pct:.1f}%", f"{g.max_error_pct:.1f}%")
    console.print(summary)
    for waiting_for, ids in report.pending.items():
        console.print(f"{len(ids)} measured records await {waiting_for}")
    if report.operators_skipped:
        console.print(report.operators_skipped)
    else:
        operators = Table("GPU", "operator", "points", "median error", "p90 error", "bias",
                          title="operators and vLLM runs against measured tables")
        for o in report.operators.itertuples():
            operators.add_row(o.gpu, o.operator, f"{o.num_points:,}",
                              f"{o.median_error_pct:.1f}%", f"{o.p90_error_pct:.1f}%",
                              f"{o.signed_median_pct:+.1f}%")
        console.print(operators)
        console.print("worst shapes per operator (error):")
        for o in report.operators.itertuples():
            console.print(f"  {o.gpu} {o.operator}: {o.worst}", soft_wrap=True)
        skipped = report.training_not_expressed
        if not skipped.empty:
            counts = skipped["reason"].map(reason_kind).value_counts()
            console.print(f"{len(skipped)} training rows of the pack not compared (each with "
                          "its reason in --out's validation.json): " + "; ".join(
                              f"{reason} ({n})" for reason, n in counts.items()),
                          soft_wrap=True)
        groups = report.serving_groups
        if not groups.empty:
            by_family = Table("GPU", "family", "TP", "runs", "E2E", "TPOT", "TTFT",
                              title="vLLM runs per GPU, model family and TP: median error "
                                    "(p90) \\[signed median]; TPOT per token generated, not "
                                    "per token the client counted")
            for row in serving_group_table(groups):
                by_family.add_row(*row)
            console.print(by_family)
        if not report.overload.empty:
            measured, predicted, disagree = overload_counts(report.overload)
            console.print(f"overload: {len(report.overload)} vLLM runs, {measured} overloaded "
                          f"as measured, {predicted} predicted overloaded, {len(disagree)} "
                          "disagreeing", soft_wrap=True)
        for run in report.runs_not_expressed.itertuples():
            console.print(f"vLLM run {run.run_id} ({run.model}, {run.hardware}) not expressed: "
                          f"{run.reason}", soft_wrap=True)
    for line in report.movements:
        console.print(f"moved: {line}")
    if report.baseline_updated:
        console.print(f"wrote {report.baseline_path}")
        return
    for line in report.regressions:
        typer.echo(f"regression: {line}", err=True)
    if not report.passed:
        raise typer.Exit(code=1)
