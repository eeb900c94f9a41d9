"""The static side of a run: resolve a deployment into its wired-up parts.

    DeploymentConfig ─► model, GPU, scheduler, memory plan ─► cluster graph, placements
                     ─► one cost model per replica (its placement decides its links)

A colocated deployment resolves into one :class:`ResolvedDeployment`; a disaggregated
one into two (one per pool) over one shared cluster graph whose nodes may hold different
GPU types (:class:`ResolvedPools`). Also here: the run's environment, its result type,
and what the engine derives from the workload (requests, prompt content, closed-loop
turns), shared by the colocated and the disaggregated run.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from profiles.cluster import (
    ClusterGraph,
    ClusterSpec,
    LinkCost,
    ReplicaPlacement,
    build_cluster_graph,
    group_link,
    link_between,
    place_pools,
    place_replicas,
)
from profiles.cost_model import BatchShape, CostModel
from profiles.errors import ClusterSimError
from profiles.hardware import GB, GIB, GPUSpec, load_gpu
from profiles.memory import MemoryPlan, plan_memory
from profiles.models import ModelSpec, load_model
from profiles.offload import AttentionPool, OffloadedAttention, StreamedWeights, WeightStream
from profiles.profile_format import load_profile
from profiles.profiled import ProfiledCostModel
from profiles.roofline import RooflineCostModel, dense_roofline
from simulator.serving.config import (
    AttentionOffloadConfig,
    DeploymentConfig,
    SchedulerSettings,
    apply_formats,
    resolve_scheduler,
    with_engine_defaults,
)
from simulator.serving.engine_costs import engine_overhead
from simulator.serving.experts import check_experts, expert_layers, routing_and_placement
from simulator.serving.kv_cache import KVCacheManager, PrefixCachingKVCacheManager
from simulator.serving.presets import CpuOverhead, engine_scheduler_defaults
from simulator.serving.request import Request
from simulator.serving.rows import RequestRows
from simulator.serving.scheduler import SchedulerConfig
from simulator.serving.speculative import draft_memory, draft_model, with_drafts
from simulator.serving.token_content import Segment, prompt_segments, shareable_tokens
from workloads.schema import RequestTrace

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ResolvedDeployment",
    "ResolvedPools",
    "SimEnvironment",
    "SimulationResult",
    "admission_record",
    "check_workload",
    "cost_model_record",
    "make_kv_cache",
    "make_requests",
    "offload_record",
    "prefill_saturation_tokens",
    "resolve",
    "resolve_pools",
    "set_token_content",
    "workload_segments",
]


class SimEnvironment(simpy.Environment):
    """The SimPy environment plus the run context: the seeded random generator."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = np.random.default_rng(seed)


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
    placements: tuple[ReplicaPlacement, ...] = ()

    @property
    def num_gpus(self) -> int:
        return self.deployment.replicas * self.deployment.parallelism.gpus

    @property
    def attention_devices(self) -> int:
        """Lamina's attention devices over all replicas (not in ``num_gpus``)."""
        attention = self.deployment.offload.decode_attention
        return 0 if attention is None else self.deployment.replicas * attention.devices


@dataclass(frozen=True)
class ResolvedPools:
    """A disaggregated deployment: its two pools on one cluster graph."""

    deployment: DeploymentConfig
    prefill: ResolvedDeployment
    decode: ResolvedDeployment
    graph: ClusterGraph

    @property
    def model(self) -> ModelSpec:
        return self.prefill.model

    @property
    def num_gpus(self) -> int:
        return self.prefill.num_gpus + self.decode.num_gpus

    @property
    def pools(self) -> tuple[ResolvedDeployment, ResolvedDeployment]:
        return self.prefill, self.decode


@dataclass
class SimulationResult:
    """What a run produced. ``error`` is a one-line user error, else ``None``.

    ``rows`` are the per-request results as numpy columns; ``requests`` is the same as a
    pandas DataFrame, made (and pandas imported) when first asked for.
    """

    summary: dict[str, Any] | None
    rows: RequestRows | None
    trace: dict[str, Any] | None
    runtime_s: float
    error: str | None = None
    stopped: bool = False  # a stop rule ended the run early (simulate's stop_rule)

    @property
    def ok(self) -> bool:
        return self.error is None

    @functools.cached_property
    def requests(self) -> pd.DataFrame | None:
        return None if self.rows is None else self.rows.to_pandas()


def _settle(deployment: DeploymentConfig, where: str = ""
            ) -> tuple[ModelSpec, GPUSpec, SchedulerSettings, SchedulerConfig, MemoryPlan]:
    """Model, GPU, scheduler and memory of a colocated deployment (or one pool)."""
    model = apply_formats(load_model(deployment.model), deployment)
    gpu = load_gpu(deployment.gpu_name)
    tp, pp = deployment.parallelism.tp, deployment.parallelism.pp
    if tp > model.num_attention_heads or model.num_attention_heads % tp:
        raise ClusterSimError(f"{where}parallelism.tp={tp} must divide {model.name}'s "
                              f"{model.num_attention_heads} attention heads")
    if pp > model.num_layers:
        raise ClusterSimError(f"{where}parallelism.pp={pp} exceeds {model.name}'s "
                              f"{model.num_layers} layers")
    parallel = deployment.parallelism
    slots = check_experts(deployment, model, gpu, where)
    draft_weights, draft_kv = draft_memory(deployment, draft_model(deployment, model, where),
                                           tp)
    settings = deployment.scheduler
    if deployment.engine in ("vllm-v1", "vllm-v1-0.15") and settings.max_num_partial_prefills:
        raise ClusterSimError(
            f"{where}scheduler.max_num_partial_prefills: vLLM's V1 engine refuses it at start "
            f"(only V0 limited partial prefills); drop it, or use engine vllm-v0 or none")
    if deployment.engine is not None:
        settings = with_engine_defaults(
            settings, engine_scheduler_defaults(deployment.engine, gpu.hbm_gib, gpu.name))
    try:
        scheduler = resolve_scheduler(settings, model, deployment.engine,
                                      "max_num_seqs" in deployment.scheduler.model_fields_set)
        memory = plan_memory(
            model, gpu, tp=tp, pp=pp, block_size=scheduler.block_size,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            max_num_batched_tokens=scheduler.max_num_batched_tokens,
            max_num_seqs=scheduler.max_num_seqs, swap_space_gib=settings.swap_space_gib,
            runtime_overhead_gib=deployment.runtime_overhead_gib,
            offloaded_weight_bytes=deployment.offload.cpu_offload_gb * GIB,
            ep=parallel.ep, dp=parallel.dp, expert_slots=slots,
            draft_weight_bytes=draft_weights, draft_kv_bytes_per_token=draft_kv,
        )
        _check_host(deployment, gpu, settings.swap_space_gib, scheduler.enable_prefix_caching)
    except ClusterSimError as error:
        if not where:
            raise
        raise ClusterSimError(f"{where.rstrip('.')}: {error}") from None
    attention = deployment.offload.decode_attention
    if attention is not None:
        memory = replace(memory, num_gpu_blocks=_attention_pool_blocks(
            model, attention, scheduler.block_size, deployment.runtime_overhead_gib))
    if settings.num_gpu_blocks_override is not None:
        memory = replace(memory, num_gpu_blocks=settings.num_gpu_blocks_override)
    speculative = deployment.speculative
    if speculative is not None:
        scheduler = replace(scheduler, num_speculative_tokens=speculative.num_speculative_tokens,
                            acceptance_rate=speculative.acceptance_rate, seed=deployment.seed)
    if parallel.dp > 1:  # the engine's budgets are per DP rank; one queue feeds them all
        scheduler = replace(scheduler, max_num_seqs=parallel.dp * scheduler.max_num_seqs,
                            max_num_batched_tokens=parallel.dp
                            * scheduler.max_num_batched_tokens)
    if model.kv_token_equivalents(scheduler.max_model_len) > memory.max_kv_tokens:
        raise ClusterSimError(
            f"{where}scheduler.max_model_len={scheduler.max_model_len} tokens do not fit in "
            f"the KV cache ({memory.max_kv_tokens} tokens per replica); set --max-model-len "
            f"{memory.max_kv_tokens} or less, or raise tp/pp or gpu_memory_utilization"
        )
    return model, gpu, settings, scheduler, memory


def _check_host(deployment: DeploymentConfig, gpu: GPUSpec, swap_space_gib: float,
                prefix_caching: bool) -> None:
    """Offloaded weights and host KV space must fit the host tier they are put in."""
    offload = deployment.offload
    if offload.kv_offloading_size and not prefix_caching:
        raise ClusterSimError(
            "offload.kv_offloading_size keeps evicted prefix-cache blocks on the host: "
            "turn on scheduler.enable_prefix_caching (or use an engine preset with it)")
    gpus = deployment.parallelism.tp * deployment.parallelism.pp
    if not offload.cpu_offload_gb and not offload.kv_offloading_size:
        return
    if gpu.host is None:
        raise ClusterSimError(
            f"offload.cpu_offload_gb: {gpu.name} has no host memory figures in its GPU "
            f"spec; add a 'host' block (dram_gib, nvme_gib, ...) to offload weights")
    on_host = offload.kv_offloading_size / gpus + swap_space_gib
    if offload.weights_tier == "host":
        on_host += offload.cpu_offload_gb
    elif offload.cpu_offload_gb > gpu.host.nvme_gib:
        raise ClusterSimError(
            f"offload.cpu_offload_gb={offload.cpu_offload_gb:g} exceeds the "
            f"{gpu.host.nvme_gib:g} GiB of NVMe per GPU on {gpu.name}; lower it or raise tp/pp")
    if on_host > gpu.host.dram_gib:
        raise ClusterSimError(
            f"offload: {on_host:g} GiB per GPU on the host (cpu_offload_gb, "
            f"kv_offloading_size / GPUs, swap_space_gib) exceeds the {gpu.host.dram_gib:g} "
            f"GiB of host DRAM per GPU on {gpu.name}; lower them or raise tp/pp")


def _attention_pool_blocks(model: ModelSpec, attention: AttentionOffloadConfig,
                           block_size: int, runtime_overhead_gib: float) -> int:
    """KV blocks the attention devices hold: their memory (no weights on them) over one
    block's bytes across every layer and KV head."""
    gpu = load_gpu(attention.gpu)
    usable = gpu.hbm_bytes * attention.gpu_memory_utilization - runtime_overhead_gib * GIB
    block = model.kv_bytes_per_token * block_size
    return max(0, int(attention.devices * usable // block))


def _attention_pool(deployment: DeploymentConfig, model: ModelSpec, gpu: GPUSpec
                    ) -> AttentionPool | None:
    attention = deployment.offload.decode_attention
    if attention is None:
        return None
    pool_gpu = load_gpu(attention.gpu)
    unbounded = LinkCost(bandwidth_bytes_per_s=float("inf"), latency_s=0.0)
    roofline = RooflineCostModel(model, pool_gpu, attention.devices, 1, unbounded, unbounded)
    gpus = deployment.parallelism.tp * deployment.parallelism.pp
    nic = min(gpu.nic_bandwidth_gbps * gpu.efficiency.network,
              pool_gpu.nic_bandwidth_gbps * pool_gpu.efficiency.network) * GB
    return AttentionPool(
        attention=roofline, bandwidth_bytes_per_s=min(gpus, attention.devices) * nic,
        latency_s=(gpu.nic_latency_us + pool_gpu.nic_latency_us) * 1e-6,
        overlap=attention.overlap, num_layers=model.num_layers,
        bytes_per_decode_row_layer=2.0 * (2 * model.q_size + 2 * model.kv_size),
        kv_bytes_per_token=model.kv_bytes_per_token)


def _weight_stream(deployment: DeploymentConfig, gpu: GPUSpec) -> WeightStream | None:
    offload = deployment.offload
    if not offload.cpu_offload_gb or gpu.host is None:
        return None
    bandwidth = gpu.host_link.bandwidth_gbps * GB
    if offload.weights_tier == "nvme":
        bandwidth = min(bandwidth, gpu.host.nvme_read_gbps * GB)
    return WeightStream(offload.cpu_offload_gb * GIB, bandwidth,
                        gpu.hbm_bandwidth_gbps * GB * gpu.efficiency.memory, offload.prefetch)


def _wire(deployment: DeploymentConfig, parts: tuple[ModelSpec, GPUSpec, SchedulerSettings,
                                                     SchedulerConfig, MemoryPlan],
          graph: ClusterGraph, placements: Sequence[ReplicaPlacement]) -> ResolvedDeployment:
    """One cost model per placed replica, its links read from the graph."""
    model, gpu, _, scheduler, memory = parts
    tp, pp, dp = deployment.parallelism.tp, deployment.parallelism.pp, deployment.parallelism.dp
    if deployment.profile is not None and gpu.power_limit_w is not None:
        raise ClusterSimError(f"profile {deployment.profile}: measured kernel tables hold no "
                              f"power limit, and gpu runs at {gpu.power_limit_w:g} W; drop "
                              "the @...W limit or --profile")
    profile = (load_profile(deployment.profile, expected_gpu=gpu.name)
               if deployment.profile is not None else None)
    cost_models: list[CostModel] = []
    experts = routing_and_placement(deployment, model)  # read once for every replica
    for placement in placements:
        stages = placement.stage_gpus
        pp_link = (link_between(graph, stages[0][0], stages[1][0]) if pp > 1
                   else group_link(graph, ()))
        tp_group = stages[0][:tp]
        inside_node = len({graph.nodes[name]["node"] for name in tp_group}) == 1
        moe = expert_layers(deployment, model, gpu, graph, stages[0], placement.replica_id,
                            experts)
        roofline = (dense_roofline(model, gpu, tp, pp, group_link(graph, tp_group), pp_link,
                                    inside_node, dp) if moe is None and not model.is_moe else
                    RooflineCostModel(model, gpu, tp, pp, group_link(graph, tp_group), pp_link,
                                      tp_inside_node=inside_node, dp=dp, moe=moe))
        priced: CostModel = (ProfiledCostModel(profile, roofline) if profile is not None
                             else roofline)
        priced = with_drafts(priced, draft_model(deployment, model), deployment, gpu,
                             group_link(graph, tp_group), inside_node)
        pool = _attention_pool(deployment, model, gpu)
        if pool is not None:
            priced = OffloadedAttention(priced, pool)
        stream = _weight_stream(deployment, gpu)
        cost_models.append(StreamedWeights(priced, stream) if stream is not None else priced)
    return ResolvedDeployment(deployment, model, gpu, scheduler, memory, tuple(cost_models),
                              engine_overhead(deployment, model, gpu), tuple(placements))


def resolve(deployment: DeploymentConfig) -> ResolvedDeployment:
    """Build and check the static side of a colocated run (no simulation yet).

    Raises:
        ClusterSimError: unknown model or GPU, a deployment that does not fit the
            cluster, weights or max_model_len that do not fit in memory, or a
            disaggregated deployment (:func:`resolve_pools` resolves those).
    """
    if deployment.is_disaggregated:
        raise ClusterSimError("a disaggregated deployment resolves per pool (resolve_pools)")
    parts = _settle(deployment)
    cluster = deployment.cluster_spec()
    graph = build_cluster_graph(cluster, parts[1])
    parallel = deployment.parallelism
    placements = place_replicas(graph, cluster, deployment.replicas, parallel.tp, parallel.pp,
                                parallel.dp)
    return _wire(deployment, parts, graph, placements)


# The prefill pool's default token budget: the smallest of these at which a prefill's
# time per token is within _SATURATION of its best (DistServe, Sec. 3.1: past that length
# a bigger prefill batch adds latency and no throughput).
_SATURATION_CANDIDATES = (512, 1024, 2048, 4096, 8192, 16384)
_SATURATION = 1.1


def prefill_saturation_tokens(cost_model: CostModel, limit: int) -> int:
    """The prefill batch length (tokens) past which the pool's GPUs are saturated."""
    sizes = [n for n in _SATURATION_CANDIDATES if n <= limit] or [limit]
    per_token = [cost_model.predict(BatchShape([n], [0], 1)).total_s / n for n in sizes]
    best = min(per_token)
    return next(n for n, t in zip(sizes, per_token, strict=True) if t <= _SATURATION * best)


def resolve_pools(deployment: DeploymentConfig) -> ResolvedPools:
    """Build and check a disaggregated deployment: both pools on one cluster graph.

    The prefill pool's token budget, unless set, is its saturation length
    (:func:`prefill_saturation_tokens`), and never below the longest prompt the pool must
    take whole when it does not chunk.

    Raises:
        ClusterSimError: as :func:`resolve`, per pool (the message names the pool), or a
            placement the cluster cannot hold.
    """
    disagg = deployment.disaggregation
    assert disagg is not None
    prefill_d, decode_d = deployment.pool("prefill"), deployment.pool("decode")
    prefill_parts = _settle(prefill_d, "disaggregation.prefill.")
    decode_parts = _settle(decode_d, "disaggregation.decode.")
    gpus = (prefill_parts[1], decode_parts[1])
    shapes = [(d.replicas, d.parallelism.tp, d.parallelism.pp, d.parallelism.dp)
              for d in (prefill_d, decode_d)]
    per_node = (deployment.cluster.gpus_per_node if deployment.cluster is not None
                else max(8, shapes[0][1], shapes[1][1]))
    node_gpus, placements = place_pools(gpus, shapes, per_node, disagg.placement)
    if deployment.cluster is not None and deployment.cluster.num_nodes < len(node_gpus):
        raise ClusterSimError(
            f"cluster.num_nodes={deployment.cluster.num_nodes}: the pools need "
            f"{len(node_gpus)} nodes of {per_node} GPUs ({disagg.placement} placement); "
            f"raise it or use fewer replicas")
    graph = build_cluster_graph(ClusterSpec(num_nodes=len(node_gpus), gpus_per_node=per_node),
                                gpus[0], node_gpus=node_gpus)
    prefill = _wire(prefill_d, prefill_parts, graph, placements[0])
    pool_scheduler = prefill_d.scheduler
    if "max_num_batched_tokens" not in pool_scheduler.model_fields_set:
        budget = prefill_saturation_tokens(prefill.cost_models[0],
                                           prefill.scheduler.max_model_len)
        if not prefill.scheduler.enable_chunked_prefill:
            budget = max(budget, prefill.scheduler.max_model_len)
        tuned = prefill_d.model_copy(update={"scheduler": pool_scheduler.model_copy(
            update={"max_num_batched_tokens": budget})})
        prefill = _wire(tuned, _settle(tuned, "disaggregation.prefill."), graph,
                        placements[0])
    decode = _wire(decode_d, decode_parts, graph, placements[1])
    return ResolvedPools(deployment, prefill, decode, graph)


def make_requests(workload: RequestTrace) -> list[Request]:
    """The engine's requests of a trace, ids by trace position."""
    requests = [
        Request(request_id=i, arrival_s=float(arrival), prompt_tokens=int(prompt),
                output_tokens=int(output), priority=int(priority))
        for i, (arrival, prompt, output, priority) in enumerate(zip(
            workload.arrival_s.tolist(), workload.prompt_tokens.tolist(),
            workload.output_tokens.tolist(), workload.priority.tolist(), strict=True))
    ]
    for request, alpha in zip(requests, workload.extras.get("acceptance_rate", ()),
                              strict=False):
        request.acceptance_rate = alpha  # speculative decoding: the request's own rate
    return requests


def make_kv_cache(resolved: ResolvedDeployment) -> KVCacheManager:
    """A replica's KV block pool as the deployment sizes it: paged, reserving
    max_model_len per request (Orca, static batching), or prefix caching; sliding-window
    layers hold their window only."""
    memory, scheduler, model = resolved.memory, resolved.scheduler, resolved.model
    window = model.sliding_window if model.num_local_layers else 0
    share = model.num_global_layers / model.num_layers
    if scheduler.enable_prefix_caching:
        return PrefixCachingKVCacheManager(memory.num_gpu_blocks, memory.block_size,
                                           host_kv_blocks(resolved), window=window,
                                           global_share=share)
    reserve = scheduler.max_model_len if scheduler.kv_allocation == "reserve_max" else None
    return KVCacheManager(memory.num_gpu_blocks, memory.block_size, memory.num_cpu_blocks,
                          reserve_tokens=reserve, window=window, global_share=share)


def host_kv_blocks(resolved: ResolvedDeployment) -> int:
    """Blocks the host tier of the prefix cache holds: its GiB over one block's bytes on
    all the replica's GPUs."""
    size = resolved.deployment.offload.kv_offloading_size
    if not size:
        return 0
    return int(size * GIB // (resolved.memory.kv_block_bytes * resolved.num_gpus))


MAX_LISTED_REJECTIONS = 100  # rejected requests the summary names one by one


def check_workload(workload: RequestTrace, max_model_len: int
                   ) -> tuple[RequestTrace, list[dict[str, Any]]]:
    """The requests the engine admits, and those it rejects as vLLM answers 400: a
    prompt plus output longer than ``max_model_len`` (which the memory plan has already
    checked fits the KV cache, so an admitted request can always run).

    Raises:
        ClusterSimError: an empty trace, or one whose every request is rejected.
    """
    if len(workload) == 0:
        raise ClusterSimError("workload: the trace has no requests")
    total = workload.prompt_tokens + workload.output_tokens
    too_long = total > max_model_len
    if not too_long.any():
        return workload, []
    rejected = [{"request_id": workload.request_ids[i],
                 "prompt_tokens": int(workload.prompt_tokens[i]),
                 "output_tokens": int(workload.output_tokens[i]),
                 "reason": f"prompt_tokens + output_tokens = {int(total[i])} exceeds "
                           f"max_model_len={max_model_len}"}
                for i in np.flatnonzero(too_long)]
    if too_long.all():
        raise ClusterSimError(
            f"workload: every request is longer than max_model_len={max_model_len} (request "
            f"{rejected[0]['request_id']!r}: {rejected[0]['reason']}); raise --max-model-len "
            f"or trim the trace")
    return workload.take(~too_long), rejected


def admission_record(submitted: int, rejected: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary's request count: submitted = finished + rejected, and who was."""
    return {"submitted": submitted, "finished": submitted - len(rejected),
            "rejected": len(rejected), "rejected_requests": rejected[:MAX_LISTED_REJECTIONS]}


def cost_model_record(cost_models: Sequence[CostModel]) -> dict[str, Any]:
    """Which cost model priced the run, and how much of it came from measured tables."""
    unwrapped = []
    for model in cost_models:
        while isinstance(model, StreamedWeights | OffloadedAttention):
            model = model.inner
        unwrapped.append(model)
    profiled = [model for model in unwrapped if isinstance(model, ProfiledCostModel)]
    if not profiled:
        return {"kind": "roofline", "measured_share": 0.0}
    measured = sum(model.measured_s for model in profiled)
    total = measured + sum(model.fallback_s for model in profiled)
    meta = profiled[0].profile.metadata
    return {"kind": "profiled", "profile": str(profiled[0].profile.folder),
            "profile_gpu": meta.gpu, "profile_date": meta.date,
            "measured_share": measured / total if total else 0.0,
            "steps_with_fallback": sum(model.num_fallbacks for model in profiled)}


def offload_record(resolved: ResolvedDeployment) -> dict[str, Any]:
    """The offload knobs and what the weight stream costs per step."""
    record: dict[str, Any] = resolved.deployment.offload.model_dump()
    stream = _weight_stream(resolved.deployment, resolved.gpu)
    record["weight_stream_s_per_step"] = stream.seconds if stream is not None else 0.0
    record["weight_stream_gbps"] = (stream.bandwidth_bytes_per_s / GB if stream is not None
                                    else 0.0)
    record["attention_devices"] = resolved.attention_devices
    return record


# the trace fields that say which requests' tokens are the same (workload_segments)
_TOKEN_IDENTITY = ("prefix_id", "block_hashes", "prompt_id", "session_id")


def shares_tokens(workload: RequestTrace) -> bool:
    """Whether any request of ``workload`` may share token content with another (it has a
    token identity field); without, a prefix cache cannot hit."""
    return any(name in workload.extras for name in _TOKEN_IDENTITY)


def set_token_content(requests: Sequence[Request], workload: RequestTrace) -> None:
    """Give each request its prompt's content and how much of its tokens other requests
    share (prefix caching). A trace with no token identity at all shares nothing: each
    prompt is its own content (the requests' default) and no token is shareable."""
    if not shares_tokens(workload):
        for request in requests:
            request.num_shareable_tokens = 0
        return
    segments = workload_segments(workload)
    for request, prompt, shareable in zip(
            requests, segments, shareable_tokens(segments, workload.output_tokens),
            strict=True):
        request.prompt_segments = prompt
        request.num_shareable_tokens = shareable


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
