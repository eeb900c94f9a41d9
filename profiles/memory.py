"""Per-GPU memory of a serving replica: weights, activations, runtime, and what is left
for the KV cache.

As vLLM sizes it::

    hbm x gpu_memory_utilization
      - weights of the heaviest pipeline stage / tp
      - peak activations of a forward pass over max_num_batched_tokens tokens
      - runtime overhead (CUDA context, GEMM workspaces, NCCL buffers, CUDA graphs)
      = KV-cache bytes  ->  num_gpu_blocks = floor(KV bytes / bytes of one block on one GPU)

The activation and runtime terms are estimates (stated in the code) until measured runs
calibrate them. A planner calls :func:`plan_memory` to rule out what cannot fit before
simulating anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from profiles.errors import ClusterSimError
from profiles.hardware import GIB, GPUSpec
from profiles.models import DTYPE_BYTES, ModelSpec
from profiles.roofline import split_layers

__all__ = ["DEFAULT_RUNTIME_OVERHEAD_GIB", "MemoryPlan", "plan_memory"]

# Estimate: CUDA context (~0.5 GiB), cuBLAS/NCCL workspaces and CUDA-graph pools.
DEFAULT_RUNTIME_OVERHEAD_GIB = 1.0


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    """Bytes per GPU of one replica, and the KV blocks they leave."""

    budget_bytes: float
    weight_bytes: float
    activation_bytes: float
    runtime_overhead_bytes: float
    kv_cache_bytes: float
    kv_block_bytes: float
    num_gpu_blocks: int
    num_cpu_blocks: int
    block_size: int

    @property
    def max_kv_tokens(self) -> int:
        return self.num_gpu_blocks * self.block_size

    def as_dict(self) -> dict[str, float]:
        return {
            "budget_gib": self.budget_bytes / GIB,
            "weights_gib": self.weight_bytes / GIB,
            "activations_gib": self.activation_bytes / GIB,
            "runtime_overhead_gib": self.runtime_overhead_bytes / GIB,
            "kv_cache_gib": self.kv_cache_bytes / GIB,
            "num_gpu_blocks": self.num_gpu_blocks,
            "num_cpu_blocks": self.num_cpu_blocks,
            "max_kv_tokens": self.max_kv_tokens,
        }


def stage_weight_bytes(model: ModelSpec, tp: int, pp: int, ep: int = 1,
                       expert_slots: int | None = None) -> float:
    """Weight bytes on one GPU of the heaviest stage (embeddings on the first, head on
    the last). With expert parallelism (``ep`` > 1) each GPU holds ``expert_slots``
    routed experts per MoE layer (E / ep unless a placement replicates some), whole;
    without it, 1/tp of ``expert_slots`` experts (all E unless some are offloaded);
    everything else is split over the ``tp`` GPUs of its attention group."""
    per_layer = (model.attention_params_per_layer + model.mlp_params_per_layer
                 + model.norm_params_per_layer)
    expert_layer = model.expert_params / model.num_layers  # routed experts, average layer
    if ep > 1 or expert_slots is not None:
        slots = expert_slots if expert_slots is not None else model.num_experts // ep
        split = tp if ep == 1 else 1  # without EP every GPU holds 1/tp of each expert
        held = (slots * model.mlp_params_per_expert * model.num_moe_layers
                / model.num_layers / split)
        per_layer_gpu = (per_layer - expert_layer) / tp + held
    else:
        per_layer_gpu = per_layer / tp
    heaviest = 0.0
    layers = split_layers(model.num_layers, pp)
    for stage, num_layers in enumerate(layers):
        params = num_layers * per_layer_gpu
        if stage == 0:
            params += (model.embedding_params + model.vision_params) / tp
        if stage == pp - 1:
            params += (model.lm_head_params or model.vocab_size * model.hidden_size * (pp > 1)) / tp
        heaviest = max(heaviest, params)
    return heaviest * DTYPE_BYTES[model.dtype]


def activation_bytes(model: ModelSpec, tp: int, max_num_batched_tokens: int,
                     max_num_seqs: int) -> float:
    """Estimated peak activation bytes of one forward pass on one GPU.

    Largest live set inside a layer for T tokens: the residual stream and its normed copy
    (2h), q/k/v (q+2kv)/tp, the MLP's gate, up and activated outputs (3f/tp), in 16-bit;
    plus fp32 logits and their softmax for up to ``max_num_seqs`` sampled rows.
    """
    t = max_num_batched_tokens
    ffn = max(model.intermediate_size if model.num_dense_layers else 0,
              model.num_experts_per_token * model.expert_width
              + model.shared_expert_intermediate_size)
    per_token = 2 * model.hidden_size * 2 + (model.q_size + 2 * model.kv_size) / tp \
        + 3 * ffn / tp
    logits = 2 * max_num_seqs * model.vocab_size / tp * 4
    return t * per_token * 2 + logits


def plan_memory(
    model: ModelSpec, gpu: GPUSpec, *, tp: int, pp: int, block_size: int,
    gpu_memory_utilization: float, max_num_batched_tokens: int, max_num_seqs: int,
    swap_space_gib: float = 0.0, runtime_overhead_gib: float = DEFAULT_RUNTIME_OVERHEAD_GIB,
    offloaded_weight_bytes: float = 0.0, ep: int = 1, dp: int = 1,
    expert_slots: int | None = None, draft_weight_bytes: float = 0.0,
    draft_kv_bytes_per_token: float = 0.0,
) -> MemoryPlan:
    """Split one GPU's memory and count the KV blocks a replica gets.

    A speculative draft (a draft model or head) adds ``draft_weight_bytes`` per GPU to the
    weights and ``draft_kv_bytes_per_token`` per GPU to every block, as vLLM keeps the
    draft's KV in the same blocks as the target's.

    ``offloaded_weight_bytes`` of each GPU's weights live off the GPU (vLLM's
    ``cpu_offload_gb``; ``profiles.offload`` prices streaming them). With ``dp``
    data-parallel attention ranks in the replica, each rank keeps its own KV cache: the
    replica's blocks are ``dp`` times one GPU's (``max_num_batched_tokens`` and
    ``max_num_seqs`` are per rank).

    Raises:
        ClusterSimError: the weights, or the weights plus activations, do not fit, or more
            is offloaded than a GPU holds.
    """
    budget = gpu.hbm_bytes * gpu_memory_utilization
    all_weights = stage_weight_bytes(model, tp, pp, ep, expert_slots)
    where = f"{model.name} on {gpu.name} with tp={tp}, pp={pp}" + (
        f", dp={dp}, ep={ep}" if ep > 1 or dp > 1 else "")
    if offloaded_weight_bytes > all_weights:
        raise ClusterSimError(
            f"offload.cpu_offload_gb={offloaded_weight_bytes / GIB:.1f} exceeds the "
            f"{all_weights / GIB:.1f} GiB of weights per GPU of {where}; lower it")
    weights = all_weights - offloaded_weight_bytes + draft_weight_bytes
    if weights >= budget:
        raise ClusterSimError(
            f"{where}: weights need {weights / GIB:.1f} GiB per GPU but "
            f"gpu_memory_utilization={gpu_memory_utilization} leaves {budget / GIB:.1f} GiB; "
            f"raise tp or pp, use a larger GPU, or offload "
            f"{(weights - 0.8 * budget) / GIB:.0f} GiB or more (offload.cpu_offload_gb)"
        )
    activations = activation_bytes(model, tp, max_num_batched_tokens, max_num_seqs)
    overhead = runtime_overhead_gib * GIB
    kv_bytes = budget - weights - activations - overhead
    layers_local = max(split_layers(model.num_layers, pp))
    block_bytes = (layers_local * model.kv_bytes_per_token_layer(tp)
                   + draft_kv_bytes_per_token) * block_size
    num_blocks = dp * int(kv_bytes // block_bytes) if kv_bytes > 0 else 0
    if num_blocks <= 0:
        raise ClusterSimError(
            f"{where}: no memory left for the KV cache (weights {weights / GIB:.1f} GiB, "
            f"activations {activations / GIB:.1f} GiB, runtime {runtime_overhead_gib:.1f} GiB "
            f"of {budget / GIB:.1f} GiB); raise tp or pp, gpu_memory_utilization, or lower "
            f"max_num_batched_tokens"
        )
    return MemoryPlan(
        budget_bytes=budget, weight_bytes=weights, activation_bytes=activations,
        runtime_overhead_bytes=overhead, kv_cache_bytes=kv_bytes, kv_block_bytes=block_bytes,
        num_gpu_blocks=num_blocks,
        num_cpu_blocks=dp * int(swap_space_gib * GIB // block_bytes),
        block_size=block_size,
    )
