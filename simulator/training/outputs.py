"""Writing a training step's outputs: ``training_summary.json`` (the predictions and the
job they are for) and, when recorded, the step timeline ``trace.json`` (Perfetto), whole
or not at all."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from profiles.files import to_json_text, write_folder
from simulator.training.step import TrainingResult
from workloads.training import TrainingJob

__all__ = ["write_training_outputs"]


def write_training_outputs(result: TrainingResult, job: TrainingJob, out_dir: str | Path
                           ) -> list[Path]:
    """Write ``result`` of ``job`` into ``out_dir``; returns the paths written.

    Raises:
        ClusterSimError: the folder cannot be created or written.
    """
    summary = to_json_text(result.summary() | {"job": job.model_dump(mode="json")})
    writers: dict[str, Callable[[Path], object]] = {
        "training_summary.json": lambda path: path.write_text(summary)}
    if result.trace is not None:
        timeline = json.dumps(result.trace, separators=(",", ":"))
        writers["trace.json"] = lambda path: path.write_text(timeline)
    return write_folder(out_dir, writers)
