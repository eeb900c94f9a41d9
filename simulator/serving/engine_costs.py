"""The engine's costs around the model's kernels, per deployment: its CPU overhead per step
with the sampler priced in (``simulator.serving.sampling``), and what a run's summary says
of the engine."""

from __future__ import annotations

from typing import Any

from profiles.errors import ClusterSimError
from profiles.hardware import GPUSpec
from profiles.models import ModelSpec
from simulator.serving.config import DeploymentConfig
from simulator.serving.presets import ENGINE_PRESETS, CpuOverhead
from simulator.serving.sampling import ResolvedSampling, resolve_sampling, sampling_s_per_seq

__all__ = ["deployment_sampling", "engine_overhead", "engine_record", "resolve_cpu_overhead"]


def resolve_cpu_overhead(deployment: DeploymentConfig) -> CpuOverhead | None:
    """The explicit CPU overhead, else the engine preset's, else none; ``async_scheduling``
    switches its overlap with the GPU step."""
    overhead = deployment.cpu_overhead
    if overhead is None and deployment.engine is not None:
        overhead = ENGINE_PRESETS[deployment.engine].overhead
    if overhead is None:
        if deployment.async_scheduling:
            raise ClusterSimError("async_scheduling needs a CPU overhead to overlap: pass "
                                  "--engine or a cpu_overhead block in the deployment")
        return None
    if deployment.async_scheduling is not None:
        overhead = overhead.model_copy(update={"async_scheduling": deployment.async_scheduling})
    return overhead


def engine_overhead(deployment: DeploymentConfig, model: ModelSpec, gpu: GPUSpec
                    ) -> CpuOverhead | None:
    """:func:`resolve_cpu_overhead` with the engine's sampler priced into the device time
    per sequence (``simulator.serving.sampling``); unchanged without an engine preset
    (the bare policy has no sampler costs) or where the sampling does not filter."""
    overhead = resolve_cpu_overhead(deployment)
    if overhead is None or deployment.engine is None:
        return overhead
    bytes_per_entry = ENGINE_PRESETS[deployment.engine].sampling_bytes_per_entry
    seconds = sampling_s_per_seq(deployment_sampling(deployment), model, gpu, bytes_per_entry)
    if seconds == 0.0:
        return overhead
    return overhead.model_copy(
        update={"device_per_seq_s": overhead.device_per_seq_s + seconds})


def deployment_sampling(deployment: DeploymentConfig) -> ResolvedSampling:
    """The sampling parameters a request of ``deployment`` gets by default."""
    return resolve_sampling(deployment.model, deployment.generation_config,
                            deployment.sampling)


def engine_record(deployment: DeploymentConfig, overhead: CpuOverhead | None
                  ) -> dict[str, Any]:
    """What the summary says about the modelled engine, its CPU overhead and sampler."""
    record: dict[str, Any] = {"preset": deployment.engine}
    if deployment.engine is not None:
        preset = ENGINE_PRESETS[deployment.engine]
        record.update(version=preset.version, knobs_source=preset.knobs_source,
                      overhead_source=preset.overhead_source,
                      client_path_s=preset.client_path_s,
                      client_path_source=preset.client_path_source,
                      moe_gemm_factor=preset.moe_gemm_factor,
                      moe_gemm_source=preset.moe_gemm_source,
                      sampling_bytes_per_entry=preset.sampling_bytes_per_entry,
                      sampling_source=preset.sampling_source)
    sampling = deployment_sampling(deployment)
    record["sampling"] = {"values": sampling.values, "source": sampling.source,
                          "filters": sampling.filters, "overridden": sampling.overridden}
    if deployment.cpu_overhead is not None:
        record["overhead_source"] = "given in the deployment"
    record["cpu_overhead"] = overhead.model_dump() if overhead is not None else None
    return record
