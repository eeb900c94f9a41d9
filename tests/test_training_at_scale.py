"""Training as today's frameworks run it: FlashAttention memory, uneven pipeline stages,
published plans that fit at their micro-batch, and the published-runs validation group."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.errors import ClusterSimError
from profiles.models import load_model
from profiles.pipeline_split import stage_layer_counts
from profiles.training_memory import activation_bytes_per_layer
from simulator.training import simulate_training
from validation.operators import default_measured_dir
from workloads.training import build_training_job

LLAMA_70B = load_model("llama-3-70b")


@pytest.mark.parametrize("seq_len", [4096, 32768])
def test_flash_attention_activations_equal_the_hand_count(seq_len: int) -> None:
    """Llama-3-70B, TP 8 with sequence parallelism, no recomputation, FlashAttention: per
    token 8h/t replicated (two norm inputs, the QKV and MLP inputs; Llama trains without
    dropout, so no masks), (2q + 4kv + 2q + 6f)/t sharded and a 4-byte log-sum-exp per
    head; nothing grows with s^2, so 8x the sequence is exactly 8x the bytes."""
    h, q, kv, f, heads, t = 8192, 8192, 1024, 28672, 64, 8
    per_token = 8 * h / t + (2 * q + 4 * kv + 2 * q + 6 * f + 4 * heads) / t
    got = activation_bytes_per_layer(LLAMA_70B, seq_len, 1, t, True, "none",
                                     attention_kernel="flash")
    assert got == pytest.approx(seq_len * per_token)
    unfused = activation_bytes_per_layer(LLAMA_70B, seq_len, 1, t, True, "none")
    # unfused, without attention dropout: the softmax output alone, 2 bytes per score
    assert unfused - seq_len * (per_token - 4 * heads / t) == pytest.approx(
        2 * heads * seq_len**2 / t)


def test_fp8_keeps_the_linear_layers_inputs_in_one_byte() -> None:
    """Under FP8 the QKV and MLP inputs (h each), the projection input (q) and the second
    MLP GEMM's input (f) are kept as 1 byte, and FlashAttention's output O stays 16-bit
    beside the projection's FP8 copy: (2h + q + f)/... less, 2q more, per token."""
    h, q, f, t = 8192, 8192, 28672, 8
    bf16 = activation_bytes_per_layer(LLAMA_70B, 4096, 1, t, False, "none",
                                      attention_kernel="flash")
    fp8 = activation_bytes_per_layer(LLAMA_70B, 4096, 1, t, False, "none",
                                     attention_kernel="flash", fp8=True)
    assert bf16 - fp8 == pytest.approx(4096 * (2 * h + (q + f - 2 * q) / t))


def test_126_layers_run_on_16_stages_with_stated_stage_sizes() -> None:
    """Llama 3.1 405B's 126 layers on PP 16: 7 on the first and last stage, 8 on each of
    the 14 others; the step runs and fits."""
    assert stage_layer_counts(126, 16, first_stage_layers=7, last_stage_layers=7) == \
        [7] + [8] * 14 + [7]
    job = build_training_job({
        "model": "llama-3.1-405b", "gpu": "h100", "seq_len": 4096, "global_batch": 64,
        "micro_batch": 1, "dtype": "fp8",
        "plan": {"tp": 8, "pp": 16, "dp": 4, "sequence_parallel": True, "zero_stage": 1,
                 "first_stage_layers": 7, "last_stage_layers": 7}})
    result = simulate_training(job)
    assert result.step_s > 0 and result.memory.total < result.memory.capacity
    with pytest.raises(ClusterSimError, match="does not divide llama-3.1-405b's 126 layers"):
        simulate_training(build_training_job({
            "model": "llama-3.1-405b", "gpu": "h100", "seq_len": 8192, "global_batch": 64,
            "plan": {"tp": 8, "pp": 16, "dp": 4, "sequence_parallel": True}}))


def test_embedding_and_loss_count_as_layers_in_the_split() -> None:
    """126 + 2 = 128 units over 8 stages x 8 chunks: 2 per chunk; the first chunk (the
    embedding's) and the last (the loss's) hold one transformer layer."""
    counts = stage_layer_counts(126, 8, 8, embedding_in_split=True, loss_in_split=True)
    assert len(counts) == 64 and sum(counts) == 126
    assert counts[0] == 1 and counts[-1] == 1 and set(counts[1:-1]) == {2}
    assert stage_layer_counts(94, 8, 4, embedding_in_split=True, loss_in_split=True)[0] == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"first_stage_layers": 10, "last_stage_layers": 10}, "do not split evenly over 14"),
    ({"first_stage_layers": 130}, "do not leave the model's 126 layers"),
    ({"first_stage_layers": 7, "embedding_in_split": True}, "set one of them"),
])
def test_impossible_splits_are_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ClusterSimError, match=message):
        stage_layer_counts(126, 16, **kwargs)


def test_uneven_stages_need_a_pipeline() -> None:
    with pytest.raises(ClusterSimError, match="need pp > 1"):
        build_training_job({"model": "llama-3-8b", "seq_len": 4096, "global_batch": 8,
                            "plan": {"first_stage_layers": 3}})


# Published plans as their frameworks ran them (each row's layout, micro-batch and
# precision from its source; the framework's defaults where the table prints none).
PUBLISHED_PLANS = [
    ("Megatron-Bridge 26.04 Llama3-70B, 64 H100, FP8", "llama-3-70b", "h100", 8192, 256, 1,
     "fp8", {"tp": 4, "pp": 8, "dp": 2, "schedule": "interleaved", "virtual_stages": 5,
             "zero_stage": 1, "fp8_param_gather": True}),
    ("Megatron-Bridge 26.04 Llama3.1-405B, 1024 H100, FP8", "llama-3.1-405b", "h100", 8192,
     1536, 1, "fp8", {"tp": 8, "pp": 8, "cp": 2, "dp": 8, "schedule": "interleaved",
                      "virtual_stages": 8, "zero_stage": 1, "fp8_param_gather": True,
                      "embedding_in_pipeline_split": True, "loss_in_pipeline_split": True}),
    # Megatron-Bridge's recipes keep FP8 weights (fp8_param_gather) and train Llama without
    # dropout; counting a 16-bit weight copy beside them and dropout masks refused these
    # three by 1.4, 14.7 and 5.6 GiB (llama31_workload_base_configs.py GB200_FP8_CS_V2 and
    # GB300_FP8_MX_V2, llama3_workload_base_configs.py _LLAMA3_70B_SFT_CONFIG_GB300).
    ("Megatron-Bridge Llama3.1-405B, 256 GB200, FP8-CS, PP 16 x VP 4", "llama-3.1-405b",
     "gb200", 8192, 1536, 1, "fp8",
     {"tp": 4, "pp": 16, "dp": 4, "schedule": "interleaved", "virtual_stages": 4,
      "zero_stage": 1, "fp8_param_gather": True, "embedding_in_pipeline_split": True,
      "loss_in_pipeline_split": True}),
    ("Megatron-Bridge Llama3.1-405B, 256 GB300, MXFP8, TP 2 x PP 8 x CP 2", "llama-3.1-405b",
     "gb300", 8192, 1536, 1, "fp8",
     {"tp": 2, "pp": 8, "cp": 2, "dp": 8, "schedule": "interleaved", "virtual_stages": 4,
      "zero_stage": 1, "fp8_param_gather": True, "embedding_in_pipeline_split": True,
      "loss_in_pipeline_split": True}),
    ("Megatron-Bridge Llama3-70B SFT, 32 GB300, FP8, PP 2 x VP 20", "llama-3-70b", "gb300",
     4096, 32, 1, "fp8", {"tp": 1, "pp": 2, "dp": 16, "schedule": "interleaved",
                          "virtual_stages": 20, "zero_stage": 1, "fp8_param_gather": True}),
    ("NeMo 24.07 Llama3-8B, 8 H100, FP8, CP 2", "llama-3-8b", "h100", 8192, 128, 1, "fp8",
     {"tp": 1, "pp": 1, "cp": 2, "dp": 4, "zero_stage": 1}),
    ("NeMo 24.07 Llama2-70B, 64 H100, FP8", "llama-2-70b", "h100", 4096, 128, 1, "fp8",
     {"tp": 4, "pp": 4, "dp": 4, "schedule": "interleaved", "virtual_stages": 20,
      "zero_stage": 1}),
    ("Megatron-Bridge 26.04 Qwen3-235B-A22B, 256 H100, FP8, EP 32", "qwen3-235b-a22b",
     "h100", 4096, 8192, 1, "fp8",
     {"tp": 2, "pp": 8, "dp": 16, "ep": 32, "schedule": "interleaved", "virtual_stages": 4,
      "zero_stage": 1, "fp8_param_gather": True, "embedding_in_pipeline_split": True,
      "loss_in_pipeline_split": True}),
    ("Megatron-Bridge 26.04 Llama3-70B, 64 GB200, FP8, Megatron FSDP, 40 layers' "
     "activations on the host", "llama-3-70b", "gb200", 8192, 256, 2, "fp8",
     {"tp": 1, "pp": 1, "dp": 64, "zero_stage": 3, "activation_offload_layers": 40,
      "fp8_param_gather": True}),
    ("torchtitan Llama 3.1 70B, 256 H100, FSDP 32 x TP 8, Float8", "llama-3.1-70b", "h100",
     8192, 512, 16, "fp8", {"tp": 8, "pp": 1, "dp": 32, "zero_stage": 3,
                            "recompute": "full", "attention_kernel": "flash2"}),
    ("torchtitan Llama 3.1 8B, 8 H100, FSDP 8, per-op recomputation, eager", "llama-3.1-8b",
     "h100", 8192, 16, 2, "bf16", {"tp": 1, "pp": 1, "dp": 8, "zero_stage": 3,
                                   "recompute": "op", "attention_kernel": "flash2",
                                   "pointwise_kernels": "eager"}),
    ("torchtitan Llama 3.1 405B, 512 H100, FSDP 8 x TP 8 x PP 8 (as ZeRO-1), Float8",
     "llama-3.1-405b", "h100", 8192, 256, 1, "fp8",
     {"tp": 8, "pp": 8, "dp": 8, "zero_stage": 1, "recompute": "full",
      "schedule": "interleaved", "virtual_stages": 2, "attention_kernel": "flash2",
      "embedding_in_pipeline_split": True, "loss_in_pipeline_split": True}),
]


@pytest.mark.parametrize("label, model, gpu, seq_len, global_batch, micro_batch, dtype, plan",
                         PUBLISHED_PLANS, ids=[p[0] for p in PUBLISHED_PLANS])
def test_each_published_plan_fits_at_its_micro_batch(
        label: str, model: str, gpu: str, seq_len: int, global_batch: int, micro_batch: int,
        dtype: str, plan: dict) -> None:
    """A plan a framework ran at its published micro-batch fits in the GPU's memory."""
    full = {"sequence_parallel": plan["tp"] > 1, "attention_kernel": "flash"} | plan
    job = build_training_job({"model": model, "gpu": gpu, "seq_len": seq_len,
                              "global_batch": global_batch, "micro_batch": micro_batch,
                              "dtype": dtype, "plan": full})
    result = simulate_training(job)
    assert result.memory.total <= result.memory.capacity, label


@pytest.mark.skipif(default_measured_dir() is None, reason="no shared measured pack")
def test_every_pack_training_row_is_compared_or_listed_with_a_reason() -> None:
    """Each row of the pack's training_runs.csv is either compared (one row per run, by
    its most direct metric) or listed with the reason, none dropped; the Megatron-family
    pre-training runs on H100 are all expressed, and none is refused for memory."""
    from validation.training_runs import skipped_training_rows, training_rows

    measured = default_measured_dir()
    assert measured is not None
    rows, skipped = training_rows(measured), skipped_training_rows(measured)
    pack = pd.read_csv(measured / "training_runs.csv", dtype=str)
    assert sorted([*rows["id"], *skipped["id"]]) == sorted(pack["id"])
    assert skipped["reason"].str.len().min() > 5
    assert not rows["id"].duplicated().any()
    h100 = pack[pack["gpu"].str.contains("DGX-H100") & pack["notes"].str.contains(
        "task=pretrain") & ~pack["model"].str.contains("Nemotron|GPT OSS|tokendrop")]
    refused = skipped[skipped["reason"].str.contains("does not fit")]
    assert set(h100["id"]) & set(refused["id"]) == set()
    compared_or_same = set(rows["id"]) | set(
        skipped[skipped["reason"].str.startswith("same run as")]["id"])
    assert set(h100["id"]) <= compared_or_same


def test_the_step_breakdown_adds_up_and_names_what_the_plan_pays_for() -> None:
    """The breakdown's parts add up to the step; a plan without TP, PP or recomputation
    pays none of them, and one with them pays each."""
    base = {"model": "llama-3-8b", "gpu": "h100", "seq_len": 4096, "global_batch": 32,
            "micro_batch": 1}
    alone = simulate_training(build_training_job(base | {"plan": {"dp": 8,
                                                                  "zero_stage": 1}}))
    assert sum(alone.breakdown.values()) == pytest.approx(alone.step_s)
    for part in ("tp_comm", "pipeline_bubble", "recompute", "cp_comm", "ep_comm"):
        assert alone.breakdown[part] == pytest.approx(0.0, abs=1e-12), part
    assert alone.breakdown["gemm"] > 0.4 * alone.step_s
    spread = simulate_training(build_training_job(base | {"plan": {
        "tp": 4, "pp": 2, "dp": 1, "sequence_parallel": True, "recompute": "full"}}))
    assert sum(spread.breakdown.values()) == pytest.approx(spread.step_s)
    for part in ("tp_comm", "pipeline_bubble", "recompute"):
        assert spread.breakdown[part] > 0, part
    assert spread.summary()["step_breakdown_s"] == spread.breakdown


def test_a_data_parallel_ring_across_nodes_moves_one_nic_per_rank_in_each_node() -> None:
    """A DP group of 16 ranks 2 apart (TP 2 on 8-GPU nodes) has 4 ranks in each node:
    its rings cross the network once per node on 4 NICs at once, so it moves 4 NICs'
    worth (capped by NVLink); 48 ranks 8 apart (TP 8) have one per node: one NIC."""
    from profiles.cluster import LinkCost
    from simulator.training.step import _group_link

    nvlink, nic = LinkCost(360e9, 4e-6), LinkCost(46.5e9, 8e-6)
    assert _group_link(nvlink, nic, 4, 2, 8) is nvlink
    assert _group_link(nvlink, nic, 16, 2, 8).bandwidth_bytes_per_s == pytest.approx(4 * 46.5e9)
    assert _group_link(nvlink, nic, 48, 8, 8).bandwidth_bytes_per_s == pytest.approx(46.5e9)
    assert _group_link(nvlink, nic, 64, 1, 8).bandwidth_bytes_per_s == pytest.approx(360e9)


def test_an_all_to_all_over_two_nodes_sends_half_its_tokens_over_the_nic() -> None:
    """EP 16 over two 8-GPU nodes: half of each rank's tokens leave the node over the NIC
    while the other half cross NVLink, so the NIC's half sets the time: 2 x its bytes
    per second; EP 8 in one node stays on NVLink."""
    from profiles.cluster import LinkCost
    from simulator.training.step import _ep_link
    from workloads.training import ParallelPlan

    nvlink, nic = LinkCost(360e9, 4e-6), LinkCost(46.5e9, 8e-6)
    plan = ParallelPlan(tp=1, dp=16, ep=16)
    assert _ep_link(nvlink, nic, plan, 8).bandwidth_bytes_per_s == pytest.approx(2 * 46.5e9)
    assert _ep_link(nvlink, nic, ParallelPlan(tp=1, dp=8, ep=8), 8) is nvlink


def test_each_stage_holds_its_layers_and_its_end_of_the_model() -> None:
    """Llama-3-8B on PP 4 (8 layers each, TP 2): the first stage adds the embedding, the
    last the untied LM head, the middle ones their layers alone."""
    from profiles.training_memory import stage_param_counts

    model = load_model("llama-3-8b")
    counts = stage_param_counts(model, [8] * 4, 4, 1, tp=2, dp=1, cp=1, ep=1)
    layer = (model.attention_params_per_layer + model.norm_params_per_layer
             + model.mlp_params_per_layer) / 2
    assert counts[1] == pytest.approx(8 * layer) == counts[2]
    assert counts[0] == pytest.approx(8 * layer + model.embedding_params / 2)
    assert counts[3] == pytest.approx(8 * layer + model.lm_head_params / 2)


@pytest.mark.skipif(default_measured_dir() is None, reason="no shared measured pack")
def test_the_stored_training_fit_is_what_the_validation_measures_now() -> None:
    """training_fits.json's in-sample median is, per fitted die, the median error of its
    Megatron-family runs as `clustersim validate` predicts them now: a change to the
    step model that is not refitted (python -m validation.calibrate MEASURED --training
    --write) fails here."""
    import numpy as np

    from profiles.training_fit import training_fits
    from validation.calibrate import FIT_SOURCES, TRAINING_DIES
    from validation.training_runs import training_rows

    measured = default_measured_dir()
    assert measured is not None
    rows = training_rows(measured)
    for gpus in TRAINING_DIES.values():
        fitting = rows[rows["gpu"].isin(gpus) & rows["source"].isin(FIT_SOURCES)]
        stored = training_fits()["gpus"][gpus[0]]["fitted"]
        assert stored["num_points"] == len(fitting)
        # the fit's errors are |exp(log error) - 1|: the same figures as error_pct
        assert float(np.median(fitting["error_pct"])) == pytest.approx(
            stored["median_error_pct"], abs=0.01)


@pytest.mark.skipif(default_measured_dir() is None, reason="no shared measured pack")
def test_held_out_gpus_take_their_die_s_fit_and_store_its_error_on_their_runs() -> None:
    """Blackwell Ultra (B300, GB300) takes the Blackwell B200 entry without being fitted
    to: its sustained fraction is the B200's, its runs are not among the fit's points,
    and the stored held-out median is what the validation measures on them now."""
    import numpy as np

    from profiles.training_fit import sustained_compute, training_fits
    from validation.calibrate import FIT_SOURCES, TRAINING_DIES, TRAINING_HELD_OUT
    from validation.training_runs import training_rows

    fits = training_fits()["gpus"]
    measured = default_measured_dir()
    assert measured is not None
    rows = training_rows(measured)
    for die, held in TRAINING_HELD_OUT.items():
        fitted_gpu = TRAINING_DIES[die][0]
        record = fits[fitted_gpu]["fitted"]["held_out_gpus"]
        assert record["gpus"] == list(held)
        for name in held:
            assert fits[name]["held_out"] and fits[name]["die"] == die
            assert sustained_compute(name) == sustained_compute(fitted_gpu)
        unseen = rows[rows["gpu"].isin(held) & rows["source"].isin(FIT_SOURCES)]
        assert record["num_points"] == len(unseen) > 0
        assert float(np.median(unseen["error_pct"])) == pytest.approx(
            record["median_error_pct"], abs=0.01)


def test_a_die_fitted_after_another_stores_its_runs_error_under_the_earlier_fit() -> None:
    """GB300's record holds its runs' error under Blackwell's fraction (the transfer
    test, taken before its own fit): the earlier die and fraction are named, and its own
    fit does no worse on its runs."""
    from profiles.training_fit import training_fits
    from validation.calibrate import TRAINING_DIES, TRAINING_TRANSFER

    fits = training_fits()["gpus"]
    for die, earlier in TRAINING_TRANSFER.items():
        entry = fits[TRAINING_DIES[die][0]]
        carried = entry["fitted"]["with_earlier_die_fit"]
        assert carried["die"] == earlier
        assert carried["sustained_compute"] == fits[TRAINING_DIES[earlier][0]][
            "sustained_compute"]
        assert entry["fitted"]["median_error_pct"] <= carried["median_error_pct"]


def test_the_planner_splits_layers_that_do_not_divide_its_stages() -> None:
    """Llama 3.1 405B (126 layers) on PP 8 x 8 chunks: the planner counts the embedding
    and loss as layers (128 units, 2 per chunk) instead of refusing the plan; a plan
    whose stages divide the layers is left as it is."""
    from planners.training import TrainingSpace, plan_training, uneven_split
    from workloads.training import ParallelPlan

    split = uneven_split(ParallelPlan(tp=8, pp=8, dp=2, schedule="interleaved",
                                      virtual_stages=8), 126)
    assert split.embedding_in_pipeline_split and split.loss_in_pipeline_split
    even = ParallelPlan(tp=8, pp=2, dp=2)
    assert uneven_split(even, 126) is even
    job = build_training_job({"model": "llama-3.1-405b", "gpu": "h100", "seq_len": 4096,
                              "global_batch": 64, "dtype": "fp8"})
    plan = plan_training(job, TrainingSpace(num_gpus=[512], tp=[8], pp=[8], zero_stage=[1],
                                            micro_batch=[1], recompute=["full"],
                                            schedules=["1f1b"]))
    assert [c.status for c in plan.candidates] == ["evaluated"]
    assert plan.candidates[0].plan["embedding_in_pipeline_split"]


@pytest.mark.skipif(default_measured_dir() is None, reason="no shared measured pack")
def test_a_training_step_10_percent_slower_fails_the_gate() -> None:
    """The training groups are gated like the kernels: the committed baseline passes as
    is, and every prediction 10% slower (throughput / 1.1) fails the H100 groups."""
    from validation.gate import _read_baseline, default_baseline_path
    from validation.operators import compare_drift, compare_operators
    from validation.training_runs import training_errors, training_rows

    measured = default_measured_dir()
    assert measured is not None
    _, baseline, _ = _read_baseline(default_baseline_path())
    rows = training_rows(measured)
    now = training_errors(rows)
    assert compare_operators(now, baseline)[0] == [] and compare_drift(now, baseline) == []
    slower = rows.assign(predicted=rows["predicted"] / 1.1)
    slower["signed_pct"] = (slower["predicted"] - slower["measured"]) / slower["measured"] * 100
    slower["error_pct"] = slower["signed_pct"].abs()
    worse = training_errors(slower)
    failed = compare_operators(worse, baseline)[0] + compare_drift(worse, baseline)
    assert any("H100-SXM5-80GB/training megatron-bridge" in line for line in failed)
    assert any("H100-SXM5-80GB/training all" in line for line in failed)


@given(layers=st.integers(1, 200), pp=st.integers(2, 32), v=st.integers(1, 8),
       embedding=st.booleans(), loss=st.booleans(),
       first=st.one_of(st.none(), st.integers(0, 40)),
       last=st.one_of(st.none(), st.integers(0, 40)))
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
def test_a_split_holds_every_layer_once_or_is_refused(
        layers: int, pp: int, v: int, embedding: bool, loss: bool, first: int | None,
        last: int | None) -> None:
    """Whatever the settings, a split gives each of the p·v chunks a non-negative count
    adding up to the model's layers, with the stated stage sizes where stated; or it is
    a one-line error."""
    explicit = first is not None or last is not None
    try:
        counts = stage_layer_counts(layers, pp, v, first_stage_layers=first,
                                    last_stage_layers=last,
                                    embedding_in_split=embedding and not explicit,
                                    loss_in_split=loss and not explicit)
    except ClusterSimError as error:
        assert "\n" not in str(error)
        return
    assert len(counts) == pp * v and min(counts) >= 0 and sum(counts) == layers
    stage = [sum(counts[c * pp + s] for c in range(v)) for s in range(pp)]
    if first is not None:
        assert stage[0] == first
    if last is not None:
        assert stage[-1] == last


def test_a_training_plan_says_where_each_step_goes(tmp_path: Path) -> None:
    """Every simulated candidate carries its step breakdown, adding up to its step, and
    pareto.json writes it beside each Pareto and best plan."""
    import json

    from planners import write_plan
    from planners.training import TrainingSpace, plan_training

    job = build_training_job({"model": "llama-3-8b", "gpu": "h100", "seq_len": 4096,
                              "global_batch": 32})
    plan = plan_training(job, TrainingSpace(num_gpus=[8], tp=[1, 2], pp=[1, 2],
                                            zero_stage=[1], micro_batch=[1],
                                            recompute=["none"], schedules=["1f1b"]))
    simulated = [c for c in plan.candidates if c.status == "evaluated"]
    assert simulated
    for candidate in simulated:
        assert sum(candidate.breakdown.values()) == pytest.approx(candidate.step_s)
    write_plan(plan, tmp_path / "plan")
    pareto = json.loads((tmp_path / "plan" / "pareto.json").read_text())
    assert all("step_breakdown_s" in entry for entry in pareto["pareto"])
    assert pareto["best"]["step_s"]["step_breakdown_s"]["gemm"] > 0
