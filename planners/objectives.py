"""Objectives of a serving plan: goodput (DistServe), per GPU, cost and energy per token.

Goodput is the highest request rate at which at least ``attainment`` (default 90%) of
requests meet both the TTFT and the TPOT SLO (Zhong et al. 2024, DistServe, Sec. 2). It is
found by bisection on the rate, replaying the same trace shape with its arrival times
scaled: rate r means arrival_i x (base rate / r).

Cost per million tokens = price per GPU-hour x GPUs / (tokens per second at goodput x
3600) x 1e6, from ``planners/data/prices.json`` (sourced) or the user's prices.

Energy per token (a stated model, not a measurement): each GPU draws 30% of its TDP idle
and its TDP while busy, so energy = TDP x (0.3 + 0.7 x busy fraction) x GPUs x makespan /
tokens.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from simulator.serving.config import DeploymentConfig
from simulator.serving.engine import simulate
from workloads.schema import RequestTrace

__all__ = ["GoodputResult", "default_prices", "find_goodput", "scaled_trace", "slo_attainment"]

IDLE_POWER_FRACTION = 0.3


@cache
def default_prices() -> dict[str, float]:
    """USD per GPU-hour by catalog GPU name, from the sourced price file."""
    data = json.loads((Path(__file__).parent / "data" / "prices.json").read_text())
    return {name: entry["usd_per_gpu_hour"] for name, entry in data["prices"].items()}


def scaled_trace(trace: RequestTrace, rate_per_s: float) -> RequestTrace:
    """``trace`` replayed at ``rate_per_s`` (arrival times scaled, lengths kept)."""
    base = base_rate(trace)
    return RequestTrace(trace.arrival_s * (base / rate_per_s), trace.prompt_tokens,
                        trace.output_tokens, trace.priority, trace.request_ids,
                        trace.extras, trace.metadata)


def base_rate(trace: RequestTrace) -> float:
    span = float(trace.arrival_s[-1] - trace.arrival_s[0])
    return (len(trace) - 1) / span if span > 0 else float(len(trace))


def slo_attainment(summary_rows: Any, ttft_slo_s: float, tpot_slo_s: float) -> float:
    ttft = summary_rows["ttft_s"].to_numpy()
    tpot = summary_rows["tpot_s"].to_numpy()
    meets = (ttft <= ttft_slo_s) & (np.isnan(tpot) | (tpot <= tpot_slo_s))
    return float(meets.mean())


@dataclass
class GoodputResult:
    """The goodput of one deployment and what the run at that rate showed."""

    rate_per_s: float
    attainment: float
    summary: dict[str, Any] | None
    num_simulations: int


def find_goodput(deployment: DeploymentConfig, trace: RequestTrace, *, ttft_slo_s: float,
                 tpot_slo_s: float, attainment: float = 0.9, upper_rate: float,
                 lower_rate: float | None = None, tolerance: float = 0.05) -> GoodputResult:
    """Bisect (in log rate) for the highest rate meeting the SLO attainment at which the
    deployment is STABLE (an overloaded rate never counts, whatever its attainment).

    Args:
        upper_rate: a rate known to be at or above goodput (an analytic bound).
        lower_rate: a rate believed feasible (e.g. the previous candidate's answer);
            checked, and lowered until feasible.
        tolerance: stop when the bracket is within this relative width.
    """
    runs = 0

    def run(rate: float) -> tuple[float, dict[str, Any] | None]:
        nonlocal runs
        runs += 1
        result = simulate(deployment, scaled_trace(trace, rate))
        if not result.ok or result.requests is None or result.summary is None:
            return 0.0, None
        if result.summary["stability"]["state"] == "OVERLOADED":
            return 0.0, result.summary  # never a goodput: its queue grows without bound
        return slo_attainment(result.requests, ttft_slo_s, tpot_slo_s), result.summary

    low = min(lower_rate or upper_rate / 8, upper_rate)
    low_attainment, low_summary = run(low)
    while low_attainment < attainment:
        low /= 4
        if low < upper_rate * 1e-4:
            return GoodputResult(0.0, low_attainment, low_summary, runs)
        low_attainment, low_summary = run(low)
    high = upper_rate
    high_attainment, high_summary = run(high)
    if high_attainment >= attainment:
        return GoodputResult(high, high_attainment, high_summary, runs)
    while high / low > 1 + tolerance:
        middle = math.sqrt(low * high)
        middle_attainment, middle_summary = run(middle)
        if middle_attainment >= attainment:
            low, low_attainment, low_summary = middle, middle_attainment, middle_summary
        else:
            high = middle
    return GoodputResult(low, low_attainment, low_summary, runs)
