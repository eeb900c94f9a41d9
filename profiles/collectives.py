"""Collective communication: an alpha-beta model per link tier, ring and tree algorithms.

Every transfer costs alpha (the link's latency) per algorithm step plus bytes over the
link's achieved bandwidth (beta), on the tier the group spans: the scale-up link inside a
node, a GPU's NIC across nodes (``profiles.cluster``). For n GPUs and a buffer of S bytes::

    ring all-reduce       2(n-1) steps, 2(n-1)/n · S per GPU            (bandwidth-optimal)
    NVLS all-reduce       2 steps, S up to the switch and S back: the switch reduces
                          (NVLink SHARP on NVSwitch gen 3: H100, H200), at its own efficiency
    tree all-reduce       2·ceil(log2 n) steps, 2·S per GPU over the tree (latency-optimal,
                          NCCL's double binary tree: both trees carry half the data)
    all-gather,
    reduce-scatter        (n-1) steps, (n-1)/n · S per GPU
    all-to-all            (n-1)/n · S per GPU; across nodes the part leaving a node goes
                          through each GPU's own NIC share (the bottleneck)

Bus bandwidth, as nccl-tests reports it: algbw x 2(n-1)/n for all-reduce, x (n-1)/n for
all-gather and reduce-scatter. Tests hold these against published measurements.
"""

from __future__ import annotations

import math

from profiles.cluster import LinkCost
from profiles.hardware import GPUSpec

__all__ = ["all_gather_s", "all_reduce_s", "all_to_all_s", "bus_bandwidth", "nvls_link",
           "reduce_scatter_s"]


def nvls_link(gpu: GPUSpec) -> LinkCost | None:
    """The link an NVLS all-reduce sees, or None where the GPU's switch has no NVLS."""
    if gpu.efficiency.nvls is None:
        return None
    return LinkCost(bandwidth_bytes_per_s=gpu.scale_up.bandwidth_gbps * 1e9
                    * gpu.efficiency.nvls, latency_s=gpu.scale_up.latency_us * 1e-6)


def all_reduce_s(num_bytes: float, n: int, link: LinkCost, algorithm: str = "ring") -> float:
    """Seconds of an all-reduce of ``num_bytes`` over ``n`` GPUs on ``link`` (for
    ``nvls``, the link from :func:`nvls_link`)."""
    if n <= 1:
        return 0.0
    if algorithm == "nvls":
        return 2 * link.latency_s + num_bytes / link.bandwidth_bytes_per_s
    if algorithm == "ring":
        steps = 2 * (n - 1)
        return steps * link.latency_s + steps / n * num_bytes / link.bandwidth_bytes_per_s
    if algorithm == "tree":
        steps = 2 * math.ceil(math.log2(n))
        return steps * link.latency_s + 2 * num_bytes / link.bandwidth_bytes_per_s * (n - 1) / n
    raise ValueError(f"unknown all-reduce algorithm {algorithm!r}; use ring, tree or nvls")


def all_gather_s(num_bytes: float, n: int, link: LinkCost) -> float:
    """All-gather of a ``num_bytes`` result (each GPU contributes num_bytes / n)."""
    if n <= 1:
        return 0.0
    return (n - 1) * link.latency_s + (n - 1) / n * num_bytes / link.bandwidth_bytes_per_s


reduce_scatter_s = all_gather_s  # the same traffic, in reverse


def all_to_all_s(num_bytes: float, n: int, gpus_per_node: int, inside: LinkCost,
                 across: LinkCost) -> float:
    """All-to-all where every GPU sends ``num_bytes`` in total, split evenly over ``n``.

    The share bound for other nodes, (n - gpus in my node)/n, crosses this GPU's NIC;
    the share for GPUs of the same node crosses the scale-up link. The slower bounds it.
    """
    if n <= 1:
        return 0.0
    local = min(n, gpus_per_node)
    remote_share = (n - local) / n
    local_share = (local - 1) / n
    seconds = local_share * num_bytes / inside.bandwidth_bytes_per_s + inside.latency_s
    if remote_share > 0:
        seconds = max(seconds, remote_share * num_bytes / across.bandwidth_bytes_per_s
                      + across.latency_s)
    return seconds


def bus_bandwidth(collective: str, num_bytes: float, n: int, seconds: float) -> float:
    """nccl-tests' bus bandwidth in bytes/s for a measured or predicted time."""
    algbw = num_bytes / seconds
    if collective == "all_reduce":
        return algbw * 2 * (n - 1) / n
    if collective in ("all_gather", "reduce_scatter"):
        return algbw * (n - 1) / n
    return algbw
