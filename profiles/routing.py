"""MoE routing: how a model's tokens spread over its experts, per MoE layer.

Per MoE layer, the share of routed (token, expert) pairs each expert gets: ``uniform``;
``zipf`` (the r-th hottest expert's share is proportional to r^-s, the hot experts drawn
anew per layer from the seed); or a routing trace (measured counts). Consecutive layers'
co-activation (how often a token at expert i of layer l goes to expert j of layer l+1,
ExFlow's inter-layer affinity) comes from the trace, or from an ``affinity`` share for
synthetic routing.

A routing trace is a JSON file::

    {"format": "clustersim-routing/1", "num_experts": 8, "top_k": 2,
     "layers": [{"expert_counts": [...8 counts...],
                 "coactivation_next": [[...8...], ...8 rows...]},   # optional, to layer+1
                ...one entry per MoE layer...]}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from profiles.errors import ClusterSimError
from profiles.models import ModelSpec
from profiles.reading import read_json

__all__ = ["ROUTING_FORMAT", "RoutingConfig", "RoutingStats", "load_routing_trace",
           "routing_stats"]

ROUTING_FORMAT = "clustersim-routing/1"


class RoutingConfig(BaseModel):
    """How tokens spread over experts (a deployment's ``moe.routing``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["uniform", "zipf", "trace"] = Field(
        default="uniform", description="how tokens pick experts: evenly, Zipf-skewed hot "
        "experts per layer, or a measured routing trace")
    zipf_s: float = Field(default=1.0, ge=0, le=5, description="Zipf exponent (0: uniform)")
    affinity: float = Field(default=0.0, ge=0, le=1, description="synthetic routing: the "
                            "share of a token's pairs that follow its previous layer's "
                            "expert to a fixed partner expert (ExFlow's affinity)")
    trace: str | None = Field(default=None, description="routing-trace JSON (kind: trace)")
    seed: int = Field(default=0, ge=0, lt=2**64,
                      description="seed of the per-step expert draws")


@dataclass(frozen=True)
class RoutingStats:
    """Per MoE layer, each expert's share of routed pairs, and optionally the expected
    co-activation of consecutive layers' experts (rows: layer l, columns: layer l+1)."""

    shares: np.ndarray  # [moe_layers, experts], rows sum to 1
    coactivation: np.ndarray | None = None  # [moe_layers - 1, experts, experts]

    @property
    def num_layers(self) -> int:
        return int(self.shares.shape[0])

    @property
    def num_experts(self) -> int:
        return int(self.shares.shape[1])


def _zipf_shares(num_layers: int, experts: int, s: float, rng: np.random.Generator
                 ) -> np.ndarray:
    weights = 1.0 / np.arange(1, experts + 1) ** s
    weights /= weights.sum()
    return np.stack([weights[rng.permutation(experts)] for _ in range(num_layers)])


def routing_stats(config: RoutingConfig, model: ModelSpec) -> RoutingStats:
    """The routing statistics of ``model`` under ``config``.

    Raises:
        ClusterSimError: the model is dense, or the trace does not match the model.
    """
    if not model.is_moe:
        raise ClusterSimError(f"moe.routing: {model.name} has no experts")
    layers, experts = model.num_moe_layers, model.num_experts
    if config.kind == "trace":
        if config.trace is None:
            raise ClusterSimError("moe.routing.trace: missing; give the routing-trace file "
                                  "for kind: trace")
        stats = load_routing_trace(config.trace)
        if stats.num_experts != experts or stats.num_layers != layers:
            raise ClusterSimError(
                f"moe.routing.trace: {stats.num_layers} layers of {stats.num_experts} "
                f"experts, but {model.name} has {layers} MoE layers of {experts}")
        return stats
    rng = np.random.default_rng(config.seed)
    if config.kind == "uniform" or config.zipf_s == 0:
        shares = np.full((layers, experts), 1.0 / experts)
    else:
        shares = _zipf_shares(layers, experts, config.zipf_s, rng)
    coactivation = None
    if layers > 1:
        # A pair at expert i follows it to partner[i] in the next layer with probability
        # `affinity`, else picks by the next layer's shares.
        coactivation = np.empty((layers - 1, experts, experts))
        for layer in range(layers - 1):
            partner = np.zeros((experts, experts))
            partner[np.arange(experts), rng.permutation(experts)] = 1.0
            follow = config.affinity * partner + (1 - config.affinity) * shares[layer + 1]
            coactivation[layer] = shares[layer][:, None] * follow
    return RoutingStats(shares, coactivation)


def load_routing_trace(path: str | Path) -> RoutingStats:
    """Read a routing trace (module docstring).

    Raises:
        ClusterSimError: unreadable, or a field is missing or malformed.
    """
    where = f"routing trace {path}"
    data = read_json(path, "routing trace")
    if not isinstance(data, dict) or data.get("format") != ROUTING_FORMAT:
        raise ClusterSimError(f"{where}: field 'format' must be {ROUTING_FORMAT!r}")
    experts = data.get("num_experts")
    layers = data.get("layers")
    if not isinstance(experts, int) or experts < 1:
        raise ClusterSimError(f"{where}: field 'num_experts' must be a positive integer")
    if not isinstance(layers, list) or not layers:
        raise ClusterSimError(f"{where}: field 'layers' must be a non-empty list")
    shares, coactivation = [], []
    for index, layer in enumerate(layers):
        counts = np.asarray(layer.get("expert_counts") if isinstance(layer, dict) else None,
                            dtype=float)
        if counts.shape != (experts,) or (counts < 0).any() or counts.sum() <= 0:
            raise ClusterSimError(f"{where}: layers[{index}].expert_counts must be "
                                  f"{experts} non-negative counts, not all zero")
        shares.append(counts / counts.sum())
        nxt = layer.get("coactivation_next")
        if nxt is not None and index < len(layers) - 1:
            matrix = np.asarray(nxt, dtype=float)
            if matrix.shape != (experts, experts) or (matrix < 0).any():
                raise ClusterSimError(f"{where}: layers[{index}].coactivation_next must be "
                                      f"a {experts} x {experts} matrix of counts")
            coactivation.append(matrix / max(matrix.sum(), 1e-30))
    co = (np.stack(coactivation) if len(coactivation) == len(layers) - 1 and coactivation
          else None)
    return RoutingStats(np.stack(shares), co)
