"""Global routers: which replica a new request goes to.

A router sees each replica through :class:`ReplicaLoad` (outstanding requests, KV use)
and returns an index. Ties go to the lowest replica index, so runs are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from simulator.serving.request import Request

__all__ = ["ROUTERS", "ReplicaLoad", "Router"]


class ReplicaLoad(Protocol):
    @property
    def num_outstanding(self) -> int: ...

    @property
    def kv_usage(self) -> float: ...

    def cached_prefix_tokens(self, request: Request) -> int: ...


class Router(Protocol):
    reads_load: bool  # whether choose() looks at the replicas' state

    def choose(self, request: Request, replicas: Sequence[ReplicaLoad]) -> int: ...


class RoundRobin:
    """Replica 0, 1, ..., n-1, 0, ... regardless of load."""

    reads_load = False

    def __init__(self) -> None:
        self._next = 0

    def choose(self, request: Request, replicas: Sequence[ReplicaLoad]) -> int:
        index = self._next % len(replicas)
        self._next += 1
        return index


class LeastOutstanding:
    """The replica with the fewest unfinished requests (vLLM router / llm-d default)."""

    reads_load = True

    def choose(self, request: Request, replicas: Sequence[ReplicaLoad]) -> int:
        loads = [replica.num_outstanding for replica in replicas]
        return loads.index(min(loads))


class LeastKVUsage:
    """The replica whose KV cache is least full; outstanding requests break ties."""

    reads_load = True

    def choose(self, request: Request, replicas: Sequence[ReplicaLoad]) -> int:
        keys = [(replica.kv_usage, replica.num_outstanding) for replica in replicas]
        return keys.index(min(keys))


class PrefixAware:
    """Scores each replica as llm-d's inference scheduler does, by a weighted sum of
    three scorers each scaled to [0, 1]: the share of the prompt its prefix cache holds,
    how short its queue is (1 - outstanding / the most outstanding), and how free its KV
    cache is (1 - use). The prefix share weighs double, the other two once (an assumption:
    llm-d's weights are configurable); the highest score wins, ties to the lowest index."""

    reads_load = True

    weights = (2.0, 1.0, 1.0)

    def choose(self, request: Request, replicas: Sequence[ReplicaLoad]) -> int:
        most = max(replica.num_outstanding for replica in replicas) or 1
        w_prefix, w_queue, w_kv = self.weights
        scores = [
            w_prefix * replica.cached_prefix_tokens(request) / max(1, request.prompt_tokens)
            + w_queue * (1 - replica.num_outstanding / most)
            + w_kv * (1 - replica.kv_usage)
            for replica in replicas]
        return scores.index(max(scores))


ROUTERS: dict[str, Callable[[], Router]] = {
    "round_robin": RoundRobin,
    "least_outstanding": LeastOutstanding,
    "least_kv": LeastKVUsage,
    "prefix_aware": PrefixAware,
}
