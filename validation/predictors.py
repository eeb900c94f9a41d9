"""Predictors: for each record kind, the simulator's prediction of the measured metric.

Each runs the same models a simulation uses (the GEMM tiling model, the collective
model, the training step simulator, the serving simulator replaying our reference runs),
so a record measures the code users run, not a fit made for the record.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from profiles.cluster import ClusterSpec, LinkCost, build_cluster_graph, group_link, link_between
from profiles.collectives import all_reduce_s, bus_bandwidth, nvls_link
from profiles.gemm import gemm_time_terms
from profiles.hardware import load_gpu
from profiles.models import ModelSpec
from profiles.training_cost import layer_cost
from simulator.training import simulate_training
from validation.reference.compare import compare_reference
from workloads.training import ParallelPlan, TrainingJob

__all__ = ["PENDING_KINDS", "PREDICTORS"]


def _gemm_ceiling(scenario: dict[str, Any]) -> float:
    """The best achieved TFLOP/s over a sweep of GEMM shapes, as a maximum-achievable
    benchmark reports it: m and n over ``sweep`` = [start, stop, step], k fixed, priced
    as the cost models price GEMMs (the fitted kernels where the GPU has them)."""
    gpu = load_gpu(scenario["gpu"])
    dtype, k = scenario.get("dtype", "bf16"), scenario["k"]
    start, stop, step = scenario["sweep"]
    sizes = range(start, stop + 1, step)
    return max(float(2.0 * m * n * k / gemm_time_terms(gpu, m, n, k, dtype)[0] / 1e12)
               for m in sizes for n in sizes)


def _allreduce_busbw(scenario: dict[str, Any]) -> float:
    """Bus bandwidth (GB/s) of an all-reduce inside one node, with the record's algorithm
    (ring, or NVLS where the GPU's switch has it). busbw = algbw x 2(n-1)/n, nccl-tests'
    definition."""
    gpu = load_gpu(scenario["gpu"])
    n = int(scenario["num_gpus"])
    size = float(scenario["message_bytes"])
    algorithm = scenario.get("algorithm", "ring")
    link = nvls_link(gpu) if algorithm == "nvls" else None
    if link is None:
        algorithm = "ring"
        graph = build_cluster_graph(ClusterSpec(num_nodes=1, gpus_per_node=max(n, 8)), gpu)
        link = group_link(graph, tuple(f"n0.g{i}" for i in range(n)))
    return bus_bandwidth("all_reduce", size, n, all_reduce_s(size, n, link, algorithm)) / 1e9


def _nic_p2p_bandwidth(scenario: dict[str, Any]) -> float:
    """GB/s of one GPU-to-GPU transfer between two nodes (one NIC each)."""
    gpu = load_gpu(scenario["gpu"])
    graph = build_cluster_graph(ClusterSpec(num_nodes=2, gpus_per_node=8), gpu)
    size = float(scenario["message_bytes"])
    return size / link_between(graph, "n0.g0", "n1.g0").transfer_s(size) / 1e9


_GPU_NAMES = {"A100-80GB": "a100", "A100": "a100", "H100-SXM-80GB": "h100",
              "H200-SXM-141GB": "h200"}


def _gpt(scenario: dict[str, Any]) -> ModelSpec:
    """Megatron's GPT of the record's shape: 4h MLP, learned positions, vocab 51,200."""
    h, heads = int(scenario["hidden"]), int(scenario["heads"])
    return ModelSpec(name=f"gpt-{scenario.get('params_b', '?')}b", num_layers=int(
        scenario["layers"]), hidden_size=h, num_attention_heads=heads, num_kv_heads=heads,
        head_dim=h // heads, intermediate_size=4 * h, vocab_size=51200,
        max_position_embeddings=int(scenario["seq"]), mlp_kind="standard",
        norm_kind="layernorm", linear_bias=True, learned_position_embeddings=True,
        dtype="fp16", kv_cache_dtype="fp16")


def _training_job(scenario: dict[str, Any]) -> TrainingJob:
    """The record's run as a job. Unstated settings take Megatron's defaults of the time:
    micro-batch 1, 1F1B (interleaved when the notes say so), unfused attention; "ckpt"
    and "full" mean full recomputation, "selective+SP" selective with sequence
    parallelism."""
    recompute = str(scenario.get("recompute", "none"))
    interleave = int(scenario.get("interleave", 1))
    tp, pp = int(scenario.get("tp", 1)), int(scenario.get("pp", 1))
    return TrainingJob(
        model=str(scenario["model"]), seq_len=int(scenario["seq"]),
        global_batch=int(scenario.get("gbs", int(scenario.get("mbs", 1))
                                      * int(scenario.get("dp", 1)))),
        micro_batch=int(scenario.get("mbs", 1)),
        dtype="bf16",
        plan=ParallelPlan(
            tp=tp, pp=pp, dp=int(scenario.get("dp", 1)),
            schedule="interleaved" if interleave > 1 else "1f1b",
            virtual_stages=interleave,
            sequence_parallel="SP" in recompute and tp > 1,
            recompute="full" if recompute in ("full", "ckpt") else
            "selective" if recompute.startswith("selective") else "none",
            attention_kernel="unfused", zero_stage=0))


def _training(scenario: dict[str, Any], metric: str) -> float:
    job = _training_job(scenario)
    result = simulate_training(job, gpu=_GPU_NAMES.get(scenario["gpu"], scenario["gpu"]),
                               model=_gpt(scenario))
    if metric == "iter_time_s":
        return result.step_s
    if metric == "iter_time_ms":
        return result.step_s * 1e3
    if metric == "mfu_pct":
        return result.mfu * 100.0
    return result.hardware_tflops_per_gpu  # Narayanan et al. count recomputation


def _layer_fwd_bwd(scenario: dict[str, Any]) -> float:
    """Milliseconds of one layer's forward and backward for one micro-batch."""
    job = _training_job(scenario)
    plan = job.plan
    cost = layer_cost(
        _gpt(scenario), load_gpu(_GPU_NAMES.get(scenario["gpu"], scenario["gpu"])),
        seq_len=job.seq_len, micro_batch=job.micro_batch, tp=plan.tp, cp=1, ep=1,
        sequence_parallel=plan.sequence_parallel, recompute=plan.recompute,
        attention_kernel="unfused", overlap_tp_comm=False, dtype="bf16",
        tp_link=_node_link(scenario["gpu"]), cp_link=_node_link(scenario["gpu"]),
        ep_link=_node_link(scenario["gpu"]))
    return (cost.forward_s + cost.backward_s) * 1e3


def _node_link(gpu_name: str) -> LinkCost:
    gpu = load_gpu(_GPU_NAMES.get(gpu_name, gpu_name))
    graph = build_cluster_graph(ClusterSpec(num_nodes=1, gpus_per_node=8), gpu)
    return link_between(graph, "n0.g0", "n0.g1")


@functools.cache
def _compared_run(folder: str) -> dict[str, Any]:
    return compare_reference(folder)


def _reference_run(scenario: dict[str, Any]) -> float:
    """A statistic of our measured reference run, as the simulator predicts the run: the
    step-time median (each measured batch priced by the cost model), or a TTFT, TPOT or
    E2E percentile of the replayed trace (see validation/reference/compare.py)."""
    compared = _compared_run(scenario["run"])
    statistic = scenario["statistic"]
    seconds = (compared["per_step"]["predicted_p50_s"] if statistic == "step_time_p50"
               else compared["per_request"][statistic]["predicted_s"])
    return float(seconds * (1e3 if scenario.get("unit") == "ms" else 1.0))


PREDICTORS: dict[str, Callable[[dict[str, Any]], float]] = {
    "gemm_ceiling": _gemm_ceiling,
    "allreduce_busbw": _allreduce_busbw,
    "nic_p2p_bandwidth": _nic_p2p_bandwidth,
    "training_iter_time": lambda scenario: _training(
        scenario, "iter_time_ms" if scenario.get("unit") == "ms" else "iter_time_s"),
    "training_tflops_per_gpu": lambda scenario: _training(scenario, "tflops"),
    "training_mfu": lambda scenario: _training(scenario, "mfu_pct"),
    "training_layer_fwd_bwd": _layer_fwd_bwd,
    "reference_run": _reference_run,
}


# Record kinds with measurements but no predictor yet, and what will predict them. Such
# records are kept (with their sources) and counted, never silently dropped.
PENDING_KINDS: dict[str, str] = {
    "serving_tokens_per_s": "serving records with their workloads (our real runs)",
    "serving_p50_ttft": "serving records with their workloads (our real runs)",
    "serving_p99_tbt": "serving records with their workloads (our real runs)",
}
