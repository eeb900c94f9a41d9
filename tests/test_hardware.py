"""Hardware catalog, cluster graph and replica placement."""

from __future__ import annotations

import json

import pytest

from profiles.cluster import ClusterSpec, build_cluster_graph, link_between, place_replicas
from profiles.errors import ClusterSimError
from profiles.hardware import list_gpus, load_gpu


def test_catalog_has_required_gpus_with_sources() -> None:
    names = {gpu.name for gpu in list_gpus()}
    assert {"A100-SXM4-80GB", "H100-SXM5-80GB", "H200-SXM-141GB", "MI250X-GCD",
            "MI300X"} <= names
    for gpu in list_gpus():
        for figure in ("peak_tflops", "hbm", "scale_up", "nic", "efficiency"):
            assert gpu.sources.get(figure), f"{gpu.name} has no source for {figure}"


def test_short_names_and_peaks() -> None:
    assert load_gpu("H100").peak_flops("bf16") == pytest.approx(989.4e12)
    assert load_gpu("a100").peak_flops("fp8") == load_gpu("a100").peak_flops("fp16")
    assert load_gpu("mi250x").hbm_gib == 64


def test_l40s_is_in_the_catalog_as_its_datasheet_says() -> None:
    """L40S: 362.05 dense BF16 TFLOP/s, 733 FP8, 864 GB/s GDDR6 of which 45 GiB usable
    with ECC, 142 SMs, no NVLink (its GPUs talk over PCIe)."""
    gpu = load_gpu("l40s")
    assert gpu.peak_flops("bf16") == pytest.approx(362.05e12)
    assert gpu.peak_flops("fp8") == pytest.approx(733e12)
    assert gpu.hbm_gib == 45.0 and gpu.hbm_bandwidth_gbps == 864.0
    assert gpu.gemm_tiling.compute_units == 142
    assert not gpu.scale_up.kind.startswith("nvlink")


def test_blackwell_ultra_is_in_the_catalog_as_its_specifications_say() -> None:
    """B300 (HGX/DGX) and GB300 NVL72: Blackwell's dense BF16 and FP8 rates (2,250/4,500
    and 2,500/5,000 TFLOP/s), 288 GB of HBM3e at 8 TB/s, one 800 Gb/s NIC per GPU, an
    8-GPU NVLink domain for B300 and the 72-GPU rack for GB300, and their board power."""
    b300, gb300 = load_gpu("b300"), load_gpu("gb300")
    assert b300.peak_flops("bf16") == load_gpu("b200").peak_flops("bf16") == 2250e12
    assert gb300.peak_flops("fp8") == load_gpu("gb200").peak_flops("fp8") == 5000e12
    assert b300.hbm_gib == gb300.hbm_gib == 288.0
    assert b300.nic_bandwidth_gbps == gb300.nic_bandwidth_gbps == 100.0
    assert (b300.scale_up_gpus, gb300.scale_up_gpus) == (8, 72)
    assert (b300.tdp_w, gb300.tdp_w) == (1100, 1400)


def test_unknown_gpu_is_a_clear_error() -> None:
    with pytest.raises(ClusterSimError, match="not in the catalog.*a100"):
        load_gpu("v100")


def test_gpu_file_with_bad_field_names_it(tmp_path) -> None:
    entry = load_gpu("a100").model_dump()
    entry["hbm_gib"] = -1
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(entry))
    with pytest.raises(ClusterSimError, match="hbm_gib"):
        load_gpu(str(path))


def test_links_inside_and_across_nodes() -> None:
    """Inside a node the scale-up link binds; across nodes a NIC's share does."""
    gpu = load_gpu("h100")
    graph = build_cluster_graph(ClusterSpec(num_nodes=2, gpus_per_node=8), gpu)
    inside = link_between(graph, "n0.g0", "n0.g1")
    across = link_between(graph, "n0.g0", "n1.g0")
    assert inside.bandwidth_bytes_per_s == pytest.approx(450e9 * gpu.efficiency.scale_up)
    assert across.bandwidth_bytes_per_s == pytest.approx(50e9 * gpu.efficiency.network)
    assert across.latency_s > inside.latency_s


def test_placement_keeps_tp_groups_inside_nodes() -> None:
    gpu = load_gpu("a100")
    spec = ClusterSpec(num_nodes=2, gpus_per_node=8)
    graph = build_cluster_graph(spec, gpu)
    placements = place_replicas(graph, spec, num_replicas=2, tp=4, pp=2)
    assert placements[0].stage_gpus == (("n0.g0", "n0.g1", "n0.g2", "n0.g3"),
                                        ("n0.g4", "n0.g5", "n0.g6", "n0.g7"))
    assert placements[1].stage_gpus[0][0] == "n1.g0"
    with pytest.raises(ClusterSimError, match="needs 24 GPUs"):
        place_replicas(graph, spec, num_replicas=3, tp=4, pp=2)
