"""Where a MoE model's experts live: slots per EP rank, per MoE layer, with each copy's
share of its expert's tokens, and the placement file that carries them.

``slots[l, r, c]`` is the expert in slot c of EP rank r at MoE layer l (-1 empty),
``share[l, r, c]`` the fraction of that expert's tokens the copy takes (1 over its
copies by default: DeepSeek's EPLB replicates hot experts and splits their tokens). A
placement file is JSON::

    {"format": "clustersim-placement/1", "num_experts": 8, "ep": 4,
     "layers": [[[0], [1, 3], ...one list of ranks per expert...], ...per MoE layer],
     "shares": [[[1.0], [0.6, 0.4], ...], ...]}          # optional, per copy
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from profiles.errors import ClusterSimError
from profiles.routing import RoutingStats

__all__ = ["PLACEMENT_FORMAT", "ExpertPlacement", "load_placement"]

PLACEMENT_FORMAT = "clustersim-placement/1"


@dataclass(frozen=True)
class ExpertPlacement:
    """Which expert each slot of each EP rank holds, per MoE layer (module docstring)."""

    slots: np.ndarray  # [layers, ranks, slots_per_rank] int, -1 empty
    share: np.ndarray  # [layers, ranks, slots_per_rank] float

    @property
    def num_ranks(self) -> int:
        return int(self.slots.shape[1])

    @property
    def slots_per_rank(self) -> int:
        return int(self.slots.shape[2])

    @classmethod
    def from_assignment(cls, ranks_of: list[list[list[int]]]) -> ExpertPlacement:
        """From ``ranks_of[layer][expert]`` = the ranks holding a copy of the expert."""
        layers = len(ranks_of)
        num_ranks = 1 + max(r for layer in ranks_of for copies in layer for r in copies)
        held: list[list[list[int]]] = [[[] for _ in range(num_ranks)] for _ in range(layers)]
        for layer, experts in enumerate(ranks_of):
            for expert, copies in enumerate(experts):
                if not copies:
                    raise ValueError(f"layer {layer}: expert {expert} is on no rank")
                for rank in copies:
                    held[layer][rank].append(expert)
        width = max(len(rank) for layer in held for rank in layer)
        slots = np.full((layers, num_ranks, width), -1, dtype=np.int64)
        share = np.zeros((layers, num_ranks, width))
        for layer in range(layers):
            for rank in range(num_ranks):
                for slot, expert in enumerate(held[layer][rank]):
                    slots[layer, rank, slot] = expert
                    share[layer, rank, slot] = 1.0 / len(ranks_of[layer][expert])
        return cls(slots, share)

    @classmethod
    def linear(cls, layers: int, experts: int, ranks: int) -> ExpertPlacement:
        """Experts [r·E/R, (r+1)·E/R) on rank r in every layer (vLLM's default)."""
        if experts % ranks:
            raise ClusterSimError(f"parallelism.ep={ranks} must divide the {experts} experts")
        per = experts // ranks
        return cls.from_assignment([[[e // per] for e in range(experts)]] * layers)

    @classmethod
    def round_robin(cls, layers: int, experts: int, ranks: int) -> ExpertPlacement:
        """Expert e on rank e mod R in every layer."""
        if experts % ranks:
            raise ClusterSimError(f"parallelism.ep={ranks} must divide the {experts} experts")
        return cls.from_assignment([[[e % ranks] for e in range(experts)]] * layers)

    def ranks_of(self) -> list[list[list[int]]]:
        """``[layer][expert]`` = the ranks holding a copy (the inverse of the slots)."""
        layers, ranks, _ = self.slots.shape
        experts = int(self.slots.max()) + 1
        out: list[list[list[int]]] = [[[] for _ in range(experts)] for _ in range(layers)]
        for layer in range(layers):
            for rank in range(ranks):
                for expert in self.slots[layer, rank]:
                    if expert >= 0:
                        out[layer][int(expert)].append(rank)
        return out

    def to_json(self) -> str:
        """The placement file's text (:func:`load_placement` reads it back)."""
        ranks_of = self.ranks_of()
        shares = [[[0.0] * len(copies) for copies in layer] for layer in ranks_of]
        layers, ranks, width = self.slots.shape
        for li in range(layers):
            for rank in range(ranks):
                for slot in range(width):
                    expert = int(self.slots[li, rank, slot])
                    if expert >= 0:
                        index = ranks_of[li][expert].index(rank)
                        shares[li][expert][index] = round(float(self.share[li, rank, slot]), 9)
        return json.dumps({"format": PLACEMENT_FORMAT, "num_experts": len(ranks_of[0]),
                           "ep": self.num_ranks, "layers": ranks_of, "shares": shares}) + "\n"

    def share_matrix(self, experts: int) -> np.ndarray:
        """[layers, experts, ranks] share of each expert's tokens on each rank."""
        layers, ranks, _ = self.slots.shape
        out = np.zeros((layers, experts, ranks))
        layer, rank, slot = np.nonzero(self.slots >= 0)
        np.add.at(out, (layer, self.slots[layer, rank, slot], rank),
                  self.share[layer, rank, slot])
        return out

    def stay_fraction(self, stats: RoutingStats, ranks_per_node: int = 1) -> np.ndarray:
        """[layers] share of pairs that find their next expert on the GPU (with
        ``ranks_per_node`` > 1: the node) of their previous one (ExFlow's coherent
        dispatch); layer 0 has no previous expert, and without co-activation statistics
        the next expert is independent of the last."""
        share = self.share_matrix(stats.num_experts)
        if ranks_per_node > 1:  # fold the ranks of each node together
            nodes = -(-self.num_ranks // ranks_per_node)
            fold = np.zeros((self.num_ranks, nodes))
            fold[np.arange(self.num_ranks), np.arange(self.num_ranks) // ranks_per_node] = 1
            share = share @ fold
        stay = np.zeros(stats.num_layers)
        for li in range(1, stats.num_layers):
            if stats.coactivation is not None:
                pairs = stats.coactivation[li - 1]
            else:
                pairs = np.outer(stats.shares[li - 1], stats.shares[li])
            together = share[li - 1] @ share[li].T
            stay[li] = float((pairs * together).sum() / max(pairs.sum(), 1e-30))
        return stay

    def rank_loads(self, shares: np.ndarray) -> np.ndarray:
        """[layers, ranks] share of routed pairs each rank computes."""
        per_slot = np.where(self.slots >= 0,
                            np.take_along_axis(shares[:, None, :],
                                               np.maximum(self.slots, 0), axis=2), 0.0)
        loads: np.ndarray = (per_slot * self.share).sum(axis=2)
        return loads

    def node_of_rank(self, ranks_per_node: int) -> np.ndarray:
        return np.arange(self.num_ranks) // max(1, ranks_per_node)


def load_placement(path: str | Path, layers: int, experts: int, ep: int) -> ExpertPlacement:
    """Read a placement file: ``layers[l][e]`` lists the EP ranks holding expert e of MoE
    layer l; ``shares[l][e]``, optional, the share of its tokens each copy takes (evenly
    split without it).

    Raises:
        ClusterSimError: unreadable, or not a placement of ``layers`` x ``experts`` over
            ``ep`` ranks.
    """
    where = f"moe.placement {path}"
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ClusterSimError(f"{where}: not linear, round_robin or a readable placement "
                              f"file ({error})") from None
    if not isinstance(data, dict) or data.get("format") != PLACEMENT_FORMAT:
        raise ClusterSimError(f"{where}: field 'format' must be {PLACEMENT_FORMAT!r}")
    if data.get("ep") != ep or data.get("num_experts") != experts:
        raise ClusterSimError(f"{where}: a placement of {data.get('num_experts')} experts "
                              f"over ep={data.get('ep')}, but the run has {experts} experts "
                              f"over ep={ep}")
    ranks_of = data.get("layers")
    ok = (isinstance(ranks_of, list) and len(ranks_of) == layers and all(
        isinstance(layer, list) and len(layer) == experts and all(
            isinstance(copies, list) and copies and all(
                isinstance(r, int) and 0 <= r < ep for r in copies) for copies in layer)
        for layer in ranks_of))
    if not ok:
        raise ClusterSimError(f"{where}: field 'layers' must list, for each of {layers} MoE "
                              f"layers, each of {experts} experts' ranks (0..{ep - 1})")
    assert isinstance(ranks_of, list)
    placement = ExpertPlacement.from_assignment(ranks_of)
    shares = data.get("shares")
    if shares is not None:  # each copy's share of its expert's tokens
        try:
            share = np.zeros_like(placement.share)
            for li, layer in enumerate(ranks_of):
                for expert, copies in enumerate(layer):
                    values = [float(v) for v in shares[li][expert]]
                    if len(values) != len(copies) or abs(sum(values) - 1) > 1e-6:
                        raise ValueError
                    for rank, value in zip(copies, values, strict=True):
                        slot = int(np.flatnonzero(placement.slots[li, rank] == expert)[0])
                        share[li, rank, slot] = value
        except (ValueError, TypeError, IndexError):
            raise ClusterSimError(f"{where}: field 'shares' must give each expert's copies "
                                  f"their token shares, summing to 1") from None
        placement = ExpertPlacement(placement.slots, share)
    if placement.num_ranks != ep:
        padded = np.full((layers, ep, placement.slots_per_rank), -1, dtype=np.int64)
        padded[:, :placement.num_ranks] = placement.slots
        share = np.zeros(padded.shape)
        share[:, :placement.num_ranks] = placement.share
        placement = ExpertPlacement(padded, share)
    return placement
