"""Quantized weights and KV cache: memory and time follow the formats (vLLM's
--quantization and --kv-cache-dtype, or a config's quantization_config)."""

from __future__ import annotations

import pytest

from profiles.cost_model import BatchShape
from profiles.errors import ClusterSimError
from profiles.hardware import load_gpu
from profiles.models import ModelSpec, list_models, load_model
from simulator.serving.build import resolve
from simulator.serving.config import build_deployment

BASE = {"model": "llama-3.1-8b", "gpu": "h100", "scheduler": {"policy": "running-first"}}


def _resolved(**fields: object):
    return resolve(build_deployment(BASE | fields))


def test_fp8_weights_halve_the_weight_bytes() -> None:
    bf16, fp8 = _resolved(), _resolved(quantization="fp8")
    assert fp8.model.dtype == "fp8" and fp8.model.kv_cache_dtype == "bf16"
    assert fp8.memory.weight_bytes == pytest.approx(bf16.memory.weight_bytes / 2)
    # The freed memory goes to the KV cache.
    assert fp8.memory.num_gpu_blocks > bf16.memory.num_gpu_blocks


def test_fp8_kv_cache_halves_kv_bytes_and_doubles_capacity() -> None:
    """Llama-3.1-8B: 32 layers x 8 KV heads x 128 x 2 (K, V) x 2 bytes = 128 KiB a token
    in bf16, 64 KiB in FP8; the same KV memory holds twice the blocks (to within the
    floor of one division)."""
    bf16, fp8 = _resolved(), _resolved(kv_cache_dtype="fp8")
    assert bf16.model.kv_bytes_per_token == 32 * 8 * 128 * 2 * 2
    assert fp8.model.kv_bytes_per_token == bf16.model.kv_bytes_per_token / 2
    assert fp8.memory.kv_block_bytes == bf16.memory.kv_block_bytes / 2
    assert fp8.memory.kv_cache_bytes == pytest.approx(bf16.memory.kv_cache_bytes)
    assert abs(fp8.memory.num_gpu_blocks - 2 * bf16.memory.num_gpu_blocks) <= 1


def test_int4_weight_only_decode_reads_a_quarter_of_the_weights() -> None:
    """At batch 1 a decode step reads every weight once: INT4 (AWQ/GPTQ-like, computed
    in 16-bit) is bounded by a quarter of bf16's weight bytes, plus what is not weights."""
    batch = BatchShape([1], [512], 1)
    bf16 = _resolved().cost_models[0].predict(batch).total_s
    int4 = _resolved(quantization="awq").cost_models[0].predict(batch).total_s
    assert int4 < 0.5 * bf16
    model, gpu = load_model("llama-3.1-8b"), load_gpu("h100")
    floor = model.num_params * 0.5 / (gpu.hbm_bandwidth_gbps * 1e9)  # at HBM peak
    assert int4 >= floor


def test_quantization_config_of_a_released_checkpoint_is_read() -> None:
    """DeepSeek-V3 ships FP8 weights (quantization_config fp8); Llama-4-Scout's FP8
    release is compressed-tensors; an unknown method is refused by name."""
    assert load_model("deepseek-v3").dtype == "fp8"
    assert load_model("RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic").dtype == "fp8"
    config = dict(next(e for e in list_models() if e["name"] == "llama-3-8b")["config"],
                  quantization_config={"quant_method": "hqq"})
    with pytest.raises(ClusterSimError, match="quant_method 'hqq'"):
        ModelSpec.from_hf_config(config, "odd")


def test_unknown_formats_are_refused() -> None:
    with pytest.raises(ClusterSimError, match="quantization"):
        build_deployment(BASE | {"quantization": "nf3"})
    with pytest.raises(ClusterSimError, match="kv_cache_dtype"):
        build_deployment(BASE | {"kv_cache_dtype": "int2"})


def test_weight_only_int4_dequantizes_on_the_cuda_cores() -> None:
    """W4A16 (AWQ/GPTQ through Marlin-style kernels): at batch 1 the GEMM is bound by the
    weights' bytes, a quarter of bf16's, so nearly 4x faster; at a large batch both are
    compute bound and INT4 pays the dequantization on top: k x n x ceil(m / 64) x 2
    instructions at the FP32 rate."""
    from profiles.gemm import dequant_s, gemm_bytes, gemm_time_s
    from profiles.hardware import load_gpu

    h100 = load_gpu("h100")
    n, k = 14336, 4096
    assert gemm_bytes(1, n, k, "int4") == k * n * 0.5 + (k + n) * 2
    small = gemm_time_s(h100, 1, n, k, "bf16") / gemm_time_s(h100, 1, n, k, "int4")
    assert 3.9 < small < 4.0
    m = 8192
    assert dequant_s(h100, m, n, k, "int4") == pytest.approx(
        k * n * (m / 64) * 2.0 / (h100.peak_tflops.fp32 * 1e12), rel=1e-12)
    assert gemm_time_s(h100, m, n, k, "int4") == pytest.approx(
        gemm_time_s(h100, m, n, k, "bf16") + dequant_s(h100, m, n, k, "int4"), rel=1e-12)
    assert dequant_s(h100, m, n, k, "fp8") == 0.0
