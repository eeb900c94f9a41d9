"""A plan's output folder: every candidate, the Pareto set and the inputs.

    plan/
      candidates.csv   one row per candidate: knobs, status (evaluated, pruned,
                       infeasible and why), goodput, latency, cost, energy, bounds
      pareto.json      the Pareto candidates and the best one per objective (training:
                       with where each step goes, step_breakdown_s)
      inputs.json      model, SLOs, attainment, search space, workload summary, prices
      workload.json    the serving trace the plan replayed (for the report)

Written whole or not at all (a staging folder, then renames); the HTML report reads it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from planners.launch import launch_commands
from planners.serving import ServingPlan, plan_rows
from planners.training import TrainingPlan
from profiles.files import write_folder
from simulator.serving.config import build_deployment
from workloads.loaders import workload_text
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
    rows = (plan_rows(plan) if isinstance(plan, ServingPlan)
            else [c.row() for c in plan.candidates])
    by_index = {row["index"]: row for row in rows}
    mappings = {c.index: (c.deployment if isinstance(plan, ServingPlan)
                          else {"plan": c.plan, "micro_batch": c.micro_batch})
                for c in plan.candidates}
    if not isinstance(plan, ServingPlan):  # where each training step goes
        by_index = {c.index: by_index[c.index] | {"step_breakdown_s": c.breakdown}
                    for c in plan.candidates}
    best: dict[str, dict[str, Any]] = {name: by_index[i] | {"deployment": mappings[i]}
                                       for name, i in plan.best.items()}
    if isinstance(plan, ServingPlan):  # how to run each best plan, engine by engine
        for entry in best.values():
            entry["launch"] = launch_commands(build_deployment(entry["deployment"]))
    pareto = {"kind": "serving" if isinstance(plan, ServingPlan) else "training",
              "reasons": plan.reasons if isinstance(plan, ServingPlan) else {},
              "goodput_interval": (plan.goodput_interval if isinstance(plan, ServingPlan)
                                   else {}),
              "pareto": [by_index[i] | {"deployment": mappings[i]} for i in plan.pareto],
              "best": best}

    def json_file(data: Any) -> Callable[[Path], object]:
        text = json.dumps(_clean(data), indent=2, sort_keys=True) + "\n"
        return lambda path: path.write_text(text)

    writers: dict[str, Callable[[Path], object]] = {
        "candidates.csv": lambda path: pd.DataFrame(rows).to_csv(
            path, index=False, float_format="%.6g"),
        "pareto.json": json_file(pareto),
        "inputs.json": json_file(plan.inputs),
    }
    if workload is not None:
        writers["workload.json"] = lambda path: path.write_text(workload_text(workload, path))
    return write_folder(folder, writers)
