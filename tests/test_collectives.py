"""The collective model against published bus bandwidths, and its hand-checkable forms."""

from __future__ import annotations

import pytest

from profiles.cluster import ClusterSpec, LinkCost, build_cluster_graph, link_between
from profiles.collectives import all_reduce_s, all_to_all_s, bus_bandwidth
from profiles.hardware import load_gpu

GB = 1e9


def links(gpu_name: str) -> tuple[LinkCost, LinkCost]:
    graph = build_cluster_graph(ClusterSpec(num_nodes=2, gpus_per_node=8), load_gpu(gpu_name))
    return link_between(graph, "n0.g0", "n0.g1"), link_between(graph, "n0.g0", "n1.g0")


@pytest.mark.parametrize("gpu, published_gbps, source", [
    ("a100", 230.0, "nccl-tests #149: 8x A100 all_reduce busbw ~230 GB/s"),
    ("h100", 370.0, "nccl-tests #212: 8x H100 ring all_reduce ~370 GB/s"),
])
def test_ring_all_reduce_bus_bandwidth_within_ten_percent(gpu: str, published_gbps: float,
                                                          source: str) -> None:
    inside, _ = links(gpu)
    size = 8 * 2**30
    busbw = bus_bandwidth("all_reduce", size, 8, all_reduce_s(size, 8, inside)) / GB
    assert busbw == pytest.approx(published_gbps, rel=0.10), source


def test_nic_point_to_point_within_ten_percent_of_46_to_49_gbps() -> None:
    """nccl-tests #290/#267: ConnectX-7 400G, 46-49 GB/s per NIC."""
    _, across = links("h100")
    size = 2**30
    assert size / across.transfer_s(size) / GB == pytest.approx(47.5, rel=0.10)


def test_tree_saves_latency_steps_and_moves_the_same_bytes() -> None:
    """8 GPUs: ring takes 14 latency steps, the tree 6; the bandwidth term is the same."""
    inside, _ = links("h100")
    saved = all_reduce_s(2**30, 8, inside, "ring") - all_reduce_s(2**30, 8, inside, "tree")
    assert saved == pytest.approx(8 * inside.latency_s)
    assert all_reduce_s(4096, 8, inside, "tree") < all_reduce_s(4096, 8, inside, "ring")


def test_all_to_all_across_nodes_is_limited_by_each_gpus_nic_share() -> None:
    """16 GPUs on 2 nodes, 1 GB per GPU: half leaves the node through a 50 GB/s-class NIC."""
    inside, across = links("h100")
    seconds = all_to_all_s(2**30, 16, 8, inside, across)
    assert seconds == pytest.approx(0.5 * 2**30 / across.bandwidth_bytes_per_s
                                    + across.latency_s)
    assert all_to_all_s(2**30, 8, 8, inside, across) == pytest.approx(
        7 / 8 * 2**30 / inside.bandwidth_bytes_per_s + inside.latency_s)  # inside one node


def test_nvls_all_reduce_reproduces_h200_from_the_h100_calibration() -> None:
    """NVLS efficiency 0.61 comes from the 8x H100 figure (~480 GB/s busbw); the 8x H200
    figure (~475 GB/s, nccl-tests #272) is predicted within 10%."""
    from profiles.collectives import nvls_link

    size = 8 * 2**30
    for gpu, published in (("h100", 480.0), ("h200", 475.0)):
        link = nvls_link(load_gpu(gpu))
        assert link is not None
        busbw = bus_bandwidth("all_reduce", size, 8, all_reduce_s(size, 8, link, "nvls")) / GB
        assert busbw == pytest.approx(published, rel=0.10)
    assert nvls_link(load_gpu("a100")) is None  # NVSwitch gen 2: no in-network reduce
