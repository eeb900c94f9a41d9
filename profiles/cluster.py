"""Clusters as graphs: GPUs in nodes, nodes on a network, and where replicas land.

::

    node 0                                node 1
    ┌───────────────────────────┐         ┌───────────────────────────┐
    │ g0  g1 ... g7             │         │ g8  g9 ... g15            │
    │  └───┴─ scale-up switch ──┼── NIC ──┤  └───┴─ scale-up switch   │
    └───────────────────────────┘    │    └───────────────────────────┘
                                 network switch

A :class:`ClusterSpec` (pydantic, from files or flags) becomes a :class:`ClusterGraph`
(networkx's way of reading a graph, without networkx's import time on every run;
``to_networkx()`` gives the networkx graph) whose GPU-to-switch edges carry the link
each GPU sees (bandwidth per direction, latency).
The bandwidth between two GPUs is the narrowest edge on the path between them; a
replica's tensor-parallel group and its pipeline hops read their links from the graph
once, when the simulation is built, never per step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from profiles.errors import ClusterSimError
from profiles.hardware import GB, GPUSpec

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["ClusterGraph", "ClusterSpec", "LinkCost", "ReplicaPlacement", "build_cluster_graph",
           "place_pools", "place_replicas"]


class _Nodes:
    """``graph.nodes[name]`` (its attributes) and ``graph.nodes(data=True)``."""

    def __init__(self, attributes: dict[str, dict[str, Any]]) -> None:
        self._attributes = attributes

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self._attributes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._attributes)

    def __len__(self) -> int:
        return len(self._attributes)

    def __contains__(self, name: object) -> bool:
        return name in self._attributes

    def __call__(self, data: bool = False) -> list[Any]:
        return list(self._attributes.items()) if data else list(self._attributes)


class _Edges:
    """``graph.edges[u, v]``: the attributes of the edge between ``u`` and ``v``."""

    def __init__(self, adjacent: dict[str, dict[str, dict[str, Any]]]) -> None:
        self._adjacent = adjacent

    def __getitem__(self, pair: tuple[str, str]) -> dict[str, Any]:
        u, v = pair
        return self._adjacent[u][v]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        seen: set[str] = set()
        for u, neighbours in self._adjacent.items():
            for v in neighbours:
                if v not in seen:
                    yield u, v
            seen.add(u)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class ClusterGraph:
    """An undirected graph of named vertices and edges with attributes: the part of
    ``networkx.Graph`` a cluster needs (``add_node``, ``add_edge``, ``nodes[name]``,
    ``nodes(data=True)``, ``edges[u, v]``) and :meth:`shortest_path`."""

    def __init__(self) -> None:
        self._attributes: dict[str, dict[str, Any]] = {}
        self._adjacent: dict[str, dict[str, dict[str, Any]]] = {}
        self.nodes = _Nodes(self._attributes)
        self.edges = _Edges(self._adjacent)

    def add_node(self, name: str, **attributes: Any) -> None:
        self._attributes.setdefault(name, {}).update(attributes)
        self._adjacent.setdefault(name, {})

    def add_edge(self, u: str, v: str, **attributes: Any) -> None:
        for name in (u, v):
            self.add_node(name)
        edge = self._adjacent[u].setdefault(v, {})
        edge.update(attributes)
        self._adjacent[v][u] = edge

    def shortest_path(self, a: str, b: str) -> list[str]:
        """The vertices from ``a`` to ``b`` along the fewest edges (breadth first)."""
        if a not in self._adjacent or b not in self._adjacent:
            raise KeyError(f"{a if a not in self._adjacent else b} is not in the cluster")
        parent: dict[str, str | None] = {a: None}
        queue = deque([a])
        while queue:
            u = queue.popleft()
            if u == b:
                break
            for v in self._adjacent[u]:
                if v not in parent:
                    parent[v] = u
                    queue.append(v)
        if b not in parent:
            raise ValueError(f"no path between {a} and {b}")
        path = [b]
        while (step := parent[path[-1]]) is not None:
            path.append(step)
        return path[::-1]

    def to_networkx(self) -> nx.Graph:
        """The same graph as a ``networkx.Graph`` (for analysis and drawing)."""
        import networkx as nx  # NOTE: only here, so a run never pays its import

        graph = nx.Graph()
        graph.add_nodes_from(self._attributes.items())
        graph.add_edges_from((u, v, dict(self.edges[u, v])) for u, v in self.edges)
        return graph


class ClusterSpec(BaseModel):
    """How many nodes of how many GPUs, all of one SKU."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    num_nodes: int = Field(default=1, gt=0, le=100_000, description="nodes in the cluster")
    gpus_per_node: int = Field(default=8, gt=0, le=1024, description="GPUs per node, joined "
                               "by the GPU's scale-up link (NVLink); nodes by its NIC")

    @property
    def num_gpus(self) -> int:
        return self.num_nodes * self.gpus_per_node


@dataclass(frozen=True, slots=True)
class LinkCost:
    """The effective link between GPUs: bytes/s per direction and one-way latency."""

    bandwidth_bytes_per_s: float
    latency_s: float

    def transfer_s(self, num_bytes: float) -> float:
        return self.latency_s + num_bytes / self.bandwidth_bytes_per_s


@dataclass(frozen=True, slots=True)
class ReplicaPlacement:
    """The GPUs of one replica: ``stage_gpus[s]`` is the TP group of pipeline stage ``s``."""

    replica_id: int
    stage_gpus: tuple[tuple[str, ...], ...]


def gpu_node_id(node: int, gpu: int) -> str:
    return f"n{node}.g{gpu}"


def build_cluster_graph(spec: ClusterSpec, gpu: GPUSpec,
                        node_gpus: Sequence[GPUSpec] | None = None) -> ClusterGraph:
    """The cluster as a graph: GPU, scale-up switch and network-switch vertices.

    Edge attributes: ``bandwidth_bytes_per_s`` (effective, per direction, i.e. the
    catalog figure times the link's efficiency) and ``latency_s``. ``node_gpus`` gives
    each node its own GPU type (a heterogeneous cluster); else every node has ``gpu``.
    """
    graph = ClusterGraph()
    graph.add_node("network", kind="switch")
    if node_gpus is not None and len(node_gpus) != spec.num_nodes:
        raise ValueError("node_gpus must name one GPU type per node")
    for node in range(spec.num_nodes):
        if node_gpus is not None:
            gpu = node_gpus[node]
        scale_up_bw = gpu.scale_up.bandwidth_gbps * GB * gpu.efficiency.scale_up
        nic_bw = gpu.nic_bandwidth_gbps * GB * gpu.efficiency.network
        switch = f"n{node}.switch"
        graph.add_node(switch, kind="switch", node=node)
        for index in range(spec.gpus_per_node):
            name = gpu_node_id(node, index)
            graph.add_node(name, kind="gpu", node=node, sku=gpu.name)
            graph.add_edge(
                name, switch, bandwidth_bytes_per_s=scale_up_bw,
                latency_s=gpu.scale_up.latency_us * 1e-6, tier="scale_up",
            )
        # One NIC per GPU: the node's uplink carries gpus_per_node NICs' worth.
        graph.add_edge(
            switch, "network", bandwidth_bytes_per_s=nic_bw * spec.gpus_per_node,
            per_gpu_bandwidth_bytes_per_s=nic_bw, latency_s=gpu.nic_latency_us * 1e-6,
            tier="network",
        )
    return graph


def link_between(graph: ClusterGraph, a: str, b: str) -> LinkCost:
    """The link a single GPU-to-GPU transfer between ``a`` and ``b`` sees.

    Bandwidth is the narrowest per-GPU edge on the shortest path (a network hop counts
    one NIC's share); latency adds up along the path.
    """
    if a == b:
        return LinkCost(bandwidth_bytes_per_s=float("inf"), latency_s=0.0)
    path = graph.shortest_path(a, b)
    bandwidth = float("inf")
    latency = 0.0
    for u, v in pairwise(path):
        edge = graph.edges[u, v]
        bandwidth = min(
            bandwidth, edge.get("per_gpu_bandwidth_bytes_per_s", edge["bandwidth_bytes_per_s"])
        )
        latency += edge["latency_s"]
    return LinkCost(bandwidth_bytes_per_s=bandwidth, latency_s=latency)


def group_link(graph: ClusterGraph, gpus: tuple[str, ...]) -> LinkCost:
    """The link a collective over ``gpus`` is limited by: the slowest pair's."""
    if len(gpus) <= 1:
        return LinkCost(bandwidth_bytes_per_s=float("inf"), latency_s=0.0)
    links = [link_between(graph, gpus[0], other) for other in gpus[1:]]
    return LinkCost(
        bandwidth_bytes_per_s=min(link.bandwidth_bytes_per_s for link in links),
        latency_s=max(link.latency_s for link in links),
    )


def place_replicas(
    graph: ClusterGraph, spec: ClusterSpec, num_replicas: int, tp: int, pp: int, dp: int = 1
) -> list[ReplicaPlacement]:
    """Pack replicas onto consecutive GPUs: a TP group never straddles nodes if it fits.

    With ``dp`` data-parallel attention ranks a stage is ``dp`` TP groups side by side
    (``stage_gpus[s]`` lists all ``tp x dp`` of them); a stage wider than a node starts
    on a node of its own and spans whole nodes.

    Raises:
        ClusterSimError: the cluster has fewer GPUs than the replicas need, or a TP group
            is larger than a node.
    """
    if tp > spec.gpus_per_node:
        raise ClusterSimError(
            f"parallelism.tp={tp} exceeds gpus_per_node={spec.gpus_per_node}; tensor "
            f"parallelism stays inside a node: lower tp or raise cluster.gpus_per_node"
        )
    needed = num_replicas * tp * pp * dp
    width = tp * dp
    if needed > spec.num_gpus:
        shape = f"tp={tp} x pp={pp}" + (f" x dp={dp}" if dp > 1 else "")
        raise ClusterSimError(
            f"replicas={num_replicas} x {shape} needs {needed} GPUs but the cluster "
            f"has {spec.num_gpus}; raise cluster.num_nodes to {-(-needed // spec.gpus_per_node)}"
            f" or use fewer replicas"
        )
    gpus = [gpu_node_id(node, index) for node in range(spec.num_nodes)
            for index in range(spec.gpus_per_node)]
    placements = []
    cursor = 0
    for replica in range(num_replicas):
        stages = []
        for _ in range(pp):
            # NOTE: a TP group that would straddle two nodes starts on the next node.
            offset = cursor % spec.gpus_per_node
            if offset and offset + width > spec.gpus_per_node:
                cursor += spec.gpus_per_node - offset
            stages.append(tuple(gpus[cursor:cursor + width]))
            cursor += width
        if cursor > len(gpus):
            raise ClusterSimError(
                f"replicas={num_replicas} with tp={tp}, pp={pp} do not pack onto "
                f"{spec.num_nodes} nodes of {spec.gpus_per_node} GPUs; add a node"
            )
        placements.append(ReplicaPlacement(replica_id=replica, stage_gpus=tuple(stages)))
    return placements


def _pack_one(cursor: int, gpus_per_node: int, replica_id: int, tp: int, pp: int
              ) -> tuple[ReplicaPlacement, int]:
    """One replica on consecutive GPUs from ``cursor`` (a TP group never straddles
    nodes; a stage wider than a node, ``tp`` being its tp x dp GPUs, starts a node and
    spans whole ones); returns it and the next free cursor."""
    stages = []
    for _ in range(pp):
        offset = cursor % gpus_per_node
        if offset and offset + tp > gpus_per_node:
            cursor += gpus_per_node - offset
        stages.append(tuple(gpu_node_id(c // gpus_per_node, c % gpus_per_node)
                            for c in range(cursor, cursor + tp)))
        cursor += tp
    return ReplicaPlacement(replica_id=replica_id, stage_gpus=tuple(stages)), cursor


def place_pools(gpus: tuple[GPUSpec, GPUSpec],
                shapes: Sequence[tuple[int, int, int] | tuple[int, int, int, int]],
                gpus_per_node: int, placement: str
                ) -> tuple[list[GPUSpec], tuple[list[ReplicaPlacement], list[ReplicaPlacement]]]:
    """Place a prefill and a decode pool (``shapes``: replicas, tp, pp and optionally dp
    of each; a stage is dp TP groups side by side).

    ``by_pool``: the prefill replicas fill nodes of the prefill GPU, then the decode
    replicas fill nodes of their own (KV crosses the network). ``paired``: both pools on
    one GPU type, prefill replica i and decode replica i on the same node (KV stays on
    the scale-up links; DistServe's placement for clusters with slow networks).

    Returns:
        The GPU type of each node, and the placements of each pool.

    Raises:
        ClusterSimError: a TP group larger than a node, or a pair that does not fit one.
    """
    for pool, shape in zip(("prefill", "decode"), shapes, strict=True):
        if shape[1] > gpus_per_node:
            raise ClusterSimError(
                f"disaggregation.{pool}.parallelism.tp={shape[1]} exceeds gpus_per_node="
                f"{gpus_per_node}; tensor parallelism stays inside a node")
    # From here a stage's width is its tp x dp GPUs.
    widths: list[tuple[int, int, int]] = [
        (shape[0], shape[1] * (shape[3] if len(shape) > 3 else 1), shape[2])
        for shape in shapes]
    pools: tuple[list[ReplicaPlacement], list[ReplicaPlacement]] = ([], [])
    if placement == "by_pool":
        node_gpus: list[GPUSpec] = []
        cursor = 0
        for index, (replicas, tp, pp) in enumerate(widths):
            for replica in range(replicas):
                placed, cursor = _pack_one(cursor, gpus_per_node, replica, tp, pp)
                pools[index].append(placed)
            nodes = -(-cursor // gpus_per_node)
            node_gpus += [gpus[index]] * (nodes - len(node_gpus))
            cursor = nodes * gpus_per_node
        return node_gpus, pools
    if gpus[0].name != gpus[1].name:
        raise ClusterSimError(
            f"disaggregation.placement=paired puts both pools on the same nodes, so both "
            f"need one GPU type (got {gpus[0].name} and {gpus[1].name}); use by_pool")
    sizes = [tp * pp for _, tp, pp in widths]
    if sum(sizes) > gpus_per_node:
        raise ClusterSimError(
            f"disaggregation.placement=paired: a prefill replica ({sizes[0]} GPUs) and a "
            f"decode replica ({sizes[1]} GPUs) must fit one node of {gpus_per_node}; "
            f"use by_pool or smaller replicas")
    cursor = 0
    for i in range(max(widths[0][0], widths[1][0])):
        pair = [index for index in (0, 1) if i < widths[index][0]]
        room = gpus_per_node - cursor % gpus_per_node
        if sum(sizes[index] for index in pair) > room:
            cursor += room
        for index in pair:
            _, tp, pp = widths[index]
            placed, cursor = _pack_one(cursor, gpus_per_node, i, tp, pp)
            pools[index].append(placed)
    return [gpus[0]] * -(-cursor // gpus_per_node), pools
