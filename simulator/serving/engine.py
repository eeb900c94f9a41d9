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

import time
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import simpy
from simpy.events import URGENT

from profiles.cluster import build_cluster_graph, group_link, link_between, place_replicas
from profiles.cost_model import CostModel
from profiles.errors import ClusterSimError
from profiles.hardware import GPUSpec, load_gpu
from profiles.memory import MemoryPlan, plan_memory
from profiles.models import ModelSpec, load_model
from profiles.profile_format import load_profile
from profiles.profiled import ProfiledCostModel
from profiles.roofline import RooflineCostModel
from simulator.serving.config import (
    DeploymentConfig,
    resolve_cpu_overhead,
    resolve_scheduler,
    with_engine_defaults,
)
from simulator.serving.kv_cache import KVCacheManager, PrefixCachingKVCacheManager
from simulator.serving.metrics import (
    StepRecorder,
    StepStats,
    request_rows,
    summarize,
    with_client_path,
)
from simulator.serving.presets import ENGINE_PRESETS, CpuOverhead, engine_scheduler_defaults
from simulator.serving.replica import Replica, delay_to
from simulator.serving.request import Request
from simulator.serving.router import ROUTERS, Router
from simulator.serving.scheduler import Scheduler, SchedulerConfig
from simulator.serving.timeline import PerfettoTrace
from simulator.serving.token_content import Segment, prompt_segments
from simulator.serving.token_gaps import TokenGaps
from workloads.schema import RequestTrace

__all__ = ["ResolvedDeployment", "SimEnvironment", "SimulationResult", "make_kv_cache",
           "make_requests", "resolve", "simulate"]

ENGINE_VERSION = "clustersim-0.1 serving core"


class SimEnvironment(simpy.Environment):
    """The SimPy environment plus the run context: the seeded random generator."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = np.random.default_rng(seed)


class _ArrivalTimeout(simpy.Event):
    """A timeout at URGENT priority, so arrivals precede same-time scheduling decisions.

    NOTE: SimPy's Timeout always uses NORMAL priority; this mirrors its constructor
    (``_ok``/``_value`` as Timeout sets them) with the priority changed.
    """

    def __init__(self, env: simpy.Environment, delay: float) -> None:
        super().__init__(env)
        self._ok = True
        self._value = None
        env.schedule(self, URGENT, delay)


@dataclass(frozen=True)
class ResolvedDeployment:
    """Everything a run derives from its deployment: the wired-up static parts."""

    deployment: DeploymentConfig
    model: ModelSpec
    gpu: GPUSpec
    scheduler: SchedulerConfig
    memory: MemoryPlan
    cost_models: tuple[CostModel, ...]  # one per replica (placement decides its links)
    cpu_overhead: CpuOverhead | None = None

    @property
    def num_gpus(self) -> int:
        p = self.deployment.parallelism
        return self.deployment.replicas * p.tp * p.pp


@dataclass
class SimulationResult:
    """What a run produced. ``error`` is a one-line user error, else ``None``."""

    summary: dict[str, Any] | None
    requests: pd.DataFrame | None
    trace: dict[str, Any] | None
    runtime_s: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def resolve(deployment: DeploymentConfig) -> ResolvedDeployment:
    """Build and check the static side of a run (no simulation yet).

    Raises:
        ClusterSimError: unknown model or GPU, a deployment that does not fit the
            cluster, weights or max_model_len that do not fit in memory.
    """
    model = load_model(deployment.model)
    gpu = load_gpu(deployment.gpu)
    tp, pp = deployment.parallelism.tp, deployment.parallelism.pp
    if tp > model.num_attention_heads or model.num_attention_heads % tp:
        raise ClusterSimError(f"parallelism.tp={tp} must divide {model.name}'s "
                              f"{model.num_attention_heads} attention heads")
    if pp > model.num_layers:
        raise ClusterSimError(f"parallelism.pp={pp} exceeds {model.name}'s "
                              f"{model.num_layers} layers")
    settings = deployment.scheduler
    if deployment.engine is not None:
        settings = with_engine_defaults(
            settings, engine_scheduler_defaults(deployment.engine, gpu.hbm_gib, gpu.name))
    scheduler = resolve_scheduler(settings, model)
    memory = plan_memory(
        model, gpu, tp=tp, pp=pp, block_size=scheduler.block_size,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        max_num_batched_tokens=scheduler.max_num_batched_tokens,
        max_num_seqs=scheduler.max_num_seqs, swap_space_gib=settings.swap_space_gib,
        runtime_overhead_gib=deployment.runtime_overhead_gib,
    )
    if settings.num_gpu_blocks_override is not None:
        memory = replace(memory, num_gpu_blocks=settings.num_gpu_blocks_override)
    if scheduler.max_model_len > memory.max_kv_tokens:
        raise ClusterSimError(
            f"scheduler.max_model_len={scheduler.max_model_len} tokens do not fit in the KV "
            f"cache ({memory.max_kv_tokens} tokens per replica); set --max-model-len "
            f"{memory.max_kv_tokens} or less, or raise tp/pp or gpu_memory_utilization"
        )
    cluster = deployment.cluster_spec()
    graph = build_cluster_graph(cluster, gpu)
    placements = place_replicas(graph, cluster, deployment.replicas, tp, pp)
    profile = (load_profile(deployment.profile, expected_gpu=gpu.name)
               if deployment.profile is not None else None)
    cost_models: list[CostModel] = []
    for placement in placements:
        stages = placement.stage_gpus
        pp_link = (link_between(graph, stages[0][0], stages[1][0]) if pp > 1
                   else group_link(graph, ()))
        inside_node = len({graph.nodes[name]["node"] for name in stages[0]}) == 1
        roofline = RooflineCostModel(model, gpu, tp, pp, group_link(graph, stages[0]), pp_link,
                                     tp_inside_node=inside_node)
        cost_models.append(ProfiledCostModel(profile, roofline) if profile is not None
                           else roofline)
    return ResolvedDeployment(deployment, model, gpu, scheduler, memory, tuple(cost_models),
                              resolve_cpu_overhead(deployment))


def make_requests(workload: RequestTrace) -> list[Request]:
    """The engine's requests of a trace, ids by trace position."""
    return [
        Request(request_id=i, arrival_s=float(arrival), prompt_tokens=int(prompt),
                output_tokens=int(output), priority=int(priority))
        for i, (arrival, prompt, output, priority) in enumerate(zip(
            workload.arrival_s.tolist(), workload.prompt_tokens.tolist(),
            workload.output_tokens.tolist(), workload.priority.tolist(), strict=True))
    ]


def make_kv_cache(resolved: ResolvedDeployment) -> KVCacheManager:
    """A replica's KV block pool as the deployment sizes it: paged, reserving
    max_model_len per request (Orca, static batching), or prefix caching."""
    memory, scheduler = resolved.memory, resolved.scheduler
    if scheduler.enable_prefix_caching:
        return PrefixCachingKVCacheManager(memory.num_gpu_blocks, memory.block_size)
    reserve = scheduler.max_model_len if scheduler.kv_allocation == "reserve_max" else None
    return KVCacheManager(memory.num_gpu_blocks, memory.block_size, memory.num_cpu_blocks,
                          reserve_tokens=reserve)


def _check_workload(workload: RequestTrace, resolved: ResolvedDeployment) -> None:
    if len(workload) == 0:
        raise ClusterSimError("workload: the trace has no requests")
    total = workload.prompt_tokens + workload.output_tokens
    too_long = np.flatnonzero(total > resolved.scheduler.max_model_len)
    if too_long.size:
        i = int(too_long[0])
        raise ClusterSimError(
            f"workload request {workload.request_ids[i]!r}: prompt_tokens + output_tokens = "
            f"{int(total[i])} exceeds max_model_len={resolved.scheduler.max_model_len} "
            f"({too_long.size} requests do); raise --max-model-len or trim the trace"
        )


def _cost_model_record(cost_models: Sequence[CostModel]) -> dict[str, Any]:
    """Which cost model priced the run, and how much of it came from measured tables."""
    profiled = [model for model in cost_models if isinstance(model, ProfiledCostModel)]
    if not profiled:
        return {"kind": "roofline", "measured_share": 0.0}
    measured = sum(model.measured_s for model in profiled)
    total = measured + sum(model.fallback_s for model in profiled)
    meta = profiled[0].profile.metadata
    return {"kind": "profiled", "profile": str(profiled[0].profile.folder),
            "profile_gpu": meta.gpu, "profile_date": meta.date,
            "measured_share": measured / total if total else 0.0,
            "steps_with_fallback": sum(model.num_fallbacks for model in profiled)}


def _engine_record(deployment: DeploymentConfig, overhead: CpuOverhead | None
                   ) -> dict[str, Any]:
    """What the summary says about the modelled engine and its CPU overhead."""
    record: dict[str, Any] = {"preset": deployment.engine}
    if deployment.engine is not None:
        preset = ENGINE_PRESETS[deployment.engine]
        record.update(version=preset.version, knobs_source=preset.knobs_source,
                      overhead_source=preset.overhead_source,
                      client_path_s=preset.client_path_s,
                      client_path_source=preset.client_path_source)
    if deployment.cpu_overhead is not None:
        record["overhead_source"] = "given in the deployment"
    record["cpu_overhead"] = overhead.model_dump() if overhead is not None else None
    return record


def workload_segments(workload: RequestTrace) -> list[list[Segment]]:
    """Each request's prompt content, from the trace's token identity fields.

    A request of a session whose prompt is at least the previous turn's prompt plus its
    output starts with that history (multi-turn chat); otherwise Mooncake block hashes, a
    shared prefix id, or nothing shared at all; the rest is the request's own tokens, or
    a repeated prompt's (``prompt_id``).
    """
    extras = workload.extras
    none = [None] * len(workload)
    prefix_ids = extras.get("prefix_id", none)
    prefix_lens = extras.get("prefix_tokens", none)
    block_hashes = extras.get("block_hashes", none)
    prompt_ids = extras.get("prompt_id", none)
    sessions = extras.get("session_id", none)
    hash_block_tokens = int(workload.metadata.get("block_size_tokens", 512))
    last_turn: dict[Any, tuple[int, list[Segment]]] = {}
    result: list[list[Segment]] = []
    for i in range(len(workload)):
        prompt = int(workload.prompt_tokens[i])
        history = None
        session = sessions[i]
        if session is not None and session in last_turn:
            previous, previous_segments = last_turn[session]
            prior = int(workload.prompt_tokens[previous] + workload.output_tokens[previous])
            if prompt >= prior:
                history = [*previous_segments,
                           (("out", previous), int(workload.output_tokens[previous]))]
        segments = prompt_segments(i, prompt, prefix_ids[i], prefix_lens[i], block_hashes[i],
                                   hash_block_tokens, history, prompt_ids[i])
        if session is not None:
            last_turn[session] = (i, segments)
        result.append(segments)
    return result


def _closed_loop_turns(workload: RequestTrace) -> dict[int, int]:
    """previous turn → next turn, for session turns that carry ``think_time_s``."""
    sessions = workload.extras.get("session_id")
    think = workload.extras.get("think_time_s")
    if sessions is None or think is None:
        return {}
    last: dict[Any, int] = {}
    chain: dict[int, int] = {}
    for i, session in enumerate(sessions):
        if session is None:
            continue
        if session in last and think[i] is not None:
            chain[last[session]] = i
        last[session] = i
    return chain


def _arrivals(env: simpy.Environment, requests: Sequence[Request], router: Router,
              replicas: Sequence[Replica]) -> Generator[simpy.Event, Any, None]:
    for request in requests:
        if request.arrival_s > env.now:
            yield _ArrivalTimeout(env, delay_to(env.now, request.arrival_s))
        replicas[router.choose(request, replicas)].submit(request)


def simulate(
    deployment: DeploymentConfig,
    workload: RequestTrace,
    *,
    record_trace: bool = False,
    recorders: Sequence[StepRecorder] = (),
) -> SimulationResult:
    """Simulate ``workload`` on ``deployment``.

    Args:
        deployment: the validated deployment.
        workload: the requests, sorted by arrival.
        record_trace: also collect a Perfetto trace of every step.
        recorders: extra step observers (tests use them to check invariants per step).

    Returns:
        The result; ``result.error`` holds a one-line message if the input was at fault.
    """
    started = time.perf_counter()
    try:
        resolved = resolve(deployment)
        _check_workload(workload, resolved)
    except ClusterSimError as error:
        return SimulationResult(None, None, None, time.perf_counter() - started, str(error))

    env = SimEnvironment(deployment.seed)
    stats = StepStats()
    trace = PerfettoTrace() if record_trace else None
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
        for request, segments in zip(requests, workload_segments(workload), strict=True):
            request.prompt_segments = segments
    router = ROUTERS[deployment.router]()
    next_turn = _closed_loop_turns(workload)
    think = workload.extras.get("think_time_s", [])

    def send_next_turn(request: Request) -> None:
        follow = next_turn.get(request.request_id)
        if follow is not None:
            turn = requests[follow]
            turn.arrival_s = max(turn.arrival_s, env.now + float(think[follow]))
            env.process(_arrivals(env, [turn], router, replicas))

    for replica in replicas:
        replica.on_finish = send_next_turn
    waiting_on = set(next_turn.values())
    env.process(_arrivals(env, [r for r in requests if r.request_id not in waiting_on],
                          router, replicas))
    env.run()

    unfinished = sum(1 for r in requests if not r.is_finished)
    if unfinished:
        raise RuntimeError(f"simulation ended with {unfinished} unfinished requests")
    for replica in replicas:
        replica.scheduler.kv_cache.check()
        kv_cache = replica.scheduler.kv_cache
        assert kv_cache.num_free_blocks == kv_cache.num_gpu_blocks, "KV blocks leaked"

    rows = request_rows(requests, workload.request_ids)
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
    summary["prefix_cache"] = {
        "enabled": resolved.scheduler.enable_prefix_caching,
        "query_tokens": query, "hit_tokens": hits,
        "hit_rate": hits / query if query else 0.0,
    }
    summary["run"] = {
        "simulator": ENGINE_VERSION,
        "cost_model": _cost_model_record(resolved.cost_models),
        "seed": deployment.seed,
        "deployment": deployment.model_dump(mode="json"),
        "model": resolved.model.name,
        "gpu": resolved.gpu.name,
        "num_gpus": resolved.num_gpus,
        "scheduler": asdict(resolved.scheduler),
        "engine": _engine_record(deployment, resolved.cpu_overhead),
        "memory_per_gpu": resolved.memory.as_dict(),
        "workload": {key: value for key, value in workload.metadata.items()
                     if key in ("source", "format", "generator")} | workload.stats(),
    }
    return SimulationResult(summary, rows, trace.to_json() if trace else None,
                            time.perf_counter() - started)
