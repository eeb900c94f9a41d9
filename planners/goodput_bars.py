"""Error bars on a planned goodput, from how far the simulator missed real vLLM runs.

A request meets an SLO ``s`` when its real latency does. With the nearest serving group's
signed errors ``e = (predicted - measured) / measured`` (``validation.error_bars``: per
GPU with enough runs, else every GPU pooled), a real latency is ``predicted / (1 + e)``,
so a request meets ``s`` when its predicted latency is at most ``s · (1 + e)``. The goodput
a real server would show, were each request's TTFT and TPOT off as the group's means
were, is therefore the goodput searched with each SLO scaled by its metric's ``1 + e``::

    low  = goodput with SLOs x (1 + e_p10)    (the group's runs predicted fastest)
    high = goodput with SLOs x (1 + e_p90)    (the group's runs predicted slowest)

Stated approximation: a run's error of the mean is taken as every request's. The two
searches start from the plan's own goodput (a hint, checked) under the same analytic
bound, so they cost a few probes each. Disaggregated plans get none: the serving group
holds no disaggregated run.
"""

from __future__ import annotations

from typing import Any

from planners.objectives import STEADY, SteadyState, find_goodput
from profiles.hardware import load_gpu
from simulator.serving.config import DeploymentConfig
from validation.error_bars import load_error_bars, nearest_group
from workloads.schema import RequestTrace

__all__ = ["goodput_interval"]


def goodput_interval(deployment: DeploymentConfig, trace: RequestTrace, *, ttft_slo_s: float,
                     tpot_slo_s: float, attainment: float, rate_per_s: float,
                     upper_rate: float, rule: SteadyState = STEADY,
                     bars: dict[str, Any] | None = None) -> dict[str, Any]:
    """The validated range of ``deployment``'s goodput ``rate_per_s`` (module docstring),
    or {} where nothing validates it (a disaggregated plan, no error bars, no goodput)."""
    if deployment.is_disaggregated or rate_per_s <= 0:
        return {}
    bars = load_error_bars() if bars is None else bars
    group, label = nearest_group(bars, load_gpu(deployment.gpu).name)
    if "ttft_mean" not in group or "tpot_mean" not in group:
        return {}
    ttft, tpot = group["ttft_mean"], group["tpot_mean"]
    out: dict[str, Any] = {
        "group": label, "runs": min(ttft["runs"], tpot["runs"]), "rate_per_s": rate_per_s,
        "method": "goodput with the TTFT and TPOT SLOs scaled by 1 + e, e the 10th and 90th "
                  "percentiles of the group's signed errors of mean TTFT and TPOT"}
    simulations = 0
    for key, percentile in (("low_rate_per_s", "p10"), ("high_rate_per_s", "p90")):
        result = find_goodput(deployment, trace, ttft_slo_s=ttft_slo_s * (1 + ttft[percentile]),
                              tpot_slo_s=tpot_slo_s * (1 + tpot[percentile]),
                              attainment=attainment, upper_rate=upper_rate,
                              lower_rate=rate_per_s, rule=rule)
        out[key] = result.rate_per_s
        simulations += result.num_simulations
    out["num_simulations"] = simulations
    return out
