"""Per-layer training costs: forward, backward and recompute compute, and communication.

For one transformer layer and one micro-batch on one GPU (T = b·s/cp tokens; TP shards
the weights, CP the sequence), roofline time of::

    GEMMs         2·T·(layer matmul params)/tp FLOPs forward, twice that backward; MoE
                  routed experts as grouped GEMMs of their own row counts
    attention     flash: 4·b·(s/cp)·s·q/tp · 1/2 (causal) FLOPs at attention efficiency
                  (flash2, FlashAttention-2: at its own where the GPU states one),
                  backward 2.5x; unfused (Megatron before FlashAttention): the full score
                  matrix as batched GEMMs plus ~12 bytes of softmax/dropout traffic per
                  score, backward 2x
    elementwise   norms, bias-dropout-add, activation: bytes only, backward 2x; fused
                  kernels, or PyTorch's op-by-op ones (``pointwise="eager"``, counted
                  in :func:`pointwise_bytes_per_token`); MoE token dispatch (permute
                  and unpermute)
    FP8 casts     under FP8: each GEMM operand quantized (read 16 bits, write FP8 and
                  its transpose), inputs forward and output gradients backward
    recompute     full: one more forward; selective: one more attention core; op
                  (torchtitan's per-op policy): every second dense matmul of the
                  forward, the routed experts, every pointwise op and the TP gathers,
                  attention kept

plus communication per layer: TP 2 all-reduces forward and 2 backward (reduce-scatter +
all-gather with sequence parallelism: the same volume; with FP8 gathers, torchao's float8
tensor parallelism, each all-gather moves 1 byte per element and each reduce-scatter 2,
so 3/4 of it), CP ring exchange of K and V
(overlapped with the attention core), EP 2 all-to-alls forward and 2 backward for MoE.
Everything is per GPU; links come from the cluster graph.

A dropless MoE layer cannot run ahead of the host: its token counts per expert go to the
CPU (a device-to-host copy the all-to-all and the grouped GEMM are sized from) before
the rest of the layer is launched, so the GPU waits while the host catches up. Where
the layer's GPU work is short (small micro-batches of small experts, fast GPUs) a pass
of an MoE layer, forward and backward, takes at least ``moe_host_floor_s`` (fitted,
``profiles.training_fit``); the wait is its own part of the step (``host_wait``).
Megatron's later containers capture the router and the dispatch preprocessing in CUDA
graphs, which lowers this floor; one value stands for the tables' containers.
"""

from __future__ import annotations

from dataclasses import dataclass

from profiles.cluster import LinkCost
from profiles.collectives import all_gather_s, all_reduce_s, reduce_scatter_s
from profiles.gemm import gemm_compute_s, gemm_time_terms
from profiles.hardware import GB, GPUSpec
from profiles.models import DTYPE_BYTES, ModelSpec

__all__ = ["LayerCost", "layer_cost", "linear_sequence", "lm_head_cost", "per_op_matmuls",
           "pointwise_bytes_per_token"]


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
    # The backward pass by part (its communication is tp_comm_s, 2 cp_comm_s, ep_comm_s),
    # and the recomputation it includes.
    gemm_backward_s: float = 0.0
    attention_backward_s: float = 0.0
    elementwise_backward_s: float = 0.0
    recompute_s: float = 0.0
    host_wait_s: float = 0.0  # forward plus backward: MoE layers waiting on the host

    def parts(self) -> dict[str, float]:
        """Forward plus backward seconds of one layer by class (they add up to
        forward_s + backward_s)."""
        return {"gemm": self.gemm_s + self.gemm_backward_s,
                "attention": self.attention_s + self.attention_backward_s,
                "elementwise": self.elementwise_s + self.elementwise_backward_s,
                "recompute": self.recompute_s, "tp_comm": 2.0 * self.tp_comm_s,
                "cp_comm": 3.0 * self.cp_comm_s, "ep_comm": 2.0 * self.ep_comm_s,
                "host_wait": self.host_wait_s}


def _gemm_s(gpu: GPUSpec, tokens: float, shapes: list[tuple[float, float]],
            weight_bytes: float, dtype: str) -> tuple[float, float]:
    """(forward, backward) seconds of GEMMs of ``tokens`` rows over (n, k) weights.

    Forward is (T x k) @ (k x n); backward is the data gradient (T x n) @ (n x k) and the
    weight gradient (k x T) @ (T x n): twice the FLOPs, each with its own tiling."""
    if gpu.kernels is not None and gpu.kernels.gemm is not None:
        # Fitted kernels: each pass is its own GEMM with its own tiles, launch and bytes.
        forward = sum(gemm_time_terms(gpu, tokens, n, k, dtype)[0] for n, k in shapes)
        backward = sum(gemm_time_terms(gpu, tokens, k, n, dtype)[0]
                       + gemm_time_terms(gpu, k, n, tokens, dtype)[0] for n, k in shapes)
        return forward, backward
    memory = weight_bytes / (gpu.hbm_bandwidth_gbps * GB * gpu.efficiency.memory)
    forward = sum(gemm_compute_s(gpu, tokens, n, k, dtype) for n, k in shapes)
    backward = sum(gemm_compute_s(gpu, tokens, k, n, dtype)
                   + gemm_compute_s(gpu, k, n, tokens, dtype) for n, k in shapes)
    return max(forward, memory), max(backward, 2.0 * memory)


# Bytes of HBM traffic per routed element (token copy x hidden unit) of one MoE layer's
# dispatch: the permutation into expert order and back, each reading and writing 16 bits.
DISPATCH_BYTES_PER_ROUTED_ELEMENT = 8.0


def expert_gemm_s(gpu: GPUSpec, model: ModelSpec, tokens: float, tp: int, ep: int,
                  dtype: str, *, folded: bool = False) -> tuple[float, float]:
    """(forward, backward) seconds of the average layer's routed experts on one GPU, as
    grouped GEMMs: each of the rank's E/ep experts multiplies its own rows, T·k/(E/ep)
    of them with balanced routing (each rank receives T·k rows in all), so fine-grained
    experts pay the tiling of their small row counts and short reductions::

        rows per expert = T·k·ep / E        experts per rank = E / ep
        time = E/ep x (gemm(rows, gated·w/etp, h) + gemm(rows, h, w/etp))

    with ``etp`` = tp, or 1 when EP is folded over TP. Weighted by the share of MoE
    layers."""
    h, w = model.hidden_size, model.expert_width
    gated = 2 if model.mlp_kind == "gated" else 1
    etp = 1 if folded else tp
    local = model.num_experts / ep
    rows = tokens * model.num_experts_per_token / local
    shapes = [(gated * w / etp, h), (h, w / etp)]
    weight_bytes = sum(n * k for n, k in shapes) * DTYPE_BYTES[dtype]
    forward, backward = _gemm_s(gpu, rows, shapes, weight_bytes, dtype)
    share = model.num_moe_layers / model.num_layers
    return local * forward * share, local * backward * share


def _layer_gemm_shapes(model: ModelSpec, tp: int) -> list[tuple[float, float]]:
    """The (n, k) weight shapes of the average layer's GEMMs that every GPU of the TP
    group runs over all T rows (MLA's projections for DeepSeek): attention, and the MLP
    of dense layers or the shared experts of MoE ones, weighted by the share of MoE
    layers against dense ones (first-k-dense, interleaved). The routed experts are
    grouped GEMMs of their own rows (:func:`expert_gemm_s`)."""
    h = model.hidden_size
    gated = 2 if model.mlp_kind == "gated" else 1
    shapes = [*model.attention_shapes(tp), (h, model.o_size / tp)]
    if not model.is_moe:
        f = model.intermediate_size / tp
        return [*shapes, (gated * f, h), (h, f)]
    moe = model.num_moe_layers / model.num_layers
    shared = model.shared_expert_intermediate_size / tp * moe
    dense = model.intermediate_size / tp * (1 - moe)
    for width in (shared, dense):
        if width:
            shapes += [(gated * width, h), (h, width)]
    return shapes


def linear_sequence(model: ModelSpec, tp: int) -> list[tuple[float, float]]:
    """The (n, k) weight shapes of the average layer's dense linear layers on one GPU,
    one per matmul in forward order: q, k and v (GQA; MLA's projections as they come),
    the output projection, then each MLP's gate, up and down (the dense MLP, or the
    shared experts of MoE layers, weighted as in :func:`_layer_gemm_shapes`). This is
    the order torchtitan's per-op recomputation policy counts matmuls in."""
    h = model.hidden_size
    if model.attention_kind == "gqa":
        kv = max(1.0, model.num_kv_heads / tp) * model.head_dim
        shapes: list[tuple[float, float]] = [
            (model.num_attention_heads / tp * model.head_dim, h), (kv, h), (kv, h)]
    else:
        shapes = list(model.attention_shapes(tp))
    shapes.append((h, model.o_size / tp))
    if model.is_moe:
        moe = model.num_moe_layers / model.num_layers
        widths = [model.shared_expert_intermediate_size / tp * moe,
                  model.intermediate_size / tp * (1 - moe)]
    else:
        widths = [model.intermediate_size / tp]
    for width in (w for w in widths if w):
        shapes += [(width, h)] * (2 if model.mlp_kind == "gated" else 1) + [(h, width)]
    return shapes


def per_op_matmuls(model: ModelSpec, tp: int
                   ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(saved, recomputed) shapes of :func:`linear_sequence` under torchtitan's per-op
    policy: it saves every matmul's output but the second, fourth, ... in forward order
    (for a Llama block wq, wv, w1, w2 saved; wk, wo, w3 recomputed)."""
    shapes = linear_sequence(model, tp)
    return shapes[0::2], shapes[1::2]


def pointwise_bytes_per_token(model: ModelSpec, tp: int, sequence_parallel: bool,
                              kernels: str = "fused") -> float:
    """HBM bytes per token of one layer's forward pointwise work on one GPU.

    fused (Megatron-Core, Transformer Engine, torch.compile's per-block kernels): 24
    16-bit passes over the hidden width (norms, residual adds, dropout) and 4 over the
    MLP's width. eager (PyTorch op by op, as torchtitan's Llama block is written),
    counted per op in bytes per element:

        RMSNorm   upcast 6, square 8, mean 4, scale 8, downcast 6, weight 4 = 32 (x2)
                  (LayerNorm is one kernel: 4)
        residual  2 adds of 6
        rotary    q and k: upcast 6, complex multiply 8, downcast 6 = 20 (none with
                  learned positions)
        GQA       k and v repeated to every head: read kv, write q (4 each)
        output    attention output made contiguous: 4 over q
        MLP       SiLU 4 and the gate's product 6 (GeLU: 4), over the MLP's width

    The hidden-width terms shard over TP with sequence parallelism. Unfused ops never
    move fewer bytes than the fused kernels of the same block, so eager is at least
    fused (the fused count's dropout and bias terms are not in the eager count)."""
    h, q, kv = model.hidden_size, model.q_size, model.kv_size
    f = model.active_ffn_width
    split = tp if sequence_parallel else 1
    fused = 2.0 * 24.0 * h / split + 8.0 * f / tp
    if kernels == "fused":
        return fused
    norm = 32.0 if model.norm_kind == "rmsnorm" else 4.0
    replicated = (2.0 * norm + 12.0) * h
    rotary = 0.0 if model.learned_position_embeddings else 20.0 * (q + kv)
    repeat = 4.0 * (q + kv) if kv < q else 0.0
    mlp = 10.0 * f if model.mlp_kind == "gated" else 4.0 * f
    sharded = rotary + repeat + 4.0 * q + mlp
    return max(fused, replicated / split + sharded / tp)


# Bytes of HBM traffic to quantize one element for an FP8 GEMM: read it in 16 bits (2),
# write it as FP8 (1) and, fused in the same pass, its FP8 transpose for the other
# GEMM that reads it (1) (Transformer Engine's cast-transpose).
FP8_CAST_BYTES_PER_ELEMENT = 4.0


def fp8_cast_s(model: ModelSpec, tokens: float, tp: int, bandwidth: float
               ) -> tuple[float, float]:
    """(forward, backward) seconds quantizing a layer's GEMM operands to FP8 on one GPU.

    Forward: each linear layer's input (QKV and first MLP GEMM: h per token, gathered
    over the TP group; projection: q/tp; second MLP GEMM: f/tp). Backward: each GEMM's
    output gradient ((q + 2kv)/tp, h, gated·f/tp, h). Weights are cast once per step
    and cached across micro-batches, so they are left out."""
    h, q, kv, f = model.hidden_size, model.q_size, model.kv_size, model.active_ffn_width
    gated = 2.0 if model.mlp_kind == "gated" else 1.0
    forward = tokens * (2.0 * h + (q + f) / tp)
    backward = tokens * ((q + 2.0 * kv + gated * f) / tp + 2.0 * h)
    per_element = FP8_CAST_BYTES_PER_ELEMENT / bandwidth
    return forward * per_element, backward * per_element


def _unquantized_dtype(dtype: str) -> str:
    """The dtype of the work FP8 training keeps out of FP8: it runs the transformer
    layers' linear GEMMs in FP8, while attention and the output layer stay in 16 bits
    (Transformer Engine's default, and torchtitan's float8 linears)."""
    return "bf16" if dtype == "fp8" else dtype


def layer_cost(model: ModelSpec, gpu: GPUSpec, *, seq_len: int, micro_batch: int, tp: int,
               cp: int, ep: int, sequence_parallel: bool, recompute: str,
               attention_kernel: str, overlap_tp_comm: bool, dtype: str,
               tp_link: LinkCost, cp_link: LinkCost, ep_link: LinkCost,
               expert_imbalance: float = 1.0, compute_fraction: float = 1.0,
               tp_overlap_hidden: float = 1.0, folded_experts: bool = False,
               pointwise: str = "fused", moe_host_floor_s: float = 0.0,
               fp8_tp_gather: bool = False) -> LayerCost:
    """The cost of one layer; see the module docstring for each term.

    ``expert_imbalance`` is the busiest EP rank's routed load over the mean (1 with
    balanced routing): the routed experts' GEMMs and the all-to-all wait for that rank.
    ``compute_fraction`` is the share of the kernels' measured rate that tensor-core
    work keeps under a training run's sustained load (``profiles.training_fit``): GEMM
    and attention times are divided by it. ``tp_overlap_hidden`` is the share of the TP
    communication an overlapped plan hides behind its GEMMs (1: all of it).
    ``folded_experts``: EP is folded over TP (each rank holds whole experts).
    ``pointwise``: "fused" or "eager" kernels (:func:`pointwise_bytes_per_token`).
    ``moe_host_floor_s``: the shortest forward plus backward pass of an MoE layer (module
    docstring); the average layer holds it in the share of MoE layers.
    ``fp8_tp_gather``: sequence parallelism's all-gathers move FP8 (1 byte per element,
    its reduce-scatters still 2), as torchao's float8 tensor parallelism does.
    """
    b, s = micro_batch, seq_len
    s_local = s / cp
    tokens = b * s_local
    h, q = model.hidden_size, model.q_size
    bandwidth = gpu.hbm_bandwidth_gbps * GB * gpu.efficiency.memory
    params = model.attention_params_per_layer + model.active_mlp_params_per_layer
    weight_bytes = params / tp * DTYPE_BYTES[dtype]
    everywhere = _layer_gemm_shapes(model, tp)
    moe_tokens = tokens / tp if folded_experts else tokens  # tokens a rank routes
    gemm, gemm_bwd = _gemm_s(gpu, tokens, everywhere, weight_bytes, dtype)
    again = 0.0  # GEMMs recomputed under the per-op policy
    if recompute == "op":
        shapes = per_op_matmuls(model, tp)[1]
        again = _gemm_s(gpu, tokens, shapes, sum(n * k for n, k in shapes)
                        * DTYPE_BYTES[dtype], dtype)[0]
    if model.is_moe:
        # The routed experts wait for the busiest rank's rows.
        # Folded over TP, each rank routes the T/tp tokens its sequence-parallel shard
        # holds through whole experts; otherwise the TP group shares every token and
        # each rank computes 1/tp of each expert.
        experts, experts_bwd = expert_gemm_s(gpu, model, moe_tokens, tp, ep, dtype,
                                             folded=folded_experts)
        gemm += experts * expert_imbalance
        gemm_bwd += experts_bwd * expert_imbalance
        if recompute == "op":  # grouped GEMMs are not among the policy's saved ops
            again += experts * expert_imbalance

    gemm, gemm_bwd = gemm / compute_fraction, gemm_bwd / compute_fraction
    again /= compute_fraction
    scores = b * s_local * s / tp * model.num_attention_heads  # score entries per GPU
    if attention_kernel in ("flash", "flash2"):
        flops = 2.0 * b * s_local * s * (q + model.o_size) / tp * 0.5
        share = gpu.efficiency.attention
        if attention_kernel == "flash2" and gpu.efficiency.attention_fa2 is not None:
            share = gpu.efficiency.attention_fa2
        attention = flops / (gpu.compute_flops(_unquantized_dtype(dtype)) * share)
        attention_bwd = 2.5 * attention
    else:
        flops = 2.0 * b * s_local * s * (q + model.o_size) / tp
        attention = (flops / (gpu.compute_flops(_unquantized_dtype(dtype)) * gpu.efficiency.matmul)
                     + 12.0 * scores / bandwidth)
        attention_bwd = 2.0 * attention
    attention, attention_bwd = attention / compute_fraction, attention_bwd / compute_fraction

    elementwise = tokens * pointwise_bytes_per_token(model, tp, sequence_parallel,
                                                     pointwise) / bandwidth
    cast, cast_bwd = (fp8_cast_s(model, tokens, tp, bandwidth) if dtype == "fp8"
                      else (0.0, 0.0))
    elementwise += cast
    if model.is_moe:
        # Token dispatch: permuting each token's k copies to their experts' order and
        # back (read and write 16 bits each, per MoE layer), forward and backward alike.
        elementwise += (DISPATCH_BYTES_PER_ROUTED_ELEMENT * moe_tokens
                        * model.num_experts_per_token * h / bandwidth
                        * model.num_moe_layers / model.num_layers)

    activation_bytes = tokens * h * 2.0
    tp_comm = 2.0 * all_reduce_s(activation_bytes, tp, tp_link)
    gathers = tp_comm / 2.0  # sequence parallelism's all-gathers (a ring all-reduce's half)
    if fp8_tp_gather and sequence_parallel and dtype == "fp8":
        gathers = 2.0 * all_gather_s(activation_bytes / 2.0, tp, tp_link)
        tp_comm = 2.0 * reduce_scatter_s(activation_bytes, tp, tp_link) + gathers
    gather_share = gathers / tp_comm if tp_comm > 0 else 0.5
    if overlap_tp_comm:
        # Overlap hides a share of the communication behind the GEMMs it is split with
        # (Megatron's TP comm overlap, torchtitan's async TP); the rest shows.
        tp_comm -= tp_overlap_hidden * min(tp_comm, gemm)
    cp_comm = 0.0
    if cp > 1:
        kv_bytes = 2.0 * b * s_local * model.kv_size / tp * 2.0
        exchange = (cp - 1) * cp_link.transfer_s(kv_bytes)
        cp_comm = max(0.0, exchange - attention)
    ep_comm = 0.0
    if model.is_moe and ep > 1:
        routed = moe_tokens * model.num_experts_per_token * h * 2.0
        ep_comm = (2.0 * (ep - 1) / ep * routed / ep_link.bandwidth_bytes_per_s
                   * expert_imbalance)

    forward = gemm + attention + elementwise + tp_comm + cp_comm + ep_comm
    elementwise_bwd = 2.0 * (elementwise - cast) + cast_bwd
    backward = gemm_bwd + attention_bwd + elementwise_bwd + tp_comm + 2.0 * cp_comm + ep_comm
    # The per-op policy saves reduce-scatters' outputs but not all-gathers': with
    # sequence parallelism it gathers again (the all-gathers' share of the TP time), without
    # it the all-reduces run again.
    regathered = tp_comm * gather_share if sequence_parallel else tp_comm
    recomputed = {"full": forward, "selective": attention,
                  "op": again + elementwise + regathered}.get(recompute, 0.0)
    backward += recomputed
    wait = 0.0
    if model.is_moe and moe_host_floor_s > 0:
        floor = moe_host_floor_s * model.num_moe_layers / model.num_layers
        wait = max(0.0, floor - forward - backward)
        # the wait falls in both passes, as their work does
        share = forward / (forward + backward) if forward + backward > 0 else 0.5
        forward, backward = forward + wait * share, backward + wait * (1.0 - share)
    return LayerCost(forward, backward, gemm, attention, elementwise, tp_comm, cp_comm,
                     ep_comm, gemm_backward_s=gemm_bwd, attention_backward_s=attention_bwd,
                     elementwise_backward_s=elementwise_bwd,
                     recompute_s=recomputed, host_wait_s=wait)


def lm_head_cost(model: ModelSpec, gpu: GPUSpec, *, seq_len: int, micro_batch: int, tp: int,
                 cp: int, dtype: str, compute_fraction: float = 1.0) -> tuple[float, float]:
    """(forward, backward) seconds of the output projection and loss on the last stage
    (in 16 bits under FP8 training: frameworks keep the output layer out of FP8)."""
    dtype = _unquantized_dtype(dtype)
    tokens = micro_batch * seq_len / cp
    weight_bytes = model.vocab_size * model.hidden_size / tp * DTYPE_BYTES[dtype]
    forward, backward = _gemm_s(gpu, tokens, [(model.vocab_size / tp, model.hidden_size)],
                                weight_bytes, dtype)
    return forward / compute_fraction, backward / compute_fraction
