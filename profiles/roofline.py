"""The roofline cost model: each operator takes max(FLOPs / compute, bytes / bandwidth).

For a batch of T tokens on a replica with tensor parallelism ``tp``, per layer::

    qkv_proj, o_proj, mlp   GEMMs of T rows over weights sharded by tp
    attn_prefill            causal FLOPs: 4·heads·head_dim·Σ q_i·(c_i + (q_i+1)/2)
    attn_decode             KV bytes read: Σ (c_i + 1)·2·kv_heads·head_dim·bytes (grows with c)
    elementwise             norms, activation, rotary, residuals, KV writes: bytes only
    tp_allreduce            two ring all-reduces of T·hidden activations (tp > 1)

plus, per stage, the embedding gather (first stage), the LM head over sampled rows (last
stage), the activation send to the next stage (PP), and any KV swap. Achieved fractions of
peak come from the GPU catalog's ``efficiency``; every figure is per GPU, since the GPUs of
a TP group work in parallel on equal shards.

Where the GPU has kernel parameters fitted to measured operator tables
(``GPUSpec.kernels``), each GEMM is priced by the fitted tile model (``profiles.gemm``),
each elementwise kernel and attention by ``profiles.operator_times`` (a launch floor per
kernel included: two norms, the activation, rotary, two residual adds and the KV write
per layer), and the TP all-reduce as the engine runs it inside a node
(``profiles.collectives.engine_all_reduce_s``). Attention FLOP counts follow FlashAttention's
accounting (Dao 2023, Sec. 4); GEMM counts are 2 FLOPs per multiply-add.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from profiles.cluster import LinkCost
from profiles.collectives import all_reduce_s, engine_all_reduce_s
from profiles.cost_model import OPERATORS, BatchShape, StepCost
from profiles.gemm import fitted_gemm_times, gemm_compute_s, gemm_time_terms
from profiles.hardware import GB, GPUSpec
from profiles.models import DTYPE_BYTES, ModelSpec
from profiles.moe import ExpertLayers, RoutingConfig, routing_stats
from profiles.operator_times import (
    STREAM_BYTES_PER_ELEMENT,
    decode_attention_s,
    prefill_attention_s,
    stream_s,
)

__all__ = ["RooflineCostModel", "dense_roofline", "split_layers"]

_TABLE_CHUNK = 1024  # row counts per vectorized GEMM evaluation
_TABLE_ROWS_MAX = 1 << 20  # beyond: one call per count
SINGLE_COSTS_KEPT = 1 << 16  # one-request batch costs kept per model (a few MB at most)


def split_layers(num_layers: int, pp: int) -> tuple[int, ...]:
    """Layers per pipeline stage: as even as possible, earlier stages take the remainder."""
    base, extra = divmod(num_layers, pp)
    return tuple(base + (1 if stage < extra else 0) for stage in range(pp))


@dataclass(frozen=True, slots=True)
class _Linear:
    """A layer's GEMMs on one GPU: their (n, k) weight shapes, and the activation widths
    the group reads and writes."""

    shapes: tuple[tuple[float, float], ...]
    in_width: float
    out_width: float
    weight_params: float = field(init=False)  # Σ n·k: the weights the group reads

    def __post_init__(self) -> None:
        # NOTE: kept, not a property: token_terms reads it for every new token count
        object.__setattr__(self, "weight_params", sum(n * k for n, k in self.shapes))


class RooflineCostModel:
    """Analytical step times for one replica of ``model`` on ``gpu`` with the given TP/PP.

    Args:
        model: the architecture.
        gpu: the SKU, with its peak figures and efficiency fractions.
        tp: tensor-parallel degree (GPUs per stage).
        pp: pipeline-parallel degree (stages).
        tp_link: the link limiting the TP group's collectives.
        pp_link: the link between consecutive stages.
        tp_inside_node: the TP group shares one node (the engine's custom all-reduce
            and the fitted NCCL ring apply).
    """

    def __init__(
        self, model: ModelSpec, gpu: GPUSpec, tp: int, pp: int,
        tp_link: LinkCost, pp_link: LinkCost, tp_inside_node: bool = True, *,
        dp: int = 1, moe: ExpertLayers | None = None,
    ) -> None:
        self.model = model
        self.gpu = gpu
        self.tp = tp
        self.pp = pp
        self.dp = dp
        self.tp_link = tp_link
        self.pp_link = pp_link
        self.tp_inside_node = tp_inside_node
        self._fitted = gpu.kernels is not None and gpu.kernels.gemm is not None
        self._gemm_tables: dict[tuple[int, int, int], tuple[list[float], list[bool]]] = {}
        self._decode_terms: dict[int, tuple[float, float, float, float, float, float]] = {}
        self._decode_pricing: dict[int, tuple[float, ...]] = {}
        self._send_s: dict[int, float] = {}  # decode_stages: a decode batch's stage send
        self.layers_per_stage = split_layers(model.num_layers, pp)
        if model.is_moe and moe is None:
            moe = ExpertLayers(model, gpu, tp=tp, ep=1, tokens_spread=False,
                               stats=routing_stats(RoutingConfig(), model))
        self.moe = moe

        eff = gpu.efficiency
        self._attention_flops_per_s = gpu.compute_flops(model.kv_cache_dtype) * eff.attention
        self._bytes_per_s = gpu.hbm_bandwidth_gbps * GB * eff.memory
        self._host_bytes_per_s = gpu.host_link.bandwidth_gbps * GB
        self._weight_bytes = DTYPE_BYTES[model.dtype]
        self._act_bytes = 2.0  # activations stay in 16-bit
        self._kv_bytes = DTYPE_BYTES[model.kv_cache_dtype]

        m = model
        heads_local = m.num_attention_heads / tp
        # NOTE: with fewer KV heads than TP ranks, each rank keeps a replica of one head.
        kv_heads_local = max(1.0, m.num_kv_heads / tp)
        self._q_local = heads_local * m.head_dim
        self._kv_local = kv_heads_local * m.head_dim
        if m.attention_kind == "mla":
            self._kv_local = (m.kv_lora_rank + m.qk_rope_head_dim) / 2.0
        h = m.hidden_size
        shapes = m.attention_shapes(tp)
        qkv_width = sum(n for n, _ in shapes)
        self._qkv = _Linear(shapes, h, qkv_width)
        o_in = heads_local * m.value_head_dim
        self._o = _Linear(((h, o_in),), o_in, h)
        gated = 2 if m.mlp_kind == "gated" else 1  # gate and up fused
        f_local = m.intermediate_size / tp
        self._dense = _Linear(((gated * f_local, h), (h, f_local)), h, gated * f_local)
        shared = m.shared_expert_intermediate_size / tp
        self._shared = (_Linear(((gated * shared, h), (h, shared)), h, gated * shared)
                        if shared else None)
        self._router = _Linear(((m.num_experts, h),), h, m.num_experts) if m.is_moe else None
        layers = m.num_layers
        self._moe_fraction = m.num_moe_layers / layers
        # FFN width one token's activation spans in the average layer, on one GPU.
        active_width = (m.num_dense_layers * m.intermediate_size + m.num_moe_layers * (
            m.num_experts_per_token * m.expert_width + m.shared_expert_intermediate_size)
        ) / layers / tp
        self._f_local = active_width
        # Per token per layer, the bytes of each streaming kernel (fitted path).
        qk_norm = (("rmsnorm", 1, self._q_local + self._kv_local),) if m.qk_norm else ()
        self._stream_ops = (("rmsnorm", m.norms_per_layer, h), ("silu_mul", 1, active_width),
                            ("rotary", 1, self._q_local + self._kv_local), ("add", 2, h),
                            ("kv_write", 1, 2 * self._kv_local), *qk_norm)
        self._lm_head_params_local = m.vocab_size * h / tp
        # Elementwise bytes per token per layer: 2 norms (read+write), 2 residual adds
        # (2 reads + 1 write each), rotary on q and k, the KV write, the activation.
        self._elementwise_bytes_per_token = self._act_bytes * (
            2 * m.norms_per_layer * h + 6 * h + 2 * (self._q_local + self._kv_local)
            + 3 * active_width) + 2 * self._kv_local * self._kv_bytes
        self._kv_bytes_per_token_layer = m.kv_bytes_per_token_layer(tp)
        # Attention FLOPs per score (query-key pair) per GPU: QK^T and AV.
        self._flops_per_pair = 2.0 * heads_local * (m.head_dim + m.value_head_dim)
        # Decode attention per context token: absorbed MLA attends in the latent space
        # (the scores over latent + rope, the values over the latent) for every head.
        self._decode_flops_per_token = (
            2.0 * heads_local * (2 * m.kv_lora_rank + m.qk_rope_head_dim)
            if m.attention_kind == "mla" else self._flops_per_pair)
        self._num_local = m.num_local_layers
        self._window = m.sliding_window
        # decode_step's fitted decode attention, launch and bandwidth taken once
        # (decode_attention_s's floats: the same operations in the same order)
        attention_fit = gpu.kernels.attention if gpu.kernels is not None else None
        self._decode_launch_s = (attention_fit.decode_launch_us * 1e-6
                                 if self._fitted and attention_fit is not None else None)
        self._decode_bytes_per_s = (gpu.hbm_bandwidth_gbps * GB * attention_fit.decode_memory
                                    if attention_fit is not None else 0.0)
        # Useful FLOPs per token for MFU: active matmul weights, LM head counted apart.
        self._layer_matmul_params = (
            m.attention_params_per_layer + m.active_mlp_params_per_layer
        )
        self._swap_bytes_per_token = layers / pp * self._kv_bytes_per_token_layer
        self._empty_operators = dict.fromkeys(OPERATORS, 0.0)
        self._token_cache: dict[int, tuple[dict[str, float], float, float, float]] = {}
        self._lm_head_cache: dict[int, tuple[float, bool]] = {}
        self._single_costs: dict[tuple[int, int, int], StepCost] = {}
        self._activation_bytes_per_token = m.hidden_size * self._act_bytes
        self._embed_s_per_token = self._activation_bytes_per_token / self._bytes_per_s
        # Useful matmul parameters a token passes through, LM head apart (it runs only on
        # sampled rows).
        self._model_matmul_params = m.num_layers * self._layer_matmul_params
        # All-reduces per layer: after attention and after the FFN, except that a MoE
        # layer whose tokens travel by all-to-all (DP attention) combines by it instead.
        spread = moe is not None and moe.tokens_spread
        self._allreduces_per_layer = 2.0 - (self._moe_fraction if spread else 0.0)

    @property
    def num_stages(self) -> int:
        return self.pp

    # ---- operator prices (per GPU, per layer unless said) ----------------------------

    def _gemm(self, linear: _Linear, num_tokens: float, weight_params: float,
              copies: float = 1.0) -> tuple[float, bool]:
        """The group's time for ``num_tokens`` rows through each of ``copies`` weight sets
        (MoE: the experts touched), reading ``weight_params`` weights in all."""
        if self._fitted:
            terms = [self._fitted_gemm(num_tokens, n, k) for n, k in linear.shapes]
            seconds = copies * sum(s for s, _ in terms)
            return seconds, max(terms)[1]
        traffic = (weight_params * self._weight_bytes
                   + copies * num_tokens * (linear.in_width + linear.out_width)
                   * self._act_bytes)
        compute_s = copies * sum(
            gemm_compute_s(self.gpu, num_tokens, n, k, self.model.dtype)
            for n, k in linear.shapes)
        memory_s = traffic / self._bytes_per_s
        return (compute_s, True) if compute_s >= memory_s else (memory_s, False)

    def _fitted_gemm(self, m: float, n: float, k: float) -> tuple[float, bool]:
        """The fitted GEMM time of ``m`` rows, read from a table of 1,024 row counts that
        one vectorized evaluation fills (each new prompt length would otherwise cost a
        call of its own, most of a prefill's pricing). NOTE: the table of a row count is
        always the same chunk, so a count's time never depends on which counts came
        first."""
        if m != int(m) or not 1 <= m <= _TABLE_ROWS_MAX:
            return gemm_time_terms(self.gpu, m, n, k, self.model.dtype)
        chunk, index = divmod(int(m) - 1, _TABLE_CHUNK)
        table = self._gemm_tables.get((int(n), int(k), chunk))
        if table is None:
            assert self.gpu.kernels is not None and self.gpu.kernels.gemm is not None
            rows = np.arange(chunk * _TABLE_CHUNK + 1, (chunk + 1) * _TABLE_CHUNK + 1)
            seconds, bound = fitted_gemm_times(self.gpu, self.gpu.kernels.gemm, rows,
                                               np.asarray(n), np.asarray(k), self.model.dtype)
            table = self._gemm_tables[(int(n), int(k), chunk)] = (seconds.tolist(),
                                                                  bound.tolist())
        return table[0][index], table[1][index]

    def _ffn(self, num_tokens: float) -> tuple[float, bool]:
        """The average layer's FFN GEMMs that follow the token count: the dense layers'
        MLP, and the MoE layers' shared experts and router (the routed experts are
        priced per step from drawn loads, :class:`profiles.moe.ExpertLayers`)."""
        m = self.model
        seconds, bound = self._gemm(self._dense, num_tokens, self._dense.weight_params)
        if not m.is_moe:
            return seconds, bound
        moe_s = 0.0
        for linear in (self._shared, self._router):
            if linear is not None:
                moe_s += self._gemm(linear, num_tokens, linear.weight_params)[0]
        f = self._moe_fraction
        return (1 - f) * seconds + f * moe_s, bound

    def _elementwise(self, num_tokens: float) -> float:
        """The layer's streaming kernels for ``num_tokens`` tokens."""
        if not self._fitted:
            return num_tokens * self._elementwise_bytes_per_token / self._bytes_per_s
        return float(sum(count * stream_s(self.gpu, op,
                                          num_tokens * width * STREAM_BYTES_PER_ELEMENT[op])
                         for op, count, width in self._stream_ops))

    def _attention(self, flops: float, traffic: float) -> tuple[float, bool]:
        compute_s = flops / self._attention_flops_per_s
        memory_s = traffic / self._bytes_per_s
        return (compute_s, True) if compute_s >= memory_s else (memory_s, False)

    # ---- the step -------------------------------------------------------------------

    def token_terms(self, num_tokens: int) -> tuple[dict[str, float], float, float, float]:
        """Per-stage-layer operators that depend only on the step's token count (memoized).

        Returns:
            (seconds per layer by operator, compute-bound seconds per layer,
            memory-bound seconds per layer, TP all-reduce seconds per layer)
        """
        cached = self._token_cache.get(num_tokens)
        if cached is not None:
            return cached
        ops: dict[str, float] = {}
        compute_s = memory_s = 0.0
        for name, (seconds, compute_bound) in (
            ("qkv_proj", self._gemm(self._qkv, num_tokens, self._qkv.weight_params)),
            ("o_proj", self._gemm(self._o, num_tokens, self._o.weight_params)),
            ("mlp", self._ffn(num_tokens)),
            ("elementwise", (self._elementwise(num_tokens), False)),
        ):
            ops[name] = seconds
            if compute_bound:
                compute_s += seconds
            else:
                memory_s += seconds
        message = num_tokens * self.model.hidden_size * self._act_bytes
        allreduce_s = self._allreduces_per_layer * (
            engine_all_reduce_s(self.gpu, message, self.tp, self.tp_link, self.tp_inside_node)
            if self._fitted else all_reduce_s(message, self.tp, self.tp_link))
        result = (ops, compute_s, memory_s, allreduce_s)
        self._token_cache[num_tokens] = result
        return result

    def attention_terms(self, prefill_pairs: float, prefill_kv_tokens: float,
                        prefill_query_tokens: float, decode_kv_tokens: float
                        ) -> tuple[tuple[float, bool], tuple[float, bool]]:
        """Per-layer ((prefill s, compute-bound), (decode s, compute-bound)) on one GPU."""
        prefill: tuple[float, bool] = (0.0, False)
        decode: tuple[float, bool] = (0.0, False)
        if prefill_kv_tokens:
            flops = self._flops_per_pair * prefill_pairs
            traffic = (prefill_kv_tokens * self._kv_bytes_per_token_layer
                       + 2.0 * prefill_query_tokens * self._q_local * self._act_bytes)
            prefill = (self._attention(flops, traffic) if not self._fitted else
                       (prefill_attention_s(self.gpu, flops, traffic, self.model.dtype), True))
        if decode_kv_tokens:
            flops = self._decode_flops_per_token * decode_kv_tokens
            kv_bytes = decode_kv_tokens * self._kv_bytes_per_token_layer
            decode = (self._attention(flops, kv_bytes) if not self._fitted else
                      (decode_attention_s(self.gpu, kv_bytes, flops, self.model.dtype), False))
        return prefill, decode

    @staticmethod
    def batch_aggregates(batch: BatchShape) -> tuple[int, float, int, int, int]:
        """(tokens, Σ causal pairs, prefill KV tokens, prefill query tokens, decode KV
        tokens) of a batch: everything the attention and GEMM terms depend on."""
        query_lens, context_lens = batch.query_lens, batch.context_lens
        num_tokens = sum(query_lens) + batch.group_decodes
        if num_tokens == len(query_lens) + batch.group_decodes:  # decodes only
            return (num_tokens, 0.0, 0, 0,
                    sum(context_lens) + batch.group_context_tokens + num_tokens)
        pairs = 0.0
        prefill_kv = prefill_q = 0
        decode_kv = batch.group_context_tokens + batch.group_decodes
        for q, c in zip(query_lens, context_lens, strict=True):
            if q == 1:
                decode_kv += c + 1
            else:
                pairs += q * (c + (q + 1) / 2.0)
                prefill_kv += c + q
                prefill_q += q
        return num_tokens, pairs, prefill_kv, prefill_q, decode_kv

    def windowed_aggregates(self, batch: BatchShape) -> tuple[float, int, int]:
        """(Σ causal pairs, prefill KV tokens, decode KV tokens) of a batch in a
        sliding-window layer: each query sees at most the last ``sliding_window`` keys."""
        w = self._window
        pairs = 0.0
        prefill_kv = decode_kv = 0
        for q, c in zip(batch.query_lens, batch.context_lens, strict=True):
            if q == 1:
                decode_kv += min(c + 1, w)
                continue
            # Queries at positions c+1 .. c+q see min(position, w) keys each.
            inside = max(0, min(c + q, w) - c)  # positions c+1 .. min(c+q, w)
            pairs += inside * (c + 1 + c + inside) / 2.0 + (q - inside) * w
            prefill_kv += min(c + q, w + q)
        return pairs, prefill_kv, decode_kv

    @property
    def prices_decodes_alone(self) -> bool:
        """Whether :meth:`decode_stages` (and with one stage :meth:`decode_step`) can
        price a decode-only step: no DP attention, no sliding-window layers, no routed
        experts."""
        return self.dp == 1 and not self._num_local and self.moe is None

    def decode_pricing(self, num_seqs: int) -> tuple[float, ...] | None:
        """:meth:`decode_step`'s terms for ``num_seqs`` decodes, for a caller that inlines
        it over many steps (decode runs), or ``None`` where the decode attention is not
        the fitted memory-bound kernel (then call :meth:`decode_step`). With (c, m, a, e,
        h, f, launch, kv, bw, n, fk) and K = context tokens + ``num_seqs``, a step is
        ``n * (c + (m + (launch + K * kv / bw)) + a) + e + h`` seconds and
        ``f + fk * float(K)`` FLOPs: decode_step's operations in its order."""
        if self._decode_launch_s is None or self.pp > 1:
            return None
        pricing = self._decode_pricing.get(num_seqs)
        if pricing is None:
            self._decode_layer(num_seqs, 0)  # its per-size terms
            pricing = self._decode_pricing[num_seqs] = (
                *self._decode_terms[num_seqs], self._decode_launch_s,
                self._kv_bytes_per_token_layer, self._decode_bytes_per_s,
                self.model.num_layers,
                self.model.num_layers * self._flops_per_pair * self.tp)
        return pricing

    def decode_step(self, num_seqs: int, context_tokens: int) -> tuple[float, float]:
        """(seconds, FLOPs) of a one-stage step of ``num_seqs`` decodes over
        ``context_tokens`` cached tokens in all, where :attr:`prices_decodes_alone`:
        :meth:`predict`'s figures for such a batch, float for float (tested: the same
        operations in the same order, less additions of 0.0, which change no positive
        float), without building the batch or its cost (decode runs)."""
        layer_s, flops, embed_s, lm_head_s = self._decode_layer(num_seqs, context_tokens)
        return self.model.num_layers * layer_s + embed_s + lm_head_s, flops

    def _decode_layer(self, num_seqs: int, context_tokens: int
                      ) -> tuple[float, float, float, float]:
        """(one layer's seconds, the step's FLOPs, embedding seconds, LM head seconds) of
        a decode-only step, as :meth:`predict` computes them. The terms that follow the
        batch size alone are kept per size."""
        terms = self._decode_terms.get(num_seqs)
        if terms is None:
            _, layer_compute_s, layer_memory_s, allreduce_s = self.token_terms(num_seqs)
            m = self.model
            terms = self._decode_terms[num_seqs] = (
                layer_compute_s, layer_memory_s, allreduce_s,
                num_seqs * self._embed_s_per_token, self._lm_head(num_seqs)[0],
                2.0 * num_seqs * self._model_matmul_params
                + 2.0 * num_seqs * m.vocab_size * m.hidden_size)
        layer_compute_s, layer_memory_s, allreduce_s, embed_s, lm_head_s, flops = terms
        decode_kv_tokens = context_tokens + num_seqs
        if self._decode_launch_s is not None:  # fitted: memory-bound, inlined
            layer_memory_s += self._decode_launch_s + (
                decode_kv_tokens * self._kv_bytes_per_token_layer) / self._decode_bytes_per_s
        else:
            decode_s, decode_bound = self.attention_terms(0.0, 0, 0, decode_kv_tokens)[1]
            if decode_bound:
                layer_compute_s += decode_s
            else:
                layer_memory_s += decode_s
        n = self.model.num_layers
        layer_s = layer_compute_s + layer_memory_s + allreduce_s
        flops += n * self._flops_per_pair * self.tp * float(decode_kv_tokens)
        return layer_s, flops, embed_s, lm_head_s

    def decode_stages(self, num_seqs: int, context_tokens: int
                      ) -> tuple[tuple[float, ...], float]:
        """(seconds of each pipeline stage, FLOPs) of a step of ``num_seqs`` decodes over
        ``context_tokens`` cached tokens, where :attr:`prices_decodes_alone`:
        :meth:`predict`'s stage times float for float, from the per-layer time
        :meth:`decode_step` uses (a decode run of a pipelined replica)."""
        if self.pp == 1:
            seconds, flops = self.decode_step(num_seqs, context_tokens)
            return (seconds,), flops
        layer_s, flops, embed_s, lm_head_s = self._decode_layer(num_seqs, context_tokens)
        send_s = self._send_s.get(num_seqs)
        if send_s is None:
            send_s = self._send_s[num_seqs] = self.pp_link.transfer_s(
                num_seqs * self._activation_bytes_per_token)
        last = self.pp - 1
        return tuple(num_layers * layer_s + (embed_s if stage == 0 else 0.0)
                     + (lm_head_s if stage == last else send_s)
                     for stage, num_layers in enumerate(self.layers_per_stage)), flops

    def predict(self, batch: BatchShape) -> StepCost:
        """Price ``batch`` through every stage; see the module docstring for the terms.

        A one-request batch (a lone prompt's prefill, most of them) is priced once per
        (tokens, context, sampled) and its cost kept: the model is deterministic
        without routed experts, whose loads are drawn per step.
        """
        if (len(batch.query_lens) == 1 and self.moe is None and not batch.swap_in_tokens
                and not batch.swap_out_tokens and not batch.draft_steps
                and not batch.group_decodes):
            key = (batch.query_lens[0], batch.context_lens[0], batch.num_sampled)
            cost = self._single_costs.get(key)
            if cost is None:
                cost = self._predict(batch)
                if len(self._single_costs) < SINGLE_COSTS_KEPT:
                    self._single_costs[key] = cost
            return cost
        return self._predict(batch)

    def prefill_cost(self, query_lens: list[int]) -> StepCost:
        """:meth:`predict` of a step of whole prompts with nothing cached (each row
        ``q`` tokens at context 0, each sampling), without building its
        :class:`BatchShape` for a lone prompt's kept cost (decode runs' arrivals)."""
        if len(query_lens) == 1 and self.moe is None:
            cost = self._single_costs.get((query_lens[0], 0, 1))
            if cost is not None:
                return cost
        return self.predict(BatchShape(query_lens, [0] * len(query_lens), len(query_lens)))

    def _predict(self, batch: BatchShape) -> StepCost:
        # Σ q·(c + (q+1)/2) over prefill rows is the causal score count; prefill and decode
        # KV tokens are what their attention kernels read.
        (num_tokens, prefill_pairs, prefill_kv_tokens, prefill_query_tokens,
         decode_kv_tokens) = self.batch_aggregates(batch)
        dp = self.dp
        if dp == 1:
            rank_tokens = num_tokens
            token_ops, layer_compute_s, layer_memory_s, allreduce_s = self.token_terms(
                num_tokens)
            (prefill_s, prefill_bound), (decode_s, decode_bound) = self.attention_terms(
                prefill_pairs, prefill_kv_tokens, prefill_query_tokens, decode_kv_tokens)
        else:  # DP attention: the batch splits evenly over the ranks
            rank_tokens = -(-num_tokens // dp)
            token_ops, layer_compute_s, layer_memory_s, allreduce_s = self.token_terms(
                rank_tokens)
            (prefill_s, prefill_bound), (decode_s, decode_bound) = self.attention_terms(
                prefill_pairs / dp, prefill_kv_tokens / dp, prefill_query_tokens / dp,
                decode_kv_tokens / dp)
        n = self.model.num_layers  # every layer runs once per step, across the stages
        if self._num_local:
            local = self._num_local / n
            pairs_w, prefill_kv_w, decode_kv_w = self.windowed_aggregates(batch)
            (prefill_w, _), (decode_w, _) = self.attention_terms(
                pairs_w / dp, prefill_kv_w / dp, prefill_query_tokens / dp, decode_kv_w / dp)
            prefill_s = (1 - local) * prefill_s + local * prefill_w
            decode_s = (1 - local) * decode_s + local * decode_w
        for seconds, bound in ((prefill_s, prefill_bound), (decode_s, decode_bound)):
            if bound:
                layer_compute_s += seconds
            else:
                layer_memory_s += seconds
        experts_s = all_to_all_s = 0.0
        if self.moe is not None:
            experts_s, all_to_all_s = self.moe.step_s(num_tokens)
            layer_compute_s += experts_s / n
        layer_s = layer_compute_s + layer_memory_s + allreduce_s + all_to_all_s / n

        swap_s = ((batch.swap_in_tokens + batch.swap_out_tokens) * self._swap_bytes_per_token
                  / (dp * self._host_bytes_per_s))
        embed_s = rank_tokens * self._embed_s_per_token
        lm_head_s, lm_compute_bound = self._lm_head(
            batch.num_sampled if dp == 1 else -(-batch.num_sampled // dp))
        pp = self.pp
        if pp == 1:
            send_s = 0.0
            stage_s: tuple[float, ...] = (n * layer_s + swap_s + embed_s + lm_head_s,)
        else:
            send_s = self.pp_link.transfer_s(rank_tokens * self._activation_bytes_per_token)
            stage_s = tuple(
                num_layers * layer_s + swap_s + (embed_s if stage == 0 else 0.0)
                + (lm_head_s if stage == pp - 1 else send_s)
                for stage, num_layers in enumerate(self.layers_per_stage)
            )

        def breakdown() -> dict[str, float]:
            ops = dict(self._empty_operators)
            for name, seconds in token_ops.items():
                ops[name] = n * seconds
            ops["mlp"] += experts_s
            ops["attn_prefill"] = n * prefill_s
            ops["attn_decode"] = n * decode_s
            ops["tp_allreduce"] = n * allreduce_s
            ops["ep_all_to_all"] = all_to_all_s
            ops["pp_send"] = (pp - 1) * send_s
            ops["kv_swap"] = pp * swap_s
            ops["embedding"] = embed_s
            ops["lm_head"] = lm_head_s
            return ops

        m = self.model
        attention_pairs = prefill_pairs + decode_kv_tokens
        if self._num_local:
            local = self._num_local / n
            attention_pairs = (1 - local) * attention_pairs + local * (pairs_w + decode_kv_w)
        flops = (2.0 * num_tokens * self._model_matmul_params
                 + 2.0 * batch.num_sampled * m.vocab_size * m.hidden_size
                 + n * self._flops_per_pair * self.tp * attention_pairs)
        return StepCost(
            stage_s=stage_s,
            compute_s=n * layer_compute_s + (lm_head_s if lm_compute_bound else 0.0),
            memory_s=n * layer_memory_s + embed_s + (0.0 if lm_compute_bound else lm_head_s),
            communication_s=(n * allreduce_s + all_to_all_s + (pp - 1) * send_s
                             + pp * swap_s),
            flops=flops,
            breakdown=breakdown,
        )

    def _lm_head(self, num_sampled: int) -> tuple[float, bool]:
        """The output projection over the sampled rows (last stage only), memoized."""
        cached = self._lm_head_cache.get(num_sampled)
        if cached is not None:
            return cached
        if num_sampled == 0:
            result = (0.0, False)
        else:
            vocab_local = self.model.vocab_size / self.tp
            if self._fitted:
                result = gemm_time_terms(self.gpu, num_sampled, vocab_local,
                                         self.model.hidden_size, self.model.dtype)
            else:
                traffic = (self._lm_head_params_local * self._weight_bytes
                           + num_sampled * vocab_local * 4.0)
                compute_s = gemm_compute_s(self.gpu, num_sampled, vocab_local,
                                           self.model.hidden_size, self.model.dtype)
                memory_s = traffic / self._bytes_per_s
                result = (compute_s, True) if compute_s >= memory_s else (memory_s, False)
        self._lm_head_cache[num_sampled] = result
        return result


# Dense roofline models by everything they are built from: one kept model serves every
# run with the same inputs (a planner's probes), its memoized per-step terms with it.
_ROOFLINES: dict[tuple[Any, ...], RooflineCostModel] = {}
_ROOFLINES_KEPT = 32


def dense_roofline(model: ModelSpec, gpu: GPUSpec, tp: int, pp: int, tp_link: LinkCost,
                    pp_link: LinkCost, inside_node: bool, dp: int) -> RooflineCostModel:
    """A dense model's roofline, shared by runs built from equal inputs: it is a pure
    function of them (its caches only remember what it computed), so results are the
    same; routed experts draw per step and are never shared."""
    key = (model.model_dump_json(), gpu.model_dump_json(), tp, pp, tp_link, pp_link,
           inside_node, dp)
    roofline = _ROOFLINES.get(key)
    if roofline is None:
        if len(_ROOFLINES) >= _ROOFLINES_KEPT:
            del _ROOFLINES[next(iter(_ROOFLINES))]
        roofline = _ROOFLINES[key] = RooflineCostModel(
            model, gpu, tp, pp, tp_link, pp_link, tp_inside_node=inside_node, dp=dp)
    return roofline
