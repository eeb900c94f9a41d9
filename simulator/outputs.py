"""Writing a run's outputs: per-request rows, the summary, the optional trace.

Files land in the ``--out`` folder as ``requests.csv`` (or ``requests.parquet``),
``summary.json`` and ``trace.json``. They are written whole or not at all: everything
goes to a staging folder beside them first and is moved into place only when all of it
is written. JSON has no NaN, so a metric that does not exist (TPOT of one-token outputs)
is written as ``null``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from profiles.errors import ClusterSimError
from simulator.engine import SimulationResult

__all__ = ["to_json_text", "write_folder", "write_outputs"]


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def to_json_text(data: Any) -> str:
    """Deterministic JSON (sorted keys, NaN as null) for byte-identical reruns."""
    return json.dumps(_clean(data), indent=2, sort_keys=True) + "\n"


def write_folder(out_dir: str | Path, writers: dict[str, Callable[[Path], object]]
                 ) -> list[Path]:
    """Write several files into ``out_dir`` whole or not at all.

    Each ``writers[name](path)`` writes its file into a staging folder beside the
    outputs; only when all have succeeded are they moved into place.

    Raises:
        ClusterSimError: the folder cannot be created or written.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    except OSError as error:
        raise ClusterSimError(f"--out {out}: cannot create the folder ({error.strerror})") \
            from None
    try:
        for name, write in writers.items():
            write(staging / name)
        written = []
        for name in writers:
            (staging / name).replace(out / name)
            written.append(out / name)
        return written
    except OSError as error:
        raise ClusterSimError(f"--out {out}: cannot write outputs ({error.strerror})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_outputs(result: SimulationResult, out_dir: str | Path, fmt: str = "csv") -> list[Path]:
    """Write ``result`` into ``out_dir``; returns the paths written.

    Raises:
        ClusterSimError: the run failed, ``fmt`` is unknown, or the folder is not writable.
    """
    if not result.ok or result.summary is None or result.requests is None:
        raise ClusterSimError(result.error or "no result to write")
    if fmt not in ("csv", "parquet"):
        raise ClusterSimError(f"--format {fmt!r} is unknown; use csv or parquet")
    rows, summary, trace = result.requests, result.summary, result.trace
    writers: dict[str, Callable[[Path], object]] = {
        f"requests.{fmt}": (
            (lambda path: rows.to_csv(path, index=False, float_format="%.9g")) if fmt == "csv"
            else (lambda path: rows.to_parquet(path, index=False))),
        "summary.json": lambda path: path.write_text(to_json_text(summary), encoding="utf-8"),
    }
    if trace is not None:
        writers["trace.json"] = lambda path: path.write_text(json.dumps(trace),
                                                             encoding="utf-8")
    return write_folder(out_dir, writers)
