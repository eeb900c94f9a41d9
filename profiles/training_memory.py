"""Memory per GPU of a training plan: model states, activations, buffers.

Model states, mixed-precision Adam (Rajbhandari et al. 2020, ZeRO, Sec. 3.1): per
parameter 2 bytes of 16-bit weights, 2 of 16-bit gradients and K = 12 of fp32 master
weights, momentum and variance. ZeRO stage 1 divides the optimizer states by the DP
degree, stage 2 the gradients too, stage 3 the weights too::

    stage 0: (2 + 2 + K) Ψ        stage 1: 2Ψ + 2Ψ + KΨ/N
    stage 2: 2Ψ + (2 + K)Ψ/N      stage 3: (2 + 2 + K)Ψ/N

with Ψ the parameters a GPU holds after TP and PP, N the DP degree.

Activations per layer per micro-batch (Korthikanti et al. 2023, Sec. 4, Table 2), s
sequence length, b micro-batch, h hidden, a heads, t TP degree, in bytes::

    no parallelism            s·b·h·(34 + 5·a·s/h)
    TP                        s·b·h·(10 + 24/t + 5·a·s/(h·t))
    TP + sequence parallel    s·b·h·(34/t + 5·a·s/(h·t))
    selective recompute       drops the 5·a·s/h attention-core term
    full recompute            2·s·b·h (only each layer's input), /t with SP
    per-op recompute (op)     torchtitan's policy: the layer's input, the outputs of
                              the odd matmuls and the attention output (see below)

Offloading (``offload``): ZeRO-Offload (Ren et al. 2021, Sec. 4) keeps the 16-bit
weights on the GPU and moves the gradients, as they are produced, and the optimizer
states with the update itself to the host: on the GPU 2Ψ (2Ψ/N at stage 3), on the host
(2 + K)Ψ/N of the GPU's partition. ZeRO-Infinity (Rajbhandari et al. 2021) with
``offload: nvme`` (stage 3) puts weights, gradients and optimizer states of the
partition, (2 + 2 + K)Ψ/N, on NVMe; the GPU keeps the gathered weights of the two
layers in use (the one computing and the one prefetched).

The 34 and 24 come from GPT's layer (4h MLP, MHA); :func:`activation_bytes_per_layer`
computes the same terms from any ModelSpec (gated MLPs, GQA), and equals the formulas
above for GPT shapes. Context parallelism divides s by cp.
"""

from __future__ import annotations

from dataclasses import dataclass

from profiles.hardware import GIB, GPUSpec
from profiles.models import ModelSpec
from profiles.training_cost import per_op_matmuls

__all__ = ["TrainingMemory", "activation_bytes_per_layer", "experts_folded",
           "model_state_bytes", "stage_param_counts", "training_memory"]

ADAM_K = 12  # fp32 master weights, momentum, variance: 4 + 4 + 4 bytes


def model_state_bytes(num_params: float, zero_stage: int, dp: int) -> tuple[float, float, float]:
    """(weights, gradients, optimizer states) bytes per GPU under ZeRO ``zero_stage``."""
    weights, grads, optimizer = 2.0 * num_params, 2.0 * num_params, ADAM_K * num_params
    if zero_stage >= 1:
        optimizer /= dp
    if zero_stage >= 2:
        grads /= dp
    if zero_stage >= 3:
        weights /= dp
    return weights, grads, optimizer


def activation_bytes_per_layer(model: ModelSpec, seq_len: int, micro_batch: int, tp: int,
                               sequence_parallel: bool, recompute: str, cp: int = 1, *,
                               attention_kernel: str = "unfused", fp8: bool = False) -> float:
    """Activation bytes one layer keeps for backward, per micro-batch, on one GPU.

    ``attention_kernel="flash"``: FlashAttention keeps no score matrix, only Q, K, V, its
    output and one fp32 log-sum-exp per head and token (Dao 2022, Sec. 3.1), so the
    5·a·s²·b term is gone whatever the recomputation. ``fp8``: Transformer Engine's FP8
    linear layers keep their inputs for the weight gradient as FP8 (1 byte): the QKV and
    MLP inputs (h each), the projection input (q) and the second MLP GEMM's input (f).
    """
    s = seq_len / cp
    b, h = micro_batch, model.hidden_size
    q, kv, f = model.q_size, model.kv_size, model.active_ffn_width
    split = tp if sequence_parallel else 1
    if recompute == "full":
        return 2.0 * s * b * h / split
    if recompute == "op":
        # torchtitan's per-op policy saves the outputs of the matmuls it does not
        # recompute (the first, third, ... in forward order: q, v, the MLP's gate and
        # its down projection for a Llama block, before TP's reduction), the attention
        # output with its log-sum-exp, and the layer's input; under SP with TP, also the
        # reduce-scatters' outputs. Pointwise results are recomputed, so none is kept.
        kept = sum(n for n, _ in per_op_matmuls(model, tp)[0])
        per_token = (2.0 * kept + 2.0 * h / split + 2.0 * q / tp
                     + 4.0 * model.num_attention_heads / tp
                     + (4.0 * h / tp if sequence_parallel else 0.0))
        return s * b * per_token
    # Per-token terms (16-bit values are 2 bytes, dropout masks 1 byte):
    # replicated: QKV input 2h, attention block's dropout mask h, MLP input 2h, MLP's
    # dropout mask h, two norm inputs 4h = 10h (Korthikanti's GPT); a model trained
    # without hidden dropout (Llama and its kin) keeps no masks, 8h; sharded by TP: Q, K
    # for the scores (2q + 2kv), V (2kv), projection input (2q), and the MLP's
    # intermediates (4f, or 6f gated: the first GEMM's output and the activation's
    # output, the second GEMM's input).
    gemm_input = 1.0 if fp8 else 2.0
    masks = 2.0 * h if model.hidden_dropout > 0 else 0.0
    replicated = 4.0 * h + masks + 2.0 * gemm_input * h
    first_mlp_output = (4.0 if model.mlp_kind == "gated" else 2.0) * f
    mlp = first_mlp_output + gemm_input * f
    sharded = 2.0 * q + 4.0 * kv + gemm_input * q + mlp
    if attention_kernel in ("flash", "flash2"):
        # One fp32 log-sum-exp per head; the output O is the projection's input, kept
        # once in 16 bits, and beside its FP8 copy under fp8.
        sharded += 4.0 * model.num_attention_heads + (2.0 * q if fp8 else 0.0)
    per_token = replicated / split + sharded / tp
    total = s * b * per_token
    if recompute == "none" and attention_kernel == "unfused":
        # Softmax output (2), its dropout mask (1), dropout output (2) per score: 5·a·s²·b;
        # without attention dropout the softmax output alone, 2·a·s²·b.
        per_score = 5.0 if model.attention_dropout > 0 else 2.0
        total += per_score * model.num_attention_heads * s * s * b / tp
    return total


@dataclass(frozen=True, slots=True)
class TrainingMemory:
    """Bytes per GPU on the heaviest pipeline stage, by term."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    buffers: float
    capacity: float
    host: float = 0.0  # offloaded to host DRAM (ZeRO-Offload), per GPU
    host_activations: float = 0.0  # activations offloaded to host DRAM, per GPU
    nvme: float = 0.0  # offloaded to NVMe (ZeRO-Infinity), per GPU
    params: float = 0.0  # parameters whose optimizer update this GPU owns (Ψ/N or Ψ)

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.buffers

    def as_gib(self) -> dict[str, float]:
        return {name: getattr(self, name) / GIB for name in
                ("weights", "gradients", "optimizer", "activations", "buffers", "total",
                 "capacity", "host", "host_activations", "nvme")}

    def overflow(self, host_capacity: float | None = None,
                 nvme_capacity: float | None = None) -> str | None:
        """None when it fits; else which term overflows, by how much."""
        on_host = self.host + self.host_activations
        if on_host and host_capacity is not None and on_host > host_capacity:
            what = " and ".join(name for name, size in (
                ("ZeRO-Offload's states", self.host),
                ("offloaded activations", self.host_activations)) if size)
            return (f"{what} put {on_host / GIB:.1f} GiB per GPU on the host, which has "
                    f"{host_capacity / GIB:.1f} GiB per GPU")
        if self.nvme and nvme_capacity is not None and self.nvme > nvme_capacity:
            return (f"ZeRO-Infinity puts {self.nvme / GIB:.1f} GiB per GPU on NVMe, which "
                    f"has {nvme_capacity / GIB:.1f} GiB per GPU")
        if self.total <= self.capacity:
            return None
        terms = {name: getattr(self, name) for name in
                 ("weights", "gradients", "optimizer", "activations", "buffers")}
        largest = max(terms, key=lambda name: terms[name])
        return (f"needs {self.total / GIB:.1f} GiB per GPU but the GPU has "
                f"{self.capacity / GIB:.1f} GiB: {(self.total - self.capacity) / GIB:.1f} GiB "
                f"over; the largest term is {largest} at {terms[largest] / GIB:.1f} GiB")


def _in_flight_layers(stage: int, stage_layers: list[int], pp: int, virtual_stages: int,
                      num_micro_batches: int, schedule: str) -> float:
    """Layer-micro-batches whose activations ``stage`` holds at its peak.

    GPipe keeps all m micro-batches; 1F1B keeps p - s on stage s (Megatron's warm-up plus
    the one in its steady state); the interleaved schedule keeps 2(p-s-1) + (v-1)p + 1
    chunk passes, each of the stage's chunk size (on the first stage that is p·(1 +
    (p-1)/(p·v)) micro-batches of the whole stage: Narayanan et al. 2021, Sec. 2.2).
    """
    p, v, m = pp, virtual_stages, num_micro_batches
    layers = sum(stage_layers[chunk * p + stage] for chunk in range(v))
    if schedule == "gpipe":
        return float(m * layers)
    if schedule == "interleaved":
        chunks = min(m * v, 2 * (p - stage - 1) + (v - 1) * p + 1)
        return chunks * layers / v
    return float(min(m, p - stage) * layers)


def experts_folded(ep: int, dp: int, cp: int) -> bool:
    """EP is folded over TP (Megatron-Core's MoE parallel folding, expert tensor parallel
    1): it does not lie within DP x CP, so its ranks take the TP ranks too and each holds
    whole experts."""
    return ep > 1 and (dp * cp) % ep != 0


def _layer_mlp_params(model: ModelSpec, tp: int, dp: int, cp: int, ep: int) -> float:
    """MLP parameters of the average layer on one GPU, before the division by TP.

    Experts are TP-sharded when EP lies within DP x CP; folded over TP each rank holds
    whole experts, 1/ep of them: routed / ep per GPU, not routed / (ep x tp)."""
    routed = model.expert_params / model.num_layers  # routed experts, average layer
    folded = experts_folded(ep, dp, cp)
    return model.mlp_params_per_layer - routed + routed / ep * (tp if folded else 1)


def stage_param_counts(model: ModelSpec, stage_layers: list[int], pp: int,
                       virtual_stages: int, *, tp: int, dp: int, cp: int, ep: int
                       ) -> list[float]:
    """Parameters each pipeline stage's GPUs hold (after TP and EP, before ZeRO): its
    layers, the embedding on the first stage, the LM head on the last (a tied head is
    a copy there when the pipeline has more than one stage)."""
    dense_layer = model.attention_params_per_layer + model.norm_params_per_layer
    per_layer = dense_layer + _layer_mlp_params(model, tp, dp, cp, ep)
    counts = []
    for stage in range(pp):
        layers = sum(stage_layers[chunk * pp + stage] for chunk in range(virtual_stages))
        params = layers * per_layer / tp
        if stage == 0:
            params += model.embedding_params / tp
        if stage == pp - 1:
            params += (model.lm_head_params or (model.vocab_size * model.hidden_size
                                                if pp > 1 else 0)) / tp
        counts.append(params)
    return counts


def training_memory(model: ModelSpec, gpu: GPUSpec, *, seq_len: int, micro_batch: int,
                    num_micro_batches: int, tp: int, pp: int, dp: int, cp: int, ep: int,
                    virtual_stages: int, schedule: str, sequence_parallel: bool,
                    recompute: str, zero_stage: int, offload: str = "none",
                    stage_layers: list[int] | None = None, attention_kernel: str = "unfused",
                    fp8: bool = False, gradient_bytes: float = 2.0,
                    activation_offload_layers: int = 0,
                    fp8_param_gather: bool = False) -> TrainingMemory:
    """Memory of the heaviest pipeline stage, by term.

    Each stage holds its layers' model states (the first also the embedding, the last
    the LM head and its fp32 logits) and the activations of the passes it has in flight
    (:func:`_in_flight_layers`); the first stage usually keeps the most. ``stage_layers``
    gives the layers per virtual stage (default: an even split). Routed expert weights
    are further divided by ``ep`` (shared experts, the router and dense layers' MLPs are
    not). ``gradient_bytes``: 4 where the framework keeps fp32 gradients (Megatron's
    default for bf16). ``fp8``: Transformer Engine caches each weight's FP8 copy and its
    transpose for the step (2 bytes per parameter) beside the 16-bit weights; with
    ``fp8_param_gather`` (Megatron's --fp8-param-gather) the FP8 weight and its transpose
    are the weights (the same 2 bytes) and no 16-bit copy is kept.
    ``activation_offload_layers`` (one stage, one micro-batch in flight): those layers'
    activations live in host memory and the GPU keeps the other layers' plus one layer's
    copy in flight.
    """
    p, v = pp, virtual_stages
    if stage_layers is None:
        stage_layers = [model.num_layers // (p * v)] * (p * v)
    dense_layer = model.attention_params_per_layer + model.norm_params_per_layer
    expert_params = _layer_mlp_params(model, tp, dp, cp, ep)
    stage_params = stage_param_counts(model, stage_layers, pp, v, tp=tp, dp=dp, cp=cp, ep=ep)
    per_layer = activation_bytes_per_layer(model, seq_len, micro_batch, tp, sequence_parallel,
                                           recompute, cp, attention_kernel=attention_kernel,
                                           fp8=fp8)
    heaviest: TrainingMemory | None = None
    for stage in range(p):
        layers = sum(stage_layers[chunk * p + stage] for chunk in range(v))
        params = stage_params[stage]
        weights, grads, optimizer = model_state_bytes(params, zero_stage, dp * cp)
        grads *= gradient_bytes / 2.0
        owned = optimizer / ADAM_K
        host = nvme = 0.0
        if offload == "cpu":
            host = (2.0 + ADAM_K) * owned  # the partition's 16-bit gradients and Adam states
            grads, optimizer = 0.0, 0.0
        elif offload == "nvme":
            nvme = weights + grads + optimizer
            gathered = 2.0 * (dense_layer + expert_params) / tp  # one layer, 16-bit
            weights, grads, optimizer = 2.0 * gathered, 0.0, 0.0
        activations = per_layer * _in_flight_layers(stage, stage_layers, p, v,
                                                    num_micro_batches, schedule)
        host_activations = 0.0
        if activation_offload_layers and layers:
            offloaded = min(activation_offload_layers, layers)
            host_activations = per_layer * offloaded
            activations -= per_layer * (offloaded - 1)
        if recompute in ("full", "op") and layers:
            # Recomputing a layer materializes its full activations once, for one layer.
            activations += activation_bytes_per_layer(
                model, seq_len, micro_batch, tp, sequence_parallel, "selective", cp,
                attention_kernel=attention_kernel, fp8=fp8)
        # Working buffers: fp32 logits of one micro-batch on the last stage, a 16-bit
        # gradient bucket of 1/8 of the weights for communication (offloaded gradients
        # leave through the same bucket), FP8 weight copies.
        logits = 4.0 * seq_len / cp * micro_batch * model.vocab_size / tp \
            if stage == p - 1 else 0.0
        bucket = 2.0 * params / 8 if offload != "none" else weights / 8
        fp8_weights = (2.0 * params / (dp * cp if zero_stage >= 3 else 1)
                       if fp8 and not fp8_param_gather else 0.0)
        memory = TrainingMemory(weights, grads, optimizer, activations,
                                logits + bucket + fp8_weights, gpu.hbm_bytes, host,
                                host_activations, nvme, owned)
        if heaviest is None or memory.total > heaviest.total:
            heaviest = memory
    assert heaviest is not None
    return heaviest
