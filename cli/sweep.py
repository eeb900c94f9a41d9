"""``clustersim sweep`` and ``clustersim compare``: latency against load.

    clustersim sweep --workload trace.json --deployment d.yaml --rates 1:32:6 --out sweep/
    clustersim compare --workload trace.json --deployment a.yaml --deployment b.yaml \\
        --rates 2,4,8,16 --ttft-slo 0.5 --tpot-slo 0.05 --out compare/

Each writes ``sweep.csv`` (one row per deployment and rate) and ``sweep.svg`` (the
curves), whole or not at all, and prints the table. The SLOs the points are held to are
the flags' where given, else the deployment files' own (``slo:``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from cli.common import console, fail, progress_bar, user_errors
from planners.objectives import SteadyState
from planners.sweep import compare, concurrency_sweep, rates_between, sweep
from profiles.errors import ClusterSimError
from reports.curves import curves_svg
from simulator import DeploymentConfig, check_output_folder, load_deployment, write_folder
from workloads.loaders import load_workload

__all__ = ["compare_command", "sweep_command"]


def parse_rates(text: str) -> list[float]:
    """``"1,2,4"`` (the rates) or ``"1:32:6"`` (6 rates from 1 to 32, log-spaced)."""
    try:
        if ":" in text:
            low, high, count = text.split(":")
            return rates_between(float(low), float(high), int(count))
        rates = [float(part) for part in text.split(",") if part]
    except ValueError:
        raise ClusterSimError(f"--rates {text!r}: expected rates like 1,2,4 or a range "
                              f"LOW:HIGH:COUNT like 1:32:6") from None
    if not rates or any(not 0 < rate < math.inf for rate in rates):
        raise ClusterSimError(f"--rates {text!r}: every rate must be a positive, finite "
                              f"number of requests per second")
    return rates


def parse_concurrency(text: str) -> list[int]:
    """``"1,4,16"``: client concurrencies, each a whole number of at least 1."""
    try:
        values = [int(part) for part in text.split(",") if part]
    except ValueError:
        raise ClusterSimError(f"--concurrency {text!r}: expected whole numbers like "
                              f"1,4,16,64") from None
    if not values or any(value < 1 or value > 100_000 for value in values):
        raise ClusterSimError(f"--concurrency {text!r}: each must be between 1 and 100000")
    return values


def resolved_slos(deployments: dict[str, DeploymentConfig], ttft_slo: float | None,
                  tpot_slo: float | None) -> tuple[float | None, float | None]:
    """The SLOs a sweep checks: each flag where given (a positive number of seconds),
    else what the deployment files state (``slo:``). Files that state none leave it
    open; files that state different values are an error, since every point is held to
    one pair."""
    resolved = []
    for flag, option, field in ((ttft_slo, "--ttft-slo", "ttft_s"),
                                (tpot_slo, "--tpot-slo", "tpot_s")):
        if flag is not None:
            if not 0 < flag < math.inf:
                fail(f"{option} {flag:g}: an SLO is a positive number of seconds")
            resolved.append(flag)
            continue
        stated = {name: getattr(d.slo, field) for name, d in deployments.items()
                  if getattr(d.slo, field) is not None}
        if len(set(stated.values())) > 1:
            fail(f"the deployments state different slo.{field} "
                 f"({', '.join(f'{n}: {v:g} s' for n, v in stated.items())}); give "
                 f"{option} to hold them to one")
        resolved.append(next(iter(stated.values()), None))
    return resolved[0], resolved[1]


def _show_and_write(rows: pd.DataFrame, out: Path | None, ttft_slo: float | None,
                    tpot_slo: float | None) -> None:
    closed = bool(rows["concurrency"].notna().all()) and len(rows) > 0
    single = rows["deployment"].nunique() == 1  # then named in the title: 80 columns fit
    columns = ["in flight" if closed else "req/s", "state", "TTFT p90 ms", "TPOT p90 ms",
               "ITL p90 ms", "E2E p90 s", "served req/s", "SLO met"]
    table = Table(*(columns if single else ["deployment", *columns]),
                  title=str(rows["deployment"].iloc[0]) if single and len(rows) else None)
    for row in rows.itertuples():
        load = f"{int(row.concurrency)}" if closed else f"{row.rate_per_s:.3g}"
        table.add_row(*([] if single else [str(row.deployment)]), load, str(row.state),
                      f"{row.ttft_p90_s * 1e3:.0f}", f"{row.tpot_p90_s * 1e3:.1f}",
                      f"{row.itl_p90_s * 1e3:.1f}", f"{row.e2e_p90_s:.2f}",
                      f"{row.requests_per_s:.3g}",
                      "-" if pd.isna(row.slo_attainment) else f"{row.slo_attainment:.0%}")
    console.print(table)
    if out is not None:
        svg = curves_svg(rows, ttft_slo, tpot_slo)
        writers: dict[str, Callable[[Path], object]] = {
            "sweep.csv": lambda path: rows.to_csv(path, index=False, float_format="%.6g"),
            "sweep.svg": lambda path: path.write_text(svg, encoding="utf-8"),
        }
        console.print("wrote " + ", ".join(str(p) for p in write_folder(out, writers)))


Rates = Annotated[str, typer.Option(help="rates, e.g. 1,2,4, or LOW:HIGH:COUNT (log-spaced)")]
TtftSlo = Annotated[float | None, typer.Option(
    help="TTFT SLO, seconds (unset: the deployment file's slo.ttft_s)")]
TpotSlo = Annotated[float | None, typer.Option(
    help="TPOT SLO, seconds (unset: the deployment file's slo.tpot_s)")]
Out = Annotated[Path | None, typer.Option(help="folder for sweep.csv and sweep.svg")]
SteadyRequests = Annotated[int, typer.Option(
    min=50, help="each point replays at least this many requests")]
SteadySeconds = Annotated[float, typer.Option(
    min=1.0, help="... over at least this many seconds of arrivals")]
SteadyLifetimes = Annotated[float, typer.Option(
    min=0.0, help="... and this many lifetimes of the longest requests at the TPOT SLO")]


@user_errors
def sweep_command(
    workload: Annotated[Path, typer.Option(help="trace whose shape is replayed")],
    deployment: Annotated[Path, typer.Option(help="deployment file (YAML or JSON)")],
    rates: Annotated[str | None, typer.Option(
        help="rates, e.g. 1,2,4, or LOW:HIGH:COUNT (log-spaced)")] = None,
    concurrency: Annotated[str | None, typer.Option(
        help="closed loop instead: client concurrencies, e.g. 1,4,16,64 (vLLM's "
             "--max-concurrency)")] = None,
    ttft_slo: TtftSlo = None, tpot_slo: TpotSlo = None, out: Out = None,
    steady_requests: SteadyRequests = 1000, steady_seconds: SteadySeconds = 60.0,
    steady_lifetimes: SteadyLifetimes = 3.0,
) -> None:
    """Latency against load: one deployment at each of a range of request rates, or of
    client concurrencies."""
    if (rates is None) == (concurrency is None):
        fail("give --rates (open loop) or --concurrency (closed loop), one of them")
    rule = SteadyState(min_requests=steady_requests, min_span_s=steady_seconds,
                       lifetimes=steady_lifetimes)
    if out is not None:
        check_output_folder(out)
    config = load_deployment(deployment)
    ttft_slo, tpot_slo = resolved_slos({deployment.stem: config}, ttft_slo, tpot_slo)
    with progress_bar("sweep: points done") as progress:
        if concurrency is not None:
            rows = concurrency_sweep(
                config, load_workload(workload),
                parse_concurrency(concurrency), name=deployment.stem, ttft_slo_s=ttft_slo,
                tpot_slo_s=tpot_slo, rule=rule, progress=progress)
        else:
            assert rates is not None
            rows = sweep(config, load_workload(workload),
                         parse_rates(rates), name=deployment.stem, ttft_slo_s=ttft_slo,
                         tpot_slo_s=tpot_slo, rule=rule, progress=progress)
    _show_and_write(rows, out, ttft_slo, tpot_slo)


@user_errors
def compare_command(
    workload: Annotated[Path, typer.Option(help="trace whose shape is replayed")],
    deployment: Annotated[list[Path], typer.Option(
        help="deployment files to compare (repeat, two or more)")],
    rates: Rates, ttft_slo: TtftSlo = None, tpot_slo: TpotSlo = None, out: Out = None,
    steady_requests: SteadyRequests = 1000, steady_seconds: SteadySeconds = 60.0,
    steady_lifetimes: SteadyLifetimes = 3.0,
) -> None:
    """Two or more deployments side by side over the same request rates."""
    rule = SteadyState(min_requests=steady_requests, min_span_s=steady_seconds,
                       lifetimes=steady_lifetimes)
    names = [path.stem for path in deployment]
    if len(set(names)) != len(names):
        names = [str(path) for path in deployment]
    if out is not None:
        check_output_folder(out)
    configs = {name: load_deployment(path) for name, path in zip(names, deployment,
                                                                  strict=True)}
    ttft_slo, tpot_slo = resolved_slos(configs, ttft_slo, tpot_slo)
    with progress_bar("compare: points done") as progress:
        rows = compare(configs, load_workload(workload), parse_rates(rates), ttft_slo_s=ttft_slo,
                       tpot_slo_s=tpot_slo, rule=rule, progress=progress)
    _show_and_write(rows, out, ttft_slo, tpot_slo)
