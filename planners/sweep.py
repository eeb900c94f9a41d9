"""Latency against load: one deployment over a range of request rates.

Each point replays the workload's shape at one rate, extended to the planner's
steady-state length (``planners.objectives.SteadyState``), and records what vLLM's and
inference-perf's benchmark sweeps report: TTFT, TPOT, inter-token latency and E2E at
p50/p90/p99, throughput, SLO attainment (the worst steady window) and goodput when SLOs
are given (the rate itself when attainment meets the target and the run is STABLE, else
0), and whether the run was STABLE. :func:`compare` sweeps several deployments
over the same rates.

:func:`concurrency_sweep` is the closed-loop form, as vLLM's benchmark runs with
``--max-concurrency N`` and inference-perf with concurrency stages: every request is
ready at once, the client keeps N in flight, and each point replays max(the rule's
requests, 20 N) requests; the rate it reports is the rate the deployment served, and the
goodput is that rate when the SLOs are met.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from planners.objectives import (
    STEADY,
    SteadyState,
    extended_trace,
    request_lifetime_s,
    steady_attainment,
    steady_trace,
)
from profiles.errors import ClusterSimError
from simulator.serving.config import DeploymentConfig
from simulator.serving.engine import simulate
from workloads.schema import RequestTrace

__all__ = ["SWEEP_COLUMNS", "compare", "concurrency_sweep", "rates_between", "sweep"]

SWEEP_COLUMNS = [
    "deployment", "rate_per_s", "num_requests", "state",
    "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s",
    "itl_p50_s", "itl_p90_s", "itl_p99_s", "e2e_p50_s", "e2e_p90_s", "e2e_p99_s",
    "requests_per_s", "output_tokens_per_s", "slo_attainment", "goodput_per_s",
    "concurrency",
]


def rates_between(low: float, high: float, count: int) -> list[float]:
    """``count`` request rates spaced evenly in log between ``low`` and ``high``."""
    if not (0 < low <= high) or not math.isfinite(high) or count < 1:
        raise ClusterSimError(f"rates {low}:{high}:{count}: need 0 < low <= high and a "
                              f"count of at least 1, e.g. 1:32:6")
    if count == 1:
        return [low]
    return [float(r) for r in np.geomspace(low, high, count)]


def sweep(deployment: DeploymentConfig, workload: RequestTrace, rates: Sequence[float], *,
          name: str = "deployment", ttft_slo_s: float | None = None,
          tpot_slo_s: float | None = None, attainment: float = 0.9,
          rule: SteadyState = STEADY,
          progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per rate (columns ``SWEEP_COLUMNS``); ``progress`` hears (rates done, rates).

    Raises:
        ClusterSimError: a rate that is not positive, or a deployment the simulator
            refuses (its one-line error).
    """
    rows = []
    for done, rate in enumerate(rates):
        if progress is not None:
            progress(done, len(rates))
        if not rate > 0 or not math.isfinite(rate):
            raise ClusterSimError(f"rate {rate}: request rates must be positive, finite "
                                  f"numbers")
        probe = steady_trace(workload, rate, rule, tpot_slo_s)
        rows.append(_point(deployment, probe, name, rate, None, ttft_slo_s, tpot_slo_s,
                           attainment, rule, request_lifetime_s(workload, tpot_slo_s)))
    if progress is not None:
        progress(len(rates), len(rates))
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def _point(deployment: DeploymentConfig, probe: RequestTrace, name: str,
           rate: float | None, concurrency: int | None, ttft_slo_s: float | None,
           tpot_slo_s: float | None, attainment: float, rule: SteadyState,
           lifetime_s: float = 0.0) -> dict[str, object]:
    """One point of a sweep: the probe simulated, as a row of ``SWEEP_COLUMNS``."""
    result = simulate(deployment, probe, max_concurrency=concurrency)
    if not result.ok or result.summary is None or result.requests is None:
        raise ClusterSimError(str(result.error))
    s = result.summary
    served = s["throughput"]["requests_per_s"]
    met = None
    if ttft_slo_s is not None or tpot_slo_s is not None:
        met = steady_attainment(result.requests, ttft_slo_s or math.inf,
                                tpot_slo_s or math.inf, rule, lifetime_s)
    stable = s["stability"]["state"] == "STABLE"
    offered = served if rate is None else rate  # closed loop: the rate is what is served
    return {
        "deployment": name, "rate_per_s": offered, "num_requests": len(probe),
        "state": s["stability"]["state"],
        **{f"{metric}_{q}_s": s[key][q] for metric, key in
           (("ttft", "ttft_s"), ("tpot", "tpot_s"), ("itl", "tbt_s"), ("e2e", "e2e_s"))
           for q in ("p50", "p90", "p99")},
        "requests_per_s": served,
        "output_tokens_per_s": s["throughput"]["output_tokens_per_s"],
        "slo_attainment": met,
        # the rate counts as goodput when the steady windows meet the target, STABLE
        "goodput_per_s": (None if met is None else
                          offered if stable and met >= attainment else 0.0),
        "concurrency": concurrency,
    }


def concurrency_sweep(deployment: DeploymentConfig, workload: RequestTrace,
                      concurrencies: Sequence[int], *, name: str = "deployment",
                      ttft_slo_s: float | None = None, tpot_slo_s: float | None = None,
                      attainment: float = 0.9, rule: SteadyState = STEADY,
                      progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per client concurrency (module docstring), columns ``SWEEP_COLUMNS``.

    Raises:
        ClusterSimError: a concurrency below 1, or a deployment the simulator refuses.
    """
    rows = []
    for done, concurrency in enumerate(concurrencies):
        if progress is not None:
            progress(done, len(concurrencies))
        if concurrency < 1:
            raise ClusterSimError(f"concurrency {concurrency}: must be 1 or more")
        grown = extended_trace(workload, max(rule.min_requests, 20 * concurrency))
        probe = RequestTrace(np.zeros(len(grown)), grown.prompt_tokens, grown.output_tokens,
                             grown.priority, grown.request_ids, grown.extras,
                             grown.metadata | {"max_concurrency": concurrency})
        rows.append(_point(deployment, probe, name, None, concurrency, ttft_slo_s,
                           tpot_slo_s, attainment, rule))
    if progress is not None:
        progress(len(concurrencies), len(concurrencies))
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def _shifted(progress: Callable[[int, int], None], offset: int, total: int
             ) -> Callable[[int, int], None]:
    return lambda done, _: progress(offset + done, total)


def compare(deployments: dict[str, DeploymentConfig], workload: RequestTrace,
            rates: Sequence[float], *, ttft_slo_s: float | None = None,
            tpot_slo_s: float | None = None, attainment: float = 0.9,
            rule: SteadyState = STEADY,
            progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """:func:`sweep` of each named deployment over the same rates, stacked;
    ``progress`` hears (points done, points)."""
    if len(deployments) < 2:
        raise ClusterSimError("compare needs two or more deployments")
    total = len(deployments) * len(rates)
    frames = []
    for index, (name, deployment) in enumerate(deployments.items()):
        feed = None if progress is None else _shifted(progress, index * len(rates), total)
        frames.append(sweep(deployment, workload, rates, name=name, ttft_slo_s=ttft_slo_s,
                            tpot_slo_s=tpot_slo_s, attainment=attainment, rule=rule,
                            progress=feed))
    return pd.concat(frames, ignore_index=True)
