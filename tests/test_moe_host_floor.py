"""The host floor of dropless MoE layers in training: a layer pass whose GPU work is
shorter than the floor waits for the host, its own part of the step."""

from __future__ import annotations

import numpy as np
import pytest

from profiles.cluster import LinkCost
from profiles.hardware import load_gpu
from profiles.models import load_model
from profiles.training_cost import layer_cost
from profiles.training_fit import moe_host_floor_s, training_fits
from simulator.training import simulate_training
from validation.operators import default_measured_dir
from workloads.training import build_training_job

LINK = LinkCost(400e9, 5e-6)


def _layer(model: str, floor: float, micro_batch: int = 1):  # type: ignore[no-untyped-def]
    return layer_cost(load_model(model), load_gpu("b200"), seq_len=4096,
                      micro_batch=micro_batch, tp=1, cp=1, ep=8, sequence_parallel=False,
                      recompute="none", attention_kernel="flash", overlap_tp_comm=True,
                      dtype="fp8", tp_link=LINK, cp_link=LINK, ep_link=LINK,
                      moe_host_floor_s=floor)


def test_a_short_moe_pass_takes_the_floor_and_the_wait_is_its_own_part() -> None:
    """Qwen3-30B-A3B (every layer MoE) on a B200 at one 4K sequence: its forward and
    backward work is under 1 s, so with a 1 s floor the pass takes exactly 1 s, the wait
    is 1 s less the work, split over the two passes as the work is; without a floor
    nothing waits."""
    free = _layer("qwen3-30b-a3b", 0.0)
    floored = _layer("qwen3-30b-a3b", 1.0)
    work = free.forward_s + free.backward_s
    assert free.host_wait_s == 0.0 and work < 1.0
    assert floored.forward_s + floored.backward_s == pytest.approx(1.0)
    assert floored.host_wait_s == pytest.approx(1.0 - work)
    assert floored.forward_s / floored.backward_s == pytest.approx(
        free.forward_s / free.backward_s)
    assert sum(floored.parts().values()) == pytest.approx(1.0)


def test_dense_layers_and_long_moe_passes_do_not_wait() -> None:
    """A dense model never waits on the floor; an MoE pass longer than it is unchanged."""
    dense = _layer("llama-3-8b", 1.0)
    assert dense.host_wait_s == 0.0
    free = _layer("qwen3-30b-a3b", 0.0, micro_batch=4)
    short = _layer("qwen3-30b-a3b", 0.5 * (free.forward_s + free.backward_s), micro_batch=4)
    assert short.host_wait_s == 0.0
    assert (short.forward_s, short.backward_s) == (free.forward_s, free.backward_s)


def test_the_floor_makes_bigger_micro_batches_pay_on_a_small_moe() -> None:
    """With the fitted floor, a small MoE on B200s runs more tokens per second at four
    sequences per micro-batch than at one (Megatron-Bridge's tables: 26,695 against
    9,691 tokens/s/GPU in the 26.02 containers), and its step breakdown, host wait
    included, adds up to the step."""
    if moe_host_floor_s() == 0.0:
        pytest.skip("no fitted MoE host floor")

    def run(micro_batch: int):  # type: ignore[no-untyped-def]
        job = build_training_job({
            "model": "qwen3-30b-a3b", "gpu": "b200", "seq_len": 4096, "global_batch": 512,
            "micro_batch": micro_batch, "dtype": "fp8",
            "plan": {"tp": 1, "pp": 1, "dp": 8, "ep": 8, "zero_stage": 1}})
        return simulate_training(job)

    one, four = run(1), run(4)
    assert four.tokens_per_s > 1.5 * one.tokens_per_s
    assert one.breakdown["host_wait"] > 0
    assert sum(one.breakdown.values()) == pytest.approx(one.step_s)


@pytest.mark.skipif(default_measured_dir() is None, reason="no shared measured pack")
def test_the_stored_floor_s_error_is_what_the_validation_measures_now() -> None:
    """training_fits.json's MoE floor record: its in-sample median is the median error of
    the Megatron-family MoE runs as predicted now (refit after changing the step model:
    python -m validation.calibrate MEASURED --training --write)."""
    from validation.calibrate import FIT_SOURCES, MOE_FLOOR_DIES, TRAINING_DIES
    from validation.training_runs import training_rows

    measured = default_measured_dir()
    assert measured is not None
    record = training_fits()["moe_host_floor"]
    rows = training_rows(measured)
    fitted_gpus = {name for die in MOE_FLOOR_DIES for name in TRAINING_DIES[die]}
    moe = rows[rows["moe"] & rows["source"].isin(FIT_SOURCES)
               & rows["gpu"].isin(fitted_gpus)]
    assert len(moe) == record["fitted"]["num_points"]
    assert float(np.median(moe["error_pct"])) == pytest.approx(
        record["fitted"]["median_error_pct"], abs=0.01)
