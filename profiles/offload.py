"""Offloading: weights streamed from host memory or NVMe at every forward pass.

vLLM's ``--cpu-offload-gb`` keeps that many GiB of each GPU's weights in pinned host
memory and its kernels read them in place over the host link (UVA), so every forward
pass moves them again; FlexGen and DeepSpeed-Inference instead prefetch the next
layer's weights while the current layer computes. Per pipeline stage::

    in place (vLLM):   stage + offloaded / host link - offloaded / HBM (read elsewhere)
    prefetch (FlexGen): max(stage, offloaded / host link)

From NVMe the stream runs at the slower of the drive's read rate and the host link.
:class:`StreamedWeights` wraps any cost model (roofline or profiled), so the stream is
priced the same way whichever prices the step.
"""

from __future__ import annotations

from dataclasses import dataclass

from profiles.cost_model import BatchShape, CostModel, StepCost

__all__ = ["StreamedWeights", "WeightStream"]


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
