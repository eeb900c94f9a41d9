"""The vLLM 0.15 engine-path fit: which runs fit it, and how a client path moves the rows.

The fit itself replays every measured run (minutes), so it runs from the command line
(``python -m validation.calibrate MEASURED --serving``), not here; its result is data
(``simulator/serving/data/engine_fits.json``) that ``tests/test_engines.py`` reads.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from simulator.serving.presets import ENGINE_FITS_PATH, ENGINE_PRESETS
from validation.calibrate_serving import (
    MOE_TOLERANCE,
    SERVING_PRESET,
    _client_view,
    _fitting,
    _moe_fitting,
    _moe_residual,
    _residual_s,
    _secant,
    preset_values,
)


def test_only_dense_models_on_gpus_with_measured_kernel_tables_fit() -> None:
    models = pd.Series(["meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct",
                        "mistralai/Mixtral-8x22B-v0.1", "meta-llama/Llama-3.1-8B-Instruct"])
    gpus = pd.Series(["H100", "A100-80GB", "H100", "L40S"])
    assert _fitting(models, gpus).tolist() == [True, True, False, False]


def _rows(metric: str, measured: list[float], predicted: list[float],
          models: list[str] | None = None) -> pd.DataFrame:
    n = len(measured)
    return pd.DataFrame({
        "run_id": range(n), "model": models or ["meta-llama/Llama-3.1-8B-Instruct"] * n,
        "gpu": ["H100"] * n, "tp": 1, "workload": "w", "stage": -1, "metric": metric,
        "measured_ms": measured, "predicted_ms": predicted})


def test_the_tpot_residual_is_the_median_over_the_fitting_runs_in_seconds() -> None:
    """Residuals 1, 2 and 4 ms on fitting runs: 2 ms; a MoE run's 100 ms does not count.
    Without the 8B model, the 4 ms of the 70B model's run is left."""
    models = ["meta-llama/Llama-3.1-8B-Instruct"] * 2 + ["meta-llama/Llama-3.1-70B-Instruct",
                                                         "mistralai/Mixtral-8x22B-v0.1"]
    rows = _rows("tpot_mean", [11.0, 12.0, 14.0, 110.0], [10.0, 10.0, 10.0, 10.0], models)
    assert _residual_s(rows, "tpot_mean") == pytest.approx(2e-3)
    assert _residual_s(rows, "tpot_mean", exclude="meta-llama/Llama-3.1-8B-Instruct") == \
        pytest.approx(4e-3)
    with pytest.raises(ValueError, match="no fitting run left"):
        _residual_s(rows[rows["model"].str.contains("Mixtral")], "tpot_mean")


def test_a_client_path_moves_ttft_and_e2e_not_tpot() -> None:
    rows = pd.concat([_rows("ttft_mean", [50.0], [40.0]), _rows("e2e_mean", [1000.0], [990.0]),
                      _rows("tpot_mean", [8.0], [8.0])], ignore_index=True)
    seen = _client_view(rows, 10e-3).set_index("metric")
    assert seen.loc["ttft_mean", "predicted_ms"] == pytest.approx(50.0)
    assert seen.loc["e2e_mean", "predicted_ms"] == pytest.approx(1000.0)
    assert seen.loc["tpot_mean", "predicted_ms"] == 8.0
    assert seen["error_pct"].tolist() == pytest.approx([0.0, 0.0, 0.0])


def test_preset_values_are_restored_after_the_block() -> None:
    before = ENGINE_PRESETS[SERVING_PRESET]
    with preset_values(1e-3, 0.0):
        inside = ENGINE_PRESETS[SERVING_PRESET]
        assert (inside.overhead.device_step_s, inside.client_path_s) == (1e-3, 0.0)
        assert inside.overhead.async_scheduling and inside.scheduler == before.scheduler
    assert ENGINE_PRESETS[SERVING_PRESET] is before


def test_the_fits_file_names_its_runs_and_reaches_the_preset() -> None:
    """The committed fit: both values, the runs that fit them, the rounds of the fixed
    point (the last within tolerance) and its held-out errors; the preset carries them."""
    fit = json.loads(ENGINE_FITS_PATH.read_text())["presets"][SERVING_PRESET]
    preset = ENGINE_PRESETS[SERVING_PRESET]
    assert preset.overhead.device_step_s == fit["device_step_s"] > 0
    assert preset.client_path_s == fit["client_path_s"] > 0
    assert "runs [" in fit["device_step_source"]
    assert abs(fit["device_step_rounds"][-1][1]) < 1e-5
    assert fit["device_step_rounds"][-1][0] == pytest.approx(fit["device_step_s"], abs=1e-6)
    for errors in fit["errors_pct"].values():
        assert errors["held_out_over_models_pct"] <= 1.5 * errors["in_sample_over_models_pct"]
    assert preset.moe_gemm_factor == fit["moe_gemm_factor"] > 1.0
    assert "runs [" in fit["moe_gemm_source"] == preset.moe_gemm_source
    assert abs(fit["moe_gemm_rounds"][-1][1]) < MOE_TOLERANCE
    assert fit["moe_gemm_rounds"][-1][0] == fit["moe_gemm_factor"]


def test_only_moe_models_on_gpus_with_measured_kernel_tables_fit_the_moe_factor() -> None:
    models = pd.Series(["mistralai/Mixtral-8x22B-v0.1", "mistralai/Mixtral-8x22B-v0.1",
                        "meta-llama/Llama-3.1-8B-Instruct"])
    gpus = pd.Series(["H100", "L40S", "H100"])
    assert _moe_fitting(models, gpus).tolist() == [True, False, False]


def test_the_moe_residual_is_relative_and_leaves_a_model_out() -> None:
    """MoE residuals +10%, +20% (Mixtral) and -10% (Scout): median +10%; without Mixtral,
    -10%; a dense run's residual does not count; none left: NaN."""
    models = (["mistralai/Mixtral-8x22B-v0.1"] * 2
              + ["RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic",
                 "meta-llama/Llama-3.1-8B-Instruct"])
    rows = _rows("tpot_mean", [10.0, 10.0, 10.0, 10.0], [9.0, 8.0, 11.0, 1.0], models)
    assert _moe_residual(rows) == pytest.approx(0.1)
    assert _moe_residual(rows, exclude="mistralai/Mixtral-8x22B-v0.1") == pytest.approx(-0.1)
    assert _moe_residual(rows[rows["model"].str.contains("Llama-3")]) != \
        _moe_residual(rows[rows["model"].str.contains("Llama-3")])  # NaN


def test_the_secant_goes_through_the_last_two_points() -> None:
    """A residual linear in the factor, r = 0.5 (1.2 - f): zero at 1.2 from any two points;
    from one point, a step that assumes the experts are half the step."""
    assert _secant([(1.0, 0.1), (1.3, -0.05)]) == pytest.approx(1.2)
    assert _secant([(1.0, 0.1)]) == pytest.approx(1.2)


def test_the_moe_factor_scales_the_expert_gemms_alone() -> None:
    """ExpertLayers with a factor: the grouped GEMMs' time over the launches scales by it;
    a factor that is not positive is refused."""
    import numpy as np

    from profiles.hardware import load_gpu
    from profiles.models import load_model
    from profiles.moe import ExpertLayers
    from profiles.routing import RoutingConfig, routing_stats

    model, gpu = load_model("mixtral-8x7b"), load_gpu("h100")
    stats = routing_stats(RoutingConfig(), model)
    plain = ExpertLayers(model, gpu, tp=2, ep=1, tokens_spread=False, stats=stats)
    slow = ExpertLayers(model, gpu, tp=2, ep=1, tokens_spread=False, stats=stats,
                        gemm_factor=1.5)
    rows = np.array([[[0.0, 3.0, 40.0, 7.0, 0.0, 1.0, 2.0, 9.0]]])
    launch = plain._launch_s
    base, scaled = plain.grouped_gemm_s(rows), slow.grouped_gemm_s(rows)
    assert (scaled - launch) == pytest.approx(1.5 * (base - launch))
    with pytest.raises(ValueError, match="gemm_factor"):
        ExpertLayers(model, gpu, tp=2, ep=1, tokens_spread=False, stats=stats, gemm_factor=0)


def test_a_deployment_carries_its_engines_moe_factor() -> None:
    """A MoE deployment's expert layers run at its engine preset's fitted factor; with no
    engine preset, at the grouped-GEMM model's own speed."""
    from simulator.serving.build import resolve
    from simulator.serving.experts import _pricer
    from tests.conftest import make_deployment

    for engine, factor in ((SERVING_PRESET, ENGINE_PRESETS[SERVING_PRESET].moe_gemm_factor),
                           (None, 1.0)):
        deployment = make_deployment("mixtral-8x7b", "h100", **{"parallelism.tp": 2,
                                                               "engine": engine})
        moe = _pricer(resolve(deployment).cost_models[0])
        assert moe is not None and moe.gemm_factor == factor
