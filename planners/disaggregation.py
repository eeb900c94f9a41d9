"""The planner's disaggregation dimension: which prefill and decode pools, in what ratio.

DistServe's recipe (Zhong et al. 2024, Sec. 4), run on the simulator:

1. Each phase alone: for every prefill configuration (GPU type, TP) the highest rate one
   replica serves with ``attainment`` of requests inside the TTFT SLO (the trace with one
   output token per request); for every decode configuration, the highest rate one
   decode replica serves inside the TPOT SLO behind a prefill pool large enough never to
   hold it back.
2. For each GPU type of each phase (so Splitwise's mixed pools, e.g. H100 prefill and
   A100 decode, are candidates too), placement and GPU budget: the phase configurations
   and replica counts whose slower phase serves the most, ``min(n_p R_p, n_d R_d)``, and
   those that serve the most per GPU used (ties to fewer GPUs); with ``paired``
   placement only pairs that fit one node.

The deployments this yields are candidates of the same search as the colocated ones and
go through the same goodput search under both SLOs, so the Pareto set says where
disaggregation pays and where it does not.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from planners.objectives import STEADY, SteadyState, find_goodput
from profiles.errors import ClusterSimError
from simulator.serving.build import resolve, resolve_pools
from simulator.serving.config import build_deployment
from workloads.schema import RequestTrace

__all__ = ["DisaggregationSpace", "PhaseStudy", "disaggregated_candidates"]

_NO_SLO_S = 1e9  # an SLO nothing misses, for the phase a search does not measure
_MAX_HELPER_REPLICAS = 16


class DisaggregationSpace(BaseModel):
    """Disaggregated deployments to consider (GPU types default to the space's)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    prefill_gpus: list[str] | None = None
    decode_gpus: list[str] | None = None
    prefill_tp: list[int] = [1, 2, 4, 8]
    decode_tp: list[int] = [1, 2, 4, 8]
    placements: list[Literal["by_pool", "paired"]] = ["by_pool"]
    transfer_mode: Literal["layerwise", "after_prefill"] = "layerwise"
    gpu_budgets: list[int] | None = Field(
        default=None, description="total GPUs to size pools for; None: the space's "
                                  "maxima and their halves")
    gpus_per_node: int = Field(default=8, gt=0)


@dataclass
class PhaseStudy:
    """What step 1 measured: goodput per replica of each phase configuration."""

    prefill: dict[tuple[str, int], float] = field(default_factory=dict)
    decode: dict[tuple[str, int], float] = field(default_factory=dict)
    num_simulations: int = 0

    def rows(self) -> list[dict[str, Any]]:
        return [{"phase": phase, "gpu": gpu, "tp": tp, "goodput_per_replica": rate,
                 "goodput_per_gpu": rate / tp}
                for phase, table in (("prefill", self.prefill), ("decode", self.decode))
                for (gpu, tp), rate in sorted(table.items())]


def _one_output(trace: RequestTrace) -> RequestTrace:
    return RequestTrace(trace.arrival_s, trace.prompt_tokens,
                        trace.output_tokens * 0 + 1, trace.priority, trace.request_ids,
                        trace.extras, trace.metadata)


def _upper_rate(deployment: Any, trace: RequestTrace, phase: str) -> float:
    """A rate at or above the phase's goodput: its GPUs' FLOPs over its FLOPs per request."""
    resolved = resolve(deployment) if not deployment.is_disaggregated else \
        getattr(resolve_pools(deployment), phase)
    model, gpu = resolved.model, resolved.gpu
    tokens = trace.prompt_tokens if phase == "prefill" else trace.output_tokens
    flops = model.flops_per_token(0) * max(1.0, float(tokens.mean()))
    return resolved.num_gpus * gpu.peak_flops(model.dtype) * gpu.efficiency.matmul / flops


def disaggregated_candidates(
    model: str, trace: RequestTrace, space: DisaggregationSpace,
    gpu_maxima: dict[str, int], policy: str, ttft_slo_s: float, tpot_slo_s: float,
    attainment: float, engine: str | None = None, steady: SteadyState = STEADY,
) -> tuple[list[dict[str, Any]], PhaseStudy]:
    """The disaggregated deployment mappings of ``space`` (module docstring) and the
    phase measurements they came from."""
    study = PhaseStudy()
    prefill_gpus = space.prefill_gpus or list(gpu_maxima)
    decode_gpus = space.decode_gpus or list(gpu_maxima)
    scheduler = {"policy": policy}
    common: dict[str, Any] = {"model": model, "scheduler": scheduler}
    if engine is not None:
        common["engine"] = engine
    prompts = _one_output(trace)
    for gpu, tp in itertools.product(prefill_gpus, space.prefill_tp):
        if tp > gpu_maxima.get(gpu, 0):
            continue  # more GPUs than the space has of this type
        try:
            deployment = build_deployment(common | {"gpu": gpu, "parallelism": {"tp": tp}})
            upper = _upper_rate(deployment, prompts, "prefill")
        except ClusterSimError:
            continue
        result = find_goodput(deployment, prompts, ttft_slo_s=ttft_slo_s,
                              tpot_slo_s=_NO_SLO_S, attainment=attainment, upper_rate=upper,
                              rule=steady)
        study.num_simulations += result.num_simulations
        if result.rate_per_s > 0:
            study.prefill[(gpu, tp)] = result.rate_per_s
    if not study.prefill:
        return [], study
    helper_gpu, helper_tp = max(study.prefill, key=lambda k: study.prefill[k] / k[1])
    helper_rate = study.prefill[(helper_gpu, helper_tp)]
    for gpu, tp in itertools.product(decode_gpus, space.decode_tp):
        if tp > gpu_maxima.get(gpu, 0):
            continue
        try:
            probe = build_deployment(common | {"gpu": gpu, "disaggregation": {
                "prefill": {"gpu": helper_gpu, "parallelism": {"tp": helper_tp}},
                "decode": {"parallelism": {"tp": tp}}}})
            upper = _upper_rate(probe, trace, "decode")
            helpers = min(_MAX_HELPER_REPLICAS, max(1, math.ceil(upper / helper_rate)))
            deployment = build_deployment(common | {"gpu": gpu, "disaggregation": {
                "prefill": {"gpu": helper_gpu, "replicas": helpers,
                            "parallelism": {"tp": helper_tp}},
                "decode": {"parallelism": {"tp": tp}},
                "transfer": {"mode": space.transfer_mode}}})
        except ClusterSimError:
            continue
        result = find_goodput(deployment, trace, ttft_slo_s=_NO_SLO_S, tpot_slo_s=tpot_slo_s,
                              attainment=attainment, upper_rate=upper, rule=steady)
        study.num_simulations += result.num_simulations
        if result.rate_per_s > 0:
            study.decode[(gpu, tp)] = result.rate_per_s
    return _size_pools(common, space, gpu_maxima, study), study


def _counts(rate_p: float, gpus_p: int, rate_d: float, gpus_d: int, budget_p: int,
            budget_d: int, shared: int | None) -> tuple[int, int] | None:
    """Replica counts whose slower phase serves the most within the budgets."""
    best: tuple[float, int, int, int] | None = None
    for n_p in range(1, budget_p // gpus_p + 1):
        for n_d in range(1, budget_d // gpus_d + 1):
            used = n_p * gpus_p + n_d * gpus_d
            if shared is not None and used > shared:
                continue
            key = (min(n_p * rate_p, n_d * rate_d), -used, n_p, n_d)
            if best is None or key > best:
                best = key
    return None if best is None else (best[2], best[3])


def _size_pools(common: dict[str, Any], space: DisaggregationSpace,
                gpu_maxima: dict[str, int], study: PhaseStudy) -> list[dict[str, Any]]:
    """Per GPU-type pair, placement and GPU budget: the phase configurations and counts
    that serve the most within the budget, and the most per GPU (ties to fewer GPUs)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    pairs = itertools.product(space.prefill_gpus or list(gpu_maxima),
                              space.decode_gpus or list(gpu_maxima))
    for (gpu_p, gpu_d), placement in itertools.product(pairs, space.placements):
        if placement == "paired" and gpu_p != gpu_d:
            continue
        options = [(tp_p, r_p, tp_d, r_d)
                   for (name_p, tp_p), r_p in study.prefill.items() if name_p == gpu_p
                   for (name_d, tp_d), r_d in study.decode.items() if name_d == gpu_d
                   if placement == "by_pool" or tp_p + tp_d <= space.gpus_per_node]
        same = gpu_p == gpu_d
        maxima = (gpu_maxima.get(gpu_p, 0), gpu_maxima.get(gpu_d, 0))
        budgets = space.gpu_budgets or sorted({maxima[0], maxima[0] // 2} if same else
                                              {maxima[0] + maxima[1]})
        for budget in budgets:
            limit_p, limit_d = (budget, budget) if same else maxima
            # the most goodput the budget buys, and the most per GPU (DistServe's aim)
            picks: dict[str, tuple[tuple[float, int], int, int, int, int]] = {}
            for tp_p, rate_p, tp_d, rate_d in options:
                counts = _counts(rate_p, tp_p, rate_d, tp_d, limit_p, limit_d,
                                 budget if same else None)
                if counts is None:
                    continue
                n_p, n_d = counts
                served = min(n_p * rate_p, n_d * rate_d)
                used = n_p * tp_p + n_d * tp_d
                for aim, key in (("total", (served, -used)), ("per_gpu", (served / used, -used))):
                    if aim not in picks or key > picks[aim][0]:
                        picks[aim] = (key, tp_p, tp_d, n_p, n_d)
            for _, tp_p, tp_d, n_p, n_d in picks.values():
                mapping = common | {"gpu": gpu_p, "disaggregation": {
                    "prefill": {"gpu": gpu_p, "replicas": n_p, "parallelism": {"tp": tp_p}},
                    "decode": {"gpu": gpu_d, "replicas": n_d, "parallelism": {"tp": tp_d}},
                    "placement": placement, "transfer": {"mode": space.transfer_mode},
                    "decode_router": "nearest" if placement == "paired" else "least_kv"}}
                key_text = repr(mapping)
                if key_text not in seen:
                    seen.add(key_text)
                    out.append(mapping)
    return out
