"""From plan to launch and back: vllm serve command lines, SGLang and Megatron-LM."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planners.launch import launch_commands, megatron_args, sglang_command
from profiles.errors import ClusterSimError
from simulator import build_deployment
from simulator.serving.vllm_args import parse_vllm_args, vllm_command
from workloads.training import TrainingJob


@st.composite
def deployments(draw: st.DrawFn) -> dict:
    scheduler = {key: draw(value) for key, value in {
        "max_num_seqs": st.sampled_from([64, 128, 256, 1024]),
        "max_num_batched_tokens": st.sampled_from([1024, 2048, 8192]),
        "block_size": st.sampled_from([16, 32]),
        "gpu_memory_utilization": st.sampled_from([0.8, 0.9, 0.95]),
        "enable_prefix_caching": st.booleans(),
        "enable_chunked_prefill": st.booleans(),
        "max_model_len": st.sampled_from([4096, 32768]),
        "swap_space_gib": st.sampled_from([0.0, 4.0, 16.0]),
        "queue_order": st.sampled_from(["fcfs", "priority"]),
        "long_prefill_token_threshold": st.sampled_from([0, 512]),
    }.items() if draw(st.booleans())}
    data: dict = {"model": draw(st.sampled_from(["llama-3.1-8b", "qwen3-14b", "mixtral-8x7b"])),
                  "gpu": "h100", "parallelism": {"tp": draw(st.sampled_from([1, 2, 4]))},
                  "scheduler": scheduler}
    if data["model"] == "mixtral-8x7b" and draw(st.booleans()):
        data["parallelism"] |= {"ep": data["parallelism"]["tp"]}
    for key, values in (("kv_cache_dtype", ["fp8", "auto"]), ("quantization", ["fp8"]),
                        ("dtype", ["bfloat16", "float16"]), ("seed", [0, 7])):
        if draw(st.booleans()):
            data[key] = draw(st.sampled_from(values))
    if draw(st.booleans()):
        data["offload"] = {"cpu_offload_gb": draw(st.sampled_from([0.0, 8.0]))}
    return data


@settings(max_examples=60, deadline=None, derandomize=True)
@given(deployments())
def test_a_deployment_round_trips_through_its_vllm_serve_command(data: dict) -> None:
    deployment = build_deployment(data)
    command = vllm_command(deployment)
    served = parse_vllm_args(command)
    again = build_deployment({"gpu": "h100", "model": served.model}, served.overrides)
    assert again.model_dump() == deployment.model_dump(), command


def test_the_vllm_args_flag_simulates_the_command_as_the_flags_would(monkeypatch) -> None:
    from tests.test_vllm_flags import _deployment_of

    typed = _deployment_of(["-tp", "2", "--max-num-seqs", "128", "--kv-cache-dtype", "fp8",
                            "--no-enable-prefix-caching"], monkeypatch)
    pasted = _deployment_of(["--vllm-args", "vllm serve meta-llama/Meta-Llama-3-8B -tp 2 "
                             "--max-num-seqs=128 --kv-cache-dtype fp8 "
                             "--no-enable-prefix-caching --port 8000 --disable-log-requests"],
                            monkeypatch)
    assert pasted.model_dump() == typed.model_dump()


@pytest.mark.parametrize(("args", "message"), [
    ("serve llama-3-8b --frobnicate 2", "--frobnicate is not a vllm serve flag"),
    ("serve llama-3-8b --tensor-parallel-size", "needs a value"),
    ("serve llama-3-8b -tp two", "'two'"),
    ("serve llama-3-8b --speculative-config '[1]'", "expected a JSON object"),
    # a flag that changes the timing in a way not modelled is refused, never read as
    # changing nothing
    ("serve llama-3-8b --port 8000 --enforce-eager", "--enforce-eager: eager execution"),
])
def test_bad_vllm_command_lines_are_one_line_errors(args: str, message: str) -> None:
    with pytest.raises(ClusterSimError, match=message):
        parse_vllm_args(args)


def test_a_policy_vllm_cannot_run_is_not_printed_as_a_vllm_command() -> None:
    sarathi = build_deployment({"model": "llama-3-8b", "gpu": "h100",
                                "scheduler": {"policy": "stall-free"}})
    with pytest.raises(ClusterSimError, match="no flag for another policy"):
        vllm_command(sarathi)
    assert launch_commands(sarathi)["vllm"].startswith("not expressible")


def test_sglang_and_disaggregated_launch_commands() -> None:
    deployment = build_deployment({
        "model": "deepseek-v2-lite", "gpu": "h100", "parallelism": {"tp": 1, "dp": 4, "ep": 4},
        "scheduler": {"max_num_seqs": 64, "gpu_memory_utilization": 0.85}})
    command = sglang_command(deployment)
    for part in ("--model-path deepseek-ai/DeepSeek-V2-Lite", "--tp-size 1", "--dp-size 4",
                 "--ep-size 4", "--enable-dp-attention", "--max-running-requests 64",
                 "--mem-fraction-static 0.85"):
        assert part in command
    disagg = build_deployment({"model": "llama-3-8b", "gpu": "h100", "disaggregation": {
        "prefill": {"replicas": 2, "parallelism": {"tp": 2}},
        "decode": {"gpu": "a100", "replicas": 3}}})
    commands = launch_commands(disagg)
    assert "--tensor-parallel-size 2" in commands["vllm (prefill pool)"]
    assert '"replicas": 3' in commands["layout (decode pool)"]
    assert '"gpu": "a100"' in commands["layout (decode pool)"]


def test_a_training_plan_as_megatron_arguments() -> None:
    job = TrainingJob(model="llama-3-70b", gpu="h100", seq_len=8192, global_batch=128,
                      micro_batch=1, plan={"tp": 4, "pp": 4, "dp": 4, "virtual_stages": 5,
                                           "schedule": "interleaved", "sequence_parallel": True,
                                           "recompute": "selective", "zero_stage": 1})
    args = megatron_args(job)
    for part in ("--tensor-model-parallel-size 4", "--pipeline-model-parallel-size 4",
                 "--num-virtual-stages-per-pipeline-rank 5", "--sequence-parallel",
                 "--recompute-granularity selective", "--use-distributed-optimizer",
                 "--micro-batch-size 1", "--global-batch-size 128", "--seq-length 8192",
                 "--bf16"):
        assert part in args
    zero3 = job.model_copy(update={"plan": job.plan.model_copy(update={"zero_stage": 3})})
    with pytest.raises(ClusterSimError, match="zero_stage=3 with pp=4: .*Megatron-FSDP"):
        megatron_args(zero3)
    # without PP, ZeRO-3 is Megatron-FSDP with every state sharded
    fsdp = job.model_copy(update={"plan": job.plan.model_copy(update={
        "zero_stage": 3, "pp": 1, "dp": 16, "virtual_stages": 1, "schedule": "1f1b"})})
    assert ("--use-distributed-optimizer --use-megatron-fsdp --data-parallel-sharding-"
            "strategy optim_grads_params") in megatron_args(fsdp)
    assert "pipeline-split" not in args and "decoder-first" not in args


def test_uneven_stages_become_megatrons_split_arguments() -> None:
    """The two ways to split layers unevenly, as Megatron-LM spells them."""
    base = {"model": "llama-3.1-405b", "gpu": "h100", "seq_len": 8192, "global_batch": 64}
    stated = TrainingJob(**base, plan={"tp": 8, "pp": 16, "dp": 4, "first_stage_layers": 7,
                                       "last_stage_layers": 7})
    assert "--decoder-first-pipeline-num-layers 7 --decoder-last-pipeline-num-layers 7" \
        in megatron_args(stated)
    counted = TrainingJob(**base, plan={"tp": 8, "pp": 8, "dp": 8,
                                        "embedding_in_pipeline_split": True,
                                        "loss_in_pipeline_split": True})
    assert ("--account-for-embedding-in-pipeline-split --account-for-loss-in-pipeline-split"
            in megatron_args(counted))
