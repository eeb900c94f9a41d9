"""Latency against load: sweep and compare, from the library and the command line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from planners.objectives import SteadyState
from planners.sweep import SWEEP_COLUMNS, rates_between, sweep
from profiles.errors import ClusterSimError
from simulator import build_deployment
from workloads.generators import GeneratorSpec, generate
from workloads.loaders import save_workload

TRACE = generate(GeneratorSpec(
    num_requests=120, arrival={"kind": "poisson", "rate_per_s": 5},
    prompt={"kind": "lognormal", "mean": 500, "sigma": 0.5, "max": 2000},
    output={"kind": "lognormal", "mean": 60, "sigma": 0.5, "max": 300}, seed=2))
QUICK = SteadyState(min_requests=300, min_span_s=10.0, lifetimes=0.0)
QUICK_FLAGS = ["--steady-requests", "300", "--steady-seconds", "10", "--steady-lifetimes", "0"]


def test_a_sweep_rises_with_load_and_marks_goodput() -> None:
    deployment = build_deployment({"model": "llama-3-8b", "gpu": "a100",
                                   "scheduler": {"policy": "stall-free"}})
    rows = sweep(deployment, TRACE, [1.0, 8.0, 64.0], ttft_slo_s=0.5, tpot_slo_s=0.05,
                 rule=QUICK)
    assert list(rows.columns) == SWEEP_COLUMNS and len(rows) == 3
    assert rows["num_requests"].min() >= 300
    assert rows["ttft_p90_s"].is_monotonic_increasing
    assert rows["e2e_p90_s"].is_monotonic_increasing
    light, heavy = rows.iloc[0], rows.iloc[-1]
    assert light["slo_attainment"] == 1.0 and light["goodput_per_s"] == 1.0
    assert heavy["state"] == "OVERLOADED" and heavy["goodput_per_s"] == 0.0
    assert heavy["requests_per_s"] < 64.0
    no_slo = sweep(deployment, TRACE, [2.0], rule=QUICK)
    assert pd.isna(no_slo["slo_attainment"].iloc[0]) and pd.isna(no_slo["goodput_per_s"].iloc[0])


def test_rates_between_is_log_spaced_and_checked() -> None:
    assert rates_between(1, 16, 5) == pytest.approx([1, 2, 4, 8, 16])
    with pytest.raises(ClusterSimError, match="0 < low <= high"):
        rates_between(4, 2, 3)


def test_sweep_and_compare_from_the_command_line(tmp_path: Path) -> None:
    trace = tmp_path / "t.json"
    save_workload(TRACE, trace)
    other = tmp_path / "a100x4.yaml"
    other.write_text("model: llama-3-8b\ngpu: a100\nreplicas: 4\n")
    example = Path(__file__).parent.parent / "workloads" / "examples" / "deployment.yaml"
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", "--workload", str(trace), "--deployment",
                                 str(example), "--rates", "2:16:3", "--ttft-slo", "0.5",
                                 "--out", str(tmp_path / "sweep"), *QUICK_FLAGS])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert rows["rate_per_s"].tolist() == pytest.approx([2.0, 32 ** 0.5, 16.0], rel=1e-5)
    svg = (tmp_path / "sweep" / "sweep.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "latency against load" in svg
    result = runner.invoke(app, ["compare", "--workload", str(trace), "--deployment",
                                 str(example), "--deployment", str(other), "--rates", "4,16",
                                 "--out", str(tmp_path / "cmp"), *QUICK_FLAGS])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "cmp" / "sweep.csv")
    assert rows["deployment"].tolist() == ["deployment", "deployment", "a100x4", "a100x4"]
    svg = (tmp_path / "cmp" / "sweep.svg").read_text()
    assert "a100x4" in svg and "deployment" in svg
    for args, expected in ((["sweep", "--rates", "0,3"], "--rates '0,3'"),
                           (["sweep", "--rates", "2,inf"], "positive, finite number"),
                           (["sweep", "--rates", "a:b"], "--rates 'a:b'"),
                           (["compare", "--rates", "3"], "two or more deployments")):
        bad = runner.invoke(app, [args[0], "--workload", str(trace), "--deployment",
                                  str(example), *args[1:]])
        assert bad.exit_code == 2 and bad.output.startswith("error:") and expected in bad.output


def test_the_points_are_held_to_the_deployment_files_slos_unless_flags_say(
        tmp_path: Path) -> None:
    """The example deployment states slo: {ttft_s: 0.5, tpot_s: 0.05}: a sweep without
    SLO flags is held to it; a flag overrides its own SLO; deployments that state
    different SLOs are compared only under a flag; an SLO flag must be positive."""
    trace = tmp_path / "t.json"
    save_workload(TRACE, trace)
    example = Path(__file__).parent.parent / "workloads" / "examples" / "deployment.yaml"
    other = tmp_path / "a100.yaml"
    other.write_text("model: llama-3-8b\ngpu: a100\nreplicas: 4\nslo: {ttft_s: 1.0}\n")
    runner = CliRunner()
    stated = runner.invoke(app, ["sweep", "--workload", str(trace), "--deployment",
                                 str(example), "--rates", "4", "--out", str(tmp_path / "s"),
                                 *QUICK_FLAGS])
    assert stated.exit_code == 0, stated.output
    held = pd.read_csv(tmp_path / "s" / "sweep.csv")["slo_attainment"]
    assert held.notna().all()
    # a TTFT SLO no request can meet, from the flag: attainment 0 at the same rate
    strict = runner.invoke(app, ["sweep", "--workload", str(trace), "--deployment",
                                 str(example), "--rates", "4", "--ttft-slo", "1e-6",
                                 "--out", str(tmp_path / "t"), *QUICK_FLAGS])
    assert strict.exit_code == 0, strict.output
    assert pd.read_csv(tmp_path / "t" / "sweep.csv")["slo_attainment"].tolist() == [0.0]
    assert held.tolist() != [0.0]
    for args, expected in (
            (["compare", "--deployment", str(example), "--deployment", str(other)],
             "different slo.ttft_s (deployment: 0.5 s, a100: 1 s); give --ttft-slo"),
            (["sweep", "--deployment", str(example), "--tpot-slo", "-0.05"],
             "--tpot-slo -0.05: an SLO is a positive number of seconds")):
        bad = runner.invoke(app, [args[0], "--workload", str(trace), *args[1:], "--rates",
                                  "4", *QUICK_FLAGS])
        assert bad.exit_code == 2 and bad.output.count("\n") == 1 and expected in bad.output


def test_a_concurrency_limit_keeps_that_many_requests_in_flight() -> None:
    """Three equal requests ready at 0 with one in flight run back to back: each is sent
    when the previous finishes, so its client-side arrival is that finish, and its own
    latency is the first one's."""
    from simulator import simulate
    from tests.conftest import make_trace

    deployment = build_deployment({"model": "llama-3-8b", "gpu": "h100", "engine": "none"})
    trace = make_trace([0.0, 0.0, 0.0], [256, 256, 256], [16, 16, 16])
    rows = simulate(deployment, trace, max_concurrency=1).requests.sort_values("request_id")
    finish = (rows["arrival_s"] + rows["e2e_s"]).tolist()
    assert rows["arrival_s"].tolist() == pytest.approx([0.0, finish[0], finish[1]], abs=1e-12)
    assert rows["e2e_s"].tolist() == pytest.approx([rows["e2e_s"].iloc[0]] * 3, rel=1e-9)
    together = simulate(deployment, trace, max_concurrency=3).requests
    assert together["arrival_s"].tolist() == [0.0, 0.0, 0.0]


def test_a_concurrency_sweep_serves_more_with_more_in_flight(tmp_path: Path) -> None:
    from planners.sweep import concurrency_sweep

    deployment = build_deployment({"model": "llama-3-8b", "gpu": "a100"})
    rows = concurrency_sweep(deployment, TRACE, [1, 16], rule=QUICK, ttft_slo_s=5.0,
                             tpot_slo_s=0.5)
    assert list(rows.columns) == SWEEP_COLUMNS
    assert rows["concurrency"].tolist() == [1, 16]
    assert rows["num_requests"].tolist() == [300, 320]  # max(rule, 20 x concurrency)
    assert rows["requests_per_s"].iloc[1] > 4 * rows["requests_per_s"].iloc[0]
    assert rows["rate_per_s"].tolist() == rows["requests_per_s"].tolist()  # closed loop
    assert (rows["state"] == "STABLE").all()
    trace_path = tmp_path / "t.json"
    save_workload(TRACE, trace_path)
    deployment_path = tmp_path / "d.json"
    deployment_path.write_text('{"model": "llama-3-8b", "gpu": "a100"}')
    result = CliRunner().invoke(app, ["sweep", "--workload", str(trace_path), "--deployment",
                                      str(deployment_path), "--concurrency", "1,4",
                                      *QUICK_FLAGS, "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "flight" in result.output  # the load column: requests in flight
    assert pd.read_csv(tmp_path / "s" / "sweep.csv")["concurrency"].tolist() == [1, 4]
    both = CliRunner().invoke(app, ["sweep", "--workload", str(trace_path), "--deployment",
                                    str(deployment_path), "--concurrency", "1",
                                    "--rates", "1"])
    assert both.exit_code == 2 and "one of them" in both.output
