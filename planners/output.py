"""A plan's output folder: every candidate, the Pareto set and the inputs.

    plan/
      candidates.csv   one row per candidate: knobs, status (evaluated, pruned,
                       infeasible and why), goodput, latency, cost, energy, bounds
      pareto.json      the Pareto candidates and the best one per objective
      inputs.json      model, SLOs, attainment, search space, workload summary, prices
      workload.json    the serving trace the plan replayed (for the report)

Written whole or not at all (a staging folder, then renames); the HTML report reads it.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from planners.serving import ServingPlan, plan_rows
from planners.training import TrainingPlan
from profiles.errors import ClusterSimError
from workloads.loaders import save_workload
from workloads.schema import RequestTrace

__all__ = ["write_plan"]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def write_plan(plan: ServingPlan | TrainingPlan, folder: str | Path,
               workload: RequestTrace | None = None) -> list[Path]:
    """Write a serving or training ``plan`` into ``folder`` (with the serving workload, so
    the report can re-run the recommended plan); returns the files written."""
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    except OSError as error:
        raise ClusterSimError(f"--out {out}: cannot create it ({error.strerror})") from None
    try:
        rows = (plan_rows(plan) if isinstance(plan, ServingPlan)
                else [c.row() for c in plan.candidates])
        pd.DataFrame(rows).to_csv(staging / "candidates.csv", index=False, float_format="%.6g")
        by_index = {row["index"]: row for row in rows}
        mappings = {c.index: (c.deployment if isinstance(plan, ServingPlan)
                              else {"plan": c.plan, "micro_batch": c.micro_batch})
                    for c in plan.candidates}
        kind = "serving" if isinstance(plan, ServingPlan) else "training"
        pareto = {"kind": kind,
                  "pareto": [by_index[i] | {"deployment": mappings[i]} for i in plan.pareto],
                  "best": {name: by_index[i] | {"deployment": mappings[i]}
                           for name, i in plan.best.items()}}
        (staging / "pareto.json").write_text(json.dumps(_clean(pareto), indent=2,
                                                        sort_keys=True) + "\n")
        (staging / "inputs.json").write_text(json.dumps(_clean(plan.inputs), indent=2,
                                                        sort_keys=True) + "\n")
        names = ["candidates.csv", "pareto.json", "inputs.json"]
        if workload is not None:
            save_workload(workload, staging / "workload.json")
            names.append("workload.json")
        written = []
        for name in names:
            (staging / name).replace(out / name)
            written.append(out / name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)
