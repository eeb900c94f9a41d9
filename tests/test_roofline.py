"""Roofline cost model: hand-computable terms of the datasheet roofline (catalog GPUs with
their fitted kernels set aside) and consistency of the breakdown."""

from __future__ import annotations

import pytest

from profiles.cluster import LinkCost
from profiles.collectives import all_reduce_s as ring_allreduce_s
from profiles.cost_model import OPERATORS, BatchShape
from profiles.hardware import GB, GPUSpec, load_gpu
from profiles.models import load_model
from profiles.roofline import RooflineCostModel, split_layers

NVLINK = LinkCost(bandwidth_bytes_per_s=300e9, latency_s=5e-6)
NONE = LinkCost(bandwidth_bytes_per_s=float("inf"), latency_s=0.0)


def datasheet_gpu(name: str) -> GPUSpec:
    """A catalog GPU on the datasheet roofline: peaks times the catalog's fractions."""
    return load_gpu(name).model_copy(update={"kernels": None})


def model_for(name: str = "llama-3-8b", gpu: str = "a100", tp: int = 1, pp: int = 1
              ) -> RooflineCostModel:
    return RooflineCostModel(load_model(name), datasheet_gpu(gpu), tp, pp, NVLINK, NVLINK)


def decode(context: int) -> BatchShape:
    return BatchShape([1], [context], num_sampled=1)


def test_decode_attention_grows_with_context_by_kv_bytes_read() -> None:
    """Each extra context token costs its KV bytes per layer at achieved HBM bandwidth."""
    cost = model_for()
    gpu = datasheet_gpu("a100")
    delta = cost.predict(decode(2000)).total_s - cost.predict(decode(1000)).total_s
    kv_bytes_per_layer = 2 * 8 * 128 * 2  # K and V, 8 KV heads of 128 dims, bf16
    expected = 32 * 1000 * kv_bytes_per_layer / (gpu.hbm_bandwidth_gbps * GB * 0.85)
    assert delta == pytest.approx(expected, rel=1e-9)


def test_small_decode_is_weight_bound() -> None:
    """One decode token reads every weight once (the embedding table only one row):
    time ~ (weights - embedding table) / achieved bandwidth."""
    cost = model_for()
    spec = load_model("llama-3-8b")
    weights_s = (spec.weight_bytes - 128256 * 4096 * 2) / (2039e9 * 0.85)
    assert cost.predict(decode(1)).total_s == pytest.approx(weights_s, rel=0.01)


def test_large_prefill_is_compute_bound() -> None:
    """An 8k-token prefill runs each GEMM at the achieved matmul rate times its wave
    utilization: 64 row tiles of 128 by n/128 column tiles over A100's 108 SMs."""
    cost = model_for()
    step = cost.predict(BatchShape([8192], [0], num_sampled=1))
    rate = 312e12 * 0.86
    # (n, k, tiles, slots in whole waves): qkv, o, gate+up, down of Llama-3-8B.
    gemms = [(6144, 4096, 3072, 29 * 108), (4096, 4096, 2048, 19 * 108),
             (28672, 4096, 14336, 133 * 108), (4096, 14336, 2048, 19 * 108)]
    gemm_s = 32 * sum(2 * 8192 * n * k / (rate * tiles / slots) for n, k, tiles, slots in gemms)
    ops = step.operator_s
    assert ops["qkv_proj"] + ops["o_proj"] + ops["mlp"] == pytest.approx(gemm_s, rel=1e-9)
    assert step.compute_s > step.memory_s


def test_breakdown_adds_up_to_the_step() -> None:
    cost = model_for(tp=2)
    step = cost.predict(BatchShape([1, 1, 300], [500, 900, 0], num_sampled=3,
                                   swap_in_tokens=32))
    assert set(step.operator_s) == set(OPERATORS)
    assert sum(step.operator_s.values()) == pytest.approx(step.total_s, rel=1e-12)
    assert step.compute_s + step.memory_s + step.communication_s == pytest.approx(
        step.total_s, rel=1e-12)
    assert step.operator_s["tp_allreduce"] > 0 and step.operator_s["kv_swap"] > 0


def test_tensor_parallel_halves_gemm_time_of_a_big_prefill() -> None:
    """Half the MLP columns per GPU: half the time, less what the waves lose. At tp=1 the
    gate+up GEMM has 32 x 224 = 7168 tiles (67 waves of 108, 7236 slots) and down 1024
    (10 waves); at tp=2, 3584 (34 waves) and still 1024 (the down GEMM's k halves)."""
    big = BatchShape([4096], [0], num_sampled=1)
    one, two = model_for(tp=1).predict(big), model_for(tp=2).predict(big)
    rate = 312e12 * 0.86
    assert one.operator_s["mlp"] == pytest.approx(
        32 * 2 * 4096 * (28672 * 4096 * 7236 / 7168 + 4096 * 14336 * 1080 / 1024) / rate,
        rel=1e-9)
    assert two.operator_s["mlp"] == pytest.approx(
        32 * 2 * 4096 * (14336 * 4096 * 3672 / 3584 + 4096 * 7168 * 1080 / 1024) / rate,
        rel=1e-9)
    assert two.operator_s["mlp"] == pytest.approx(one.operator_s["mlp"] / 2, rel=0.01)
    hidden_bytes = 4096 * 4096 * 2
    assert two.operator_s["tp_allreduce"] == pytest.approx(
        32 * 2 * ring_allreduce_s(hidden_bytes, 2, NVLINK), rel=1e-9)


def test_pipeline_stages_split_layers_and_send_activations() -> None:
    batch = BatchShape([1] * 8, [100] * 8, num_sampled=8)
    one, two = model_for(pp=1).predict(batch), model_for(pp=2).predict(batch)
    assert len(two.stage_s) == 2
    send_s = NVLINK.transfer_s(8 * 4096 * 2)
    assert sum(two.stage_s) == pytest.approx(one.total_s + send_s, rel=1e-9)
    assert split_layers(80, 3) == (27, 27, 26)


def test_lm_head_runs_only_for_sampled_rows() -> None:
    cost = model_for()
    chunk = cost.predict(BatchShape([512], [0], num_sampled=0))
    last = cost.predict(BatchShape([512], [0], num_sampled=1))
    assert chunk.operator_s["lm_head"] == 0.0
    assert last.total_s - chunk.total_s == pytest.approx(last.operator_s["lm_head"])


def test_ring_allreduce_hand_computed() -> None:
    """8 GPUs, 1 GB: 2·7/8 GB over 100 GB/s plus 14 latency steps of 1 µs."""
    link = LinkCost(bandwidth_bytes_per_s=100e9, latency_s=1e-6)
    assert ring_allreduce_s(1e9, 8, link) == pytest.approx(14 * 1e-6 + 1.75e9 / 100e9)
    assert ring_allreduce_s(1e9, 1, link) == 0.0


def test_moe_reads_only_touched_experts() -> None:
    """One Mixtral token touches 2 of 8 experts; a large batch touches all 8."""
    cost = RooflineCostModel(load_model("mixtral-8x7b"), datasheet_gpu("h100"), 1, 1, NONE, NONE)
    one = cost.predict(decode(10)).operator_s["mlp"]
    many = cost.predict(BatchShape([1] * 64, [10] * 64, num_sampled=64)).operator_s["mlp"]
    assert many / one == pytest.approx(4.0, rel=0.05)
