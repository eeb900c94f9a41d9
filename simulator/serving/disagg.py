"""Prefill/decode disaggregation in simulated time (DistServe, Splitwise, llm-d).

A request's way through a disaggregated deployment::

    arrival ─► prefill router ─► prefill replica: prompt computed, first token sampled
                                      │ (its KV stays held on the prefill replica)
            decode router ─► decode replica: blocks and a sequence slot reserved when
                                      │      free (else the request waits, FIFO)
                     KV transfer over the cluster graph's links (shared, max-min fair)
                                      │      prefill-side blocks freed when it ends
                                      ▼
                            decode replica: tokens 2 .. N, as any running request

Prompts of at most ``threshold_tokens`` skip the prefill pool and are prefilled on their
decode replica (llm-d's selective disaggregation). A request with one output token ends
at its prefill.

The KV of ``prompt_tokens`` tokens (the model's bytes per token: every layer, K and V,
its KV heads and cache dtype) moves from each GPU of the prefill replica to the GPUs of
the decode replica: ``max(m, n)`` flows of equal size between ``m`` senders and ``n``
receivers (each holds an equal share of layers and heads), each over the scale-up link
when both ends share a node and the NICs otherwise (``transfers``). Layer-wise transfer
(``transfer.mode: layerwise``) sends layer l while layer l+1 computes: by the end of the
prefill step the link has carried what it could in (L-1)/L of the step on idle ports, so
what is left is ``max(1/L, 1 - overlap / uncontended time)`` of the bytes, sent under the
contention of that moment (the overlap itself is priced without contention, a stated
approximation). It applies only when the decode replica had room at once; a transfer
that had to wait sends everything afterwards.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import simpy

from profiles.cluster import LinkCost, link_between
from profiles.errors import ClusterSimError
from simulator.serving.arrivals import Arrivals
from simulator.serving.build import (
    ResolvedDeployment,
    ResolvedPools,
    SimEnvironment,
    SimulationResult,
    admission_record,
    check_workload,
    cost_model_record,
    make_kv_cache,
    make_requests,
    resolve_pools,
    set_token_content,
)
from simulator.serving.config import DeploymentConfig
from simulator.serving.engine_costs import engine_record
from simulator.serving.metrics import (
    Progress,
    StepRecorder,
    StepStats,
    _percentiles,
    reporting,
    request_rows,
    summarize,
    with_client_path,
)
from simulator.serving.presets import ENGINE_PRESETS
from simulator.serving.replica import Replica
from simulator.serving.request import Request, RequestStatus
from simulator.serving.router import ROUTERS
from simulator.serving.rows import RequestRows
from simulator.serving.scheduler import Scheduler
from simulator.serving.timeline import DEFAULT_TRACE_REQUESTS, PerfettoTrace
from simulator.serving.token_gaps import TokenGaps
from simulator.serving.transfers import LinkSharing, Port, uncontended_s
from workloads.schema import RequestTrace

__all__ = ["DISAGG_COLUMNS", "simulate_disaggregated", "transfer_flows"]

# The columns a disaggregated run adds to the request rows, after REQUEST_COLUMNS.
DISAGG_COLUMNS = ["prefill_replica_id", "prefilled_on", "kv_wait_s", "kv_transfer_s"]


def port_capacities(graph: Any) -> dict[Port, float]:
    """Bytes/s of every GPU's ports: its scale-up link and its NIC, each way."""
    capacity: dict[Port, float] = {}
    for name, data in graph.nodes(data=True):
        if data.get("kind") != "gpu":
            continue
        switch = f"n{data['node']}.switch"
        scale_up = graph.edges[name, switch]["bandwidth_bytes_per_s"]
        nic = graph.edges[switch, "network"]["per_gpu_bandwidth_bytes_per_s"]
        for direction in ("out", "in"):
            capacity[(name, direction, "scale_up")] = scale_up
            capacity[(name, direction, "network")] = nic
    return capacity


def transfer_flows(graph: Any, senders: Sequence[str], receivers: Sequence[str],
                   num_bytes: float) -> list[tuple[tuple[Port, ...], float]]:
    """The flows that move ``num_bytes`` of KV from ``senders`` to ``receivers``."""
    k = max(len(senders), len(receivers))
    flows: list[tuple[tuple[Port, ...], float]] = []
    for i in range(k):
        sender, receiver = senders[i % len(senders)], receivers[i % len(receivers)]
        same_node = graph.nodes[sender]["node"] == graph.nodes[receiver]["node"]
        tier = "scale_up" if same_node else "network"
        flows.append((((sender, "out", tier), (receiver, "in", tier)), num_bytes / k))
    return flows


class _Coordinator:
    """Routes requests between the pools and moves their KV (module docstring)."""

    def __init__(self, env: simpy.Environment, resolved: ResolvedPools,
                 prefill: list[Replica], decode: list[Replica],
                 requests: Sequence[Request]) -> None:
        disagg = resolved.deployment.disaggregation
        assert disagg is not None
        self.env = env
        self.resolved = resolved
        self.config = disagg
        self.prefill, self.decode = prefill, decode
        self.requests = requests
        self.prefill_router = ROUTERS[disagg.prefill_router]()
        self.decode_router = (None if disagg.decode_router == "nearest"
                              else ROUTERS[disagg.decode_router]())
        self.links = LinkSharing(env, port_capacities(resolved.graph))
        self.gpus = {replica.replica_id: [g for stage in placement.stage_gpus for g in stage]
                     for replica, placement in zip(
                         prefill + decode,
                         resolved.prefill.placements + resolved.decode.placements,
                         strict=True)}
        self.kv_bytes = resolved.model.kv_bytes  # a prompt's KV, every layer
        self.num_layers = resolved.model.num_layers
        self.pending: dict[int, deque[tuple[Request, Request, Replica]]] = {
            replica.replica_id: deque() for replica in decode}
        self.phase: dict[int, Request] = {}  # request id -> its prefill-pool request
        self.on_done: Any = None  # closed-loop sessions: called with each finished request
        self.bytes_moved = 0.0
        self._links: dict[tuple[int, int], LinkCost] = {}
        for replica in prefill:
            replica.on_finish = self._prefill_done
        for replica in decode:
            replica.recorders.append(self)  # a step may free blocks: admit who waits

    # ---- arrival ---------------------------------------------------------------------

    def arrive(self, request: Request) -> None:
        if request.prompt_tokens <= self.config.threshold_tokens:
            replica = self.decode[self._choose_decode(request, None)]
            replica.submit(request)  # prefilled and decoded there, as colocated
            return
        phase = Request(request_id=request.request_id, arrival_s=request.arrival_s,
                        prompt_tokens=request.prompt_tokens, output_tokens=1,
                        priority=request.priority, keep_kv=True,
                        prompt_segments=request.prompt_segments,
                        num_shareable_tokens=request.num_shareable_tokens)
        self.phase[request.request_id] = phase
        self.prefill[self.prefill_router.choose(phase, self.prefill)].submit(phase)

    def _choose_decode(self, request: Request, source: Replica | None) -> int:
        if self.decode_router is not None:
            return self.decode_router.choose(request, self.decode)
        # nearest: the fastest link from the prefill replica, then the emptiest KV cache
        keys = []
        for replica in self.decode:
            bandwidth = (0.0 if source is None else
                         self._link(source, replica).bandwidth_bytes_per_s)
            keys.append((-bandwidth, replica.kv_usage, replica.num_outstanding))
        return keys.index(min(keys))

    def _link(self, source: Replica, target: Replica) -> LinkCost:
        """The link between two replicas' first GPUs, read from the graph once per pair."""
        key = (source.replica_id, target.replica_id)
        link = self._links.get(key)
        if link is None:
            link = self._links[key] = link_between(
                self.resolved.graph, self.gpus[source.replica_id][0],
                self.gpus[target.replica_id][0])
        return link

    # ---- prefill done ----------------------------------------------------------------

    def _prefill_done(self, phase: Request) -> None:
        request = self.requests[phase.request_id]
        source = self.prefill[phase.replica_id]  # prefill replicas come first: id = index
        request.prefill_replica_id = phase.replica_id
        request.first_scheduled_s = phase.first_scheduled_s
        request.first_token_s = request.last_token_s = phase.first_token_s
        request.prefill_done_s = self.env.now
        request.num_preemptions += phase.num_preemptions
        request.num_cached_tokens = phase.num_cached_tokens
        request.num_output_tokens = 1
        if request.output_tokens == 1:
            source.scheduler.kv_cache.free(phase)
            request.status = RequestStatus.FINISHED
            request.finish_s = self.env.now
            request.replica_id = phase.replica_id
            del self.phase[request.request_id]
            if self.on_done is not None:
                self.on_done(request)
            return
        source.num_kv_held += 1
        target = self.decode[self._choose_decode(request, source)]
        target.num_outstanding += 1
        request.replica_id = target.replica_id
        self.pending[target.replica_id].append((request, phase, source))
        self._admit(target, request, source.last_spans)

    def on_step(self, replica_id: int, *_: Any) -> None:
        """A decode replica finished a step: blocks may have come free."""
        self._admit(self.decode[replica_id - len(self.prefill)])

    def _admit(self, target: Replica, fresh: Request | None = None,
               spans: list[tuple[float, float]] | None = None) -> None:
        """Start the transfers of the requests waiting for ``target``, in order, while it
        has room; ``fresh`` (whose prefill step, ``spans``, just ended) may overlap."""
        queue = self.pending[target.replica_id]
        while queue:
            request, phase, source = queue[0]
            if not target.scheduler.reserve_remote(request):
                return
            queue.popleft()
            self._transfer(request, phase, source, target,
                           spans if request is fresh else None)

    def _transfer(self, request: Request, phase: Request, source: Replica, target: Replica,
                  spans: list[tuple[float, float]] | None) -> None:
        graph = self.resolved.graph
        senders, receivers = self.gpus[source.replica_id], self.gpus[target.replica_id]
        num_bytes = self.kv_bytes(request.prompt_tokens)
        flows = transfer_flows(graph, senders, receivers, num_bytes)
        self.bytes_moved += num_bytes
        if self.config.transfer.mode == "layerwise" and spans:
            step_s = spans[-1][1] - spans[0][0]
            alone_s = uncontended_s(flows, self.links.capacity)
            overlap_s = step_s * (self.num_layers - 1) / self.num_layers
            left = max(1 / self.num_layers, 1 - overlap_s / alone_s) if alone_s > 0 else 0.0
            self.links.record_overlap(flows, 1 - left, alone_s * (1 - left))
            flows = [(ports, size * left) for ports, size in flows]
        latency = self._link(source, target).latency_s
        request.transfer_start_s = self.env.now

        def arrived() -> None:
            request.transfer_end_s = self.env.now
            source.scheduler.kv_cache.free(phase)
            source.num_kv_held -= 1
            del self.phase[request.request_id]
            source.wake()
            target.receive(request)

        self.links.send(flows, latency + self.config.transfer.overhead_s, arrived)


def _pool_record(pool: ResolvedDeployment, replicas: Sequence[Replica], stats: StepStats,
                 makespan_s: float) -> dict[str, Any]:
    p = pool.deployment.parallelism
    caches = [replica.scheduler.kv_cache for replica in replicas]
    sizes = np.frombuffer(stats.batch_sizes, dtype=np.int64)
    return {
        "gpu": pool.gpu.name, "gpu_power_limit_w": pool.gpu.power_limit_w,
        "replicas": len(replicas), "tp": p.tp, "pp": p.pp,
        "dp": p.dp, "ep": p.ep,
        "num_gpus": pool.num_gpus,
        "busy_fraction": stats.busy_s / (makespan_s * len(replicas)) if makespan_s > 0
        else 0.0,
        "num_steps": stats.num_steps,
        "mean_batch_size": float(sizes.mean()) if sizes.size else 0.0,
        "kv_peak_usage": max(cache.peak_used_blocks / cache.num_gpu_blocks
                             for cache in caches),
        "scheduler": asdict(pool.scheduler),
        "memory_per_gpu": pool.memory.as_dict(),
    }


class _PoolStats(StepStats):
    """Step figures of one pool (the replicas whose ids are in ``members``)."""

    def __init__(self, members: range) -> None:
        super().__init__()
        self.members = members

    def on_step(self, replica_id: int, *args: Any) -> None:
        if replica_id in self.members:
            super().on_step(replica_id, *args)


def simulate_disaggregated(deployment: DeploymentConfig, workload: RequestTrace, *,
                           record_trace: bool = False,
                           recorders: Sequence[StepRecorder] = (),
                           trace_requests: int = DEFAULT_TRACE_REQUESTS,
                           progress: Progress | None = None,
                           max_concurrency: int | None = None) -> SimulationResult:
    """Simulate ``workload`` on a disaggregated ``deployment`` (see ``engine.simulate``)."""
    started = time.perf_counter()
    try:
        resolved = resolve_pools(deployment)
        submitted = len(workload)
        workload, rejected = check_workload(
            workload, min(pool.scheduler.max_model_len for pool in resolved.pools))
    except ClusterSimError as error:
        return SimulationResult(None, None, None, time.perf_counter() - started, str(error))

    env = SimEnvironment(deployment.seed)
    stats = StepStats()
    num_prefill = len(resolved.prefill.cost_models)
    num_decode = len(resolved.decode.cost_models)
    pool_stats = (_PoolStats(range(num_prefill)),
                  _PoolStats(range(num_prefill, num_prefill + num_decode)))
    trace = PerfettoTrace(trace_requests) if record_trace else None
    shared: list[StepRecorder] = [stats, *pool_stats, *recorders] + ([trace] if trace else [])
    pools: tuple[list[Replica], list[Replica]] = ([], [])
    gaps: list[TokenGaps] = []
    replica_id = 0
    for index, pool in enumerate(resolved.pools):
        for cost_model in pool.cost_models:
            token_gaps = TokenGaps()
            gaps.append(token_gaps)
            scheduler = Scheduler(pool.scheduler, make_kv_cache(pool), token_gaps)
            pools[index].append(Replica(env, replica_id, scheduler, cost_model, list(shared),
                                        pool.cpu_overhead))
            replica_id += 1

    requests = make_requests(workload)
    if any(pool.scheduler.enable_prefix_caching for pool in resolved.pools):
        set_token_content(requests, workload)
    coordinator = _Coordinator(env, resolved, pools[0], pools[1], requests)
    arrivals = Arrivals(env, workload, requests, coordinator.arrive, max_concurrency)
    on_finish = reporting(arrivals.on_finish, len(requests), progress)
    coordinator.on_done = on_finish
    for replica in pools[1]:
        replica.on_finish = on_finish
    arrivals.start()
    env.run()

    unfinished = sum(1 for r in requests if not r.is_finished)
    if unfinished:
        raise RuntimeError(f"simulation ended with {unfinished} unfinished requests")
    for replica in (*pools[0], *pools[1]):
        kv_cache = replica.scheduler.kv_cache
        kv_cache.check()
        assert kv_cache.num_free_blocks == kv_cache.num_gpu_blocks, "KV blocks leaked"
        assert replica.num_kv_held == 0 and replica.scheduler.num_receiving == 0

    rows = _rows(requests, workload, num_prefill)
    if deployment.engine is not None:
        rows = with_client_path(rows, ENGINE_PRESETS[deployment.engine].client_path_s)
    all_replicas = [*pools[0], *pools[1]]
    num_gpus = resolved.num_gpus
    peak = sum(pool.gpu.peak_flops(pool.model.dtype) * pool.num_gpus
               for pool in resolved.pools) / num_gpus
    summary = summarize(
        rows, stats, gaps, num_gpus=num_gpus, peak_flops_per_gpu=peak,
        kv_blocks_per_replica=[r.scheduler.kv_cache.num_gpu_blocks for r in all_replicas],
        kv_peak_blocks_per_replica=[r.scheduler.kv_cache.peak_used_blocks
                                    for r in all_replicas],
        ttft_slo_s=deployment.slo.ttft_s, tpot_slo_s=deployment.slo.tpot_s,
    )
    makespan = summary["makespan_s"]
    disagg = deployment.disaggregation
    assert disagg is not None
    moved = rows.take(rows["prefilled_on"] == "prefill_pool")
    transfer_s, wait_s = moved["kv_transfer_s"], moved["kv_wait_s"]
    summary["disaggregation"] = {
        "ratio": f"{num_prefill}P:{num_decode}D",
        "placement": disagg.placement,
        "pools": {name: _pool_record(pool, replicas, pool_stat, makespan)
                  for name, pool, replicas, pool_stat in zip(
                      ("prefill", "decode"), resolved.pools, pools, pool_stats, strict=True)},
        "transfer": {
            "mode": disagg.transfer.mode,
            "overhead_s": disagg.transfer.overhead_s,
            "num_transfers": int((~np.isnan(transfer_s)).sum()),
            "bytes": coordinator.bytes_moved,
            "kv_transfer_s": _percentiles(transfer_s[~np.isnan(transfer_s)]),
            "kv_wait_s": _percentiles(wait_s[~np.isnan(wait_s)]),
        },
        "links": coordinator.links.utilization(makespan),
        "threshold_tokens": disagg.threshold_tokens,
        "prefilled_on_decode_pool": int((rows["prefilled_on"] == "decode_pool").sum()),
    }
    summary["requests"] = admission_record(submitted, rejected)
    summary["prefix_cache"] = _prefix_record(all_replicas, resolved)
    summary["run"] = {
        "simulator": "clustersim-0.1 serving core (disaggregated)",
        "cost_model": cost_model_record([*resolved.prefill.cost_models,
                                         *resolved.decode.cost_models]),
        "seed": deployment.seed,
        "deployment": deployment.model_dump(mode="json"),
        "model": resolved.model.name,
        "gpu": " + ".join(dict.fromkeys(pool.gpu.name for pool in resolved.pools)),
        "num_gpus": num_gpus,
        "scheduler": asdict(resolved.decode.scheduler),
        "engine": engine_record(deployment, resolved.decode.cpu_overhead),
        "memory_per_gpu": resolved.decode.memory.as_dict(),
        "workload": {key: value for key, value in workload.metadata.items()
                     if key in ("source", "format", "generator")} | workload.stats(),
    }
    if trace is not None:
        _trace_requests(trace, resolved, requests, num_prefill + num_decode)
    return SimulationResult(summary, rows, trace.to_json() if trace else None,
                            time.perf_counter() - started)


def _rows(requests: Sequence[Request], workload: RequestTrace, num_prefill: int
          ) -> RequestRows:
    rows = request_rows(requests, workload.request_ids)
    rows["prefill_replica_id"] = [r.prefill_replica_id for r in requests]
    rows["prefilled_on"] = ["prefill_pool" if r.prefill_replica_id >= 0 else "decode_pool"
                            for r in requests]
    start = np.array([r.transfer_start_s for r in requests])
    rows["kv_wait_s"] = start - np.array([r.prefill_done_s for r in requests])
    rows["kv_transfer_s"] = np.array([r.transfer_end_s for r in requests]) - start
    return rows


def _prefix_record(replicas: Sequence[Replica], resolved: ResolvedPools) -> dict[str, Any]:
    caches = [replica.scheduler.kv_cache for replica in replicas]
    query = sum(cache.num_query_tokens for cache in caches)
    hits = sum(cache.num_hit_tokens for cache in caches)
    return {"enabled": any(pool.scheduler.enable_prefix_caching for pool in resolved.pools),
            "query_tokens": query, "hit_tokens": hits,
            "hit_rate": hits / query if query else 0.0}


def _trace_requests(trace: PerfettoTrace, resolved: ResolvedPools,
                    requests: Sequence[Request], requests_pid: int) -> None:
    """Name the replicas' processes by pool, and give each request its phases."""
    for offset, (name, pool) in zip((0, len(resolved.prefill.cost_models)),
                                    (("prefill", resolved.prefill),
                                     ("decode", resolved.decode)), strict=True):
        p = pool.deployment.parallelism
        for i in range(len(pool.cost_models)):
            trace.name_process(offset + i, f"{name} replica {i} ({pool.gpu.name}, tp={p.tp}, "
                                           f"pp={p.pp})")
    trace.name_process(requests_pid,
                       f"requests (first {min(len(requests), trace.max_requests)})")
    for r in requests[:trace.max_requests]:
        if r.prefill_replica_id < 0:
            phases = [("prefill and decode (decode pool)", r.first_scheduled_s, r.finish_s)]
        else:
            end = r.transfer_end_s if not math.isnan(r.transfer_end_s) else r.prefill_done_s
            phases = [("queued", r.arrival_s, r.first_scheduled_s),
                      ("prefill", r.first_scheduled_s, r.prefill_done_s),
                      ("wait for decode room", r.prefill_done_s, r.transfer_start_s),
                      ("KV transfer", r.transfer_start_s, r.transfer_end_s),
                      ("decode", end, r.finish_s)]
        trace.add_request_phases(requests_pid, r.request_id, phases)
