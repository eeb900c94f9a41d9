"""FP8 weights (Megatron's --fp8-param-gather): the FP8 weight and its transpose are the
weights, with no 16-bit copy beside them. The memory is counted; the weights' all-gather
is still priced at 16 bits (the field says so)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import app
from planners.launch import megatron_args, torchtitan_args
from planners.training import TrainingSpace, plan_training
from profiles.errors import ClusterSimError
from profiles.models import load_model
from profiles.training_memory import stage_param_counts
from simulator.training import simulate_training
from workloads.training import build_training_job

JOB = {"model": "llama-3-8b", "gpu": "h100", "seq_len": 4096, "global_batch": 64,
       "micro_batch": 1, "dtype": "fp8", "plan": {"tp": 1, "dp": 8, "zero_stage": 1}}


def _job(**plan: Any) -> Any:
    return build_training_job({**JOB, "plan": JOB["plan"] | plan})


def test_fp8_weights_drop_the_cached_fp8_copy_and_nothing_else() -> None:
    """Without the option Transformer Engine caches an FP8 copy and its transpose beside
    the 16-bit weights (2 bytes per parameter more); with it those two are the weights."""
    kept = simulate_training(_job()).memory
    fp8 = simulate_training(_job(fp8_param_gather=True)).memory
    params = stage_param_counts(load_model("llama-3-8b"), [32], 1, 1, tp=1, dp=8, cp=1,
                                ep=1)[0]
    assert kept.buffers - fp8.buffers == pytest.approx(2.0 * params)
    assert (kept.weights, kept.gradients, kept.optimizer, kept.activations) == (
        fp8.weights, fp8.gradients, fp8.optimizer, fp8.activations)


def test_fp8_weights_change_the_memory_not_the_step() -> None:
    """Until the FP8 all-gather is priced, the step of a plan with FP8 weights is the
    step without them, under ZeRO-1 and ZeRO-3 alike."""
    for zero in (1, 3):
        kept = simulate_training(_job(zero_stage=zero))
        fp8 = simulate_training(_job(zero_stage=zero, fp8_param_gather=True))
        assert fp8.step_s == kept.step_s
        assert fp8.memory.total < kept.memory.total


def test_fp8_weights_need_fp8_training() -> None:
    with pytest.raises(ClusterSimError, match="fp8_param_gather .* needs dtype fp8"):
        build_training_job({**JOB, "dtype": "bf16",
                            "plan": JOB["plan"] | {"fp8_param_gather": True}})


def test_the_launch_arguments_carry_fp8_weights() -> None:
    assert "--fp8-param-gather" in megatron_args(_job(fp8_param_gather=True)).split()
    assert "--fp8-param-gather" not in megatron_args(_job()).split()
    fsdp = _job(zero_stage=3, fp8_param_gather=True)
    assert "--float8.enable_fsdp_float8_all_gather" in torchtitan_args(fsdp, 32).split()
    with pytest.raises(ClusterSimError, match="fp8_param_gather: torchtitan .* FSDP"):
        torchtitan_args(_job(pp=2, dp=4, fp8_param_gather=True), 32)


def test_the_training_planner_keeps_the_job_s_fp8_weights() -> None:
    """An FP8 recipe's FP8 weights are how its framework runs, not a degree to search:
    every candidate keeps them, and each needs less memory than without them."""
    space = TrainingSpace(num_gpus=[8], tp=[1, 2], pp=[1], zero_stage=[1], micro_batch=[1],
                          recompute=["none"], schedules=["1f1b"])
    fp8 = plan_training(_job(fp8_param_gather=True), space)
    plain = plan_training(_job(), space)
    for ours, theirs in zip(fp8.candidates, plain.candidates, strict=True):
        assert ours.plan["fp8_param_gather"] is True
        assert theirs.plan["fp8_param_gather"] is False
        assert ours.status == theirs.status == "evaluated"
        assert ours.memory_gib["total"] < theirs.memory_gib["total"]


def test_simulate_takes_fp8_weights_as_a_flag(tmp_path: Path) -> None:
    """--fp8-param-gather on an FP8 job: the header says so and the memory line is
    smaller; on a BF16 job it is a one-line error naming the field and the fix."""
    example = Path(__file__).parent.parent / "workloads" / "examples" / "train_llama3_70b.json"
    job = json.loads(example.read_text()) | {"dtype": "fp8"}
    path = tmp_path / "fp8.json"
    path.write_text(json.dumps(job))
    runner = CliRunner()
    totals = []
    for flags in ([], ["--fp8-param-gather"]):
        result = runner.invoke(app, ["simulate", "--workload", str(path), *flags])
        assert result.exit_code == 0, result.output
        found = re.search(r"total ([0-9.]+),", result.output)
        assert found is not None, result.output
        totals.append(float(found.group(1)))
    assert "FP8 weights (no 16-bit copy)" in result.output and totals[1] < totals[0]
    bad = runner.invoke(app, ["simulate", "--workload", str(example), "--fp8-param-gather"])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1
    assert "plan.fp8_param_gather" in bad.output and "dtype to fp8" in bad.output
