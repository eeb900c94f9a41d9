"""A MoE deployment's experts: its EP layout checked, its placement, the pricer of its
MoE layers (``profiles.moe``) wired to the replica's links, and the run record.

    DeploymentConfig.parallelism (ep, dp) + moe (routing, placement, dispatch)
        ─► expert slots per GPU (the memory plan) ─► ExpertLayers per replica
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from profiles.cluster import ClusterGraph
from profiles.errors import ClusterSimError
from profiles.hardware import GIB, GPUSpec
from profiles.models import DTYPE_BYTES, ModelSpec
from profiles.moe import (
    EPLinks,
    ExpertLayers,
    ExpertPlacement,
    RoutingStats,
    load_placement,
    routing_stats,
)
from simulator.serving.config import DeploymentConfig, MoEConfig
from simulator.serving.presets import ENGINE_PRESETS

__all__ = ["check_experts", "expert_layers", "expert_placement", "moe_record",
           "routing_and_placement"]


def check_experts(deployment: DeploymentConfig, model: ModelSpec, gpu: GPUSpec,
                  where: str) -> int | None:
    """Routed experts per MoE layer each GPU holds in its memory (None: all of its
    share, E / ep); refuses an EP layout or an expert offload the model cannot take."""
    parallel, moe = deployment.parallelism, deployment.moe
    if not model.is_moe:
        if parallel.ep > 1 or moe != MoEConfig():
            field = "parallelism.ep" if parallel.ep > 1 else "moe"
            raise ClusterSimError(f"{where}{field}: {model.name} is a dense model (no "
                                  f"experts); remove it")
        return None
    if parallel.ep == 1 and moe.placement not in ("linear", "round_robin"):
        raise ClusterSimError(f"{where}moe.placement: a placement file needs expert "
                              f"parallelism; set parallelism.ep")
    if deployment.profile is not None and (parallel.ep > 1 or moe.offload is not None):
        raise ClusterSimError(f"{where}profile: measured tables price dense layers; an "
                              f"expert-parallel or expert-offload run is priced by the "
                              f"roofline (remove it)")
    held = (expert_placement(deployment, model).slots_per_rank if parallel.ep > 1
            else model.num_experts)
    if moe.offload is None:
        return held if parallel.ep > 1 else None
    resident = moe.offload.gpu_experts
    if resident >= held:
        raise ClusterSimError(f"{where}moe.offload.gpu_experts={resident}: each GPU holds "
                              f"only {held} experts per layer; lower it below {held} or "
                              f"remove moe.offload")
    if gpu.host is None:
        raise ClusterSimError(f"{where}moe.offload: {gpu.name} has no host memory figures; "
                              f"add a 'host' block to its GPU spec")
    split = parallel.tp if parallel.ep == 1 else 1
    on_host = ((held - resident) * model.mlp_params_per_expert * model.num_moe_layers
               * DTYPE_BYTES[model.dtype] / split)
    if on_host > gpu.host.dram_gib * GIB:
        raise ClusterSimError(
            f"{where}moe.offload: {on_host / GIB:.0f} GiB of experts per GPU in host memory "
            f"exceed its {gpu.host.dram_gib:g} GiB of DRAM; raise gpu_experts or ep")
    return resident


def expert_placement(deployment: DeploymentConfig, model: ModelSpec) -> ExpertPlacement:
    """The deployment's expert placement over its EP ranks.

    Raises:
        ClusterSimError: ep does not divide the experts, or a placement file does not fit.
    """
    ep, name = deployment.parallelism.ep, deployment.moe.placement
    layers, experts = model.num_moe_layers, model.num_experts
    if name == "linear":
        return ExpertPlacement.linear(layers, experts, ep)
    if name == "round_robin":
        return ExpertPlacement.round_robin(layers, experts, ep)
    return load_placement(name, layers, experts, ep)


def routing_and_placement(deployment: DeploymentConfig, model: ModelSpec
                          ) -> tuple[RoutingStats, ExpertPlacement | None] | None:
    """A MoE deployment's routing statistics and (with EP) expert placement, read once
    for all its replicas; None for a dense model."""
    if not model.is_moe:
        return None
    placement = (expert_placement(deployment, model) if deployment.parallelism.ep > 1
                 else None)
    return routing_stats(deployment.moe.routing, model), placement


def expert_layers(deployment: DeploymentConfig, model: ModelSpec, gpu: GPUSpec,
                  graph: ClusterGraph, stage: tuple[str, ...], replica: int,
                  parts: tuple[RoutingStats, ExpertPlacement | None] | None
                  ) -> ExpertLayers | None:
    """The MoE layers' pricer of one replica: its routing, placement (``parts``, from
    :func:`routing_and_placement`) and EP links."""
    if parts is None:
        return None
    parallel, moe = deployment.parallelism, deployment.moe
    stats, placement = parts
    seed = deployment.seed * 1009 + replica
    cache = (None if moe.offload is None
             else (moe.offload.gpu_experts, moe.offload.policy))
    # the engine's fused MoE kernel, where its preset has a fit
    factor = (ENGINE_PRESETS[deployment.engine].moe_gemm_factor
              if deployment.engine is not None else 1.0)
    if parallel.ep == 1:
        return ExpertLayers(model, gpu, tp=parallel.tp, ep=1, tokens_spread=False,
                            stats=stats, seed=seed, cache=cache, gemm_factor=factor)
    nodes = [graph.nodes[name]["node"] for name in stage]
    first = stage[0]
    switch = f"n{nodes[0]}.switch"
    uplink = graph.edges[switch, "network"]
    links = EPLinks(
        ranks_per_node=nodes.count(nodes[0]),
        scale_up_bytes_per_s=graph.edges[first, switch]["bandwidth_bytes_per_s"],
        nic_bytes_per_s=uplink["per_gpu_bandwidth_bytes_per_s"],
        scale_up_latency_s=graph.edges[first, switch]["latency_s"],
        nic_latency_s=uplink["latency_s"])
    return ExpertLayers(model, gpu, tp=parallel.tp, ep=parallel.ep,
                        tokens_spread=parallel.dp > 1, stats=stats,
                        placement=placement, links=links, seed=seed,
                        dispatch=moe.dispatch, cache=cache, gemm_factor=factor)


def _pricer(cost_model: Any) -> ExpertLayers | None:
    """The MoE layers' pricer inside a replica's (possibly wrapped) cost model."""
    while hasattr(cost_model, "inner"):  # offload wrappers
        cost_model = cost_model.inner
    moe = getattr(cost_model, "moe", None)
    if moe is None:  # a profiled model keeps its roofline
        moe = getattr(getattr(cost_model, "roofline", None), "moe", None)
    return moe


def moe_record(deployment: DeploymentConfig, model: ModelSpec, cost_models: Sequence[Any]
               ) -> dict[str, Any] | None:
    """A MoE run's expert layout (routing, placement, slots per GPU, expected imbalance)
    and, with offloaded experts, the caches' hit rate over every replica."""
    if not model.is_moe:
        return None
    pricers = [p for p in (_pricer(c) for c in cost_models) if p is not None]
    moe = pricers[0] if pricers else None
    caches = [p.cache.stats for p in pricers if p.cache is not None]
    hits, misses = sum(c.hits for c in caches), sum(c.misses for c in caches)
    parallel, config = deployment.parallelism, deployment.moe
    routing = config.routing
    return {
        "num_experts": model.num_experts, "moe_layers": model.num_moe_layers,
        "top_k": model.num_experts_per_token, "ep": parallel.ep, "dp": parallel.dp,
        "routing": routing.kind + (f" s={routing.zipf_s:g}" if routing.kind == "zipf" else ""),
        "placement": config.placement,
        "slots_per_gpu": (moe.placement.slots_per_rank if moe is not None and parallel.ep > 1
                          else model.num_experts),
        "expected_imbalance": moe.imbalance() if moe is not None else 1.0,
        "all_to_all": bool(moe is not None and moe.tokens_spread),
        "expert_cache": None if moe is None or moe.cache is None else {
            "policy": moe.cache.policy, "gpu_experts": moe.cache.capacity,
            "hit_rate": hits / (hits + misses) if hits + misses else 1.0, "hits": hits,
            "misses": misses, "copied_gb": sum(c.bytes_copied for c in caches) / 1e9},
    }
