"""Per-layer training costs: forward, backward and recompute compute, and communication.

For one transformer layer and one micro-batch on one GPU (T = b·s/cp tokens; TP shards
the weights, CP the sequence), roofline time of::

    GEMMs         2·T·(layer matmul params)/tp FLOPs forward, twice that backward
    attention     flash: 4·b·(s/cp)·s·q/tp · 1/2 (causal) FLOPs at attention efficiency,
                  backward 2.5x; unfused (Megatron before FlashAttention): the full score
                  matrix as batched GEMMs plus ~12 bytes of softmax/dropout traffic per
                  score, backward 2x
    elementwise   norms, bias-dropout-add, activation: bytes only, backward 2x
    recompute     full: one more forward; selective: one more attention core

plus communication per layer: TP 2 all-reduces forward and 2 backward (reduce-scatter +
all-gather with sequence parallelism: the same volume), CP ring exchange of K and V
(overlapped with the attention core), EP 2 all-to-alls forward and 2 backward for MoE.
Everything is per GPU; links come from the cluster graph.
"""

from __future__ import annotations

from dataclasses import dataclass

from profiles.cluster import LinkCost
from profiles.collectives import all_reduce_s
from profiles.hardware import GB, GPUSpec
from profiles.models import DTYPE_BYTES, ModelSpec

__all__ = ["LayerCost", "layer_cost", "lm_head_cost"]


@dataclass(frozen=True, slots=True)
class LayerCost:
    """Seconds per layer per micro-batch on one GPU, communication not hidden included."""

    forward_s: float
    backward_s: float  # recompute included
    gemm_s: float
    attention_s: float
    elementwise_s: float
    tp_comm_s: float  # per pass (forward or backward)
    cp_comm_s: float
    ep_comm_s: float


def _gemm_s(gpu: GPUSpec, flops: float, weight_bytes: float, dtype: str) -> float:
    compute = flops / (gpu.peak_flops(dtype) * gpu.efficiency.matmul)
    memory = weight_bytes / (gpu.hbm_bandwidth_gbps * GB * gpu.efficiency.memory)
    return max(compute, memory)


def layer_cost(model: ModelSpec, gpu: GPUSpec, *, seq_len: int, micro_batch: int, tp: int,
               cp: int, ep: int, sequence_parallel: bool, recompute: str,
               attention_kernel: str, overlap_tp_comm: bool, dtype: str,
               tp_link: LinkCost, cp_link: LinkCost, ep_link: LinkCost) -> LayerCost:
    """The cost of one layer; see the module docstring for each term."""
    b, s = micro_batch, seq_len
    s_local = s / cp
    tokens = b * s_local
    h, q = model.hidden_size, model.q_size
    bandwidth = gpu.hbm_bandwidth_gbps * GB * gpu.efficiency.memory
    params = model.attention_params_per_layer + model.active_mlp_params_per_layer
    weight_bytes = params / tp * DTYPE_BYTES[dtype]
    gemm = _gemm_s(gpu, 2.0 * tokens * params / tp, weight_bytes, dtype)

    scores = b * s_local * s / tp * model.num_attention_heads  # score entries per GPU
    if attention_kernel == "flash":
        flops = 4.0 * b * s_local * s * q / tp * 0.5
        attention = flops / (gpu.peak_flops(dtype) * gpu.efficiency.attention)
        attention_bwd = 2.5 * attention
    else:
        flops = 4.0 * b * s_local * s * q / tp
        attention = (flops / (gpu.peak_flops(dtype) * gpu.efficiency.matmul)
                     + 12.0 * scores / bandwidth)
        attention_bwd = 2.0 * attention

    f_active = model.intermediate_size * max(1, model.num_experts_per_token)
    replicated = 24.0 * h / (tp if sequence_parallel else 1)
    elementwise = tokens * 2.0 * (replicated + 4.0 * f_active / tp) / bandwidth

    activation_bytes = tokens * h * 2.0
    tp_comm = 2.0 * all_reduce_s(activation_bytes, tp, tp_link)
    if overlap_tp_comm:
        tp_comm = max(0.0, tp_comm - gemm)
    cp_comm = 0.0
    if cp > 1:
        kv_bytes = 2.0 * b * s_local * model.kv_size / tp * 2.0
        exchange = (cp - 1) * cp_link.transfer_s(kv_bytes)
        cp_comm = max(0.0, exchange - attention)
    ep_comm = 0.0
    if model.is_moe and ep > 1:
        routed = tokens * model.num_experts_per_token * h * 2.0
        ep_comm = 2.0 * (ep - 1) / ep * routed / ep_link.bandwidth_bytes_per_s

    forward = gemm + attention + elementwise + tp_comm + cp_comm + ep_comm
    backward = 2.0 * gemm + attention_bwd + 2.0 * elementwise + tp_comm + 2.0 * cp_comm \
        + ep_comm
    if recompute == "full":
        backward += forward
    elif recompute == "selective":
        backward += attention
    return LayerCost(forward, backward, gemm, attention, elementwise, tp_comm, cp_comm,
                     ep_comm)


def lm_head_cost(model: ModelSpec, gpu: GPUSpec, *, seq_len: int, micro_batch: int, tp: int,
                 cp: int, dtype: str) -> tuple[float, float]:
    """(forward, backward) seconds of the output projection and loss on the last stage."""
    tokens = micro_batch * seq_len / cp
    flops = 2.0 * tokens * model.hidden_size * model.vocab_size / tp
    forward = _gemm_s(gpu, flops, model.vocab_size * model.hidden_size / tp * 2.0, dtype)
    return forward, 2.0 * forward
