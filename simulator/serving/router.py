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


class Router(Protocol):
    def choose(self, request: Request, replicas: Sequence[ReplicaLoad]) -> int: ...


class RoundRobin:
    """Replica 0, 1, ..., n-1, 0, ... regardless of load."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, request: Request, replicas: Sequence[ReplicaLoad]) -> int:
        index = self._next % len(replicas)
        self._next += 1
        return index


class LeastOutstanding:
    """The replica with the fewest unfinished requests (vLLM router / llm-d default)."""

    def choose(self, request: Request, replicas: Sequence[ReplicaLoad]) -> int:
        loads = [replica.num_outstanding for replica in replicas]
        return loads.index(min(loads))


class LeastKVUsage:
    """The replica whose KV cache is least full; outstanding requests break ties."""

    def choose(self, request: Request, replicas: Sequence[ReplicaLoad]) -> int:
        keys = [(replica.kv_usage, replica.num_outstanding) for replica in replicas]
        return keys.index(min(keys))


ROUTERS: dict[str, Callable[[], Router]] = {
    "round_robin": RoundRobin,
    "least_outstanding": LeastOutstanding,
    "least_kv": LeastKVUsage,
}
