"""Planning a training run: which TP/PP/DP/CP, ZeRO stage, micro-batch, recomputation and
schedule, for step time, MFU and cost.

Every plan of the space is checked (plan arithmetic, then memory) and, when it can run,
its step is simulated (``simulator.training.step``): a few milliseconds each, so the space is
searched exhaustively. Objectives: step time (min), cost per step (min; price per
GPU-hour x GPUs x step time), and memory headroom (max: GPU memory not used). The Pareto
set is over step time and cost; MFU and headroom ride along.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from planners.launch import torchtitan_args
from planners.objectives import default_prices
from profiles.errors import ClusterSimError
from profiles.hardware import load_gpu
from profiles.models import load_model
from simulator.training.step import simulate_training
from workloads.training import ParallelPlan, TrainingJob

__all__ = ["TrainingCandidate", "TrainingPlan", "TrainingSpace", "plan_training",
           "uneven_split"]


class TrainingSpace(BaseModel):
    """The training plans to consider (every combination that divides the GPU count)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    num_gpus: list[PositiveInt] = Field(min_length=1)
    tp: list[PositiveInt] = [1, 2, 4, 8]
    pp: list[PositiveInt] = [1, 2, 4, 8]
    cp: list[PositiveInt] = [1]
    ep: list[PositiveInt] = [1]
    zero_stage: list[Literal[0, 1, 2, 3]] = [0, 1]
    offload: list[Literal["none", "cpu", "nvme"]] = Field(
        default=["none"], description="none, cpu (ZeRO-Offload), nvme (ZeRO-Infinity)")
    activation_offload_layers: list[NonNegativeInt] = Field(
        default=[0], min_length=1, description="layers whose activations go to the host "
        "(Megatron-Core's CPU offloading; plans with PP or recomputation keep 0)")
    micro_batch: list[PositiveInt] = [1, 2]
    recompute: list[Literal["none", "selective", "full", "op"]] = ["none", "selective", "full"]
    schedules: list[Literal["gpipe", "1f1b", "interleaved"]] = ["1f1b", "interleaved"]
    virtual_stages: int = Field(default=2, ge=2, description="for the interleaved schedule")


@dataclass
class TrainingCandidate:
    index: int
    plan: dict[str, Any]
    micro_batch: int
    status: str = "pending"  # infeasible | evaluated
    reason: str = ""
    step_s: float = math.inf
    mfu: float = 0.0
    cost_per_step_usd: float | None = None
    memory_headroom_gib: float = 0.0
    memory_gib: dict[str, float] = field(default_factory=dict)
    breakdown: dict[str, float] = field(default_factory=dict)  # where the step goes (s)

    def row(self) -> dict[str, Any]:
        return {"index": self.index, "status": self.status, "reason": self.reason,
                **{f"plan.{k}": v for k, v in self.plan.items()},
                "micro_batch": self.micro_batch, "step_s": self.step_s, "mfu": self.mfu,
                "cost_per_step_usd": self.cost_per_step_usd,
                "memory_headroom_gib": self.memory_headroom_gib}


@dataclass
class TrainingPlan:
    candidates: list[TrainingCandidate]
    pareto: list[int]
    best: dict[str, int]
    inputs: dict[str, Any]


def _plans(space: TrainingSpace) -> list[tuple[ParallelPlan, int]]:
    plans = []
    for gpus, tp, pp, cp, ep, zero, offload, layers, mbs, recompute, schedule in \
            itertools.product(space.num_gpus, space.tp, space.pp, space.cp, space.ep,
                              space.zero_stage, space.offload, space.activation_offload_layers,
                              space.micro_batch, space.recompute, space.schedules):
        if gpus % (tp * pp * cp):
            continue
        try:
            plan = ParallelPlan(
                tp=tp, pp=pp, dp=gpus // (tp * pp * cp), cp=cp, ep=ep, zero_stage=zero,
                offload=offload, activation_offload_layers=layers, recompute=recompute,
                schedule=schedule, sequence_parallel=tp > 1,
                virtual_stages=space.virtual_stages if schedule == "interleaved" else 1)
        except ValueError:
            continue
        plans.append((plan, mbs))
    return plans


def uneven_split(plan: ParallelPlan, num_layers: int) -> ParallelPlan:
    """``plan`` as Megatron-Core would split a model whose layers do not divide its
    stages: the embedding and the loss counted as layers (both, or the one that makes
    the count divide), so Llama 3.1 405B's 126 layers run on 8 x 8 chunks; the plan
    unchanged when the layers divide or no such split does."""
    chunks = plan.pp * plan.virtual_stages
    if plan.pp == 1 or num_layers % chunks == 0:
        return plan
    for embedding, loss in ((True, True), (True, False), (False, True)):
        if (num_layers + embedding + loss) % chunks == 0:
            return plan.model_copy(update={"embedding_in_pipeline_split": embedding,
                                           "loss_in_pipeline_split": loss})
    return plan


# What a job's plan says about how its framework runs a layer, rather than how the job
# is spread: every candidate keeps these from the job (a torchtitan job's plans run
# SDPA's FlashAttention-2 and its pointwise kernels, a Megatron job its TP overlap, an
# FP8 recipe its FP8 weights and FP8 gathers).
FRAMEWORK_FIELDS = ("attention_kernel", "pointwise_kernels", "gradient_dtype",
                    "overlap_tp_comm", "overlap_dp_comm", "fp8_param_gather", "fp8_tp_gather")


def plan_training(job: TrainingJob, space: TrainingSpace, *,
                  price_usd_per_gpu_hour: float | None = None) -> TrainingPlan:
    """Simulate every plan of ``space`` for ``job``. The job's own degrees, ZeRO stage,
    recomputation and schedule are ignored; its framework's fields (FRAMEWORK_FIELDS)
    are kept in every plan. A job only torchtitan runs (``ParallelPlan.torchtitan_only``)
    gets only plans torchtitan runs: the others are infeasible, with its reason (FSDP is
    ZeRO-3 without a pipeline and ZeRO-1 with one; no ZeRO-2, no Megatron policy).

    Raises:
        ClusterSimError: unknown model or GPU, a job without a GPU, or a price that is
            not a number of USD, 0 or more.
    """
    if price_usd_per_gpu_hour is not None and not (
            math.isfinite(price_usd_per_gpu_hour) and price_usd_per_gpu_hour >= 0):
        raise ClusterSimError(f"price {price_usd_per_gpu_hour!r}: expected USD per GPU-hour, "
                              f"0 or more")
    if job.gpu is None:
        raise ClusterSimError("training job: no GPU given; set 'gpu' in the job or pass --gpu")
    model = load_model(job.model)
    gpu = load_gpu(job.gpu)
    price = price_usd_per_gpu_hour if price_usd_per_gpu_hour is not None \
        else default_prices().get(gpu.name)
    candidates = []
    for index, (even_plan, micro_batch) in enumerate(_plans(space)):
        plan = uneven_split(even_plan, model.num_layers).model_copy(
            update={name: getattr(job.plan, name) for name in FRAMEWORK_FIELDS})
        candidate = TrainingCandidate(index, plan.model_dump(), micro_batch)
        candidates.append(candidate)
        trial = job.model_copy(update={"plan": plan, "micro_batch": micro_batch})
        if job.plan.torchtitan_only:
            try:
                torchtitan_args(trial, model.num_layers)
            except ClusterSimError as error:
                candidate.status, candidate.reason = "infeasible", f"torchtitan: {error}"
                continue
        try:
            result = simulate_training(trial, model=model)
        except ClusterSimError as error:
            candidate.status, candidate.reason = "infeasible", str(error)
            continue
        candidate.status = "evaluated"
        candidate.step_s = result.step_s
        candidate.mfu = result.mfu
        memory = result.memory.as_gib()
        candidate.memory_gib = memory
        candidate.memory_headroom_gib = memory["capacity"] - memory["total"]
        candidate.breakdown = result.breakdown
        if price is not None:
            candidate.cost_per_step_usd = price * plan.num_gpus * result.step_s / 3600
    evaluated = [c for c in candidates if c.status == "evaluated"]

    def key(c: TrainingCandidate) -> tuple[float, float]:
        cost = c.cost_per_step_usd if c.cost_per_step_usd is not None else c.step_s
        return c.step_s, cost

    pareto = sorted(c.index for c in evaluated if not any(
        key(o)[0] <= key(c)[0] and key(o)[1] <= key(c)[1] and key(o) != key(c)
        for o in evaluated))
    best: dict[str, int] = {}
    if evaluated:
        best["step_s"] = min(evaluated, key=lambda c: (c.step_s, c.index)).index
        best["mfu"] = max(evaluated, key=lambda c: (c.mfu, -c.index)).index
        if price is not None:
            best["cost_per_step_usd"] = min(
                evaluated, key=lambda c: (c.cost_per_step_usd or 0.0, c.index)).index
    inputs = {"job": job.model_dump(mode="json"), "space": space.model_dump(mode="json"),
              "price_usd_per_gpu_hour": price}
    return TrainingPlan(candidates, pareto, best, inputs)
