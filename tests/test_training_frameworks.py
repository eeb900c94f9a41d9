"""Training as torchtitan runs it: its per-op recomputation policy, PyTorch's eager
pointwise kernels, SDPA's FlashAttention-2 on Hopper, and the pack's torchtitan rows as
the validation expresses them; and parts of one die sharing its measured kernels."""

from __future__ import annotations

from typing import Any

import pytest

from profiles.cluster import LinkCost
from profiles.gemm import gemm_time_terms
from profiles.hardware import load_gpu
from profiles.models import load_model
from profiles.training_cost import layer_cost, linear_sequence, pointwise_bytes_per_token
from profiles.training_memory import activation_bytes_per_layer
from simulator.training import simulate_training
from validation.training_runs import express_row
from workloads.training import build_training_job

LLAMA_8B = load_model("llama-3.1-8b")
H, Q, KV, F, HEADS = 4096, 4096, 1024, 14336, 32
LINK = LinkCost(bandwidth_bytes_per_s=400e9, latency_s=5e-6)


def _layer(recompute: str, *, gpu: str = "h100", pointwise: str = "fused",
           attention_kernel: str = "flash", tp: int = 1) -> Any:
    return layer_cost(LLAMA_8B, load_gpu(gpu), seq_len=8192, micro_batch=2, tp=tp, cp=1,
                      ep=1, sequence_parallel=tp > 1, recompute=recompute,
                      attention_kernel=attention_kernel, overlap_tp_comm=False,
                      dtype="bf16", tp_link=LINK, cp_link=LINK, ep_link=LINK,
                      pointwise=pointwise)


def test_the_linear_layers_come_in_the_order_the_policy_counts_them() -> None:
    """Llama's block runs wq, wk, wv, wo, w1, w3, w2; under TP 2 the column-parallel
    ones are halved and the two row-parallel ones keep their full output width."""
    assert linear_sequence(LLAMA_8B, 1) == [(Q, H), (KV, H), (KV, H), (H, Q), (F, H),
                                            (F, H), (H, F)]
    assert linear_sequence(LLAMA_8B, 2) == [(Q / 2, H), (KV / 2, H), (KV / 2, H),
                                            (H, Q / 2), (F / 2, H), (F / 2, H), (H, F / 2)]


def test_the_per_op_policy_recomputes_every_second_matmul_and_the_pointwise_work() -> None:
    """torchtitan's "op" policy saves every matmul's output but the second, fourth and
    sixth (wk, wo, w3), and saves the attention output: the backward pays those three
    GEMMs' forward time and the forward's pointwise work, and nothing of attention."""
    gpu = load_gpu("h100")
    tokens = 2 * 8192
    op, none = _layer("op"), _layer("none")
    again = sum(gemm_time_terms(gpu, tokens, n, k, "bf16")[0]
                for n, k in [(KV, H), (H, Q), (F, H)])
    # layer_cost divides tensor-core time by the sustained share it is given (1 here)
    assert op.recompute_s == pytest.approx(again + op.elementwise_s)
    assert op.backward_s - none.backward_s == pytest.approx(op.recompute_s)
    assert op.attention_s == none.attention_s and op.gemm_s == none.gemm_s


def test_the_per_op_policy_counts_its_recomputed_flops() -> None:
    """Hardware FLOPs exceed model FLOPs by the three recomputed matmuls per layer."""
    job = build_training_job({"model": "llama-3.1-8b", "gpu": "h100", "seq_len": 8192,
                              "global_batch": 16, "micro_batch": 2,
                              "plan": {"dp": 8, "zero_stage": 3, "recompute": "op"}})
    result = simulate_training(job)
    tokens = 16 * 8192
    assert result.hardware_flops - result.model_flops == pytest.approx(
        2 * tokens * 32 * (KV * H + H * Q + F * H))


def test_the_per_op_policy_keeps_the_hand_counted_activations() -> None:
    """Per token and layer: the saved matmuls' outputs (q, v, the gate's f and the down
    projection's h), the layer's input (h), the attention output (q) in 16 bits, and a
    4-byte log-sum-exp per head."""
    per_token = 2 * (Q + KV + F + H) + 2 * H + 2 * Q + 4 * HEADS
    got = activation_bytes_per_layer(LLAMA_8B, 8192, 2, 1, False, "op",
                                     attention_kernel="flash2")
    assert got == pytest.approx(2 * 8192 * per_token)
    # the policy keeps less than no recomputation and more than full recomputation
    assert activation_bytes_per_layer(LLAMA_8B, 8192, 2, 1, False, "full") < got < \
        activation_bytes_per_layer(LLAMA_8B, 8192, 2, 1, False, "none",
                                   attention_kernel="flash")


def test_eager_pointwise_traffic_equals_the_op_count() -> None:
    """Fused: 24 16-bit passes over h and 4 over f. Eager, op by op: two RMSNorms of 32
    bytes per element, two residual adds of 6, rotary embeddings of 20 over q and k,
    GQA's repeated k and v (4 each over q + kv), the contiguous attention output (4 q),
    SiLU and the gate's product (10 f)."""
    assert pointwise_bytes_per_token(LLAMA_8B, 1, False) == 48 * H + 8 * F
    eager = 76 * H + 20 * (Q + KV) + 4 * (Q + KV) + 4 * Q + 10 * F
    assert pointwise_bytes_per_token(LLAMA_8B, 1, False, "eager") == eager
    # under TP with SP the hidden-width terms shard too
    assert pointwise_bytes_per_token(LLAMA_8B, 4, True, "eager") == pytest.approx(eager / 4)
    fused, slow = _layer("none"), _layer("none", pointwise="eager")
    assert slow.elementwise_s / fused.elementwise_s == pytest.approx(eager / (48 * H + 8 * F))
    # a GPT block (LayerNorm, learned positions, GeLU): its op count is under the fused
    # count, whose dropout and bias terms it lacks, so eager is never the cheaper
    gpt = load_model("gpt-3-175b")
    assert pointwise_bytes_per_token(gpt, 8, True, "eager") == \
        pointwise_bytes_per_token(gpt, 8, True)


def test_flash_attention_2_runs_at_its_hopper_share_and_as_flash_elsewhere() -> None:
    """On H100 FlashAttention-2 keeps 35% of peak against the fused kernels' 55%; the
    A100 states no FA2 figure of its own, so FA2 is its attention kernel."""
    flash, fa2 = _layer("none"), _layer("none", attention_kernel="flash2")
    assert fa2.attention_s / flash.attention_s == pytest.approx(0.55 / 0.35)
    assert fa2.attention_backward_s / flash.attention_backward_s == pytest.approx(0.55 / 0.35)
    a100 = _layer("none", gpu="a100"), _layer("none", gpu="a100", attention_kernel="flash2")
    assert a100[0].attention_s == a100[1].attention_s


def test_parts_of_one_die_share_its_measured_kernels() -> None:
    """H200 and H800 are the H100 SXM5's GH100: they take its fitted kernels, and each
    fit's memory terms scale with the part's own HBM (H200: 4.8 against 3.35 TB/s)."""
    h100, h200, h800 = load_gpu("h100"), load_gpu("h200"), load_gpu("h800")
    assert h100.kernels is not None
    assert h200.kernels == h100.kernels == h800.kernels
    assert load_gpu("a100").kernels != h100.kernels
    compute_bound = gemm_time_terms(h100, 8192, 8192, 8192, "bf16")[0]
    assert gemm_time_terms(h200, 8192, 8192, 8192, "bf16")[0] == pytest.approx(
        compute_bound, rel=0.01)
    # one token through a weight matrix streams it from HBM: faster on HBM3e
    assert gemm_time_terms(h200, 1, 8192, 8192, "bf16")[0] < \
        gemm_time_terms(h100, 1, 8192, 8192, "bf16")[0]


def _row(**update: str) -> dict[str, str]:
    row = {"id": "t0", "source": "pytorch/torchtitan@b5bcd76c benchmarks/x.md",
           "model": "Llama 3.1 8B", "layers": "", "hidden": "", "heads": "", "seq": "",
           "gpu": "H100-SXM 96GB HBM2e, 500W", "n_gpu": "8", "TP": "1", "PP": "1",
           "DP": "8", "CP": "1", "EP": "", "VP": "", "gbs": "", "mbs": "2",
           "recompute": "selective", "precision": "BF16",
           "metric": "tokens_per_s_per_gpu", "value": "5762", "notes": "FSDP"}
    return {**row, **update}


def test_torchtitan_rows_run_as_torchtitan_runs_them() -> None:
    """Its "selective" is the per-op policy; without torch.compile the pointwise ops
    are eager; attention is SDPA's FlashAttention-2; its local batch is the micro-batch."""
    run = express_row(_row())
    assert not isinstance(run, str)
    plan = run.job.plan
    assert (plan.recompute, plan.pointwise_kernels, plan.attention_kernel) == \
        ("op", "eager", "flash2")
    assert (plan.zero_stage, run.job.micro_batch, run.job.global_batch) == (3, 2, 16)
    compiled = express_row(_row(notes="FSDP + torch.compile"))
    assert not isinstance(compiled, str) and compiled.job.plan.pointwise_kernels == "fused"
    default = express_row(_row(recompute=""))
    assert not isinstance(default, str) and default.job.plan.recompute == "op"
    assert "per-op selective recomputation" in default.assumed
    full = express_row(_row(recompute="full"))
    assert not isinstance(full, str) and full.job.plan.recompute == "full"
    # its tensorwise float8 under TP gathers in FP8 (torchao's float8 TP styles)
    fp8_tp = express_row(_row(TP="8", DP="1", precision="FP8 (float8 linears)"))
    assert not isinstance(fp8_tp, str) and fp8_tp.job.plan.fp8_tp_gather
    assert "TP activations gathered in FP8" in fp8_tp.assumed
    fp8_fsdp = express_row(_row(precision="FP8 (float8 linears)"))
    assert not isinstance(fp8_fsdp, str) and not fp8_fsdp.job.plan.fp8_tp_gather


def test_torchtitan_s_96_gb_h100s_run_at_their_500_w_limit() -> None:
    """The rows' parts: 96 GB of HBM2e at 2.4 TB/s, held at 500 W (said per row)."""
    run = express_row(_row())
    assert not isinstance(run, str)
    assert (run.gpu.hbm_gib, run.gpu.hbm_bandwidth_gbps, run.gpu.power_limit_w) == \
        (96.0, 2400.0, 500.0)
    assert 0 < run.gpu.clock_fraction < 1
    assert f"compute at {run.gpu.clock_fraction:.3f} of its rate under the 500 W limit" \
        in run.assumed


def test_rowwise_fp8_rows_are_listed_with_the_missing_feature() -> None:
    reason = express_row(_row(precision="FP8 float8 rowwise"))
    assert isinstance(reason, str) and "rowwise-scaled FP8" in reason


def test_a_row_whose_printed_layout_is_not_its_gpu_count_is_listed_not_guessed() -> None:
    """TP x PP x DP x CP must be the row's GPUs: when the table's columns disagree, which
    is wrong is not said, so the row is not compared (a printed DP that agrees, or none,
    is expressed as before)."""
    reason = express_row(_row(DP="2"))
    assert reason == "printed layout TP 1 x PP 1 x DP 2 x CP 1 is not its 8 GPUs"
    agreeing = express_row(_row(DP="4", CP="2"))
    assert not isinstance(agreeing, str) and agreeing.job.plan.dp == 4
    unprinted = express_row(_row(DP=""))
    assert not isinstance(unprinted, str) and unprinted.job.plan.dp == 8


def test_the_cli_runs_the_torchtitan_example_and_its_kernel_flags() -> None:
    """The bundled torchtitan job runs; eager pointwise kernels make its step longer; a
    kernel name the plan does not know is a one-line error naming the field."""
    import re
    from pathlib import Path

    from typer.testing import CliRunner

    from cli import app

    example = str(Path(__file__).parent.parent / "workloads" / "examples"
                  / "train_llama3_8b_torchtitan.json")
    runner = CliRunner()
    steps = []
    for flags in ([], ["--pointwise-kernels", "eager"]):
        result = runner.invoke(app, ["simulate", "--workload", example, *flags])
        assert result.exit_code == 0, result.output
        assert "recompute op" in result.output and "attention flash2" in result.output
        found = re.search(r"step ([0-9.]+) s", result.output)
        assert found is not None
        steps.append(float(found.group(1)))
    assert "eager pointwise ops" in result.output and steps[1] > steps[0]
    bad = runner.invoke(app, ["simulate", "--workload", example, "--attention-kernel", "fa9"])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1
    assert "plan.attention_kernel" in bad.output


def test_megatron_arguments_refuse_what_only_torchtitan_runs() -> None:
    from planners.launch import megatron_args
    from profiles.errors import ClusterSimError

    job = build_training_job({"model": "llama-3.1-8b", "gpu": "h100", "seq_len": 8192,
                              "global_batch": 16, "micro_batch": 2,
                              "plan": {"dp": 8, "zero_stage": 1, "recompute": "op"}})
    with pytest.raises(ClusterSimError, match="recompute=op"):
        megatron_args(job)


def test_the_training_planner_keeps_how_the_job_s_framework_runs_a_layer() -> None:
    """A torchtitan job's candidates all run FlashAttention-2 and eager pointwise ops,
    and the same plan is slower than under Megatron-Core's kernels; the degrees still
    come from the space."""
    from planners.training import TrainingSpace, plan_training

    fields = {"model": "llama-3.1-8b", "gpu": "h100", "seq_len": 8192, "global_batch": 16,
              "micro_batch": 2, "plan": {"dp": 8}}
    space = TrainingSpace(num_gpus=[8], tp=[1, 2], pp=[1], zero_stage=[3], micro_batch=[2],
                          recompute=["op"], schedules=["1f1b"])
    torchtitan = build_training_job({**fields, "plan": {
        "dp": 8, "attention_kernel": "flash2", "pointwise_kernels": "eager"}})
    titan = plan_training(torchtitan, space)
    megatron = plan_training(build_training_job(fields), space)
    assert [c.plan["tp"] for c in titan.candidates] == [1, 2]
    for ours, theirs in zip(titan.candidates, megatron.candidates, strict=True):
        assert (ours.plan["attention_kernel"], ours.plan["pointwise_kernels"]) == \
            ("flash2", "eager")
        assert theirs.plan["attention_kernel"] == "flash"
        assert ours.status == theirs.status == "evaluated" and ours.step_s > theirs.step_s


def test_the_training_planner_offers_a_torchtitan_job_only_what_torchtitan_runs() -> None:
    """FSDP is ZeRO-3 without a pipeline and ZeRO-1 with one: of ZeRO {1, 3} x PP {1, 2}
    exactly those two plans are simulated, the other two are infeasible with torchtitan's
    reason; a Megatron job's space is not filtered so."""
    from planners.training import TrainingSpace, plan_training

    fields = {"model": "llama-3.1-8b", "gpu": "h100", "seq_len": 8192, "global_batch": 16,
              "micro_batch": 1}
    space = TrainingSpace(num_gpus=[8], tp=[1], pp=[1, 2], zero_stage=[1, 3],
                          micro_batch=[1], recompute=["op"], schedules=["1f1b"])
    titan = plan_training(build_training_job({**fields, "plan": {
        "dp": 8, "attention_kernel": "flash2", "pointwise_kernels": "eager"}}), space)
    status = {(c.plan["pp"], c.plan["zero_stage"]): c.status for c in titan.candidates}
    assert status == {(1, 1): "infeasible", (1, 3): "evaluated",
                      (2, 1): "evaluated", (2, 3): "infeasible"}
    reasons = {(c.plan["pp"], c.plan["zero_stage"]): c.reason for c in titan.candidates}
    assert reasons[(2, 3)].startswith("torchtitan: zero_stage=3 with pp=2")
    full = space.model_copy(update={"recompute": ["full"]})
    megatron = plan_training(build_training_job({**fields, "plan": {"dp": 8}}), full)
    assert {c.status for c in megatron.candidates} == {"evaluated"}


def _job(**plan: Any) -> Any:
    fields = {"model": "llama-3.1-70b", "gpu": "h100", "seq_len": 8192, "global_batch": 512,
              "micro_batch": 1, "dtype": "fp8", "plan": plan}
    return build_training_job(fields)


def test_torchtitan_arguments_carry_the_plan_as_torchtitan_names_it() -> None:
    """FSDP 32 x TP 8 with full recomputation, compiled, FP8 (TP gathers in FP8), async
    TP: the layout, the batch, the recomputation mode and the knobs, in torchtitan's
    JobConfig names."""
    from planners.launch import torchtitan_args

    args = torchtitan_args(_job(tp=8, dp=32, zero_stage=3, recompute="full",
                                sequence_parallel=True, overlap_tp_comm=True,
                                attention_kernel="flash2", fp8_tp_gather=True), 80).split()
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    assert pairs["--parallelism.data_parallel_shard_degree"] == "32"
    assert pairs["--parallelism.data_parallel_replicate_degree"] == "1"
    assert pairs["--parallelism.tensor_parallel_degree"] == "8"
    assert pairs["--training.local_batch_size"] == "1"
    assert pairs["--training.global_batch_size"] == "512"
    assert pairs["--activation_checkpoint.mode"] == "full"
    assert {"--training.compile", "--parallelism.enable_async_tensor_parallel"} <= set(args)
    assert args[-4:] == ["--model.converters", "float8", "--float8.recipe_name", "tensorwise"]
    # a pipeline: the local batch is the replica's share, split into micro-batches
    piped = torchtitan_args(_job(tp=8, pp=4, dp=8, zero_stage=1, recompute="op",
                                 schedule="interleaved", virtual_stages=2,
                                 sequence_parallel=True, pointwise_kernels="eager",
                                 fp8_tp_gather=True),
                            80).split()
    pairs = dict(zip(piped[::2], piped[1::2], strict=False))
    assert pairs["--training.local_batch_size"] == "64"
    assert pairs["--parallelism.data_parallel_shard_degree"] == "8"  # FSDP under PP: ZeRO-1
    assert pairs["--parallelism.pipeline_parallel_schedule"] == "Interleaved1F1B"
    assert pairs["--parallelism.pipeline_parallel_layers_per_stage"] == "10"
    assert pairs["--activation_checkpoint.selective_ac_option"] == "op"
    assert "--training.compile" not in piped


@pytest.mark.parametrize("plan, reason", [
    ({"dp": 8, "zero_stage": 1}, "zero_stage=1 without PP: torchtitan shards with FSDP"),
    ({"dp": 8, "zero_stage": 2}, "zero_stage=2: torchtitan shards with FSDP"),
    ({"dp": 2, "pp": 4, "zero_stage": 3}, "zero_stage=3 with pp=4: .* which is zero_stage 1"),
    ({"dp": 8, "zero_stage": 3, "recompute": "selective"}, "recompute=op"),
    ({"dp": 8, "zero_stage": 3, "offload": "cpu"}, "offload=cpu"),
])
def test_torchtitan_arguments_refuse_what_torchtitan_does_not_run(
        plan: dict[str, Any], reason: str) -> None:
    from planners.launch import torchtitan_args
    from profiles.errors import ClusterSimError

    with pytest.raises(ClusterSimError, match=reason):
        torchtitan_args(_job(**plan), 80)


def test_the_launch_goes_to_the_framework_that_runs_the_plan() -> None:
    """A Megatron plan gets Megatron-LM's arguments; an FSDP plan with the per-op policy
    torchtitan's; one neither runs is refused with both reasons."""
    from planners.launch import training_launch
    from profiles.errors import ClusterSimError

    assert training_launch(_job(tp=8, dp=32, zero_stage=1, sequence_parallel=True,
                                recompute="selective"), 80)[0] == "Megatron-LM"
    assert training_launch(_job(dp=256, zero_stage=3, recompute="op"), 80)[0] == "torchtitan"
    with pytest.raises(ClusterSimError, match="Megatron-LM: .*; torchtitan: "):
        training_launch(_job(dp=256, zero_stage=1, recompute="op"), 80)


def test_torchtitan_pipelines_run_as_pytorch_pipelining_runs_fsdp() -> None:
    """With PP, an FSDP stage keeps its weights gathered and its gradients unreduced
    until the last backward (ZeRO-1's traffic and memory), an Interleaved 1F1B run
    without printed split points has torchtitan's default two stages per rank, and the
    local batch (32) goes through in torchtitan's default one micro-batch per stage:
    16 of 2 interleaved, 8 of 4 with 1F1B."""
    row = _row(model="Llama 3.1 405B", n_gpu="512", TP="8", PP="8", DP="8", mbs="32",
               gbs="256", recompute="full", precision="FP8 (float8 linears)",
               notes="3D, Interleaved 1F1B schedule + torch.compile + Float8 + AsyncTP; "
                     "DP column = FSDP degree")
    run = express_row(row)
    assert not isinstance(run, str)
    plan = run.job.plan
    assert (plan.zero_stage, plan.schedule, plan.virtual_stages) == (1, "interleaved", 2)
    assert run.job.micro_batch == 2 and run.job.global_batch == 256
    assert "FSDP under PP as ZeRO-1" in run.assumed and "2 stages per rank" in run.assumed
    assert "16 pipeline micro-batches of 2" in run.assumed
    one = express_row({**row, "notes": "3D, 1F1B schedule; DP column = FSDP degree"})
    assert not isinstance(one, str) and one.job.plan.schedule == "1f1b"
    assert one.job.micro_batch == 4 and one.job.global_batch == 256
    odd = express_row({**row, "mbs": "12", "gbs": "96"})
    assert odd == "torchtitan's local batch 12 does not split into its 16 pipeline micro-batches"


def test_plan_training_plans_a_torchtitan_job_with_what_torchtitan_runs(tmp_path: Any) -> None:
    """The bundled torchtitan job is searched over DDP/FSDP and none/op/full by default
    (a Megatron job keeps ZeRO 0/1 and Megatron's policies); a misspelt choice is a
    one-line error, not an empty plan."""
    import csv
    from pathlib import Path

    from typer.testing import CliRunner

    from cli import app

    example = str(Path(__file__).parent.parent / "workloads" / "examples"
                  / "train_llama3_8b_torchtitan.json")
    runner = CliRunner()
    result = runner.invoke(app, ["plan-training", "--job", example, "--num-gpus", "8",
                                 "--tp", "1", "--pp", "1", "--micro-batch", "1",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "as torchtitan arguments" in result.output
    assert "validated range (GH100 runs" in result.output  # the fastest plan's range
    with open(tmp_path / "candidates.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["plan.zero_stage"] for r in rows} == {"0", "1", "3"}
    # without a pipeline torchtitan's FSDP is ZeRO-3: the ZeRO-1 plans are not its
    assert {r["status"] for r in rows if r["plan.zero_stage"] == "1"} == {"infeasible"}
    assert all(r["reason"].startswith("torchtitan: zero_stage=1 without PP")
               for r in rows if r["plan.zero_stage"] == "1")
    assert {r["plan.recompute"] for r in rows} == {"none", "op", "full"}
    assert {r["plan.attention_kernel"] for r in rows} == {"flash2"}
    bad = runner.invoke(app, ["plan-training", "--job", example, "--num-gpus", "8",
                              "--recompute", "fulll"])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1
    assert "--recompute 'fulll'" in bad.output


@pytest.mark.parametrize("flags, message", [
    (["--tp", "0"], "--tp '0': expected comma-separated integers, each at least 1"),
    (["--num-gpus", "-8"], "--num-gpus '-8'"),
    (["--micro-batch", "0"], "--micro-batch '0'"),
    (["--zero-stage", "4"], "each 0 to 3"),
    (["--price", "-1"], "expected USD per GPU-hour, 0 or more"),
    (["--tp", "1", "--pp", "3"], "no plan of the space uses 64 GPUs"),
])
def test_plan_training_refuses_a_space_it_cannot_search(flags: list[str], message: str) -> None:
    """Zero or negative degrees, counts and sizes, a ZeRO stage past 3, a negative price
    and a space with no plan for the GPU count are one-line errors (they crashed or gave
    an empty plan)."""
    from pathlib import Path

    from typer.testing import CliRunner

    from cli import app

    job = str(Path(__file__).parent.parent / "workloads" / "examples" / "train_llama3_70b.json")
    args = ["plan-training", "--job", job, "--num-gpus", "64", *flags]
    if "--num-gpus" in flags:
        args = ["plan-training", "--job", job, *flags]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert message in result.output


@pytest.mark.parametrize("sequence_parallel, share", [(True, 0.5), (False, 1.0)])
def test_the_per_op_policy_gathers_again_under_tensor_parallelism(
        sequence_parallel: bool, share: float) -> None:
    """The policy saves reduce-scatters' outputs but not all-gathers': with sequence
    parallelism the backward gathers again (half of a pass's TP traffic: one gather per
    reduce-scatter); without it each all-reduce runs again."""
    gpu = load_gpu("h100")
    cost = layer_cost(LLAMA_8B, gpu, seq_len=8192, micro_batch=2, tp=2, cp=1, ep=1,
                      sequence_parallel=sequence_parallel, recompute="op",
                      attention_kernel="flash2", overlap_tp_comm=False, dtype="bf16",
                      tp_link=LINK, cp_link=LINK, ep_link=LINK)
    tokens = 2 * 8192
    again = sum(gemm_time_terms(gpu, tokens, n, k, "bf16")[0]
                for n, k in linear_sequence(LLAMA_8B, 2)[1::2])
    assert cost.tp_comm_s > 0
    assert cost.recompute_s == pytest.approx(again + cost.elementwise_s
                                             + share * cost.tp_comm_s)
