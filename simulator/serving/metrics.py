"""Metrics: what a run measured, per request and per run.

Definitions (the same as vLLM's benchmark client with fixed output lengths):

* TTFT  = first token time - arrival (queueing included)
* TPOT  = (finish - first token) / (output tokens - 1), per request with >= 2 outputs
* TPOT of means = (mean E2E - mean TTFT) / (mean output tokens - 1), over the run (as the
          inference-perf records of real vLLM runs compute their ``itl_mean``, whose
          client counts the tokens in the streamed text, not the tokens generated)
* TBT   = every gap between consecutive tokens of a request (the inter-token latency),
          pooled over all tokens of the run
* NTPOT = E2E / output tokens, per request (inference-perf's normalized TPOT)
* E2E   = finish - arrival;  queueing delay = first scheduled - arrival
* goodput = requests per second that meet both the TTFT and the TPOT SLO (DistServe)
* MFU   = useful model FLOPs / (GPUs x dense peak x makespan)
* stability = OVERLOADED when the queueing delay keeps growing with arrival time: its
          least-squares slope over the arrivals after the first 10% of the trace's span
          exceeds OVERLOAD_SLOPE (a queue growing by 5% of elapsed time: offered load
          about 5% or more above what the deployment serves); STABLE otherwise

Recorders are passed into the run (never patched in): :class:`StepStats` is always there
and collects per-step figures with O(1) work per step; a Perfetto trace recorder may join.
Token gaps are run-length encoded, because in a step most decodes share the same gap.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from simulator.serving.request import Request
from simulator.serving.rows import RequestRows
from simulator.serving.token_gaps import TokenGaps

if TYPE_CHECKING:
    from profiles.cost_model import StepCost
    from simulator.serving.scheduler import StepPlan

__all__ = ["OVERLOAD_SLOPE", "REQUEST_COLUMNS", "Progress", "StepRecorder", "StepStats",
           "linear_percentiles", "reporting", "request_rows", "stability", "summarize",
           "with_client_path"]

OVERLOAD_SLOPE = 0.05  # seconds of extra queueing per second of arrivals (module docstring)
_WARM_UP_SHARE = 0.1
_MIN_REQUESTS_FOR_A_SLOPE = 20

REQUEST_COLUMNS = [
    "request_id", "replica_id", "arrival_s", "first_scheduled_s", "first_token_s", "finish_s",
    "prompt_tokens", "output_tokens", "ttft_s", "tpot_s", "ntpot_s", "e2e_s",
    "queueing_delay_s",
    "num_preemptions", "num_cached_tokens",
]


class StepRecorder(Protocol):
    """Observes every completed step of every replica."""

    def on_step(self, replica_id: int, stage_spans_s: Sequence[tuple[float, float]],
                plan: StepPlan, cost: StepCost, kv_used_blocks: int) -> None: ...


class StepStats:
    """Per-step figures for the summary: batch sizes, busy time, KV use, FLOPs.

    The sums are kept per replica, each in its own steps' order, and added across the
    replicas in replica order when read: the figures do not depend on how the replicas'
    steps interleave in time (so a decode run may add its steps at once).
    """

    def __init__(self) -> None:
        self.batch_sizes = array("q")
        self.num_steps = 0
        # replica id -> [busy seconds, used blocks x step seconds, FLOPs]
        self._sums: dict[int, list[float]] = {}

    def on_step(self, replica_id: int, stage_spans_s: Sequence[tuple[float, float]],
                plan: StepPlan, cost: StepCost, kv_used_blocks: int) -> None:
        # add_step, inlined (a call per step of every step loop): the same sums
        duration_s = stage_spans_s[-1][1] - stage_spans_s[0][0]
        sums = self._sums.get(replica_id)
        if sums is None:
            sums = self._sums[replica_id] = [0.0, 0.0, 0.0]
        self.batch_sizes.append(plan.num_seqs)
        sums[0] += duration_s
        sums[1] += kv_used_blocks * duration_s
        sums[2] += cost.flops
        self.num_steps += 1

    def replica_sums(self, replica_id: int) -> list[float]:
        """The replica's running [busy seconds, used blocks x step seconds, FLOPs]
        (decode runs add to them in place)."""
        sums = self._sums.get(replica_id)
        if sums is None:
            sums = self._sums[replica_id] = [0.0, 0.0, 0.0]
        return sums

    def add_step(self, replica_id: int, batch_size: int, duration_s: float,
                 kv_used_blocks: int, flops: float) -> None:
        """One step's figures (decode runs add theirs here, step by step)."""
        sums = self._sums.get(replica_id)
        if sums is None:
            sums = self._sums[replica_id] = [0.0, 0.0, 0.0]
        self.batch_sizes.append(batch_size)
        sums[0] += duration_s
        sums[1] += kv_used_blocks * duration_s
        sums[2] += flops
        self.num_steps += 1

    def _total(self, index: int) -> float:
        total = 0.0
        for replica_id in sorted(self._sums):
            total += self._sums[replica_id][index]
        return total

    @property
    def busy_s(self) -> float:
        return self._total(0)

    @property
    def kv_block_seconds(self) -> float:
        """Used blocks x step seconds, for the time-weighted KV use."""
        return self._total(1)

    @property
    def flops(self) -> float:
        return self._total(2)


def request_rows(requests: Sequence[Request], request_ids: Sequence[Any]) -> RequestRows:
    """One row per request (columns ``REQUEST_COLUMNS``), in trace order."""
    n = len(requests)

    def column(name: str, dtype: type) -> np.ndarray:
        return np.fromiter(map(attrgetter(name), requests), dtype, n)

    arrival = column("arrival_s", np.float64)
    first_scheduled = column("first_scheduled_s", np.float64)
    first_token = column("first_token_s", np.float64)
    finish = column("finish_s", np.float64)
    outputs = column("output_tokens", np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(outputs > 1, (finish - first_token) / (outputs - 1), np.nan)
    return RequestRows({
        "request_id": list(request_ids),
        "replica_id": column("replica_id", np.int64),
        "arrival_s": arrival,
        "first_scheduled_s": first_scheduled,
        "first_token_s": first_token,
        "finish_s": finish,
        "prompt_tokens": column("prompt_tokens", np.int64),
        "output_tokens": outputs,
        "ttft_s": first_token - arrival,
        "tpot_s": tpot,
        "ntpot_s": (finish - arrival) / outputs,
        "e2e_s": finish - arrival,
        "queueing_delay_s": first_scheduled - arrival,
        "num_preemptions": column("num_preemptions", np.int64),
        "num_cached_tokens": column("num_cached_tokens", np.int64),
    })


def with_client_path(rows: RequestRows, client_path_s: float) -> RequestRows:
    """Request rows as the client sees them: every token reaches it ``client_path_s``
    after the server's time (the request's way in plus the stream's way out), so TTFT and
    E2E grow by it and TPOT and the gaps between tokens do not."""
    if not client_path_s:
        return rows
    rows = rows.copy()
    for column in ("first_token_s", "finish_s", "ttft_s", "e2e_s"):
        rows[column] = rows[column] + client_path_s
    rows["ntpot_s"] = rows["e2e_s"] / rows["output_tokens"]
    return rows


def _floats(rows: Any, column: str) -> np.ndarray:
    """A column of request rows (or of a DataFrame) as floats."""
    return np.asarray(rows[column], dtype=np.float64)


def linear_percentiles(values: np.ndarray, percents: Sequence[float]) -> np.ndarray:
    """``np.percentile(values, percents)`` (its default, linear method) for a 1-D array
    without NaN, value for value (tested): its sort, its indexes and its interpolation, without the
    ``np.unique`` that imports numpy.ma (a quarter of a small run's start-up)."""
    arr = np.sort(np.asarray(values))
    virtual = (len(arr) - 1) * np.true_divide(np.asarray(percents), 100)
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= len(arr) - 1
    previous[above] = -1
    following[above] = -1
    previous_i, following_i = previous.astype(np.intp), following.astype(np.intp)
    low, high = arr[previous_i], arr[following_i]
    gamma = np.asanyarray(virtual - previous_i, dtype=virtual.dtype)
    diff = high - low
    result: np.ndarray = np.add(low, diff * gamma)
    np.subtract(high, diff * (1 - gamma), out=result, where=gamma >= 0.5,
                casting="unsafe", dtype=type(result.dtype))
    return result


def _percentiles(values: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    if values.size == 0:
        return {"mean": math.nan, "p50": math.nan, "p90": math.nan, "p99": math.nan,
                "max": math.nan}
    if weights is None:
        p50, p90, p99 = linear_percentiles(values, [50, 90, 99])
        mean = float(values.mean())
    else:
        # NOTE: any sort: equal values are one block whose total weight is the same in
        # any order, so the value at a rank is too (quicksort is 4x a stable sort here)
        order = np.argsort(values)
        sorted_values, cumulative = values[order], np.cumsum(weights[order])
        total = cumulative[-1]

        def pick(q: float) -> float:
            # Nearest-rank on the expanded sample (exact for run-length encoded data).
            rank = max(1, math.ceil(q / 100 * total))
            return float(sorted_values[np.searchsorted(cumulative, rank)])

        p50, p90, p99 = pick(50), pick(90), pick(99)
        mean = float((values * weights).sum() / total)
    return {"mean": mean, "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "max": float(values.max())}


def stability(rows: Any) -> dict[str, Any]:
    """STABLE or OVERLOADED, with the evidence: the queueing delay's slope against arrival
    time after the warm-up (module docstring). Too few requests to tell: STABLE, said."""
    arrival = _floats(rows, "arrival_s")
    queue = _floats(rows, "queueing_delay_s")
    start, end = float(arrival.min()), float(arrival.max())
    window = arrival >= start + _WARM_UP_SHARE * (end - start)
    if end <= start or int(window.sum()) < _MIN_REQUESTS_FOR_A_SLOPE:
        return {"state": "STABLE", "queueing_slope": 0.0, "threshold": OVERLOAD_SLOPE,
                "evidence": "too few requests to measure a queue trend"}
    slope = float(np.polyfit(arrival[window], queue[window], 1)[0])
    state = "OVERLOADED" if slope > OVERLOAD_SLOPE else "STABLE"
    return {"state": state, "queueing_slope": slope, "threshold": OVERLOAD_SLOPE,
            "evidence": f"queueing delay grows {slope:.3f} s per s of arrivals after the "
                        f"first {_WARM_UP_SHARE:.0%} of the trace (threshold "
                        f"{OVERLOAD_SLOPE:g})"}


def _tpot_of_means(rows: RequestRows) -> float:
    """(mean E2E - mean TTFT) / (mean output tokens - 1): the per-token figure the
    inference-perf records of real vLLM runs report as their TPOT (``itl_mean``), here per
    token generated."""
    outputs = float(np.mean(rows["output_tokens"]))
    if outputs <= 1:
        return math.nan
    return (float(np.mean(rows["e2e_s"])) - float(np.mean(rows["ttft_s"]))) / (outputs - 1)


def summarize(
    rows: RequestRows,
    stats: StepStats,
    gaps: Sequence[TokenGaps],
    *,
    num_gpus: int,
    peak_flops_per_gpu: float,
    kv_blocks_per_replica: Sequence[int],
    kv_peak_blocks_per_replica: Sequence[int],
    ttft_slo_s: float | None,
    tpot_slo_s: float | None,
) -> dict[str, Any]:
    """The run summary: latency percentiles, throughput, goodput, MFU, KV use, batches."""
    start = float(rows["arrival_s"].min())
    makespan = float(rows["finish_s"].max()) - start
    total_output = int(rows["output_tokens"].sum())
    total_prompt = int(rows["prompt_tokens"].sum())
    tpot = rows["tpot_s"]
    tbt_values = np.concatenate([np.frombuffer(g.values, dtype=np.float64) for g in gaps])
    tbt_counts = np.concatenate([np.frombuffer(g.counts, dtype=np.int64) for g in gaps])

    meets = np.ones(len(rows), dtype=bool)
    if ttft_slo_s is not None:
        meets &= rows["ttft_s"] <= ttft_slo_s
    if tpot_slo_s is not None:
        meets &= np.isnan(tpot) | (tpot <= tpot_slo_s)
    has_slo = ttft_slo_s is not None or tpot_slo_s is not None

    batch_sizes = np.frombuffer(stats.batch_sizes, dtype=np.int64)
    histogram = np.bincount(batch_sizes) if batch_sizes.size else np.zeros(1, dtype=np.int64)
    total_blocks = sum(kv_blocks_per_replica)
    return {
        "num_requests": len(rows),
        "makespan_s": makespan,
        "ttft_s": _percentiles(rows["ttft_s"]),
        "tpot_s": _percentiles(tpot[~np.isnan(tpot)]),
        "tpot_of_means_s": _tpot_of_means(rows),
        "ntpot_s": _percentiles(rows["ntpot_s"]),
        "tbt_s": _percentiles(tbt_values, tbt_counts),
        "e2e_s": _percentiles(rows["e2e_s"]),
        "queueing_delay_s": _percentiles(rows["queueing_delay_s"]),
        "throughput": {
            "requests_per_s": len(rows) / makespan if makespan > 0 else math.nan,
            "output_tokens_per_s": total_output / makespan if makespan > 0 else math.nan,
            "total_tokens_per_s": (total_output + total_prompt) / makespan
            if makespan > 0 else math.nan,
        },
        "goodput": {
            "ttft_slo_s": ttft_slo_s,
            "tpot_slo_s": tpot_slo_s,
            "slo_attainment": float(meets.mean()) if has_slo else None,
            "requests_per_s": float(meets.sum()) / makespan if has_slo and makespan > 0
            else None,
        },
        "mfu": stats.flops / (num_gpus * peak_flops_per_gpu * makespan) if makespan > 0 else 0,
        "kv_cache": {
            "blocks_per_replica": list(kv_blocks_per_replica),
            "mean_usage_while_busy": stats.kv_block_seconds / (stats.busy_s * total_blocks /
                                                               len(kv_blocks_per_replica))
            if stats.busy_s > 0 else 0.0,
            "peak_usage": max(peak / blocks for peak, blocks in
                              zip(kv_peak_blocks_per_replica, kv_blocks_per_replica, strict=True)),
        },
        "batches": {
            "num_steps": stats.num_steps,
            "mean_batch_size": float(batch_sizes.mean()) if batch_sizes.size else 0.0,
            "p50_batch_size": float(linear_percentiles(batch_sizes, [50])[0])
            if batch_sizes.size else 0,
            "max_batch_size": int(batch_sizes.max()) if batch_sizes.size else 0,
            "batch_size_histogram": {str(size): int(count) for size, count in
                                     enumerate(histogram) if count},
        },
        "preemptions": int(rows["num_preemptions"].sum()),
        "stability": stability(rows),
        "busy_fraction": stats.busy_s / (makespan * len(kv_blocks_per_replica))
        if makespan > 0 else 0.0,
    }


Progress = Callable[[int, int], None]


def reporting(on_finish: Callable[[Request], None], total: int, progress: Progress | None
              ) -> Callable[[Request], None]:
    """``on_finish`` that also calls ``progress(finished, total)`` about 200 times a run
    (a progress bar's feed; the simulation itself is unchanged)."""
    if progress is None:
        return on_finish
    every = max(1, total // 200)
    finished = 0

    def finish(request: Request) -> None:
        nonlocal finished
        on_finish(request)
        finished += 1
        if finished % every == 0 or finished == total:
            progress(finished, total)
    return finish
