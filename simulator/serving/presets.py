"""Engine presets: what a user of a given serving engine version gets by default.

The default engine is today's vLLM, ``vllm-v1-0.15``; ``engine: none`` runs the bare
scheduler policy with no preset and no CPU overhead (the hand-checkable simulator).
``--engine vllm-v1`` sets the scheduler knobs, prefix caching and the CPU overhead per
step that vLLM's V1 engine has out of the box; any knob the user sets still wins. The run
summary records the preset, the engine version it models and every resolved knob.

CPU overhead per step (scheduling, input preparation, sampling, output processing)::

    overhead_s = step_base_s + per_seq_s · num_seqs + per_token_s · num_tokens
    GPU time   = the model's kernels (the cost model) + device_step_s
                 + device_per_seq_s · num_seqs
    serial engines:           step time = overhead + GPU time
    asynchronous scheduling:  step time = max(overhead, GPU time)   (CPU work of step k+1
                                                                     hides under step k)

``device_step_s`` is the device's time per step outside the model's kernels (input
preparation, attention metadata, sampling: small launch-bound kernels the operator tables
do not hold); with pipeline stages it falls on the first stage. ``device_per_seq_s`` is
device time per sequence of the step: the sampler's top-k/top-p pass over the vocabulary
where the sampling parameters filter (``simulator.serving.engine_costs`` adds it from the
preset's ``sampling_bytes_per_entry``). The host figures are documented estimates (see
each preset's ``overhead_source``). ``moe_gemm_factor`` is the engine's fused MoE kernel's
time over the grouped-GEMM model's expert time (``profiles.moe.ExpertLayers``, which runs
the experts' tiles at the dense GEMM fit's speed). The vLLM 0.15 preset's
``device_step_s``, its client path per request and its MoE factor are fitted to real runs
(``python -m validation.calibrate MEASURED --serving --write``, stored with their data in
``data/engine_fits.json``); they are data, kept here in one place. The sampler's traffic
per logit is a counted estimate (``_SORT_SAMPLER``), not a fit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from profiles.errors import ClusterSimError

__all__ = ["DEFAULT_ENGINE", "ENGINE_FITS_PATH", "ENGINE_PRESETS", "CpuOverhead", "EnginePreset",
           "engine_max_num_seqs", "engine_scheduler_defaults"]

# Engine-path parameters fitted to real runs (``python -m validation.calibrate MEASURED
# --serving --write``), by preset name, each with the runs that fit it.
DEFAULT_ENGINE: Final = "vllm-v1-0.15"

ENGINE_FITS_PATH = Path(__file__).parent / "data" / "engine_fits.json"


class CpuOverhead(BaseModel):
    """Engine time per step beyond the model's kernels: host time as a linear function of
    the batch, and device time outside the model's kernels."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    step_base_s: float = Field(default=0.0, ge=0, le=10, description="seconds per step")
    per_seq_s: float = Field(default=0.0, ge=0, le=10, description="seconds per sequence "
                             "in the step")
    per_token_s: float = Field(default=0.0, ge=0, le=10, description="seconds per token "
                               "scheduled in the step")
    async_scheduling: bool = Field(default=False, description="the step's CPU work hides "
                                   "under the previous GPU step: step = max(CPU, GPU)")
    device_step_s: float = Field(default=0.0, ge=0, le=10, description="GPU seconds per "
                                 "step outside the model's kernels (input preparation, "
                                 "attention metadata, sampling), serial with them: never "
                                 "hidden by asynchronous scheduling")
    device_per_seq_s: float = Field(default=0.0, ge=0, le=1, description="GPU seconds per "
                                    "sequence in the step outside the model's kernels "
                                    "(sampling over the vocabulary), serial with them")

    def step_s(self, num_seqs: int, num_tokens: int) -> float:
        return self.step_base_s + self.per_seq_s * num_seqs + self.per_token_s * num_tokens


@dataclass(frozen=True)
class EnginePreset:
    """Defaults of one engine version: scheduler knobs and CPU overhead."""

    version: str
    scheduler: dict[str, Any]
    knobs_source: str
    overhead: CpuOverhead
    overhead_source: str
    large_gpu_scheduler: dict[str, Any] = field(default_factory=dict)
    client_path_s: float = 0.0  # request in (HTTP, tokenization) + first chunk out, per request
    client_path_source: str = "not modelled"
    # the engine's fused MoE kernel: its expert GEMMs' time over the grouped-GEMM model's
    # (which prices them as the dense GEMM fit would), 1.0 where not fitted
    moe_gemm_factor: float = 1.0
    moe_gemm_source: str = "not fitted: the dense GEMM fit's speed"
    # the sampler's top-k/top-p pass: memory traffic per logit of every sequence of a step
    # (simulator.serving.sampling); 0: not priced
    sampling_bytes_per_entry: float = 0.0
    sampling_source: str = "not priced"


_VLLM_V1_OVERHEAD = (
    "estimate: V1 runs detokenization and output processing in a separate process and "
    "keeps persistent batch state, leaving ~0.5 ms per step plus ~5 us per sequence of "
    "scheduling, input preparation and sampling on the critical path; to be replaced by "
    "the real-runs measurements"
)
_VLLM_V0_OVERHEAD = (
    "estimate: V0 schedules, prepares inputs, samples and detokenizes in the same loop as "
    "the forward pass: ~1 ms per step plus ~40 us per sequence (the per-sequence Python "
    "work that the V1 rewrite removed); to be replaced by the real-runs measurements"
)

# vLLM's PyTorch top-k/top-p sampler (V0 and V1): bytes it moves per logit of a sequence.
_SORT_SAMPLER_BYTES = 240.0
_SORT_SAMPLER = (
    "estimate, counted: vLLM's PyTorch top-k/top-p path sorts each sequence's fp32 logits "
    "with int64 indices (a segmented radix sort: six 6-bit passes reading and writing both, "
    "with the index fill and key copies, ~170 bytes per logit), then masks, takes the softmax "
    "and its cumulative sum along the sorted row and scatters back (~70 bytes), at the "
    "catalog's achieved fraction of HBM bandwidth; the Qrita paper (arXiv 2602.01518) reports "
    "a faster top-k/top-p kernel raising end-to-end serving throughput by up to 1.4x, so the "
    "sampler is a sizable share of a serving step"
)

_VLLM_V1 = EnginePreset(
    version="vLLM 0.10 (V1 engine), OpenAI-compatible server",
    scheduler={"policy": "running-first", "enable_prefix_caching": True, "block_size": 16,
               "gpu_memory_utilization": 0.9, "max_num_batched_tokens": 2048,
               "max_num_seqs": 256},
    # NOTE: vLLM raises the server defaults on GPUs with >= 70 GiB other than A100.
    large_gpu_scheduler={"max_num_batched_tokens": 8192, "max_num_seqs": 1024},
    knobs_source="vLLM 0.10 EngineArgs defaults for the OpenAI API server: chunked "
                 "prefill and prefix caching on; 2048 batched tokens and 256 sequences, "
                 "8192 and 1024 on >= 70 GiB GPUs other than A100",
    overhead=CpuOverhead(step_base_s=0.5e-3, per_seq_s=5e-6, per_token_s=0.0),
    overhead_source=_VLLM_V1_OVERHEAD,
    sampling_bytes_per_entry=_SORT_SAMPLER_BYTES,
    sampling_source=_SORT_SAMPLER,
)

ENGINE_PRESETS: dict[str, EnginePreset] = {
    "vllm-v1": _VLLM_V1,
    "vllm-v1-0.15": replace(
        _VLLM_V1,
        version="vLLM 0.15 (V1 engine, asynchronous scheduling), OpenAI-compatible server",
        knobs_source="vLLM V1 EngineArgs defaults, as in 0.10; asynchronous scheduling "
                     "became the default with vLLM PR #27614 (late 2025; the Q4 2025 roadmap "
                     "item 'async scheduling on by default'), so 0.15 schedules step k+1 "
                     "while step k runs",
        overhead=_VLLM_V1.overhead.model_copy(update={"async_scheduling": True})),
    "vllm-v0": EnginePreset(
        version="vLLM 0.6 (V0 engine), OpenAI-compatible server",
        scheduler={"policy": "prefill-first", "enable_prefix_caching": False, "block_size": 16,
                   "gpu_memory_utilization": 0.9, "max_num_seqs": 256},
        knobs_source="vLLM 0.6 EngineArgs defaults: chunked prefill and prefix caching off, "
                     "max_num_batched_tokens = max(max_model_len, 2048), 256 sequences",
        overhead=CpuOverhead(step_base_s=1.0e-3, per_seq_s=40e-6, per_token_s=0.0),
        overhead_source=_VLLM_V0_OVERHEAD,
        sampling_bytes_per_entry=_SORT_SAMPLER_BYTES,
        sampling_source=_SORT_SAMPLER,
    ),
    "sarathi-serve": EnginePreset(
        version="Sarathi-Serve (OSDI 2024 artifact, built on vLLM V0)",
        scheduler={"policy": "stall-free", "enable_prefix_caching": False, "block_size": 16,
                   "gpu_memory_utilization": 0.9, "max_num_batched_tokens": 512,
                   "max_num_seqs": 128},
        knobs_source="Sarathi-Serve paper, Sec. 5: token budget 512 for strict TBT SLOs",
        overhead=CpuOverhead(step_base_s=1.0e-3, per_seq_s=40e-6, per_token_s=0.0),
        overhead_source=_VLLM_V0_OVERHEAD,
        sampling_bytes_per_entry=_SORT_SAMPLER_BYTES,
        sampling_source=_SORT_SAMPLER,
    ),
}


def _with_fits(presets: dict[str, EnginePreset]) -> dict[str, EnginePreset]:
    """The presets with their fitted engine-path parameters, where a fit exists."""
    if not ENGINE_FITS_PATH.is_file():
        return presets
    fits = json.loads(ENGINE_FITS_PATH.read_text())["presets"]
    return {name: _fitted(preset, fits[name]) if name in fits else preset
            for name, preset in presets.items()}


def _fitted(preset: EnginePreset, fit: dict[str, Any]) -> EnginePreset:
    device_s = float(fit.get("device_step_s", preset.overhead.device_step_s))
    if "moe_gemm_factor" in fit:
        preset = replace(preset, moe_gemm_factor=float(fit["moe_gemm_factor"]),
                         moe_gemm_source=fit["moe_gemm_source"])
    return replace(preset, client_path_s=fit["client_path_s"], client_path_source=fit["source"],
                   overhead=preset.overhead.model_copy(update={"device_step_s": device_s}),
                   overhead_source=(preset.overhead_source + "; device time per step "
                                    + fit["device_step_source"]
                                    if "device_step_source" in fit else preset.overhead_source))


ENGINE_PRESETS = _with_fits(ENGINE_PRESETS)


def engine_scheduler_defaults(engine: str, hbm_gib: float, gpu_name: str) -> dict[str, Any]:
    """Scheduler knobs an engine preset gives on a GPU with ``hbm_gib`` of memory."""
    preset = ENGINE_PRESETS[engine]
    knobs = dict(preset.scheduler)
    if hbm_gib >= 70 and "A100" not in gpu_name.upper():
        knobs.update(preset.large_gpu_scheduler)
    return knobs


# vLLM's scheduler configuration refuses a token budget below max_num_seqs (each running
# sequence needs a token of a step's budget); its V1 arguments set an unset max_num_seqs no
# higher than the budget (min(the usage default, the budget)).
_VLLM_ENGINES = ("vllm-v0", "vllm-v1", "vllm-v1-0.15")
_SEQS_WITHIN_BUDGET_ENGINES = ("vllm-v1", "vllm-v1-0.15")


def engine_max_num_seqs(engine: str | None, max_num_seqs: int, budget: int,
                        seqs_given: bool) -> int:
    """max_num_seqs as a vLLM engine starts with it (the comment above): vLLM's V1
    lowers its own default to the budget, and any vLLM refuses a budget below a
    max_num_seqs it was given. Other engines (Sarathi-Serve's artifact, the bare policy)
    take the knobs as they are."""
    if engine not in _VLLM_ENGINES or max_num_seqs <= budget:
        return max_num_seqs
    if not seqs_given and engine in _SEQS_WITHIN_BUDGET_ENGINES:
        return budget
    raise ClusterSimError(
        f"scheduler.max_num_batched_tokens={budget} is below max_num_seqs={max_num_seqs}: "
        f"engine {engine} refuses it at start (each running sequence needs a token of a "
        f"step's budget); raise max_num_batched_tokens or lower max_num_seqs")
