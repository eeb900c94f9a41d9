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

What a serving engine runs for TP inside a node (``engine_all_reduce_s``): vLLM's custom
all-reduce over NVLink (not over PCIe) for messages up to 8 MiB in groups of 2, 4, 6 or 8,
NCCL above.
Its one-shot kernel (every rank reads the whole buffer of each peer and reduces it) is
chosen for two GPUs, and for messages under 512 KiB (4 GPUs or fewer) or 256 KiB (more);
the two-shot kernel (a reduce-scatter, then an all-gather, by direct peer loads) above::

    one-shot   launch + 2 latency + (n-1) S / link
    two-shot   launch + 4 latency + 2(n-1)/n S / link

with the launch of the GPU's fitted streaming kernels, and the per-step latency and link
bandwidth (capped at the link's own rate: peer loads do not reduce in the switch) of its
fitted NCCL all-reduce. The thresholds
are vLLM's (``custom_all_reduce``, versions 0.6 to 0.10); no measured custom all-reduce
table has checked the kernel times yet. NCCL itself (``all_reduce_fitted_s``, for
training and large messages) is fitted to measured tables inside a node.
"""

from __future__ import annotations

import math

from profiles.cluster import LinkCost
from profiles.hardware import GB, GPUSpec
from profiles.operator_times import all_reduce_fitted_s

__all__ = ["CUSTOM_ALL_REDUCE_MAX_BYTES", "all_gather_s", "all_reduce_s", "all_to_all_s",
           "bus_bandwidth", "custom_all_reduce_s", "engine_all_reduce_s", "nvls_link",
           "reduce_scatter_s"]

CUSTOM_ALL_REDUCE_MAX_BYTES = 8 * 2**20
_CUSTOM_ALL_REDUCE_SIZES = (2, 4, 6, 8)


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


def custom_all_reduce_s(gpu: GPUSpec, num_bytes: float, n: int) -> float | None:
    """vLLM's custom all-reduce inside a node (module docstring), or None where it does
    not apply (a size or group it does not take, or a GPU without a fitted all-reduce)."""
    fit = gpu.kernels.all_reduce if gpu.kernels is not None else None
    if (fit is None or n not in _CUSTOM_ALL_REDUCE_SIZES
            or not gpu.scale_up.kind.startswith("nvlink")
            or num_bytes > CUSTOM_ALL_REDUCE_MAX_BYTES):
        return None
    link = gpu.scale_up.bandwidth_gbps * GB * min(1.0, fit.bandwidth)
    latency = fit.latency_us * 1e-6
    launch = (gpu.kernels.stream.launch_us if gpu.kernels is not None
              and gpu.kernels.stream is not None else fit.launch_us) * 1e-6
    one_shot = n == 2 or num_bytes < (512 if n <= 4 else 256) * 2**10
    if one_shot:
        return launch + 2 * latency + (n - 1) * num_bytes / link
    return launch + 4 * latency + 2 * (n - 1) / n * num_bytes / link


def engine_all_reduce_s(gpu: GPUSpec, num_bytes: float, n: int, link: LinkCost,
                        inside_node: bool) -> float:
    """The TP all-reduce a serving engine runs: its custom kernel where it applies, the
    fitted NCCL ring inside a node, or the link model (across nodes, or no fit)."""
    if n <= 1:
        return 0.0
    if inside_node:
        custom = custom_all_reduce_s(gpu, num_bytes, n)
        if custom is not None:
            return custom
        fitted = all_reduce_fitted_s(gpu, num_bytes, n)
        if fitted is not None:
            return float(fitted)
    return all_reduce_s(num_bytes, n, link)
