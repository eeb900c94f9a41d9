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
from pathlib import Path
from typing import Any

from profiles.errors import ClusterSimError
from simulator.engine import SimulationResult

__all__ = ["to_json_text", "write_outputs"]


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


def write_outputs(result: SimulationResult, out_dir: str | Path, fmt: str = "csv") -> list[Path]:
    """Write ``result`` into ``out_dir``; returns the paths written.

    Raises:
        ClusterSimError: the run failed, ``fmt`` is unknown, or the folder is not writable.
    """
    if not result.ok or result.summary is None or result.requests is None:
        raise ClusterSimError(result.error or "no result to write")
    if fmt not in ("csv", "parquet"):
        raise ClusterSimError(f"--format {fmt!r} is unknown; use csv or parquet")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    except OSError as error:
        raise ClusterSimError(f"--out {out}: cannot create the folder ({error.strerror})") \
            from None
    try:
        names = []
        rows_name = f"requests.{fmt}"
        if fmt == "csv":
            result.requests.to_csv(staging / rows_name, index=False, float_format="%.9g")
        else:
            result.requests.to_parquet(staging / rows_name, index=False)
        names.append(rows_name)
        (staging / "summary.json").write_text(to_json_text(result.summary), encoding="utf-8")
        names.append("summary.json")
        if result.trace is not None:
            (staging / "trace.json").write_text(json.dumps(result.trace), encoding="utf-8")
            names.append("trace.json")
        written = []
        for name in names:
            (staging / name).replace(out / name)
            written.append(out / name)
        return written
    except OSError as error:
        raise ClusterSimError(f"--out {out}: cannot write outputs ({error.strerror})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
