"""Running a simulation: build → validate and wire → run → collect.

:func:`simulate` is the one entry point the CLI and the planners call. It resolves the
deployment (model, GPU, cluster graph, placements, memory, scheduler), checks the
workload against it, wires one SimPy process per replica plus the arrival process, runs
to completion and collects per-request rows, the summary and the optional trace. It
always returns a :class:`SimulationResult`; a user error leaves ``error`` set instead of
raising.

Same-time ordering (the one rule, tested): events at equal simulated time run as
(time, priority, insertion order). Arrivals are URGENT, step completions and wake-ups
NORMAL, so every arrival at time t is in its replica's queue before any scheduling
decision at time t, and arrivals at equal times keep trace order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Protocol

from profiles.errors import ClusterSimError
from simulator.collection import collector_paused
from simulator.serving.arrivals import Arrivals
from simulator.serving.build import (
    ResolvedDeployment,
    SimEnvironment,
    SimulationResult,
    admission_record,
    check_workload,
    cost_model_record,
    make_kv_cache,
    make_requests,
    offload_record,
    resolve,
    set_token_content,
)
from simulator.serving.config import DeploymentConfig
from simulator.serving.disagg import simulate_disaggregated
from simulator.serving.engine_costs import engine_record
from simulator.serving.experts import moe_record
from simulator.serving.metrics import (
    Progress,
    StepRecorder,
    StepStats,
    reporting,
    request_rows,
    summarize,
    with_client_path,
)
from simulator.serving.presets import ENGINE_PRESETS
from simulator.serving.replica import Replica
from simulator.serving.request import Request
from simulator.serving.router import ROUTERS
from simulator.serving.scheduler import Scheduler
from simulator.serving.speculative import speculative_record
from simulator.serving.timeline import DEFAULT_TRACE_REQUESTS, PerfettoTrace
from simulator.serving.token_gaps import TokenGaps
from workloads.schema import RequestTrace

# resolve, make_kv_cache, make_requests and the result types live in build.py; they are
# named here too, where callers have always found them.
__all__ = ["ResolvedDeployment", "SimEnvironment", "SimulationResult", "StopRule",
           "make_kv_cache", "make_requests", "resolve", "simulate"]

ENGINE_VERSION = "clustersim-0.1 serving core"


class StopRule(Protocol):
    """Watches a run's finishing requests for an outcome decided before the end."""

    def start(self, workload: RequestTrace, client_path_s: float) -> None:
        """The admitted requests (request i is ``workload``'s row i), before the run;
        ``client_path_s`` is what the rows add to each TTFT."""

    def finished(self, request: Request) -> bool:
        """``request`` finished; True stops the run."""


class _Stopped(Exception):
    """Raised through SimPy when a stop rule says the run is decided."""


def _stopping(on_finish: Callable[[Request], None], rule: StopRule
              ) -> Callable[[Request], None]:
    def finish(request: Request) -> None:
        on_finish(request)
        if rule.finished(request):
            raise _Stopped
    return finish


def simulate(
    deployment: DeploymentConfig,
    workload: RequestTrace,
    *,
    record_trace: bool = False,
    recorders: Sequence[StepRecorder] = (),
    trace_requests: int = DEFAULT_TRACE_REQUESTS,
    progress: Progress | None = None,
    max_concurrency: int | None = None,
    stop_rule: StopRule | None = None,
) -> SimulationResult:
    """Simulate ``workload`` on ``deployment``.

    Args:
        deployment: the validated deployment.
        workload: the requests, sorted by arrival.
        record_trace: also collect a Perfetto trace of every step.
        trace_requests: how many requests (the first) get their phases in the trace.
        recorders: extra step observers (tests use them to check invariants per step).
        progress: called with (finished, total) requests as the run goes (a progress bar).
        max_concurrency: the client keeps at most this many requests in flight (vLLM's
            benchmark ``--max-concurrency``); None: open loop.
        stop_rule: told the admitted requests before the run and each request as it
            finishes; when it answers True the outcome it watches is decided and the run
            stops there (``result.stopped``, no rows or summary). Colocated runs only.

    Returns:
        The result; ``result.error`` holds a one-line message if the input was at fault.
    """
    with collector_paused():
        return _simulate(deployment, workload, record_trace=record_trace, recorders=recorders,
                         trace_requests=trace_requests, progress=progress,
                         max_concurrency=max_concurrency, stop_rule=stop_rule)


def _simulate(deployment: DeploymentConfig, workload: RequestTrace, *, record_trace: bool,
              recorders: Sequence[StepRecorder], trace_requests: int,
              progress: Progress | None, max_concurrency: int | None,
              stop_rule: StopRule | None) -> SimulationResult:
    if deployment.is_disaggregated:
        return simulate_disaggregated(deployment, workload, record_trace=record_trace,
                                      recorders=recorders, trace_requests=trace_requests,
                                      progress=progress, max_concurrency=max_concurrency)
    started = time.perf_counter()
    try:
        resolved = resolve(deployment)
        submitted = len(workload)
        workload, rejected = check_workload(workload, resolved.scheduler.max_model_len)
    except ClusterSimError as error:
        return SimulationResult(None, None, None, time.perf_counter() - started, str(error))

    env = SimEnvironment(deployment.seed)
    stats = StepStats()
    trace = PerfettoTrace(trace_requests) if record_trace else None
    all_recorders: list[StepRecorder] = [stats, *recorders] + ([trace] if trace else [])
    replicas = []
    gaps = []
    for replica_id, cost_model in enumerate(resolved.cost_models):
        token_gaps = TokenGaps()
        gaps.append(token_gaps)
        scheduler = Scheduler(resolved.scheduler, make_kv_cache(resolved), token_gaps)
        replicas.append(Replica(env, replica_id, scheduler, cost_model, all_recorders,
                                resolved.cpu_overhead))

    requests = make_requests(workload)
    if resolved.scheduler.enable_prefix_caching:
        set_token_content(requests, workload)
    router = ROUTERS[deployment.router]()
    # one replica: every router chooses it (and none keeps state a run could see)
    submit = (replicas[0].submit if len(replicas) == 1 else
              lambda request: replicas[router.choose(request, replicas)].submit(request))
    arrivals = Arrivals(env, workload, requests, submit, max_concurrency)
    on_finish: Callable[[Request], None] | None = None
    if stop_rule is not None or progress is not None or not arrivals.is_open_loop:
        # (an open-loop source hears nothing of a finish: otherwise no call per request)
        on_finish = reporting(arrivals.on_finish, len(requests), progress)
    if stop_rule is not None:
        client_path_s = (ENGINE_PRESETS[deployment.engine].client_path_s
                         if deployment.engine is not None else 0.0)
        stop_rule.start(workload, client_path_s)
        assert on_finish is not None
        on_finish = _stopping(on_finish, stop_rule)
    for replica in replicas:
        replica.on_finish = on_finish
        replica.group_decodes()
        if arrivals.is_open_loop:  # nothing but an arrival can change a decode run
            replica.next_event_s = arrivals.next_arrival
            # and nothing looks at a replica in between unless the router does
            replica.observed_at_arrivals = len(replicas) > 1 and router.reads_load
            if len(replicas) == 1:  # its runs may take the arrivals themselves
                replica.take_arrivals = arrivals.take
    arrivals.start()
    try:
        env.run()
    except _Stopped:
        return SimulationResult(None, None, None, time.perf_counter() - started, stopped=True)
    for replica in replicas:
        if replica.scheduler.lazy is not None:
            replica.scheduler.lazy.materialize()

    unfinished = sum(1 for r in requests if not r.is_finished)
    if unfinished:
        raise RuntimeError(f"simulation ended with {unfinished} unfinished requests")
    if not math.isfinite(env.now):
        raise RuntimeError("simulation clock ran to infinity: an event was scheduled "
                           "for a time that never comes")
    for replica in replicas:
        replica.scheduler.kv_cache.check()
        kv_cache = replica.scheduler.kv_cache
        assert kv_cache.num_free_blocks == kv_cache.num_gpu_blocks, "KV blocks leaked"

    rows = request_rows(requests, workload.request_ids)
    speculative = speculative_record(deployment, requests)
    if trace is not None:
        p = deployment.parallelism
        for replica in replicas:
            trace.name_process(replica.replica_id, f"replica {replica.replica_id} "
                               f"({resolved.gpu.name}, tp={p.tp}, pp={p.pp})")
        trace.add_requests(len(replicas), requests)
    # NOTE: the request objects are most of a long run's memory and everything after
    # reads the rows: let them go before the summary's arrays are made.
    for replica in replicas:
        replica.on_finish = replica.next_event_s = replica.take_arrivals = None
    del requests, arrivals, on_finish
    if deployment.engine is not None:
        rows = with_client_path(rows, ENGINE_PRESETS[deployment.engine].client_path_s)
    summary = summarize(
        rows, stats, gaps, num_gpus=resolved.num_gpus,
        peak_flops_per_gpu=resolved.gpu.peak_flops(resolved.model.dtype),
        kv_blocks_per_replica=[r.scheduler.kv_cache.num_gpu_blocks for r in replicas],
        kv_peak_blocks_per_replica=[r.scheduler.kv_cache.peak_used_blocks for r in replicas],
        ttft_slo_s=deployment.slo.ttft_s, tpot_slo_s=deployment.slo.tpot_s,
    )
    caches = [r.scheduler.kv_cache for r in replicas]
    query = sum(cache.num_query_tokens for cache in caches)
    hits = sum(cache.num_hit_tokens for cache in caches)
    summary["requests"] = admission_record(submitted, rejected)
    summary["prefix_cache"] = {
        "enabled": resolved.scheduler.enable_prefix_caching,
        "query_tokens": query, "hit_tokens": hits,
        "hit_rate": hits / query if query else 0.0,
        "host_hit_tokens": sum(cache.num_host_hit_tokens for cache in caches),
        "host_blocks": sum(getattr(cache, "num_host_blocks", 0) for cache in caches),
    }
    summary["run"] = {
        "simulator": ENGINE_VERSION,
        "cost_model": cost_model_record(resolved.cost_models),
        "seed": deployment.seed,
        "deployment": deployment.model_dump(mode="json"),
        "model": resolved.model.name,
        "gpu": resolved.gpu.name,
        "gpu_power_limit_w": resolved.gpu.power_limit_w,
        "num_gpus": resolved.num_gpus,
        "scheduler": asdict(resolved.scheduler),
        "engine": engine_record(deployment, resolved.cpu_overhead),
        "memory_per_gpu": resolved.memory.as_dict(),
        "offload": offload_record(resolved),
        "moe": moe_record(deployment, resolved.model, resolved.cost_models),
        "speculative": speculative,
        "workload": {key: value for key, value in workload.metadata.items()
                     if key in ("source", "format", "generator")} | workload.stats(),
    }
    return SimulationResult(summary, rows, trace.to_json() if trace else None,
                            time.perf_counter() - started)
