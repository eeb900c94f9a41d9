"""Time models of the operators around the GEMMs: memory-streaming kernels, attention,
and the all-reduce inside a node, each with the GPU's fitted parameters
(``GPUSpec.kernels``, see ``profiles.kernel_fit``) or, without them, the datasheet
roofline with the catalog's efficiency fractions.

    stream       launch + bytes / (fitted fraction of HBM bandwidth for the op)
                 bytes per element: rmsnorm 4 (read, write), silu_mul 6 (gate and up in,
                 one out), rotary 4, add 6 (two in, one out), kv_write 4
    prefill      launch + (compute^p + memory^p)^(1/p), compute = causal FLOPs / (fitted
                 fraction x peak), memory = KV read + Q and O / bandwidth
    decode       launch + KV bytes read / (fitted fraction x HBM bandwidth)
    all-reduce   launch + 2(n-1) x latency + 2(n-1)/n x bytes / (fitted fraction x link),
                 NCCL's ring inside a node, fitted per GPU over group sizes 2-8

All functions take numpy arrays or floats and return the same; times are seconds.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from profiles.hardware import GB, GPUSpec

__all__ = ["STREAM_BYTES_PER_ELEMENT", "all_reduce_fitted_s", "decode_attention_s",
           "prefill_attention_s", "stream_s"]

# Bytes moved per element of the op's width, 16-bit activations (module docstring).
STREAM_BYTES_PER_ELEMENT = {"rmsnorm": 4.0, "silu_mul": 6.0, "rotary": 4.0, "add": 6.0,
                            "kv_write": 4.0}

T = TypeVar("T", float, np.ndarray)


def stream_s(gpu: GPUSpec, op: str, num_bytes: T) -> T:
    """A memory-streaming kernel (norm, activation, rotary, residual add, KV write)."""
    fit = gpu.kernels.stream if gpu.kernels is not None else None
    bandwidth = gpu.hbm_bandwidth_gbps * GB
    if fit is None:
        return num_bytes / (bandwidth * gpu.efficiency.memory)
    fraction = fit.memory.get(op, fit.memory.get("rmsnorm", gpu.efficiency.memory))
    return fit.launch_us * 1e-6 + num_bytes / (bandwidth * fraction)


def prefill_attention_s(gpu: GPUSpec, flops: T, num_bytes: T, dtype: str = "bf16") -> T:
    """Causal prefill attention of ``flops`` (4 x heads x head_dim x score pairs) reading
    ``num_bytes`` (keys, values, queries and outputs)."""
    fit = gpu.kernels.attention if gpu.kernels is not None else None
    peak, bandwidth = gpu.compute_flops(dtype), gpu.hbm_bandwidth_gbps * GB
    if fit is None:
        compute = flops / (peak * gpu.efficiency.attention)
        memory = num_bytes / (bandwidth * gpu.efficiency.memory)
        return np.maximum(compute, memory) if isinstance(compute, np.ndarray) \
            else max(compute, memory)
    p = fit.blend
    compute = flops / (peak * fit.prefill)
    memory = num_bytes / (bandwidth * fit.prefill_memory)
    blended: T = (compute**p + memory**p) ** (1.0 / p)
    return fit.prefill_launch_us * 1e-6 + blended


def decode_attention_s(gpu: GPUSpec, kv_bytes: T, flops: T, dtype: str = "bf16") -> T:
    """Decode attention reading ``kv_bytes`` of cached keys and values."""
    fit = gpu.kernels.attention if gpu.kernels is not None else None
    bandwidth = gpu.hbm_bandwidth_gbps * GB
    if fit is None:
        compute = flops / (gpu.compute_flops(dtype) * gpu.efficiency.attention)
        memory = kv_bytes / (bandwidth * gpu.efficiency.memory)
        return np.maximum(compute, memory) if isinstance(compute, np.ndarray) \
            else max(compute, memory)
    return fit.decode_launch_us * 1e-6 + kv_bytes / (bandwidth * fit.decode_memory)


def all_reduce_fitted_s(gpu: GPUSpec, num_bytes: T, n: int) -> T | None:
    """NCCL's ring all-reduce inside one node under the fitted parameters, or None where
    the GPU has no fit (the caller keeps the link model of ``profiles.collectives``)."""
    fit = gpu.kernels.all_reduce if gpu.kernels is not None else None
    if fit is None:
        return None
    if n <= 1:
        return num_bytes * 0.0
    link = gpu.scale_up.bandwidth_gbps * GB * fit.bandwidth
    steps = 2 * (n - 1)
    return (fit.launch_us * 1e-6 + steps * fit.latency_us * 1e-6
            + steps / n * num_bytes / link)
