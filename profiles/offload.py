"""Offloading: weights streamed from host memory or NVMe at every forward pass.

vLLM's ``--cpu-offload-gb`` keeps that many GiB of each GPU's weights in pinned host
memory and its kernels read them in place over the host link (UVA), so every forward
pass moves them again; FlexGen and DeepSpeed-Inference instead prefetch the next
layer's weights while the current layer computes. Per pipeline stage::

    in place (vLLM):   stage + offloaded / host link - offloaded / HBM (read elsewhere)
    prefetch (FlexGen): max(stage, offloaded / host link)

From NVMe the stream runs at the slower of the drive's read rate and the host link.
:class:`OffloadedAttention` moves decode attention and the KV cache to a pool of
memory-rich devices (Lamina).
:class:`StreamedWeights` wraps any cost model (roofline or profiled), so the stream is
priced the same way whichever prices the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from profiles.cost_model import BatchShape, CostModel, StepCost

__all__ = ["AttentionPool", "OffloadedAttention", "StreamedWeights", "WeightStream"]


@dataclass(frozen=True, slots=True)
class WeightStream:
    """What one GPU streams per forward pass, and how fast."""

    bytes_per_gpu: float
    bandwidth_bytes_per_s: float
    hbm_bytes_per_s: float
    prefetch: bool = False

    @property
    def seconds(self) -> float:
        return self.bytes_per_gpu / self.bandwidth_bytes_per_s


class StreamedWeights:
    """A cost model whose steps also stream offloaded weights (module docstring)."""

    def __init__(self, inner: CostModel, stream: WeightStream) -> None:
        self.inner = inner
        self.stream = stream
        self._in_place_s = stream.seconds - stream.bytes_per_gpu / stream.hbm_bytes_per_s

    @property
    def num_stages(self) -> int:
        return self.inner.num_stages

    def predict(self, batch: BatchShape) -> StepCost:
        cost = self.inner.predict(batch)
        if self.stream.prefetch:
            stages = tuple(max(s, self.stream.seconds) for s in cost.stage_s)
        else:
            stages = tuple(s + self._in_place_s for s in cost.stage_s)
        extra = sum(stages) - sum(cost.stage_s)
        inner_breakdown = cost.breakdown

        def breakdown() -> dict[str, float]:
            ops = dict(inner_breakdown()) if inner_breakdown is not None else {}
            ops["weight_stream"] = ops.get("weight_stream", 0.0) + extra
            return ops

        return StepCost(stages, cost.compute_s, cost.memory_s, cost.communication_s + extra,
                        cost.flops, breakdown)


@dataclass(frozen=True, slots=True)
class AttentionPool:
    """Memory-rich devices that hold a replica's KV cache and run its decode attention
    (Lamina, Chen et al. 2024): ``attention`` prices their attention kernels (heads split
    over the devices), the link joins them to the replica."""

    attention: Any  # a RooflineCostModel on the attention devices' GPU
    bandwidth_bytes_per_s: float
    latency_s: float
    overlap: bool
    num_layers: int
    bytes_per_decode_row_layer: float  # q out, attention output back, the new K and V
    kv_bytes_per_token: float


class OffloadedAttention:
    """A cost model whose decode attention runs on an :class:`AttentionPool`.

    Per step the replica's own time loses its decode attention; the pool's decode
    attention and, per layer, the round trip of each decode row's query, new K/V and
    output over the link are added (a prefill's KV is written to the pool too). With
    ``overlap`` (Lamina's pipelining of two micro-batches) the step takes the longer of
    the replica's part and the pool's part, else their sum.
    """

    def __init__(self, inner: CostModel, pool: AttentionPool) -> None:
        self.inner = inner
        self.pool = pool

    @property
    def num_stages(self) -> int:
        return self.inner.num_stages

    def predict(self, batch: BatchShape) -> StepCost:
        cost = self.inner.predict(batch)
        pool = self.pool
        rows = sum(1 for q in batch.query_lens if q == 1)
        decode_kv = sum(c + 1 for q, c in zip(batch.query_lens, batch.context_lens,
                                              strict=True) if q == 1)
        prefill_tokens = sum(q for q in batch.query_lens if q > 1)
        ops = cost.operator_s
        local = ops["attn_decode"]
        _, (per_layer_s, _) = pool.attention.attention_terms(0.0, 0, 0, decode_kv)
        remote = pool.num_layers * per_layer_s if rows else 0.0
        transfer = (pool.num_layers * (2 * pool.latency_s + rows * pool.bytes_per_decode_row_layer
                                       / pool.bandwidth_bytes_per_s) if rows else 0.0)
        kv_write = prefill_tokens * pool.kv_bytes_per_token / pool.bandwidth_bytes_per_s
        rest = cost.total_s - local
        away = remote + transfer
        total = (max(rest, away) if pool.overlap else rest + away) + kv_write
        scale = total / cost.total_s if cost.total_s > 0 else 1.0
        stages = tuple(s * scale for s in cost.stage_s)

        def breakdown() -> dict[str, float]:
            out = dict(ops)
            out["attn_decode"] = remote
            out["kv_swap"] = out.get("kv_swap", 0.0) + transfer + kv_write
            return out

        return StepCost(stages, cost.compute_s, cost.memory_s,
                        cost.communication_s + transfer + kv_write, cost.flops, breakdown)
