"""The cost-model seam: what one batch step costs on one replica.

The simulator hands the cost model a :class:`BatchShape` (per request: tokens computed
this step and tokens already in the KV cache) and gets back a :class:`StepCost`: the time
of each pipeline stage plus a named breakdown by operator. Two implementations fit the
seam: the analytical roofline model (``profiles.roofline``) and, later, the measured-profile
model; the simulator only ever calls :meth:`CostModel.predict`, so one replaces the other
without touching it.

A batch's token layout, one row per request::

    request    context_lens (cached)     query_lens (computed now)
    r0 decode  ████████████████████      █            q = 1
    r1 chunk   ██████                    ██████       q = chunk, c = tokens done so far
    r2 prefill                           ████████     q = prompt, c = 0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["OPERATORS", "BatchShape", "CostModel", "StepCost"]

# The named operators of a step, in forward order. Every StepCost has all of them.
OPERATORS = (
    "embedding",
    "qkv_proj",
    "attn_prefill",
    "attn_decode",
    "o_proj",
    "mlp",
    "elementwise",
    "tp_allreduce",
    "ep_all_to_all",
    "pp_send",
    "lm_head",
    "kv_swap",
    "weight_stream",
    "spec_draft",
)


@dataclass(slots=True)
class BatchShape:
    """The work of one step: sequences with one entry per scheduled request.

    Treated as immutable. NOTE: not ``frozen``: a frozen dataclass pays
    ``object.__setattr__`` per field, ~1.4 µs a step on the hot path.

    The lengths are plain int sequences (lists from the scheduler; numpy arrays work
    too): batches hold tens of requests, where a Python pass beats numpy's per-call cost.

    Attributes:
        query_lens: tokens computed this step per request (1 for a decode). [num_reqs]
        context_lens: tokens already in the KV cache per request. [num_reqs]
        num_sampled: requests that sample a token this step (decodes, last prefill chunks);
            only these pay the LM head.
        swap_in_tokens: KV tokens copied host→device before the step (swap preemption).
        swap_out_tokens: KV tokens copied device→host before the step.
        draft_steps: speculative decoding: proposer passes before the step (k drafts
            are proposed one after another); 0 without speculative decoding.
        draft_context_lens: context lengths of the requests that draft.
        group_decodes: more decodes, given only as a count (a decode group's members,
            one token each, not in the lists); only cost models whose
            ``prices_decodes_alone`` holds are given them.
        group_context_tokens: the tokens those decodes already hold, in all.
    """

    query_lens: Sequence[int]
    context_lens: Sequence[int]
    num_sampled: int
    swap_in_tokens: int = 0
    swap_out_tokens: int = 0
    draft_steps: int = 0
    draft_context_lens: Sequence[int] = ()
    group_decodes: int = 0
    group_context_tokens: int = 0

    @property
    def num_tokens(self) -> int:
        return int(sum(self.query_lens)) + self.group_decodes

    def as_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(query_lens, context_lens) as int64 arrays, for vectorized cost models."""
        if self.group_decodes:
            raise ValueError("a batch with grouped decodes has no per-request arrays")
        return (np.asarray(self.query_lens, dtype=np.int64),
                np.asarray(self.context_lens, dtype=np.int64))

    @property
    def num_reqs(self) -> int:
        return len(self.query_lens) + self.group_decodes


@dataclass(slots=True)
class StepCost:
    """What a step costs: per-stage times and where the time goes.

    Treated as immutable (not ``frozen`` for the same reason as :class:`BatchShape`).

    Attributes:
        stage_s: time of each pipeline stage, in stage order (one entry without PP).
        compute_s: seconds of operators bound by arithmetic, summed over stages.
        memory_s: seconds of operators bound by memory traffic, summed over stages.
        communication_s: seconds on links (TP collectives, PP sends, KV swaps).
        flops: useful model FLOPs of the step over the whole replica (for MFU).
        breakdown: builds ``operator_s`` on demand (the simulator never needs it per
            step, so cost models defer the work).
    """

    stage_s: tuple[float, ...]
    compute_s: float = 0.0
    memory_s: float = 0.0
    communication_s: float = 0.0
    flops: float = 0.0
    breakdown: Callable[[], dict[str, float]] | None = None

    @property
    def total_s(self) -> float:
        """Latency of the step through every stage (the sum of stage times)."""
        return sum(self.stage_s)

    @property
    def operator_s(self) -> dict[str, float]:
        """Seconds per operator (every name of ``OPERATORS``), summed over stages."""
        if self.breakdown is None:
            return dict.fromkeys(OPERATORS, 0.0)
        return self.breakdown()


class CostModel(Protocol):
    """Prices batch steps of one replica (its model, GPU, TP/PP and links are fixed)."""

    @property
    def num_stages(self) -> int: ...

    def predict(self, batch: BatchShape) -> StepCost:
        """The cost of running ``batch`` through every pipeline stage of the replica."""
        ...
