"""Training simulator: plan errors, outputs, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from profiles.errors import ClusterSimError
from simulator.training.step import simulate_training
from workloads.training import build_training_job

EXAMPLES = Path(__file__).parent.parent / "workloads" / "examples"


def job(**plan: object) -> object:
    base = {"tp": 8, "pp": 4, "dp": 2, "sequence_parallel": True, "recompute": "selective"}
    merged = base | plan
    if merged["tp"] == 1:
        merged["sequence_parallel"] = False
    fields = {"model": "llama-3-70b", "gpu": "h100", "seq_len": 2048, "global_batch": 64,
              "micro_batch": 1, "plan": merged}
    return build_training_job(fields)


@pytest.mark.parametrize("plan, message", [
    ({"tp": 6}, "plan.tp=6 does not divide llama-3-70b's 64 attention heads"),
    ({"pp": 3}, "plan.pp=3 x virtual_stages=1 does not divide llama-3-70b's 80 layers"),
    ({"dp": 3}, "global_batch=64 must be a multiple of dp=3"),
    ({"tp": 1, "pp": 1, "dp": 64}, "plan does not fit: needs"),
    ({"schedule": "interleaved", "virtual_stages": 2, "dp": 32},
     "interleaved schedule needs micro-batches per step (2) to be a multiple of pp=4"),
])
def test_impossible_plans_are_one_line_errors(plan: dict, message: str) -> None:
    with pytest.raises(ClusterSimError, match=message.replace("(", r"\(").replace(")", r"\)")):
        simulate_training(job(**plan))


def test_gpu_count_must_equal_the_product_of_degrees() -> None:
    with pytest.raises(ClusterSimError, match="num_gpus=32 but tp x pp x dp x cp"):
        simulate_training(job(), num_gpus=32)


def test_overflow_names_the_largest_term() -> None:
    with pytest.raises(ClusterSimError, match="largest term is optimizer"):
        simulate_training(job(tp=1, pp=1, dp=64))


def test_more_recomputation_saves_memory_and_costs_time() -> None:
    none = simulate_training(job(recompute="none"))
    full = simulate_training(job(recompute="full"))
    assert full.memory.activations < none.memory.activations
    assert full.step_s > none.step_s and full.hfu > full.mfu


def test_zero_stages_shrink_model_states() -> None:
    states = [simulate_training(job(dp=2, zero_stage=stage)).memory for stage in (0, 1, 2, 3)]
    totals = [m.weights + m.gradients + m.optimizer for m in states]
    assert totals == sorted(totals, reverse=True) and totals[3] < totals[0] / 1.9


def test_dp_overlap_hides_gradient_reduction() -> None:
    overlapped = simulate_training(job(overlap_dp_comm=True))
    exposed = simulate_training(job(overlap_dp_comm=False))
    assert exposed.step_s > overlapped.step_s


def test_cli_runs_the_bundled_examples_and_writes_outputs(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", "--workload",
                                 str(EXAMPLES / "train_gpt3_175b.json"),
                                 "--out", str(tmp_path), "--trace"])
    assert result.exit_code == 0, result.output
    assert "step" in result.output and "MFU" in result.output and "memory per GPU" in \
        result.output
    summary = json.loads((tmp_path / "training_summary.json").read_text())
    assert summary["num_gpus"] == 1024 and 0 < summary["mfu"] < 1
    assert any(e["name"] == "dp grad reduce" for e in
               json.loads((tmp_path / "trace.json").read_text())["traceEvents"])
    result = runner.invoke(app, ["simulate", "--workload",
                                 str(EXAMPLES / "train_llama3_70b.json"), "--tp", "5"])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: plan.tp=5 does not divide")


def test_plan_file_then_flags(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "simulate", "--workload", str(EXAMPLES / "train_llama3_70b.json"), "--deployment",
        str(EXAMPLES / "plan_llama3_70b_h100.yaml"), "--recompute", "selective"])
    assert result.exit_code == 0, result.output
    assert "pp=8 dp=1" in result.output and "recompute selective" in result.output
