"""Speculative decoding's costs: the proposer's passes before the target verifies.

A speculative step (vLLM's ``--speculative-config``) proposes k draft tokens per decoding
request, one after another, then runs the target once over each request's known token
and its drafts (k + 1 query tokens, priced by the target's own cost model as any chunk).
What proposing costs depends on the method::

    ngram        prompt lookup on the host: no GPU time (its CPU share is in the
                 engine's per-step overhead)
    eagle,       a one-layer draft head at the target's width plus the LM head, run k
    eagle3, mtp  times over the drafting requests (EAGLE; DeepSeek's multi-token
                 prediction module)
    draft_model  a smaller model run k times over the drafting requests, on the same
                 GPUs and tensor parallelism

Each proposer pass is priced as a decode step of its model over the drafting requests at
their contexts at the start of the step (k is small against a context, so the growth
within the step is left out). Acceptance (which drafts the target keeps) is the
scheduler's, not the cost model's.
"""

from __future__ import annotations

from typing import Literal

from profiles.cost_model import BatchShape, CostModel, StepCost
from profiles.models import ModelSpec

__all__ = ["PROPOSERS", "SpeculativeCost", "draft_head", "expected_tokens_per_step"]

PROPOSERS = ("ngram", "eagle", "eagle3", "mtp", "draft_model")
Proposer = Literal["ngram", "eagle", "eagle3", "mtp", "draft_model"]


def expected_tokens_per_step(alpha: float, k: int) -> float:
    """Tokens a decoding request gains per step with k drafts each accepted with chance
    alpha, in order (the first rejection ends the run): 1 + alpha + ... + alpha^k."""
    if not 0.0 <= alpha <= 1.0 or k < 0:
        raise ValueError("alpha must be in [0, 1] and k >= 0")
    if alpha == 1.0:
        return float(k + 1)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def draft_head(model: ModelSpec) -> ModelSpec:
    """An EAGLE / MTP draft head of ``model``: one dense decoder layer at its width, with
    its embedding and LM head."""
    return model.model_copy(update={
        "name": f"{model.name}-draft-head", "num_layers": 1, "num_experts": 0,
        "num_experts_per_token": 0, "first_dense_layers": 0})


class SpeculativeCost:
    """A cost model that adds the proposer's passes to the first stage of each step.

    Args:
        inner: the target's cost model (it prices the verify step).
        proposer: the draft's cost model (None: ngram, free on the GPU).
    """

    def __init__(self, inner: CostModel, proposer: CostModel | None) -> None:
        self.inner = inner
        self.proposer = proposer

    @property
    def num_stages(self) -> int:
        return self.inner.num_stages

    def draft_s(self, batch: BatchShape) -> float:
        """Seconds the proposer takes before ``batch`` is verified."""
        if not batch.draft_steps or self.proposer is None or not batch.draft_context_lens:
            return 0.0
        contexts = list(batch.draft_context_lens)
        one = self.proposer.predict(BatchShape([1] * len(contexts), contexts, len(contexts)))
        return batch.draft_steps * one.total_s

    def predict(self, batch: BatchShape) -> StepCost:
        cost = self.inner.predict(batch)
        draft = self.draft_s(batch)
        if not draft:
            return cost
        inner_breakdown = cost.breakdown

        def breakdown() -> dict[str, float]:
            ops = dict(inner_breakdown()) if inner_breakdown is not None else {}
            ops["spec_draft"] = ops.get("spec_draft", 0.0) + draft
            return ops

        stages = (cost.stage_s[0] + draft, *cost.stage_s[1:])
        return StepCost(stages, cost.compute_s, cost.memory_s + draft, cost.communication_s,
                        cost.flops, breakdown)
