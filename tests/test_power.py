"""A GPU under a power limit (profiles/power.py): compute slows with the clock, memory-bound
work does not, the limit is checked, and the fit reproduces from Splitwise's profile."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from profiles.cost_model import BatchShape
from profiles.errors import ClusterSimError
from profiles.gemm import gemm_time_terms
from profiles.hardware import load_gpu
from profiles.power import POWER_CAP_PATH, clock_fraction, power_cap_fit
from simulator.serving.build import resolve
from tests.conftest import make_deployment
from validation.calibrate_power import SPLITWISE_CAP_FRACTION, fit_power_cap, prefill_slowdowns
from validation.operators import default_measured_dir
from workloads.training import build_training_job

MEASURED = default_measured_dir()


def test_the_committed_clock_is_the_exponent_s_value_at_splitwise_s_cap() -> None:
    fit = power_cap_fit()
    assert fit["cap_fraction"] == pytest.approx(SPLITWISE_CAP_FRACTION, abs=1e-4)
    kept = clock_fraction(700.0, 700.0 * SPLITWISE_CAP_FRACTION)
    assert kept == pytest.approx(fit["compute_clock_at_cap"], abs=1e-3)
    assert clock_fraction(700.0, None) == clock_fraction(700.0, 700.0) == 1.0
    assert clock_fraction(700.0, 350.0) < clock_fraction(700.0, 500.0) < 1.0


def test_a_prefill_step_slows_by_less_than_the_clock_as_the_fit_counts_it() -> None:
    """The fit's own measure on hand-picked Splitwise shapes: no change at full clock, and
    at a lower clock each prefill slows by more than nothing and at most 1 / clock (its
    all-reduces and memory traffic do not slow)."""
    shapes = pd.DataFrame({"model": ["llama2-70b", "llama2-70b", "bloom-176b"],
                           "tp": [2, 8, 8], "batch": [1, 16, 4],
                           "prompt_tokens": [2048, 512, 1024]})
    assert prefill_slowdowns(shapes, 1.0) == pytest.approx(1.0)
    slower = prefill_slowdowns(shapes, 0.7)
    assert (slower > 1.05).all() and (slower <= 1 / 0.7 + 1e-9).all()


def test_a_limit_is_a_name_suffix_and_leaves_the_datasheet_peak() -> None:
    full, capped = load_gpu("h100"), load_gpu("H100 @ 500W")
    assert capped.name == full.name and capped.power_limit_w == 500.0
    assert capped.power_w == 500.0 and full.power_w == full.tdp_w == 700.0
    expected = (500.0 / 700.0) ** power_cap_fit()["exponent"]
    assert capped.clock_fraction == pytest.approx(expected)
    assert capped.compute_flops("bf16") == pytest.approx(full.peak_flops("bf16") * expected)
    assert capped.peak_flops("bf16") == full.peak_flops("bf16")  # MFU's denominator


@pytest.mark.parametrize("name, words", [
    ("h100@800W", "power_limit_w=800 W is above the TDP (700 W)"),
    ("a100@100W", None),  # A100's floor is 100 W: accepted
    ("h100@100W", "power_limit_w=100 W is below 25% of the TDP (700 W)"),
])
def test_a_limit_outside_what_firmware_allows_is_one_line(name: str, words: str | None) -> None:
    if words is None:
        assert load_gpu(name).power_limit_w == 100.0
        return
    with pytest.raises(ClusterSimError) as error:
        load_gpu(name)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_compute_bound_gemms_slow_with_the_clock_memory_bound_ones_do_not() -> None:
    full, capped = load_gpu("h100"), load_gpu("h100@500W")
    big = [gemm_time_terms(gpu, 8192, 8192, 8192)[0] for gpu in (full, capped)]
    assert big[1] / big[0] == pytest.approx(1.0 / capped.clock_fraction, rel=0.02)
    skinny = [gemm_time_terms(gpu, 1, 8192, 8192)[0] for gpu in (full, capped)]
    assert skinny[1] / skinny[0] == pytest.approx(1.0, abs=0.01)


def test_a_capped_replica_prefills_slower_and_decodes_as_fast() -> None:
    """Splitwise's split: at the cap, prefill pays the clock and decode does not."""
    costs = {}
    for gpu in ("h100", "h100@500W"):
        model = resolve(make_deployment(model="llama-3-8b", gpu=gpu)).cost_models[0]
        prefill = model.predict(BatchShape([4096], [0], 1)).stage_s[0]
        decode = model.predict(BatchShape([1] * 16, [1024] * 16, 16)).stage_s[0]
        costs[gpu] = (prefill, decode)
    slowdown = 1.0 / load_gpu("h100@500W").clock_fraction
    prefill_ratio = costs["h100@500W"][0] / costs["h100"][0]
    decode_ratio = costs["h100@500W"][1] / costs["h100"][1]
    assert 1.0 + 0.7 * (slowdown - 1.0) < prefill_ratio <= slowdown * 1.001
    assert decode_ratio < 1.03


def test_a_capped_training_step_is_slower_and_its_mfu_is_against_the_datasheet() -> None:
    from simulator.training.step import simulate_training

    fields = {"model": "llama-3-8b", "seq_len": 4096, "global_batch": 16, "micro_batch": 2,
              "plan": {"tp": 1, "pp": 1, "dp": 8, "zero_stage": 3}}
    full = simulate_training(build_training_job(fields | {"gpu": "h100"}))
    capped = simulate_training(build_training_job(fields | {"gpu": "h100@500W"}))
    ratio = capped.step_s / full.step_s
    assert 1.1 < ratio <= 1.0 / load_gpu("h100@500W").clock_fraction + 1e-9
    assert capped.mfu == pytest.approx(full.mfu / ratio, rel=1e-6)


def test_a_measured_profile_is_refused_for_a_capped_gpu(tmp_path: object) -> None:
    with pytest.raises(ClusterSimError, match="hold no power limit"):
        resolve(make_deployment(gpu="h100@500W", profile=str(tmp_path)))


@pytest.mark.skipif(MEASURED is None, reason="no shared measured pack")
def test_the_committed_fit_reproduces_from_the_pack() -> None:
    assert MEASURED is not None
    fresh = fit_power_cap(MEASURED)
    committed = json.loads(POWER_CAP_PATH.read_text())
    assert fresh == committed
    assert fresh["decode_slowdown"] == pytest.approx(1.0, abs=0.01)
    assert math.isclose(fresh["prefill_slowdown"], 1.3, rel_tol=0.01)


def test_a_capped_plan_says_its_limit_where_users_read_it() -> None:
    from planners.launch import launch_commands
    from reports.points import short_gpu

    assert load_gpu("h100@450W").label == "H100-SXM5-80GB@450W"
    assert load_gpu("h100").label == "H100-SXM5-80GB"
    assert short_gpu("H100-SXM5-80GB + A100-SXM4-80GB@300W") == "H100 + A100@300W"
    commands = launch_commands(make_deployment(gpu="h100@450W"))
    assert commands["power"] == "nvidia-smi -pl 450"
    assert "power" not in launch_commands(make_deployment(gpu="h100"))
