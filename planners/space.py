"""Search spaces: which deployments a planner may try, as data (pydantic, serializable).

A serving space crosses GPU types and counts, TP, PP, replicas, scheduler policies and
knobs, and for a MoE model expert parallelism with and without data-parallel attention;
``extra`` carries dimensions other features add (dotted deployment fields, e.g.
``{"scheduler.enable_prefix_caching": [true, false]}``), so offloading and the like plug
in without a new planner. A candidate is a plain deployment mapping, validated like any
deployment file.
"""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from planners.disaggregation import DisaggregationSpace
from profiles.models import load_model

__all__ = ["GPUChoice", "ServingSpace"]


class GPUChoice(BaseModel):
    """One GPU type and how many of it a deployment may use."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    max_gpus: int = Field(gt=0)


class ServingSpace(BaseModel):
    """The serving deployments to consider."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    gpus: list[GPUChoice] = Field(min_length=1)
    tp: list[int] = [1, 2, 4, 8]
    pp: list[int] = [1]
    dp: list[int] | None = Field(
        default=None, description="data-parallel attention ranks per replica (with expert "
        "parallelism); None: 1, 2, 4, 8 and 16 for a MoE model, 1 for a dense one")
    expert_parallel: list[bool] | None = Field(
        default=None, description="shard experts over each replica's tp x dp GPUs; None: "
        "both for a MoE model, off for a dense one")
    replicas: list[int] | None = Field(
        default=None, description="replica counts; None: every count the GPUs allow")
    policies: list[str] = ["running-first"]
    max_num_seqs: list[int | None] = [None]
    max_num_batched_tokens: list[int | None] = [None]
    extra: dict[str, list[Any]] = {}
    colocated: bool = Field(default=True, description="include colocated deployments")
    disaggregation: DisaggregationSpace | None = Field(
        default=None, description="also size prefill/decode pools (planners.disaggregation)")

    def candidates(self, model: str) -> list[dict[str, Any]]:
        """Every colocated deployment mapping of the space, in a fixed order (the
        disaggregated ones are sized from measured phases, in plan_serving)."""
        out: list[dict[str, Any]] = []
        if not self.colocated:
            return out
        extra_keys = sorted(self.extra)
        moe = load_model(model).is_moe
        dps = self.dp if self.dp is not None else ([1, 2, 4, 8, 16] if moe else [1])
        eps = (self.expert_parallel if self.expert_parallel is not None
               else ([False, True] if moe else [False]))
        layouts = [(tp, pp, dp, expert) for tp, pp, dp, expert in itertools.product(
            self.tp, self.pp, dps, eps) if (dp == 1 or (expert and pp == 1))
            and not (expert and tp * dp == 1)]
        for gpu in self.gpus:
            for tp, pp, dp, expert in layouts:
                per_replica = tp * pp * dp
                counts = self.replicas or list(range(1, gpu.max_gpus // per_replica + 1))
                for replicas in counts:
                    if replicas * per_replica > gpu.max_gpus:
                        continue
                    for policy, seqs, tokens, *extras in itertools.product(
                            self.policies, self.max_num_seqs, self.max_num_batched_tokens,
                            *(self.extra[key] for key in extra_keys)):
                        scheduler: dict[str, Any] = {"policy": policy}
                        if seqs is not None:
                            scheduler["max_num_seqs"] = seqs
                        if tokens is not None:
                            scheduler["max_num_batched_tokens"] = tokens
                        candidate: dict[str, Any] = {
                            "model": model, "gpu": gpu.name, "replicas": replicas,
                            "parallelism": {"tp": tp, "pp": pp}, "scheduler": scheduler}
                        if expert:
                            candidate["parallelism"] |= {"dp": dp, "ep": tp * dp}
                        for key, value in zip(extra_keys, extras, strict=True):
                            target = candidate
                            *parents, leaf = key.split(".")
                            for parent in parents:
                                target = target.setdefault(parent, {})
                            target[leaf] = value
                        out.append(candidate)
        return out
