"""Expert offloading: experts live in host memory, a GPU cache holds some of them, and a
step copies in the touched experts the cache lacks (MoE-Infinity, Mixtral offloading).

Per MoE layer and GPU, ``capacity`` of the GPU's expert slots are resident; a step's
touched slots (experts with routed rows) that are not resident are misses, copied over
the host link before the layer runs, and then resident, evicting by the policy::

    lru        the least recently touched resident expert
    lfu        the least often touched (ties: least recent)
    prefetch   lru eviction, and while layer l-1 computes, the experts predicted for
               layer l (the hottest by the routing statistics, as many as the step
               touches) are copied: their misses hide behind that layer's compute

A miss costs the expert's bytes over the host link; a layer waits for its slowest GPU's
copies. Hits and misses are counted for the run's record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["CacheStats", "ExpertCache"]

Policy = Literal["lru", "lfu", "prefetch"]


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    bytes_copied: float = 0.0

    @property
    def hit_rate(self) -> float:
        touched = self.hits + self.misses
        return self.hits / touched if touched else 1.0


class ExpertCache:
    """The resident experts of every (MoE layer, GPU), and what a step's misses cost.

    Args:
        slots: [layers, ranks, slots] expert per slot (-1 empty), the placement's.
        capacity: resident experts per layer per GPU (at most the slots).
        policy: eviction and prefetch (module docstring).
        expert_bytes: one expert's weights.
        host_bytes_per_s: one GPU's host link.
        predicted: [layers, slots-rank order] share per slot used to rank prefetches
            (the routing statistics' expected rows per slot), for ``prefetch``.
    """

    def __init__(self, slots: np.ndarray, capacity: int, policy: Policy, expert_bytes: float,
                 host_bytes_per_s: float, predicted: np.ndarray) -> None:
        self.slots = slots
        self.capacity = capacity
        self.policy = policy
        self.expert_bytes = expert_bytes
        self.host_bytes_per_s = host_bytes_per_s
        self.predicted = predicted  # [layers, ranks, slots]
        self.valid = slots >= 0
        # Start warm with the hottest experts by the statistics (a loaded server).
        order = np.argsort(-np.where(self.valid, predicted, -np.inf), axis=-1)
        rank_in_order = np.argsort(order, axis=-1)
        self.resident = self.valid & (rank_in_order < capacity)
        self.last_used = np.zeros(slots.shape)
        self.uses = np.zeros(slots.shape)
        self.clock = 0
        self.stats = CacheStats()

    def step(self, rows: np.ndarray, layer_compute_s: np.ndarray,
             layers: np.ndarray | None = None) -> float:
        """Seconds the step's MoE layers wait for copies; updates the caches.

        Args:
            rows: [layers, ranks, slots] rows each slot computes this step.
            layer_compute_s: [layers] each layer's time without copies (what a prefetch
                for the next layer hides behind).
            layers: the MoE layers ``rows`` covers (all when None).
        """
        self.clock += 1
        index = slice(None) if layers is None else layers
        resident = self.resident[index]
        touched = (rows > 0) & self.valid[index]
        misses = touched & ~resident
        hidden = np.zeros(misses.shape, dtype=bool)
        if self.policy == "prefetch":
            # Predicted: as many of the hottest slots as the step touches, per GPU.
            count = touched.sum(axis=-1, keepdims=True)
            order = np.argsort(-np.where(self.valid[index], self.predicted[index], -np.inf),
                               axis=-1)
            rank_in_order = np.argsort(order, axis=-1)
            hidden = misses & (rank_in_order < count)
        miss_count = misses.sum(axis=-1)
        exposed = (misses & ~hidden).sum(axis=-1)
        prefetched = (misses & hidden).sum(axis=-1)
        per_copy = self.expert_bytes / self.host_bytes_per_s
        before = np.roll(layer_compute_s, 1)
        before[0] = 0.0  # the first MoE layer has no layer before it to hide behind
        wait = exposed * per_copy + np.maximum(0.0, prefetched * per_copy - before[:, None])
        self.stats.hits += int((touched & resident).sum())
        self.stats.misses += int(miss_count.sum())
        self.stats.bytes_copied += float(miss_count.sum()) * self.expert_bytes
        # Update: touched become resident and recent; evict down to capacity.
        resident = resident | touched
        last = self.last_used[index]
        uses = self.uses[index]
        last = np.where(touched, self.clock, last)
        uses = uses + touched
        score = last if self.policy != "lfu" else uses + last / (self.clock + 1)
        score = np.where(resident, score, np.inf)
        over = resident.sum(axis=-1, keepdims=True) - self.capacity
        order = np.argsort(score, axis=-1)
        rank_in_order = np.argsort(order, axis=-1)
        evict = resident & (rank_in_order < over)
        self.resident[index] = resident & ~evict
        self.last_used[index] = last
        self.uses[index] = uses
        return float(wait.max(axis=1).sum())
