"""A real transformer to measure: a Llama-style decoder with random weights and a paged
KV cache, run one scheduled batch step at a time (torch; the ``profile`` extra).

The reference driver (``validation/reference/driver.py``) replays a trace through the
project's scheduler and hands each step here; this module knows nothing of requests or
scheduling, only of the step's rows. A step is a flat run of new tokens, request after
request, each row with its query length q and the c tokens already in its KV cache::

    tokens     | r0: q=5 (prefill chunk, c=0) | r1: q=1 (decode, c=812) | r2: q=1 ...
    positions  | 0 1 2 3 4                    | 812                     | ...

Per layer: RMSNorm, fused QKV GEMM, rotary on q and k, the new k and v written into the
paged cache (``slot = block_table[pos // block_size] * block_size + pos % block_size``),
attention, the O GEMM and residual, RMSNorm, the fused gate+up GEMM, SiLU-and-multiply,
the down GEMM and residual. Attention reads keys through the block table:

- decode rows (q = 1) batched, in up to four calls of rows of similar context length:
  their blocks gathered to a [rows, longest row's keys] tensor with a key mask, and the
  query heads of each KV head stacked as queries of that head (GQA without repeating
  keys);
- prefill rows (q > 1) one call each, causal from the bottom right (a chunk after c
  cached tokens sees all of them), through torch's fastest SDPA kernel.

The two attention functions live in ``profiles.measure.kernels``, which the profiler
times too, so a profile made on a device predicts what this executor runs there.

Only sampled rows pass the final norm and the LM head; the next token is the argmax
(random weights: the tokens are meaningless, their count and timing are what we need).
Dense Llama/Mistral/Qwen2-style models only; MoE and GPT-style layers are refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from profiles.errors import ClusterSimError
from profiles.measure.kernels import (
    TORCH_DTYPES,
    decode_attention,
    key_slots,
    prefill_attention,
)
from profiles.models import ModelSpec
from validation.reference.executor import StepRows

__all__ = ["ReferenceModel"]

_ROPE_THETA = 10_000.0  # any base gives the same kernels and times
_DECODE_GROUPS = 4  # decode attention calls per layer, rows grouped by context length


@dataclass(frozen=True, slots=True)
class _Layer:
    """One decoder layer's weights ([in, out] matrices, so activations multiply on the left)."""

    attn_norm: torch.Tensor
    qkv: torch.Tensor
    qkv_bias: torch.Tensor | None
    o: torch.Tensor
    mlp_norm: torch.Tensor
    gate_up: torch.Tensor
    down: torch.Tensor


class ReferenceModel:
    """Random-weight decoder and its paged KV cache on one device.

    Args:
        spec: the architecture (dense, RMSNorm, gated MLP).
        num_blocks: KV cache blocks (the scheduler's block count).
        block_size: tokens per KV block.
        device: ``cuda`` (also ROCm) or ``cpu``.
        dtype: weight, activation and KV dtype: bf16, fp16 or fp32.
        num_layers: build fewer layers than the spec (smoke runs); ``None`` for all.
        seed: seeds the weights.

    Raises:
        ClusterSimError: an architecture this executor does not build, or no such device.
    """

    def __init__(self, spec: ModelSpec, *, num_blocks: int, block_size: int,
                 device: str = "cuda", dtype: str = "bf16", num_layers: int | None = None,
                 seed: int = 0) -> None:
        if spec.is_moe or spec.mlp_kind != "gated" or spec.norm_kind != "rmsnorm" \
                or spec.linear_bias or spec.learned_position_embeddings:
            raise ClusterSimError(
                f"model {spec.name}: the reference executor builds dense Llama-style models "
                "(RMSNorm, gated MLP, rotary, no linear biases); pick such a model")
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise ClusterSimError(f"--device {device}: no CUDA/ROCm device is visible; run on "
                                  "a GPU machine, or pass --device cpu for a smoke run")
        if dtype not in TORCH_DTYPES:
            raise ClusterSimError(f"dtype {dtype!r}: use one of {', '.join(TORCH_DTYPES)}")
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = TORCH_DTYPES[dtype]
        self.block_size = block_size
        self.num_layers = num_layers or spec.num_layers
        self.num_heads = spec.num_attention_heads
        self.num_kv_heads = spec.num_kv_heads
        self.head_dim = spec.head_dim
        h, q, kv, f = spec.hidden_size, spec.q_size, spec.kv_size, spec.intermediate_size
        generator = torch.Generator(device=self.device).manual_seed(seed)

        def weight(*shape: int, fan_in: int) -> torch.Tensor:
            w = torch.randn(*shape, generator=generator, device=self.device,
                            dtype=torch.float32)
            scaled: torch.Tensor = w / fan_in**0.5
            return scaled.to(self.dtype)

        self.embedding = weight(spec.vocab_size, h, fan_in=1)
        self.layers = [
            _Layer(attn_norm=torch.ones(h, device=self.device, dtype=self.dtype),
                   qkv=weight(h, q + 2 * kv, fan_in=h),
                   qkv_bias=weight(q + 2 * kv, fan_in=h) if spec.qkv_bias else None,
                   o=weight(q, h, fan_in=q),
                   mlp_norm=torch.ones(h, device=self.device, dtype=self.dtype),
                   gate_up=weight(h, 2 * f, fan_in=h),
                   down=weight(f, h, fan_in=f))
            for _ in range(self.num_layers)
        ]
        self.final_norm = torch.ones(h, device=self.device, dtype=self.dtype)
        self.lm_head = (self.embedding.T if spec.tie_word_embeddings
                        else weight(h, spec.vocab_size, fan_in=h))
        # KV cache: [layer, block, slot in block, kv head, head dim], keys and values.
        cache_shape = (self.num_layers, num_blocks * block_size, self.num_kv_heads,
                       self.head_dim)
        self.k_cache = torch.zeros(cache_shape, device=self.device, dtype=self.dtype)
        self.v_cache = torch.zeros(cache_shape, device=self.device, dtype=self.dtype)
        inv_freq = 1.0 / (_ROPE_THETA ** (
            torch.arange(0, self.head_dim, 2, device=self.device, dtype=torch.float32)
            / self.head_dim))
        self._inv_freq = inv_freq  # [head_dim / 2]

    # ---- pieces -----------------------------------------------------------------------

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5)
        return x32.to(self.dtype) * weight

    def _rotary(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # x: [T, heads, head_dim]; rotate the two halves (GPT-NeoX layout, as Llama's).
        half = self.head_dim // 2
        x1, x2 = x[..., :half].float(), x[..., half:].float()
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(self.dtype)

    def _slots(self, rows: StepRows) -> tuple[torch.Tensor, torch.Tensor]:
        """(positions [T], cache slots [T]) of the step's new tokens."""
        bs = self.block_size
        position_parts, slot_parts = [], []
        for q, c, table in zip(rows.query_lens, rows.context_lens, rows.block_tables,
                               strict=True):
            positions = np.arange(c, c + q)
            position_parts.append(positions)
            slot_parts.append(np.asarray(table)[positions // bs] * bs + positions % bs)
        return (torch.from_numpy(np.concatenate(position_parts)).to(self.device),
                torch.from_numpy(np.concatenate(slot_parts)).to(self.device))

    # ---- the step ---------------------------------------------------------------------

    def run(self, rows: StepRows) -> tuple[list[int], float]:
        """Run one step: (next token of each sampled row, device seconds), timed with
        device events on a GPU (after the previous work drained), a host clock on CPU."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            start.record()
            logits = self.forward(rows)
            end.record()
            tokens = logits.argmax(dim=-1).tolist()  # waits for the step
            end.synchronize()
            return [int(t) for t in tokens], start.elapsed_time(end) / 1e3
        started = time.perf_counter()
        logits = self.forward(rows)
        tokens = logits.argmax(dim=-1).tolist()
        return [int(t) for t in tokens], time.perf_counter() - started

    @torch.inference_mode()
    def forward(self, rows: StepRows) -> torch.Tensor:
        """Run one step through every layer; returns the logits of the sampled rows
        [sampled rows, vocab], in row order (float32)."""
        spec = self.spec
        num_heads, num_kv, d = self.num_heads, self.num_kv_heads, self.head_dim
        q_size, kv_size = spec.q_size, spec.kv_size
        positions, slots = self._slots(rows)
        angles = positions[:, None].float() * self._inv_freq[None, :]  # [T, d/2]
        cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]
        token_ids = torch.tensor(list(rows.token_ids), device=self.device)
        x = self.embedding[token_ids]  # [T, h]

        starts = [0]
        for query_len in rows.query_lens:
            starts.append(starts[-1] + query_len)
        decode_rows = [i for i, q in enumerate(rows.query_lens) if q == 1]
        prefill_rows = [i for i, q in enumerate(rows.query_lens) if q > 1]
        # Decode rows by context length, in up to _DECODE_GROUPS groups of equal count:
        # each group is padded only to its own longest row, not the step's.
        by_length = sorted(decode_rows, key=lambda i: rows.context_lens[i])
        size = -(-len(by_length) // _DECODE_GROUPS) if by_length else 1
        decode_groups = []
        for first in range(0, len(by_length), size):
            group = by_length[first:first + size]
            index, mask = key_slots([rows.block_tables[i] for i in group],
                                    [rows.context_lens[i] + 1 for i in group],
                                    self.block_size, self.device)
            tokens = torch.tensor([starts[i] for i in group], device=self.device)
            decode_groups.append((tokens, index, mask))
        prefill_index = {
            i: key_slots([rows.block_tables[i]], [rows.context_lens[i] + rows.query_lens[i]],
                         self.block_size, self.device)[0][0]
            for i in prefill_rows}

        for layer_index, layer in enumerate(self.layers):
            k_cache, v_cache = self.k_cache[layer_index], self.v_cache[layer_index]
            h = self._rms_norm(x, layer.attn_norm)
            qkv = h @ layer.qkv  # [T, q + 2 kv]
            if layer.qkv_bias is not None:
                qkv = qkv + layer.qkv_bias
            q = self._rotary(qkv[:, :q_size].view(-1, num_heads, d), cos, sin)
            k = self._rotary(qkv[:, q_size:q_size + kv_size].view(-1, num_kv, d), cos, sin)
            v = qkv[:, q_size + kv_size:].reshape(-1, num_kv, d)
            k_cache.index_copy_(0, slots, k)
            v_cache.index_copy_(0, slots, v)

            attn = torch.empty_like(q)  # [T, heads, d]
            for tokens, index, mask in decode_groups:
                attn[tokens] = decode_attention(q[tokens], k_cache, v_cache, index, mask)
            for i in prefill_rows:
                start, end = starts[i], starts[i + 1]
                attn[start:end] = prefill_attention(q[start:end], k_cache, v_cache,
                                                    prefill_index[i])
            x = x + attn.reshape(-1, q_size) @ layer.o

            h = self._rms_norm(x, layer.mlp_norm)
            gate, up = (h @ layer.gate_up).chunk(2, dim=-1)
            x = x + (F.silu(gate) * up) @ layer.down

        sampled = [starts[i + 1] - 1 for i, s in enumerate(rows.sampled) if s]
        last = self._rms_norm(x[torch.tensor(sampled, device=self.device, dtype=torch.long)],
                              self.final_norm)
        return (last @ self.lm_head).float()  # [sampled, vocab]
