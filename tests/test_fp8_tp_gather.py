"""FP8 gathers under tensor parallelism (torchao's Float8ColwiseParallel and
Float8RowwiseParallel, which torchtitan's tensorwise float8 recipe uses): the activations
are cast before sequence parallelism's all-gathers, forward and backward, so each gather
moves 1 byte per element while each reduce-scatter still moves 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import app
from planners.launch import torchtitan_args
from planners.training import TrainingSpace, plan_training
from profiles.cluster import LinkCost
from profiles.errors import ClusterSimError
from profiles.hardware import load_gpu
from profiles.models import load_model
from profiles.training_cost import layer_cost
from simulator.training import simulate_training
from workloads.training import build_training_job

LLAMA_70B = load_model("llama-3.1-70b")
LINK = LinkCost(bandwidth_bytes_per_s=400e9, latency_s=5e-6)
JOB = {"model": "llama-3.1-70b", "gpu": "h100", "seq_len": 8192, "global_batch": 64,
       "micro_batch": 1, "dtype": "fp8",
       "plan": {"tp": 8, "dp": 8, "zero_stage": 3, "sequence_parallel": True,
                "recompute": "full", "attention_kernel": "flash2"}}


def _layer(fp8_tp_gather: bool, *, dtype: str = "fp8", recompute: str = "none",
           sequence_parallel: bool = True) -> Any:
    return layer_cost(LLAMA_70B, load_gpu("h100"), seq_len=8192, micro_batch=1, tp=8, cp=1,
                      ep=1, sequence_parallel=sequence_parallel, recompute=recompute,
                      attention_kernel="flash2", overlap_tp_comm=False, dtype=dtype,
                      tp_link=LINK, cp_link=LINK, ep_link=LINK, fp8_tp_gather=fp8_tp_gather)


def _job(**plan: Any) -> Any:
    return build_training_job({**JOB, "plan": JOB["plan"] | plan})


def test_fp8_gathers_move_half_the_gather_bytes_by_hand() -> None:
    """One pass: two reduce-scatters and two all-gathers of the 8192 x 8192 activations
    (2 bytes each, 134 MB) over a ring of 8: each moves 7/8 of its result through a
    link at 400 GB/s after 7 steps of 5 us. The gathers move FP8: half the bytes."""
    full = 8192 * 8192 * 2.0
    step = 7 * 5e-6
    reduce_scatter = step + 7 / 8 * full / 400e9
    gather_fp8 = step + 7 / 8 * full / 2 / 400e9
    assert _layer(False).tp_comm_s == pytest.approx(2 * reduce_scatter * 2)
    assert _layer(True).tp_comm_s == pytest.approx(2 * reduce_scatter + 2 * gather_fp8)
    # 3/4 of the traffic, less the latency the halving does not touch
    ratio = _layer(True).tp_comm_s / _layer(False).tp_comm_s
    assert 0.75 < ratio < 0.8


def test_fp8_gathers_need_fp8_and_sequence_parallelism_to_matter() -> None:
    """BF16 has nothing to cast; without sequence parallelism TP all-reduces in 16 bits."""
    assert _layer(True, dtype="bf16").tp_comm_s == _layer(False, dtype="bf16").tp_comm_s
    assert _layer(True, sequence_parallel=False).tp_comm_s == \
        _layer(False, sequence_parallel=False).tp_comm_s


def test_the_per_op_policy_gathers_again_in_fp8() -> None:
    """The per-op policy gathers again in the backward what it did not save: the two
    all-gathers, now at 1 byte per element (7 latency steps and 7/8 of 67 MB each)."""
    plain, fp8 = _layer(False, recompute="op"), _layer(True, recompute="op")
    gathers_plain = plain.tp_comm_s / 2
    gathers_fp8 = fp8.tp_comm_s - plain.tp_comm_s / 2  # the reduce-scatters are unchanged
    assert plain.recompute_s - fp8.recompute_s == pytest.approx(gathers_plain - gathers_fp8)
    assert gathers_fp8 == pytest.approx(2 * (7 * 5e-6 + 7 / 8 * 8192 * 8192 / 400e9))


def test_a_step_with_fp8_gathers_is_shorter_by_its_tp_traffic_alone() -> None:
    plain, fp8 = simulate_training(_job()), simulate_training(_job(fp8_tp_gather=True))
    assert fp8.step_s < plain.step_s
    assert fp8.breakdown["tp_comm"] < plain.breakdown["tp_comm"]
    for part in ("gemm", "attention", "elementwise", "dp_comm", "optimizer"):
        assert fp8.breakdown[part] == pytest.approx(plain.breakdown[part])
    assert fp8.memory.total == plain.memory.total


def test_fp8_gathers_need_fp8_training() -> None:
    with pytest.raises(ClusterSimError, match="fp8_tp_gather .* needs dtype fp8"):
        build_training_job({**JOB, "dtype": "bf16",
                            "plan": JOB["plan"] | {"fp8_tp_gather": True}})


def test_torchtitan_runs_fp8_tensor_parallelism_only_with_fp8_gathers() -> None:
    """Its tensorwise recipe (the one the launch names) gathers in FP8 under TP: a plan
    priced with 16-bit gathers is not what it runs, and the refusal names the field."""
    with pytest.raises(ClusterSimError, match="set plan.fp8_tp_gather"):
        torchtitan_args(_job(), 80)
    args = torchtitan_args(_job(fp8_tp_gather=True), 80).split()
    assert args[-4:] == ["--model.converters", "float8", "--float8.recipe_name", "tensorwise"]
    # without TP there is nothing to gather: the field is not needed
    torchtitan_args(build_training_job({**JOB, "plan": JOB["plan"] | {
        "tp": 1, "dp": 64, "sequence_parallel": False}}), 80)


def test_the_training_planner_keeps_the_job_s_fp8_gathers() -> None:
    """A torchtitan FP8 job (SDPA's kernels) keeps its FP8 gathers in every candidate;
    without them its TP plans are not what torchtitan runs, and say why."""
    space = TrainingSpace(num_gpus=[64], tp=[4, 8], pp=[1], zero_stage=[3], micro_batch=[1],
                          recompute=["full"], schedules=["1f1b"])
    fp8 = plan_training(_job(fp8_tp_gather=True), space)
    plain = plan_training(_job(), space)
    for ours, theirs in zip(fp8.candidates, plain.candidates, strict=True):
        assert ours.plan["fp8_tp_gather"] is True and theirs.plan["fp8_tp_gather"] is False
        assert ours.status == "evaluated"
        assert theirs.status == "infeasible" and "set plan.fp8_tp_gather" in theirs.reason


def test_simulate_takes_fp8_gathers_as_a_flag(tmp_path: Path) -> None:
    """--fp8-tp-gather on an FP8 job: the header says so; on a BF16 job it is a
    one-line error naming the field and the fix."""
    example = Path(__file__).parent.parent / "workloads" / "examples" / "train_llama3_70b.json"
    job = json.loads(example.read_text()) | {"dtype": "fp8"}
    path = tmp_path / "fp8.json"
    path.write_text(json.dumps(job))
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", "--workload", str(path), "--fp8-tp-gather"])
    assert result.exit_code == 0, result.output
    assert "FP8 TP gathers" in result.output
    bad = runner.invoke(app, ["simulate", "--workload", str(example), "--fp8-tp-gather"])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1
    assert "plan.fp8_tp_gather" in bad.output and "dtype to fp8" in bad.output
