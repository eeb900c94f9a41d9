"""A measured reference run against the simulator's prediction of it.

A run folder (``clustersim reference run``) holds ``steps.csv``, ``requests.csv`` and
``run.json``. The comparison prices every measured step's exact batch with the
deployment's cost model (roofline, or profiled with ``profile``) and replays the run's
trace through the simulator with the run's KV block count. Two levels of error::

    per step     |predicted - measured| / measured device time of each step: median, p90
    per request  TTFT, TPOT and E2E: p50 and p90 of the simulated run vs the measured run

The driver's host time between device steps (scheduling, building rows, Python) is part
of every measured request time; the simulator is given it as a CPU overhead per step,
fitted to the run's own steps (base + per sequence + per token, least squares, each term
at least 0) and stated in the result, so per-request errors isolate the device model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from profiles.cost_model import BatchShape
from profiles.errors import ClusterSimError
from simulator.serving.config import DeploymentConfig
from simulator.serving.engine import resolve, simulate
from simulator.serving.presets import CpuOverhead
from workloads.schema import RequestTrace

__all__ = ["compare_reference", "fit_host_overhead", "load_reference_run"]

_FILES = ("run.json", "steps.csv", "requests.csv")


def load_reference_run(folder: str | Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """(run facts, steps, requests) of a run folder.

    Raises:
        ClusterSimError: a missing or unreadable file.
    """
    path = Path(folder)
    missing = [name for name in _FILES if not (path / name).is_file()]
    if missing:
        raise ClusterSimError(f"reference run {path}: missing {', '.join(missing)}; give a "
                              "folder written by 'clustersim reference run'")
    try:
        meta = json.loads((path / "run.json").read_text())
        steps = pd.read_csv(path / "steps.csv", keep_default_na=False)
        requests = pd.read_csv(path / "requests.csv")
    except (json.JSONDecodeError, ValueError, pd.errors.ParserError) as error:
        raise ClusterSimError(f"reference run {path}: unreadable ({error})") from None
    return meta, steps, requests


def _lengths(text: str) -> list[int]:
    return [int(token) for token in str(text).split()]


def fit_host_overhead(steps: pd.DataFrame) -> CpuOverhead:
    """Host seconds per step (wall minus device) as base + per sequence + per token, by
    least squares with every coefficient at least 0."""
    host = (steps["end_s"] - steps["start_s"] - steps["device_s"]).clip(lower=0).to_numpy()
    columns = np.column_stack([np.ones(len(steps)), steps["num_requests"].to_numpy(float),
                               steps["num_tokens"].to_numpy(float)])
    active = [0, 1, 2]
    coefficients = np.zeros(3)
    while active:
        solution, *_ = np.linalg.lstsq(columns[:, active], host, rcond=None)
        if (solution >= 0).all():
            coefficients[active] = solution
            break
        active = [index for index, value in zip(active, solution, strict=True) if value > 0]
    return CpuOverhead(step_base_s=float(coefficients[0]), per_seq_s=float(coefficients[1]),
                       per_token_s=float(coefficients[2]))


def _error(predicted: float, measured: float) -> float:
    return abs(predicted - measured) / measured if measured else float("nan")


def compare_reference(folder: str | Path, *, profile: str | None = None) -> dict[str, Any]:
    """Compare a run folder with the simulator; see the module docstring.

    Args:
        folder: the run folder.
        profile: a kernel profile folder for the profiled cost model; ``None`` keeps the
            run's deployment (roofline unless it names a profile).

    Returns:
        ``per_step`` (median/p90 absolute relative error, steps), ``per_request`` (p50/p90
        measured, predicted and error of TTFT, TPOT, E2E), the fitted host overhead and
        the cost model used.
    """
    meta, steps, requests = load_reference_run(folder)
    try:
        deployment = DeploymentConfig.model_validate(meta["deployment"])
    except (KeyError, ValueError) as error:
        raise ClusterSimError(f"reference run {folder}: run.json has no valid deployment "
                              f"({error})") from None
    overhead = fit_host_overhead(steps)
    updates: dict[str, Any] = {
        "scheduler": deployment.scheduler.model_copy(
            update={"num_gpu_blocks_override": int(meta["num_gpu_blocks"])}),
        "cpu_overhead": overhead, "engine": None,
    }
    if profile is not None:
        updates["profile"] = profile
    deployment = deployment.model_copy(update=updates)
    cost_model = resolve(deployment).cost_models[0]

    predicted_steps = np.array([
        cost_model.predict(BatchShape(_lengths(q), _lengths(c), int(sampled))).total_s
        for q, c, sampled in zip(steps["query_lens"], steps["context_lens"],
                                 steps["num_sampled"], strict=True)])
    measured_steps = steps["device_s"].to_numpy(float)
    step_errors = np.abs(predicted_steps - measured_steps) / measured_steps

    trace = RequestTrace.from_columns(requests["arrival_s"], requests["prompt_tokens"],
                                      requests["output_tokens"])
    result = simulate(deployment, trace)
    if not result.ok or result.requests is None or result.summary is None:
        raise ClusterSimError(f"reference run {folder}: the simulator refused its "
                              f"deployment: {result.error}")
    per_request: dict[str, Any] = {}
    for metric in ("ttft_s", "tpot_s", "e2e_s"):
        measured = requests[metric].dropna().to_numpy(float)
        simulated = result.requests[metric].dropna().to_numpy(float)
        for q in (50, 90):
            m, p = float(np.percentile(measured, q)), float(np.percentile(simulated, q))
            per_request[f"{metric[:-2]}_p{q}"] = {"measured_s": m, "predicted_s": p,
                                                  "error": _error(p, m)}
    return {
        "run": str(folder),
        "gpu": meta.get("device", {}).get("name"),
        "cost_model": result.summary["run"]["cost_model"],
        "per_step": {"num_steps": len(steps),
                     "median_error": float(np.median(step_errors)),
                     "p90_error": float(np.percentile(step_errors, 90)),
                     "measured_device_s": float(measured_steps.sum()),
                     "predicted_device_s": float(predicted_steps.sum()),
                     "measured_p50_s": float(np.median(measured_steps)),
                     "predicted_p50_s": float(np.median(predicted_steps))},
        "per_request": per_request,
        "host_overhead_fitted": overhead.model_dump(),
    }
