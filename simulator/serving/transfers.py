"""KV-cache transfers over shared links: a fluid model with max-min fair sharing.

A transfer is a set of flows, each a byte count over the ports it crosses: the sending
GPU's egress and the receiving GPU's ingress on one tier (``scale_up`` inside a node,
``network`` between nodes; one NIC per GPU and a full-bisection fabric, so the GPUs'
ports are the only shared resources). While flows are active each gets its max-min
fair rate (progressive filling: the most contended port's capacity is split equally
among its flows, those flows are fixed, the rest share what is left), recomputed
whenever a flow starts or ends; one pending SimPy event marks the next flow to end::

    port A ═══ flow 1 ══►            two flows through one port each get half of it,
           ═══ flow 2 ══►            so each takes twice as long as it would alone

A transfer ends when its last flow ends plus the path latency and the fixed overhead
per transfer. Bytes and busy time are counted per port, for the summary's link
utilizations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import simpy

__all__ = ["LinkSharing", "Port", "uncontended_s"]

Port = tuple[str, str, str]  # (GPU, "out" | "in", tier)


@dataclass(eq=False, slots=True)
class _Flow:
    ports: tuple[Port, ...]
    size: float
    remaining: float
    transfer: _Transfer
    rate: float = 0.0


@dataclass(eq=False, slots=True)
class _Transfer:
    num_flows: int
    tail_s: float  # latency + overhead after the last byte
    on_done: Callable[[], None]


@dataclass(slots=True)
class _PortStats:
    bytes: float = 0.0
    busy_s: float = 0.0
    tier: str = ""
    capacity: float = 0.0


@dataclass
class LinkSharing:
    """The flows in progress on a cluster's ports, and what each port has carried.

    Args:
        env: the simulation environment.
        capacity: bytes/s per direction of each port.
    """

    env: simpy.Environment
    capacity: dict[Port, float]
    stats: dict[Port, _PortStats] = field(default_factory=dict)
    _flows: list[_Flow] = field(default_factory=list)
    _last_s: float = 0.0
    _generation: int = 0

    def send(self, flows: Sequence[tuple[tuple[Port, ...], float]], tail_s: float,
             on_done: Callable[[], None]) -> None:
        """Start a transfer of ``flows`` (ports crossed, bytes); call ``on_done`` when
        its last byte has arrived and ``tail_s`` more has passed."""
        live = [(ports, size) for ports, size in flows if size > 0]
        transfer = _Transfer(len(live), tail_s, on_done)
        if not live:
            self._finish(transfer)
            return
        self._advance()
        for ports, size in live:
            for port in ports:
                if port not in self.stats:
                    self.stats[port] = _PortStats(tier=port[2], capacity=self.capacity[port])
            self._flows.append(_Flow(tuple(ports), float(size), float(size), transfer))
        self._reschedule()

    def record_overlap(self, flows: Sequence[tuple[tuple[Port, ...], float]], share: float,
                       busy_s: float) -> None:
        """Count ``share`` of ``flows``' bytes as carried earlier, for ``busy_s`` on each
        of their ports (a layer-wise transfer's part that overlapped its prefill)."""
        for ports, size in flows:
            for port in ports:
                stats = self.stats.setdefault(
                    port, _PortStats(tier=port[2], capacity=self.capacity[port]))
                stats.bytes += size * share
        for port in {port for ports, _ in flows for port in ports}:
            self.stats[port].busy_s += busy_s

    @property
    def num_active(self) -> int:
        return len(self._flows)

    def _advance(self) -> None:
        """Move every flow on to now at its current rate; count bytes and busy time."""
        now = self.env.now
        elapsed = now - self._last_s
        self._last_s = now
        if elapsed <= 0 or not self._flows:
            return
        busy: set[Port] = set()
        for flow in self._flows:
            moved = min(flow.remaining, flow.rate * elapsed)
            flow.remaining -= moved
            for port in flow.ports:
                self.stats[port].bytes += moved
                busy.add(port)
        for port in busy:
            self.stats[port].busy_s += elapsed

    def _share(self) -> None:
        """Max-min fair rates by progressive filling."""
        left = {port: self.capacity[port] for flow in self._flows for port in flow.ports}
        unfixed = set(range(len(self._flows)))
        users: dict[Port, set[int]] = {}
        for i, flow in enumerate(self._flows):
            for port in flow.ports:
                users.setdefault(port, set()).add(i)
        while unfixed:
            share, port = min((left[p] / len(u & unfixed), p) for p, u in users.items()
                              if u & unfixed)
            for i in users[port] & unfixed:
                self._flows[i].rate = share
                unfixed.discard(i)
                for other in self._flows[i].ports:
                    left[other] = max(0.0, left[other] - share)

    def _reschedule(self) -> None:
        done = [flow for flow in self._flows if flow.remaining <= 1e-9 * flow.size]
        for flow in done:
            self._flows.remove(flow)
            flow.transfer.num_flows -= 1
            if flow.transfer.num_flows == 0:
                self._finish(flow.transfer)
        self._generation += 1
        if not self._flows:
            return
        self._share()
        wait = min(flow.remaining / flow.rate for flow in self._flows)
        generation = self._generation
        timer = self.env.timeout(max(wait, 0.0))
        timer.callbacks.append(lambda _: self._on_timer(generation))

    def _on_timer(self, generation: int) -> None:
        if generation != self._generation:
            return  # superseded by a later start or end
        self._advance()
        # NOTE: the flow that set the timer has, up to rounding, nothing left; end it.
        min(self._flows, key=lambda flow: flow.remaining / flow.rate).remaining = 0.0
        self._reschedule()

    def _finish(self, transfer: _Transfer) -> None:
        if transfer.tail_s > 0:
            timer = self.env.timeout(transfer.tail_s)
            timer.callbacks.append(lambda _: transfer.on_done())
        else:
            transfer.on_done()

    def utilization(self, makespan_s: float) -> dict[str, dict[str, float]]:
        """Per tier: bytes carried, the busiest port's busy share and the mean bandwidth
        share of the ports used (bytes / (capacity x makespan))."""
        out: dict[str, dict[str, float]] = {}
        for stats in self.stats.values():
            tier = out.setdefault(stats.tier, {"bytes": 0.0, "ports": 0.0,
                                               "max_busy_fraction": 0.0,
                                               "mean_bandwidth_share": 0.0})
            tier["ports"] += 1
            share = stats.bytes / (stats.capacity * makespan_s) if makespan_s > 0 else 0.0
            tier["mean_bandwidth_share"] += share
            busy = stats.busy_s / makespan_s if makespan_s > 0 else 0.0
            tier["max_busy_fraction"] = max(tier["max_busy_fraction"], busy)
        for tier in out.values():
            tier["bytes"] = 0.0
        for port, stats in self.stats.items():
            if port[1] == "out":  # each byte once, at its sender
                out[stats.tier]["bytes"] += stats.bytes
        for tier in out.values():
            tier["mean_bandwidth_share"] /= tier["ports"]
            tier["ports"] = int(tier["ports"])
        return out


def uncontended_s(flows: Sequence[tuple[tuple[Port, ...], float]],
                  capacity: dict[Port, float]) -> float:
    """How long ``flows`` take on otherwise idle ports (their own contention included)."""
    load: dict[Port, float] = {}
    for ports, size in flows:
        for port in ports:
            load[port] = load.get(port, 0.0) + size
    return max((size / capacity[port] for port, size in load.items()), default=0.0)
