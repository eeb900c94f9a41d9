"""Error bars on a planned goodput: the goodput searched under scaled SLOs."""

from __future__ import annotations

from planners.goodput_bars import goodput_interval
from planners.objectives import find_goodput
from simulator.serving.config import build_deployment
from tests.test_planners import QUICK, SLO, TRACE

DEPLOYMENT = build_deployment({"model": "llama-3-8b", "gpu": "a100", "engine": "none"})


def _bars(p10: float, p90: float, runs: int = 5) -> dict:
    metric = {"runs": runs, "p10": p10, "p50": 0.0, "p90": p90}
    return {"A100-SXM4-80GB": {"ttft_mean": metric, "tpot_mean": metric}}


def test_slower_real_runs_lower_the_goodput_and_faster_ones_raise_it() -> None:
    """Predictions that ran 50% fast (e = -0.5: every SLO halved) give a lower goodput,
    ones that ran 100% slow (e = +1: SLOs doubled) a higher one; each bound is exactly the
    goodput searched at those SLOs from the plan's rate."""
    plan = find_goodput(DEPLOYMENT, TRACE, attainment=0.9, upper_rate=200.0, rule=QUICK, **SLO)
    bars = goodput_interval(DEPLOYMENT, TRACE, attainment=0.9, rate_per_s=plan.rate_per_s,
                            upper_rate=200.0, rule=QUICK, bars=_bars(-0.5, 1.0), **SLO)
    assert bars["group"] == "A100-SXM4-80GB" and bars["runs"] == 5
    assert 0 < bars["low_rate_per_s"] < plan.rate_per_s < bars["high_rate_per_s"] <= 200.0
    halved = find_goodput(DEPLOYMENT, TRACE, attainment=0.9, upper_rate=200.0, rule=QUICK,
                          lower_rate=plan.rate_per_s, ttft_slo_s=SLO["ttft_slo_s"] * 0.5,
                          tpot_slo_s=SLO["tpot_slo_s"] * 0.5)
    assert bars["low_rate_per_s"] == halved.rate_per_s
    assert bars["num_simulations"] > 0


def test_no_interval_where_nothing_validates_the_plan() -> None:
    """A GPU group under 3 runs falls back to every GPU pooled; with no pooled group, or a
    disaggregated plan, or no goodput, there is no interval."""
    kwargs = dict(attainment=0.9, rate_per_s=5.0, upper_rate=200.0, rule=QUICK, **SLO)
    assert goodput_interval(DEPLOYMENT, TRACE, bars=_bars(-0.1, 0.1, runs=2), **kwargs) == {}
    assert goodput_interval(DEPLOYMENT, TRACE, bars={}, **kwargs) == {}
    disaggregated = build_deployment({
        "model": "llama-3-8b", "gpu": "a100", "engine": "none", "disaggregation": {
            "prefill": {"replicas": 1}, "decode": {"replicas": 1}}})
    assert goodput_interval(disaggregated, TRACE, bars=_bars(-0.1, 0.1), **kwargs) == {}
    assert goodput_interval(DEPLOYMENT, TRACE, bars=_bars(-0.1, 0.1),
                            **(kwargs | {"rate_per_s": 0.0})) == {}
