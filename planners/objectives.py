"""Objectives of a serving plan: goodput (DistServe), per GPU, cost and energy per token.

Goodput is the highest request rate at which at least ``attainment`` (default 90%) of
requests meet both the TTFT and the TPOT SLO (Zhong et al. 2024, DistServe, Sec. 2). It is
found by bisection on the rate, replaying the same trace shape with its arrival times
scaled: rate r means arrival_i x (base rate / r).

Goodput that holds: a short trace never reaches steady state (the queue is still
filling when it ends), so each probe replays at least ``SteadyState.min_requests``
requests spanning at least ``SteadyState.min_span_s`` seconds of arrivals; a shorter
trace is extended with its own requests (resampled, or repeated whole when it has
sessions: :func:`extended_trace`). The KV cache fills only as long requests pile up,
so a probe also spans ``SteadyState.lifetimes`` lifetimes of the trace's long requests
(its p99 output length at the TPOT SLO's pace: a request that long, decoding at the SLO,
lives that many seconds), and the first lifetime is warm-up. Attainment is measured on
the requests that arrive after the warm-up (the larger of that lifetime and the
``warm_up`` share) and before the drain share of the span, in ``windows`` equal
windows, and the probe passes only if every window meets it and the run is STABLE.
A resampled extension is one draw of the trace's requests and gaps, and near the
attainment cliff one draw can pass where the next fails (the README's chat example at 82
req/s on 4 H100s: 96% in one draw, 76% to 93% in five others), so a rate passes only if
``SteadyState.seeds`` independent draws all pass; a trace long enough, or repeated whole,
has one probe.

Cost per million tokens = price per GPU-hour x GPUs / (tokens per second at goodput x
3600) x 1e6, from ``planners/data/prices.json`` (sourced) or the user's prices.

Energy per token (a stated model, not a measurement): each GPU draws 30% of its TDP idle
and its board power while busy (its TDP, or its power limit: ``h100@450W``), so power =
GPUs x (0.3 x TDP + busy fraction x (board power - 0.3 x TDP)), and energy per token is
that power over the tokens per second served at the goodput rate.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from profiles.errors import ClusterSimError
from simulator.serving.config import DeploymentConfig
from simulator.serving.engine import simulate
from simulator.serving.request import Request
from workloads.schema import RequestTrace

__all__ = ["STEADY", "GoodputResult", "MissBudget", "SteadyState", "default_prices",
           "extended_trace", "find_goodput", "probe_draws", "request_lifetime_s",
           "scaled_trace", "slo_attainment", "steady_attainment", "steady_trace"]

IDLE_POWER_FRACTION = 0.3
# After a hinted rate passes, the goodput search's first step up: the hint is 0.9 x a like
# candidate's goodput scaled by replicas, so the goodput is likely within this factor.
HINT_STEP = 1.25
# find_goodput(bracket_only=True) bisects until the bracket is this narrow (a planner's
# first pass over its candidates, to prune before bisecting the rest of the way).
BRACKET_RATIO = 2.0


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


def _meets(rows: Any, ttft_slo_s: float, tpot_slo_s: float) -> np.ndarray:
    """Per request row (RequestRows or a DataFrame): both SLOs met."""
    ttft = np.asarray(rows["ttft_s"], dtype=np.float64)
    tpot = np.asarray(rows["tpot_s"], dtype=np.float64)
    meets: np.ndarray = (ttft <= ttft_slo_s) & (np.isnan(tpot) | (tpot <= tpot_slo_s))
    return meets


def slo_attainment(summary_rows: Any, ttft_slo_s: float, tpot_slo_s: float) -> float:
    return float(_meets(summary_rows, ttft_slo_s, tpot_slo_s).mean())


@dataclass(frozen=True)
class SteadyState:
    """The stated rule for a probe's length and the part of it that is measured."""

    min_requests: int = 1000
    min_span_s: float = 60.0
    warm_up: float = 0.1
    drain: float = 0.1
    windows: int = 3
    lifetimes: float = 3.0  # the probe spans this many long-request lifetimes, at least
    # a resampled probe is one draw of the trace's requests and gaps: a rate passes only
    # if this many draws (seeds 0, 1, ...) all pass
    seeds: int = 2

    def span_s(self, lifetime_s: float = 0.0) -> float:
        """Seconds of arrivals a probe spans, for requests living up to ``lifetime_s``."""
        return max(self.min_span_s, self.lifetimes * lifetime_s)

    def needed(self, rate_per_s: float, lifetime_s: float = 0.0) -> int:
        return max(self.min_requests, math.ceil(rate_per_s * self.span_s(lifetime_s)))


_NO_TPOT_SLO_S = 10.0


def request_lifetime_s(trace: RequestTrace, tpot_slo_s: float | None) -> float:
    """How long the trace's long requests live at the TPOT SLO's pace: its p99 output
    length x the SLO (0 without a TPOT SLO; one of 10 s or more per token, a stand-in for
    "none" in phase measurements, counts as none)."""
    if tpot_slo_s is None or not tpot_slo_s < _NO_TPOT_SLO_S or len(trace) == 0:
        return 0.0
    return float(np.quantile(trace.output_tokens, 0.99)) * tpot_slo_s


STEADY = SteadyState()


def _resampled(trace: RequestTrace, num_requests: int) -> bool:
    """Whether :func:`extended_trace` grows ``trace`` by drawing from it (seeded), rather
    than leaving it as it is or repeating it whole."""
    return len(trace) < num_requests and "session_id" not in trace.extras and len(trace) > 1


def extended_trace(trace: RequestTrace, num_requests: int, seed: int = 0) -> RequestTrace:
    """``trace`` grown to at least ``num_requests`` requests after its own ones.

    Without sessions the extension resamples the trace (seeded): each added request's
    lengths and fields are those of a request drawn from the trace, and its gap to the
    previous arrival a gap drawn from the trace's own gaps, so the arrival process keeps
    its burstiness over any window. A trace with sessions is repeated whole instead
    (copies one mean gap apart, session ids numbered per copy), so turns stay together.
    """
    n = len(trace)
    if n >= num_requests:
        return trace
    metadata = trace.metadata | {"extended_from_requests": n}
    if _resampled(trace, num_requests):
        rng = np.random.default_rng(seed)
        extra = num_requests - n
        picks = rng.integers(0, n, size=extra)
        gaps = np.diff(trace.arrival_s)[rng.integers(0, n - 1, size=extra)]
        arrival = np.concatenate([trace.arrival_s, trace.arrival_s[-1] + np.cumsum(gaps)])
        index = np.concatenate([np.arange(n), picks])
        extras = {name: [values[i] for i in index] for name, values in trace.extras.items()}
        ids = [*trace.request_ids, *(f"{trace.request_ids[i]}#r{k}"
                                     for k, i in enumerate(picks))]
        return RequestTrace(arrival, trace.prompt_tokens[index], trace.output_tokens[index],
                            trace.priority[index], ids, extras,
                            metadata | {"extended_by": "resampling requests and gaps"})
    copies = math.ceil(num_requests / n)
    span = float(trace.arrival_s[-1] - trace.arrival_s[0])
    period = span + (span / (n - 1) if n > 1 else 1.0)
    arrival = np.concatenate([trace.arrival_s + k * period for k in range(copies)])

    def tile(values: Any, unique: bool) -> list[Any]:
        return [(f"{v}#{k}" if unique and v is not None and k else v)
                for k in range(copies) for v in values]

    extras = {name: tile(values, unique=name == "session_id")
              for name, values in trace.extras.items()}
    return RequestTrace(arrival, np.tile(trace.prompt_tokens, copies),
                        np.tile(trace.output_tokens, copies), np.tile(trace.priority, copies),
                        tile(trace.request_ids, unique=True), extras,
                        metadata | {"extended_by": f"repeating its sessions {copies} times"})


def steady_trace(trace: RequestTrace, rate_per_s: float, rule: SteadyState = STEADY,
                 tpot_slo_s: float | None = None, seed: int = 0) -> RequestTrace:
    """The probe at ``rate_per_s``: the trace at that rate, extended to the rule's length
    (long enough for the trace's long requests under ``tpot_slo_s``; ``seed`` draws the
    extension)."""
    scaled = scaled_trace(trace, rate_per_s)
    return extended_trace(scaled, rule.needed(rate_per_s,
                                              request_lifetime_s(trace, tpot_slo_s)),
                          seed=seed)


def probe_draws(trace: RequestTrace, rate_per_s: float, rule: SteadyState = STEADY,
                tpot_slo_s: float | None = None) -> int:
    """How many probes a rate takes: ``rule.seeds`` when the probe resamples the trace,
    one when the trace is long enough or is repeated whole (it has sessions)."""
    needed = rule.needed(rate_per_s, request_lifetime_s(trace, tpot_slo_s))
    return max(1, rule.seeds) if _resampled(trace, needed) else 1


def _windows(arrival: np.ndarray, rule: SteadyState, lifetime_s: float) -> list[np.ndarray]:
    """Which requests (by arrival) each measured window holds (module docstring)."""
    start, end = float(arrival.min()), float(arrival.max())
    low = start + min(max(rule.warm_up * (end - start), lifetime_s), 0.5 * (end - start))
    high = end - rule.drain * (end - start)
    edges = np.linspace(low, high, rule.windows + 1)
    return [(arrival >= left) & (arrival < right if right < high else arrival <= right)
            for left, right in itertools.pairwise(edges)]


def steady_attainment(rows: Any, ttft_slo_s: float, tpot_slo_s: float,
                      rule: SteadyState = STEADY, lifetime_s: float = 0.0) -> float:
    """The worst window's SLO attainment over the measured part of the run (after a
    warm-up of at least ``lifetime_s``)."""
    meets = _meets(rows, ttft_slo_s, tpot_slo_s)
    worst = 1.0
    for window in _windows(np.asarray(rows["arrival_s"], dtype=np.float64), rule,
                           lifetime_s):
        if window.any():
            worst = min(worst, float(meets[window].mean()))
    return worst


class MissBudget:
    """A probe's stop rule (``simulate(stop_rule=...)``): the run stops as soon as one
    measured window has more SLO misses than its attainment allows, since that window,
    hence the probe, has failed whatever the rest does. Each finishing request's TTFT
    and TPOT are computed as its row computes them, so the rule fails a probe only
    where :func:`steady_attainment` would (tested)."""

    def __init__(self, ttft_slo_s: float, tpot_slo_s: float, attainment: float,
                 rule: SteadyState, lifetime_s: float) -> None:
        self.ttft_slo_s, self.tpot_slo_s = ttft_slo_s, tpot_slo_s
        self.attainment, self.rule, self.lifetime_s = attainment, rule, lifetime_s
        self.window: list[int] = []
        self.sizes: list[int] = []
        self.misses: list[int] = []
        self.client_path_s = 0.0

    def start(self, workload: RequestTrace, client_path_s: float) -> None:
        self.client_path_s = client_path_s
        self.window = [-1] * len(workload)
        self.sizes = []
        if len(workload):
            for index, window in enumerate(_windows(workload.arrival_s.astype(np.float64),
                                                    self.rule, self.lifetime_s)):
                for i in np.flatnonzero(window).tolist():
                    self.window[i] = index
                self.sizes.append(int(window.sum()))
        self.misses = [0] * len(self.sizes)

    def finished(self, request: Request) -> bool:
        index = self.window[request.request_id]
        if index < 0:
            return False
        ttft = (request.first_token_s - request.arrival_s) + self.client_path_s
        outputs = request.output_tokens
        tpot = ((request.finish_s - request.first_token_s) / (outputs - 1) if outputs > 1
                else math.nan)
        if ttft <= self.ttft_slo_s and (math.isnan(tpot) or tpot <= self.tpot_slo_s):
            return False
        self.misses[index] += 1
        size = self.sizes[index]
        return (size - self.misses[index]) / size < self.attainment


@dataclass
class GoodputResult:
    """The goodput of one deployment and what the run at that rate showed."""

    rate_per_s: float
    attainment: float
    summary: dict[str, Any] | None
    num_simulations: int
    # A bracket (``find_goodput(bracket_only=True)``): ``rate_per_s`` passes and
    # ``high_rate_per_s`` fails or is the unprobed bound; ``complete`` once bisected.
    high_rate_per_s: float = math.inf
    complete: bool = True
    gave_up: bool = False  # ``give_up`` ended it at ``high_rate_per_s``


def find_goodput(deployment: DeploymentConfig, trace: RequestTrace, *, ttft_slo_s: float,
                 tpot_slo_s: float, attainment: float = 0.9, upper_rate: float,
                 lower_rate: float | None = None, tolerance: float = 0.05,
                 rule: SteadyState = STEADY, early_stop: bool = True,
                 bracket_only: bool = False, bracket: GoodputResult | None = None,
                 give_up: Callable[[float], bool] | None = None) -> GoodputResult:
    """Bisect (in log rate) for the highest rate meeting the SLO attainment at which the
    deployment is STABLE (an overloaded rate never counts, whatever its attainment).

    The bracket starts at ``lower_rate`` (else an eighth of the bound): a failing start is
    quartered until it passes, each failure becoming the bracket's top; from a passing
    hint it steps up x1.25 until a step fails, which becomes the top. The analytic bound
    is probed only when nothing below it failed.

    Args:
        upper_rate: a rate known to be at or above goodput (an analytic bound).
        lower_rate: a rate believed feasible (e.g. the previous candidate's answer);
            checked, and lowered until feasible.
        tolerance: stop when the bracket is within this relative width.
        rule: how long each probe is and which part of it is measured (module docstring).
        early_stop: stop a probe as soon as a measured window has failed
            (:class:`MissBudget`; colocated deployments): the same answer, sooner.
        bracket_only: stop once the bracket is at most ``BRACKET_RATIO`` wide: the
            result is incomplete (unless the search ended first), its
            ``high_rate_per_s`` the bracket's top.
        bracket: such a result, to go on from: the bisection then runs as it would
            have in one call, so the two calls give that one call's answer.
        give_up: told each failing rate (the goodput is below it); when it answers
            True the search ends there, incomplete, that rate its ``high_rate_per_s``
            (a planner's candidate that can no longer matter).

    Raises:
        ClusterSimError: a rate bound that is not a positive finite number, or a
            tolerance that would never end the bisection.
    """
    if not (math.isfinite(upper_rate) and upper_rate > 0):
        raise ClusterSimError(f"goodput search: upper rate {upper_rate!r} must be a positive "
                              "finite rate (requests per second)")
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ClusterSimError(f"goodput search: tolerance {tolerance!r} must be above 0")
    if lower_rate is not None and not (math.isfinite(lower_rate) and lower_rate > 0):
        lower_rate = None  # a hint only: an unusable one is dropped
    runs = 0

    def run(rate: float) -> tuple[float, dict[str, Any] | None]:
        """The worst attainment of the rate's probes (the first failing one ends it),
        with that probe's summary."""
        worst: tuple[float, dict[str, Any] | None] = (math.inf, None)
        for seed in range(probe_draws(trace, rate, rule, tpot_slo_s)):
            measured = draw(rate, seed)
            if measured[0] < worst[0]:
                worst = measured
            if worst[0] < attainment:
                break
        return worst

    def draw(rate: float, seed: int) -> tuple[float, dict[str, Any] | None]:
        nonlocal runs
        runs += 1
        probe = steady_trace(trace, rate, rule, tpot_slo_s, seed=seed)
        # NOTE: a probe whose arrivals wait on finishes (sessions with think times) has
        # arrival times only the run knows, so only the others may stop early
        stop = (MissBudget(ttft_slo_s, tpot_slo_s, attainment, rule, lifetime)
                if early_stop and "think_time_s" not in probe.extras else None)
        result = simulate(deployment, probe, stop_rule=stop)
        if result.stopped:
            return 0.0, None  # a window already failed: the probe fails
        if not result.ok or result.rows is None or result.summary is None:
            return 0.0, None
        if result.summary["stability"]["state"] == "OVERLOADED":
            return 0.0, result.summary  # never a goodput: its queue grows without bound
        return (steady_attainment(result.rows, ttft_slo_s, tpot_slo_s, rule, lifetime),
                result.summary)

    lifetime = request_lifetime_s(trace, tpot_slo_s)
    early_stop = early_stop and not deployment.is_disaggregated

    if bracket is not None:
        if bracket.complete:
            return bracket
        low, low_attainment, low_summary = (bracket.rate_per_s, bracket.attainment,
                                            bracket.summary)
        high, runs = bracket.high_rate_per_s, bracket.num_simulations
    else:
        # The bracket [low, high]: low passes, high fails or is the bound (unprobed).
        high = upper_rate
        low = min(lower_rate or upper_rate / 8, upper_rate)
        low_attainment, low_summary = run(low)
        while low_attainment < attainment:
            high = low  # a failing rate bounds the goodput from above
            if give_up is not None and give_up(high):
                return GoodputResult(0.0, low_attainment, None, runs, high, False, True)
            low /= 4
            if low < upper_rate * 1e-4:
                return GoodputResult(0.0, low_attainment, low_summary, runs)
            low_attainment, low_summary = run(low)
    # After a hint (a like candidate's goodput, scaled) passes, short steps up until one
    # fails: the goodput is likely within a step or two, and the bisection then splits
    # that step instead of the whole way to the bound.
    stepping = bracket is None and lower_rate is not None
    while True:
        if stepping and high == upper_rate and low * HINT_STEP * (1 + tolerance) < upper_rate:
            rate = low * HINT_STEP
        elif high / low > 1 + tolerance:
            if bracket_only and high / low <= BRACKET_RATIO:
                return GoodputResult(low, low_attainment, low_summary, runs, high, False)
            rate = math.sqrt(low * high)
        else:
            break
        rate_attainment, rate_summary = run(rate)
        if rate_attainment >= attainment:
            low, low_attainment, low_summary = rate, rate_attainment, rate_summary
        else:
            high = rate
            if give_up is not None and give_up(high):
                return GoodputResult(low, low_attainment, low_summary, runs, high, False, True)
    # NOTE: the bound itself is probed last, and only if no probe below it failed: it is
    # optimistic, so it nearly always fails, and at that overload its probe is the
    # dearest of the search.
    if high == upper_rate and low < upper_rate:
        high_attainment, high_summary = run(upper_rate)
        if high_attainment >= attainment:
            return GoodputResult(upper_rate, high_attainment, high_summary, runs)
    return GoodputResult(low, low_attainment, low_summary, runs)
