"""Error bars on serving predictions from the serving group's residuals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from validation.error_bars import ERROR_BARS_PATH, interval

ROOT = Path(__file__).parent.parent
SUMMARY = {"run": {"gpu": "H100-SXM5-80GB"}, "e2e_s": {"mean": 2.0},
           "ttft_s": {"mean": 0.02}, "tpot_of_means_s": 0.008}


def bars(runs: int) -> dict:
    group = {"e2e_mean": {"runs": runs, "p10": -0.2, "p50": -0.1, "p90": 0.25},
             "ttft_mean": {"runs": runs, "p10": -0.5, "p50": -0.3, "p90": 0.0}}
    return {"H100-SXM5-80GB": group,
            "all": {"e2e_mean": {"runs": 10, "p10": -0.1, "p50": 0.0, "p90": 0.1}}}


def test_the_interval_inverts_the_group_s_signed_errors() -> None:
    """A prediction 20% fast (e = -0.2) means the measurement was predicted / 0.8; 25% slow
    means predicted / 1.25: E2E 2.0 s gives [1.6, 2.5] s, TTFT 20 ms [20, 40] ms; TPOT has
    no residuals in this group, so no range."""
    out = interval(SUMMARY, bars(runs=5))
    assert out["group"] == "H100-SXM5-80GB"
    assert (out["e2e_mean"]["low_s"], out["e2e_mean"]["high_s"]) == pytest.approx((1.6, 2.5))
    assert (out["ttft_mean"]["low_s"], out["ttft_mean"]["high_s"]) == pytest.approx((0.02, 0.04))
    assert "tpot_mean" not in out


def test_a_group_of_too_few_runs_falls_back_to_all_gpus() -> None:
    out = interval(SUMMARY, bars(runs=2))
    assert out["group"] == "all GPUs"
    assert (out["e2e_mean"]["low_s"], out["e2e_mean"]["high_s"]) == pytest.approx(
        (2.0 / 1.1, 2.0 / 0.9))
    assert interval(SUMMARY, {}) == {}


@pytest.mark.skipif(not ERROR_BARS_PATH.is_file(), reason="no committed error bars")
def test_simulate_reports_the_range_and_writes_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "simulate", "--workload", str(ROOT / "workloads" / "examples" / "chat.json"),
        "--model", "llama-3-8b", "--gpu", "h100", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "validated range (H100-SXM5-80GB" in result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    ttft = summary["error_bars"]["ttft_mean"]
    assert ttft["low_s"] <= ttft["high_s"] and ttft["runs"] >= 3


def test_a_training_step_gets_its_die_s_range_or_the_pooled_one() -> None:
    """Throughput 1000 tokens/s in a group whose runs were predicted 20% fast to 25% slow
    (e in [-0.2, 0.25]): measured between 1000/1.25 = 800 and 1000/0.8 = 1250 tokens/s,
    the 2 s step between 1.6 and 2.5 s. A die with too few runs, or a GPU with no fitted
    die (a user's file), takes the pooled runs' range."""
    from validation.error_bars import training_interval

    die = {"runs": 5, "p10": -0.2, "p50": 0.0, "p90": 0.25}
    pooled = {"runs": 50, "p10": -0.1, "p50": 0.0, "p90": 0.1}
    out = training_interval("H100-SXM5-80GB", 2.0, 1000.0, {"GH100": die, "all": pooled})
    assert out["group"] == "GH100 runs" and out["runs"] == 5
    assert (out["tokens_per_s"]["low"], out["tokens_per_s"]["high"]) == \
        pytest.approx((800.0, 1250.0))
    assert (out["step_s"]["low"], out["step_s"]["high"]) == pytest.approx((1.6, 2.5))
    few = training_interval("H100-SXM5-80GB", 2.0, 1000.0,
                            {"GH100": {**die, "runs": 2}, "all": pooled})
    assert few["group"] == "all runs" and few["step_s"]["high"] == pytest.approx(2.2)
    assert training_interval("MI300X", 2.0, 1000.0, {"all": pooled})["group"] == "all runs"
    assert training_interval("H100-SXM5-80GB", 2.0, 1000.0, {}) == {}


def test_simulate_shows_and_writes_a_training_step_s_range(tmp_path: Path) -> None:
    """The committed training error bars reach `simulate`'s output and its summary file;
    the range holds the prediction."""
    from validation.error_bars import TRAINING_BARS_PATH

    assert TRAINING_BARS_PATH.is_file()
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "simulate", "--workload", str(ROOT / "workloads/examples/train_llama3_70b.json"),
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "validated range (GH100 runs" in result.output
    bars = json.loads((out / "training_summary.json").read_text())["error_bars"]
    assert bars["tokens_per_s"]["low"] <= bars["tokens_per_s"]["predicted"] <= \
        bars["tokens_per_s"]["high"]
    assert bars["step_s"]["low"] <= bars["step_s"]["predicted"] <= bars["step_s"]["high"]
