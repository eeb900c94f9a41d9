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


def stage_weight_bytes(model: ModelSpec, tp: int, pp: int) -> float:
    """Weight bytes on one GPU of the heaviest stage (embeddings on the first, head on the last)."""
    per_layer = (model.attention_params_per_layer + model.mlp_params_per_layer
                 + model.norm_params_per_layer)
    heaviest = 0.0
    layers = split_layers(model.num_layers, pp)
    for stage, num_layers in enumerate(layers):
        params = num_layers * per_layer / tp
        if stage == 0:
            params += model.embedding_params / tp
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
    per_token = 2 * model.hidden_size * 2 + (model.q_size + 2 * model.kv_size) / tp \
        + 3 * model.intermediate_size / tp
    logits = 2 * max_num_seqs * model.vocab_size / tp * 4
    return t * per_token * 2 + logits


def plan_memory(
    model: ModelSpec, gpu: GPUSpec, *, tp: int, pp: int, block_size: int,
    gpu_memory_utilization: float, max_num_batched_tokens: int, max_num_seqs: int,
    swap_space_gib: float = 0.0, runtime_overhead_gib: float = DEFAULT_RUNTIME_OVERHEAD_GIB,
    offloaded_weight_bytes: float = 0.0,
) -> MemoryPlan:
    """Split one GPU's memory and count the KV blocks a replica gets.

    ``offloaded_weight_bytes`` of each GPU's weights live off the GPU (vLLM's
    ``cpu_offload_gb``; ``profiles.offload`` prices streaming them).

    Raises:
        ClusterSimError: the weights, or the weights plus activations, do not fit, or more
            is offloaded than a GPU holds.
    """
    budget = gpu.hbm_bytes * gpu_memory_utilization
    all_weights = stage_weight_bytes(model, tp, pp)
    where = f"{model.name} on {gpu.name} with tp={tp}, pp={pp}"
    if offloaded_weight_bytes > all_weights:
        raise ClusterSimError(
            f"offload.cpu_offload_gb={offloaded_weight_bytes / GIB:.1f} exceeds the "
            f"{all_weights / GIB:.1f} GiB of weights per GPU of {where}; lower it")
    weights = all_weights - offloaded_weight_bytes
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
    kv_heads_local = max(1.0, model.num_kv_heads / tp)
    layers_local = max(split_layers(model.num_layers, pp))
    block_bytes = (2 * layers_local * kv_heads_local * model.head_dim
                   * DTYPE_BYTES[model.kv_cache_dtype] * block_size)
    num_blocks = int(kv_bytes // block_bytes) if kv_bytes > 0 else 0
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
        num_gpu_blocks=num_blocks, num_cpu_blocks=int(swap_space_gib * GIB // block_bytes),
        block_size=block_size,
    )
