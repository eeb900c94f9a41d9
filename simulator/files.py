"""Writing output files whole or not at all, and JSON that reruns reproduce byte for byte.

Every command that writes (a run's outputs, a plan folder, a training summary, a report,
a validation baseline) goes through here: files are written beside their final place and
moved there only when complete, so an interrupted or failed run leaves the old files or
none, never half of one. JSON has no NaN, so a metric that does not exist is ``null``.
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

__all__ = ["to_json_text", "write_folder", "write_text"]


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


def write_text(path: str | Path, text: str) -> None:
    """Write a file whole or not at all (a partial file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
