"""Speculative decoding in a deployment: the draft's model, memory, cost and summary.

The scheduler proposes and accepts drafts (``simulator.serving.scheduler``); the cost of
proposing is ``profiles.speculative``'s. Here a deployment's ``speculative`` block becomes
those parts: the draft's shapes (a draft model, or a one-layer head at the target's width
for EAGLE / MTP, none for n-gram lookup), its weights and KV bytes per GPU (held beside
the target's), a proposer cost model on the same GPUs, and the run's acceptance figures.
"""

from __future__ import annotations

from typing import Any

from profiles.cluster import LinkCost
from profiles.cost_model import CostModel
from profiles.errors import ClusterSimError
from profiles.hardware import GPUSpec
from profiles.models import ModelSpec, load_model
from profiles.roofline import RooflineCostModel
from profiles.speculative import SpeculativeCost, draft_head, expected_tokens_per_step
from simulator.serving.config import DeploymentConfig
from simulator.serving.request import Request

__all__ = ["draft_memory", "draft_model", "speculative_record", "with_drafts"]


def draft_model(deployment: DeploymentConfig, model: ModelSpec, where: str = ""
                ) -> ModelSpec | None:
    """The proposer's shapes (None: n-gram lookup, or no speculative decoding).

    Raises:
        ClusterSimError: pipeline parallelism, or a draft whose heads TP cannot split.
    """
    spec = deployment.speculative
    if spec is None or spec.method == "ngram":
        if spec is not None and deployment.parallelism.pp > 1:
            raise ClusterSimError(f"{where}speculative: not modelled with pipeline "
                                  f"parallelism; use pp = 1")
        return None
    if deployment.parallelism.pp > 1:
        raise ClusterSimError(f"{where}speculative: not modelled with pipeline parallelism; "
                              f"use pp = 1")
    if spec.method != "draft_model":
        return draft_head(model)
    assert spec.model is not None
    draft = load_model(spec.model).model_copy(update={"dtype": model.dtype,
                                                      "kv_cache_dtype": model.kv_cache_dtype})
    tp = deployment.parallelism.tp
    if draft.num_attention_heads % tp:
        raise ClusterSimError(
            f"{where}speculative.model: {draft.name}'s {draft.num_attention_heads} attention "
            f"heads do not split over tp={tp}; pick a draft whose heads do")
    if draft.vocab_size != model.vocab_size:
        raise ClusterSimError(
            f"{where}speculative.model: {draft.name} has a vocabulary of {draft.vocab_size:,} "
            f"tokens, {model.name} of {model.vocab_size:,}; a draft must share the target's "
            f"tokenizer")
    return draft


def draft_memory(deployment: DeploymentConfig, draft: ModelSpec | None, tp: int
                 ) -> tuple[float, float]:
    """(weight bytes, KV bytes per token) the draft holds on each GPU. A draft head
    shares the target's embedding and LM head (EAGLE, MTP): only its layer is new."""
    if draft is None:
        return 0.0, 0.0
    kv = draft.num_layers * draft.kv_bytes_per_token_layer(tp)
    assert deployment.speculative is not None
    if deployment.speculative.method == "draft_model":
        return draft.weight_bytes / tp, kv
    two = draft.model_copy(update={"num_layers": 2})
    return (two.weight_bytes - draft.weight_bytes) / tp, kv


def with_drafts(priced: CostModel, draft: ModelSpec | None, deployment: DeploymentConfig,
                gpu: GPUSpec, tp_link: LinkCost, tp_inside_node: bool) -> CostModel:
    """``priced`` with the proposer's passes added to each speculative step."""
    if deployment.speculative is None:
        return priced
    proposer = None if draft is None else RooflineCostModel(
        draft, gpu, deployment.parallelism.tp, 1, tp_link, tp_link,
        tp_inside_node=tp_inside_node)
    return SpeculativeCost(priced, proposer)


def speculative_record(deployment: DeploymentConfig, requests: list[Request]
                       ) -> dict[str, Any] | None:
    """The run's speculative decoding: its settings and the acceptance it had."""
    spec = deployment.speculative
    if spec is None:
        return None
    drafts = sum(r.num_draft_tokens for r in requests)
    accepted = sum(r.num_accepted_tokens for r in requests)
    return {
        "method": spec.method, "num_speculative_tokens": spec.num_speculative_tokens,
        "acceptance_rate": spec.acceptance_rate, "model": spec.model,
        "draft_tokens": drafts, "accepted_tokens": accepted,
        "measured_acceptance": accepted / drafts if drafts else None,
        "expected_tokens_per_step": expected_tokens_per_step(
            spec.acceptance_rate, spec.num_speculative_tokens),
    }
