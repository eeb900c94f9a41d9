"""Validation records, predictions vs measurements, and the regression gate."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import validation
from cli import app
from profiles.errors import ClusterSimError
from profiles.hardware import load_gpu
from validation import predictors
from validation.gate import accuracy_block
from validation.operators import compare_drift, default_measured_dir

ROOT = Path(__file__).parent.parent
BASELINE = json.loads((ROOT / "validation" / "baseline.json").read_text())["error_pct"]


def current_rows() -> pd.DataFrame:
    return validation.predict_records(validation.load_records())


def test_every_record_has_a_source_and_a_predictor_or_a_pending_reason() -> None:
    records = validation.load_records()
    assert len(records) >= 40
    for record in records:
        assert record.source.citation and record.source.locator, record.id
        assert record.kind in validation.PREDICTORS or record.kind in validation.PENDING_KINDS


def test_published_rows_are_all_records() -> None:
    """Every measured row of the shared published-runs table is a record (the two SLO
    target rows, i13 and i14, are not measurements)."""
    ids = {record.id for record in validation.load_records()}
    shared = ROOT.parent / "shared" / "validation" / "published_runs.csv"
    if shared.is_file():
        expected = {line.split(",")[0] for line in shared.read_text().splitlines()[1:]}
        assert expected - ids == {"i13", "i14"}
    pending = validation.pending_records(validation.load_records())
    assert sum(len(v) for v in pending.values()) == 6  # serving rows await our runs


def test_the_gate_passes_on_the_committed_baseline() -> None:
    regressions, _ = validation.compare_to_baseline(current_rows(), BASELINE)
    assert regressions == []


@pytest.fixture
def worsened_cost_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cost model gone wrong: every efficiency factor 30% lower, the fitted GEMM
    kernels' rates too."""

    def worse_gpu(name: str):
        gpu = load_gpu(name)
        slower = {k: v * 0.7 for k, v in gpu.efficiency.model_dump().items() if v is not None}
        update: dict = {"efficiency": gpu.efficiency.model_copy(update=slower)}
        if gpu.kernels is not None and gpu.kernels.gemm is not None:
            gemm = gpu.kernels.gemm
            update["kernels"] = gpu.kernels.model_copy(update={"gemm": gemm.model_copy(
                update={"matmul": gemm.matmul * 0.7, "memory": gemm.memory * 0.7})})
        return gpu.model_copy(update=update)

    monkeypatch.setattr(predictors, "load_gpu", worse_gpu)


@pytest.mark.usefixtures("worsened_cost_model")
def test_the_gate_fails_when_the_cost_model_gets_worse() -> None:
    regressions, _ = validation.compare_to_baseline(current_rows(), BASELINE)
    assert any(line.startswith("g01:") for line in regressions)
    assert any(line.startswith("group kernels") for line in regressions)


def test_gate_thresholds_and_reported_moves() -> None:
    rows = pd.DataFrame({"id": ["a", "b", "c"], "group": ["x", "x", "y"],
                         "error_pct": [4.0, 10.0, 1.0]})
    # a: +3 points (within 5), group x median 3 -> 7 (+4 > 1): gate fails on the group.
    regressions, moves = validation.compare_to_baseline(rows, {"a": 1.0, "b": 5.0, "c": 9.0})
    assert regressions == ["group x: median error 3.00% -> 7.00% (more than 1 point worse)"]
    assert "c: error 9.00% -> 1.00%" in moves  # an improvement is reported
    regressions, _ = validation.compare_to_baseline(rows, {"a": 4.0, "b": 4.0, "c": 1.0})
    assert regressions[0].startswith("b: error 4.00% -> 10.00%")


def test_records_without_a_source_are_refused(tmp_path: Path) -> None:
    entry = json.loads((ROOT / "validation" / "records" / "micro.json").read_text())[
        "records"][0]
    del entry["source"]
    (tmp_path / "bad.json").write_text(json.dumps({"records": [entry]}))
    with pytest.raises(ClusterSimError, match="field 'source': Field required"):
        validation.load_records(tmp_path)


def test_readme_accuracy_block_is_current() -> None:
    """The README's tables are what `clustersim validate --update-readme` writes now
    (the operator table needs the measured pack, so the test needs it too)."""
    measured = default_measured_dir()
    if measured is None:
        pytest.skip("the shared measured pack is not beside this checkout")
    readme = (ROOT / "README.md").read_text()
    block = accuracy_block(validation.validate(measured=measured))
    assert block in readme, "run: clustersim validate --update-readme README.md"


def test_validate_command_prints_and_writes(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", "--out", str(tmp_path / "v"),
                                      "--html", str(tmp_path / "v.html")])
    assert result.exit_code == 0, result.output
    assert "collectives" in result.output and "median error" in result.output
    if "vLLM runs per GPU" in result.output:  # with the measured pack: the serving table
        assert "(p90) [signed median]; TPOT per token generated" in result.output
    document = json.loads((tmp_path / "v" / "validation.json").read_text())
    assert {row["id"] for row in document["records"]} >= {"g01", "c01"}
    assert (tmp_path / "v" / "validation.csv").read_text().startswith("id,group")
    assert "data:image/png;base64," in (tmp_path / "v.html").read_text()


def test_a_missing_baseline_is_a_one_line_error(tmp_path: Path) -> None:
    """Gating against a baseline that is not there would pass every change: refused."""
    result = CliRunner().invoke(app, ["validate", "--baseline", str(tmp_path / "none.json")])
    assert result.exit_code == 2
    assert result.output.startswith("error: --baseline") and "no such file" in result.output


def test_a_measured_folder_that_is_not_the_pack_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", "--measured", str(tmp_path)])
    assert result.exit_code == 2 and result.output.startswith("error: --measured")


def test_predictions_that_move_as_a_whole_fail_the_gate_either_way() -> None:
    """A signed median error that moves more than 1 point, worse or better, fails until
    the baseline is rewritten; one within 1 point, or without a recorded sign, passes."""
    errors = pd.DataFrame({"gpu": ["H100", "H100", "A100"],
                           "operator": ["serving ttft_mean", "gemm", "gemm"],
                           "signed_median_pct": [-38.0, 2.4, 7.0]})
    baseline = {"H100/serving ttft_mean": {"median": 40.0, "p90": 50.0, "signed": -40.0},
                "H100/gemm": {"median": 3.0, "p90": 5.0, "signed": 2.0},
                "A100/gemm": {"median": 7.0, "p90": 9.0}}
    regressions = compare_drift(errors, baseline)
    assert len(regressions) == 1 and regressions[0].startswith(
        "H100/serving ttft_mean: signed median error -40.00% -> -38.00%")
