"""Writing a run's outputs: per-request rows, the summary, the optional trace.

Files land in the ``--out`` folder as ``requests.csv`` (or ``requests.parquet``),
``summary.json`` and ``trace.json``, whole or not at all (``profiles.files``). JSON has
no NaN, so a metric that does not exist (TPOT of one-token outputs) is written as
``null``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from profiles.errors import ClusterSimError
from profiles.files import to_json_text, write_folder
from simulator.serving.engine import SimulationResult

__all__ = ["write_outputs"]


def write_outputs(result: SimulationResult, out_dir: str | Path, fmt: str = "csv") -> list[Path]:
    """Write ``result`` into ``out_dir``; returns the paths written.

    Raises:
        ClusterSimError: the run failed, ``fmt`` is unknown, or the folder is not writable.
    """
    if not result.ok or result.summary is None or result.rows is None:
        raise ClusterSimError(result.error or "no result to write")
    if fmt not in ("csv", "parquet"):
        raise ClusterSimError(f"--format {fmt!r} is unknown; use csv or parquet")
    rows, summary, trace = result.rows, result.summary, result.trace
    writers: dict[str, Callable[[Path], object]] = {
        f"requests.{fmt}": (
            (lambda path: path.write_text(rows.csv_text("%.9g"), encoding="utf-8"))
            if fmt == "csv" else (lambda path: rows.to_pandas().to_parquet(path, index=False))),
        "summary.json": lambda path: path.write_text(to_json_text(summary), encoding="utf-8"),
    }
    if trace is not None:
        writers["trace.json"] = lambda path: path.write_text(
            json.dumps(trace, separators=(",", ":")), encoding="utf-8")
    return write_folder(out_dir, writers)
