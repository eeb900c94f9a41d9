"""Activation offloading to the host (Megatron-Core's --cpu-offloading-num-layers):
memory by hand count, the copies' exposed time, the plan's limits, launch and planner."""

from __future__ import annotations

from typing import Any

import pytest

from profiles.errors import ClusterSimError
from profiles.hardware import GB, load_gpu
from profiles.models import load_model
from profiles.training_memory import activation_bytes_per_layer, training_memory
from simulator.training.step import simulate_training
from workloads.training import build_training_job

# Megatron-Bridge's GB200 FP8 recipe for Llama 3 70B: Megatron FSDP over 64 GPUs, micro-
# batch 2, 40 of 80 layers' activations on the host (cpu_offloading_num_layers=40), FP8
# weights (its mixed-precision recipe's fp8_param_gather).
RECIPE = {"model": "llama-3-70b", "gpu": "gb200", "seq_len": 8192, "global_batch": 256,
          "micro_batch": 2, "dtype": "fp8",
          "plan": {"dp": 64, "zero_stage": 3, "activation_offload_layers": 40,
                   "fp8_param_gather": True}}


def _job(**plan: Any) -> Any:
    return build_training_job({**RECIPE, "plan": RECIPE["plan"] | plan})


def test_offloaded_layers_leave_the_gpu_but_one_copy_in_flight() -> None:
    """GPU activations: (80 - 40 + 1) layers' worth; host: 40 layers' worth."""
    model, gpu = load_model("llama-3-70b"), load_gpu("gb200")
    per_layer = activation_bytes_per_layer(model, 8192, 2, 1, False, "none",
                                           attention_kernel="flash", fp8=True)
    common = dict(seq_len=8192, micro_batch=2, num_micro_batches=2, tp=1, pp=1, dp=64,
                  cp=1, ep=1, virtual_stages=1, schedule="1f1b", sequence_parallel=False,
                  recompute="none", zero_stage=3, attention_kernel="flash", fp8=True)
    kept = training_memory(model, gpu, **common)
    moved = training_memory(model, gpu, **common, activation_offload_layers=40)
    assert kept.activations == pytest.approx(80 * per_layer)
    assert moved.activations == pytest.approx(41 * per_layer)
    assert moved.host_activations == pytest.approx(40 * per_layer)
    assert moved.weights == kept.weights and moved.optimizer == kept.optimizer


def test_the_recipe_fits_with_its_offload_and_not_without() -> None:
    """The published plan fits in 186 GiB with its 40 layers on the host and not
    without them; the fewest offloaded layers that fit are within a few of the recipe's
    40 (a recipe tuned near the limit, leaving the runtime's own buffers some room)."""
    result = simulate_training(_job())
    assert result.memory.total <= result.memory.capacity
    with pytest.raises(ClusterSimError, match="plan does not fit: .*activations"):
        simulate_training(_job(activation_offload_layers=0))
    fewest = 40
    while fewest > 0:
        try:
            simulate_training(_job(activation_offload_layers=fewest - 1))
        except ClusterSimError:
            break
        fewest -= 1
    assert 32 <= fewest <= 40


def test_only_the_copies_that_outlast_a_layer_pass_show() -> None:
    """Per micro-batch and offloaded layer: max(0, copy - forward) after the forward and
    max(0, copy - backward) before the backward; the copy is one layer's activations
    over the host link (NVLink-C2C's share on GB200)."""
    result = simulate_training(_job())
    gpu = load_gpu("gb200")
    copy = result.memory.host_activations / 40 / (gpu.host_link.bandwidth_gbps * GB)
    forward, backward = result.layer["forward_s"], result.layer["backward_s"]
    expected = result.num_micro_batches * 40 * (max(0.0, copy - forward)
                                                + max(0.0, copy - backward))
    assert expected > 0
    assert result.breakdown["activation_offload"] == pytest.approx(expected)
    assert sum(result.breakdown.values()) == pytest.approx(result.step_s)
    slower = simulate_training(_job(activation_offload_layers=50))
    assert slower.step_s > result.step_s


@pytest.mark.parametrize("plan, message", [
    ({"pp": 2, "dp": 32}, "activation_offload_layers needs pp=1"),
    ({"recompute": "full"}, "activation_offload_layers needs recompute=none"),
])
def test_megatron_core_s_limits_are_one_line_errors(plan: dict, message: str) -> None:
    with pytest.raises(ClusterSimError, match=message):
        _job(**plan)


def test_every_layer_cannot_be_offloaded_nor_more_than_the_host_holds() -> None:
    with pytest.raises(ClusterSimError, match="must be below llama-3-70b's 80 layers"):
        simulate_training(_job(activation_offload_layers=80))
    with pytest.raises(ClusterSimError, match="offloaded activations put .* on the host"):
        simulate_training(_job(activation_offload_layers=79))


def test_the_launch_carries_it_for_megatron_and_torchtitan_refuses_it() -> None:
    from planners.launch import megatron_args, torchtitan_args

    words = megatron_args(_job(zero_stage=1)).split()
    at = words.index("--cpu-offloading")
    assert words[at:at + 3] == ["--cpu-offloading", "--cpu-offloading-num-layers", "40"]
    with pytest.raises(ClusterSimError, match="activation_offload_layers: torchtitan"):
        torchtitan_args(_job(), 80)


def test_the_planner_offloads_where_a_plan_would_not_fit_otherwise() -> None:
    """Of 0 and 40 offloaded layers, only 40 fits; pipelined plans are not offered it."""
    from planners.training import TrainingSpace, plan_training

    space = TrainingSpace(num_gpus=[64], tp=[1], pp=[1, 2], zero_stage=[3],
                          activation_offload_layers=[0, 40], micro_batch=[2],
                          recompute=["none"], schedules=["1f1b"])
    plan = plan_training(_job(), space)
    shown = {(c.plan["pp"], c.plan["activation_offload_layers"]): c.status
             for c in plan.candidates}
    assert shown == {(1, 0): "infeasible", (1, 40): "evaluated", (2, 0): "infeasible"}
