"""Our own measured runs as validation records: a reference run's folder is copied beside
the records and one ``test`` record per statistic is added to ``our_runs.json``, so CI
guards our runs like the published ones (``clustersim reference record``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from profiles.errors import ClusterSimError
from validation.records import Record, default_records_dir
from validation.reference.compare import load_reference_run

__all__ = ["REFERENCE_STATISTICS", "add_reference_run"]

REFERENCE_STATISTICS = ("step_time_p50", "ttft_p50", "ttft_p90", "tpot_p50", "tpot_p90",
                        "e2e_p50", "e2e_p90")


def add_reference_run(run_dir: str | Path, run_id: str, records_dir: str | Path | None = None
                      ) -> list[Record]:
    """Join a measured reference run to the validation suite: its folder is copied to
    ``runs/<run_id>/`` beside the records, and one test record per statistic of
    :data:`REFERENCE_STATISTICS` goes into ``our_runs.json``, both written whole or not at
    all.

    Raises:
        ClusterSimError: an unreadable run, a bad id, or an id already recorded.
    """
    meta, steps, requests = load_reference_run(run_dir)
    if not run_id or not all(c.isalnum() or c in "-_." for c in run_id):
        raise ClusterSimError(f"--id {run_id!r}: use letters, digits, '-', '_' and '.'")
    folder = Path(records_dir) if records_dir is not None else default_records_dir()
    file = folder / "our_runs.json"
    existing = json.loads(file.read_text())["records"] if file.is_file() else []
    if any(entry["id"].startswith(f"{run_id}:") for entry in existing):
        raise ClusterSimError(f"--id {run_id}: already recorded in {file.name}")
    device = meta.get("device", {})
    deployment = meta.get("deployment", {})
    measured = {"step_time_p50": float(np.median(steps["device_s"]))}
    for statistic in REFERENCE_STATISTICS[1:]:
        metric, q = statistic.rsplit("_p", 1)
        measured[statistic] = float(np.percentile(requests[f"{metric}_s"].dropna(), int(q)))
    entries = [{
        "id": f"{run_id}:{statistic}", "group": "serving", "kind": "reference_run",
        "role": "test", "scenario": {"run": f"runs/{run_id}", "statistic": statistic},
        "measured": {"metric": statistic, "value": value * 1e3, "unit": "ms"},
        "source": {"kind": "our_run",
                   "citation": f"clustersim reference run on {device.get('name', '?')} "
                               f"(driver {device.get('driver', '?')}, "
                               f"{device.get('runtime', '?')}, torch "
                               f"{device.get('torch', '?')}), {meta.get('date', '?')}",
                   "locator": f"validation/records/runs/{run_id}/run.json"},
        "notes": f"{deployment.get('model')} on {deployment.get('gpu')}, "
                 f"{meta.get('workload', {}).get('num_requests')} requests of "
                 f"{meta.get('workload', {}).get('file')}; command: {meta.get('command')}",
    } for statistic, value in measured.items()]
    records = [Record.model_validate(entry) for entry in entries]
    target = folder / "runs" / run_id
    staging = folder / "runs" / f".staging-{run_id}"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(run_dir, staging)
        text = json.dumps({"records": existing + entries}, indent=1) + "\n"
        (folder / ".our_runs.json.tmp").write_text(text)
        staging.replace(target)
        (folder / ".our_runs.json.tmp").replace(file)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise ClusterSimError(f"validation records {folder}: cannot write ({error})") from None
    return records
