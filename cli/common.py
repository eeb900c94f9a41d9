"""What every command shares: the console, the one-line user error with exit status 2,
and the deployment a command's flags describe."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from simulator import DeploymentConfig

# NOTE: the command line imports the library when a command runs, not when it is
# parsed, so `--help` and start-up need typer alone (tests/test_startup.py).

__all__ = ["console", "deployment_from_flags", "fail", "parse_routing", "progress_bar",
           "silent_progress", "step_breakdown_table", "user_errors"]

UNFITTED_WIDTH = 240  # columns of output that is not a terminal (wider than any table)


def _console(stderr: bool = False) -> Console:
    """Rich's console, at full width where the output is not a terminal: a file, a pipe
    or a CI log has no width to fit, and at rich's default 80 columns a wide table (the
    training planner's sixteen) squeezes its cells to ellipses. ``COLUMNS`` still wins."""
    fitted = Console(stderr=stderr)
    if fitted.is_terminal or "COLUMNS" in os.environ:
        return fitted
    return Console(stderr=stderr, width=UNFITTED_WIDTH)


console = _console()
_stderr = _console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def silent_progress(done: int, total: int) -> None:
    """The progress callback where no bar is shown (a caller may pass ``None`` instead,
    which spares the simulator a call per finished request)."""


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A ``(done, total)`` callback that drives a progress bar on stderr while the block
    runs, when stderr is a terminal; :func:`silent_progress` otherwise (pipes, CI, files)."""
    if not _stderr.is_terminal:
        yield silent_progress
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=_stderr, transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def user_errors(function: F) -> F:
    """Turn ClusterSimError into the one-line error and exit status 2."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from profiles.errors import ClusterSimError

        try:
            return function(*args, **kwargs)
        except ClusterSimError as error:
            fail(str(error))
    return wrapper  # type: ignore[return-value]


def deployment_from_flags(deployment: Path | None, overrides: dict[str, Any]
                          ) -> DeploymentConfig:
    """The deployment file with the flags set over it, or the flags alone (which must
    then name the model and the GPU)."""
    from simulator import build_deployment, load_deployment

    if deployment is not None:
        return load_deployment(deployment, overrides)
    if overrides.get("model") is None or overrides.get("gpu") is None:
        fail("give --model and --gpu, or a --deployment file")
    return build_deployment({}, overrides, source="flags")


def parse_routing(routing: str) -> dict[str, Any]:
    """``--routing``: uniform, zipf:S (Zipf exponent S) or a routing-trace file, as the
    fields of a ``profiles.moe.RoutingConfig``."""
    if routing == "uniform":
        return {"kind": "uniform"}
    if routing.startswith("zipf"):
        _, _, exponent = routing.partition(":")
        try:
            value = float(exponent or 1.0)
        except ValueError:
            fail(f"--routing {routing!r}: the Zipf exponent must be a number, e.g. zipf:1.2")
        if not 0 <= value <= 5:
            fail(f"--routing {routing!r}: the Zipf exponent must be between 0 and 5")
        return {"kind": "zipf", "zipf_s": value}
    if not Path(routing).is_file():
        fail(f"--routing {routing!r}: not uniform, zipf:S or an existing routing-trace file")
    return {"kind": "trace", "trace": routing}


def step_breakdown_table(breakdown: dict[str, float], step_s: float) -> Any:
    """Where a training step goes, as a table (milliseconds and share of the step)."""
    from rich.table import Table

    from simulator.training.step import BREAKDOWN_PARTS

    table = Table("where the step goes (busiest stage)", "ms", "share",
                  title="step breakdown")
    for name, label in BREAKDOWN_PARTS.items():
        seconds = breakdown.get(name, 0.0)
        if seconds > 0.0005 * step_s:
            table.add_row(label, f"{seconds * 1e3:,.1f}", f"{seconds / step_s:.1%}")
    table.add_row("step", f"{step_s * 1e3:,.1f}", "100.0%")
    return table
