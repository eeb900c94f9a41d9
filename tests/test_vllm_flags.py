"""vLLM's names and defaults: each `vllm serve` flag spelling sets the same deployment as
the YAML field, a flag that does not apply is refused, one name means one thing, and the
default engine is today's vLLM (V1)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

import simulator
from cli.main import app
from profiles.errors import ClusterSimError
from simulator import build_deployment
from simulator.serving.build import resolve
from tests.conftest import make_deployment, make_trace

EXAMPLE = "workloads/examples/chat.json"
TRAINING = "workloads/examples/train_llama3_70b.json"

# (flags as a vLLM user types them, the deployment file's fields they stand for)
SPELLINGS: list[tuple[list[str], dict[str, Any]]] = [
    (["--tensor-parallel-size", "2"], {"parallelism": {"tp": 2}}),
    (["-tp", "2"], {"parallelism": {"tp": 2}}),
    (["--pipeline-parallel-size", "2"], {"parallelism": {"pp": 2}}),
    (["-pp", "2"], {"parallelism": {"pp": 2}}),
    (["--data-parallel-size", "2", "--enable-expert-parallel", "--model", "mixtral-8x7b"],
     {"model": "mixtral-8x7b", "parallelism": {"dp": 2, "enable_expert_parallel": True}}),
    (["-dp", "2", "--ep", "2", "--model", "mixtral-8x7b"],
     {"model": "mixtral-8x7b", "parallelism": {"dp": 2, "ep": 2}}),
    (["--kv-cache-dtype", "fp8_e4m3"], {"kv_cache_dtype": "fp8_e4m3"}),
    (["--dtype", "half"], {"dtype": "half"}),
    (["--quantization", "fp8"], {"quantization": "fp8"}),
    (["-q", "awq"], {"quantization": "awq"}),
    (["--swap-space", "8"], {"scheduler": {"swap_space_gib": 8.0}}),
    (["--num-gpu-blocks-override", "4000"], {"scheduler": {"num_gpu_blocks_override": 4000}}),
    (["--scheduling-policy", "priority"], {"scheduler": {"queue_order": "priority"}}),
    (["--long-prefill-token-threshold", "256"],
     {"scheduler": {"long_prefill_token_threshold": 256}}),
    (["--max-num-partial-prefills", "2", "--engine", "vllm-v0"],
     {"engine": "vllm-v0", "scheduler": {"max_num_partial_prefills": 2}}),
    (["--max-num-seqs", "64", "--max-num-batched-tokens", "4096"],
     {"scheduler": {"max_num_seqs": 64, "max_num_batched_tokens": 4096}}),
    (["--gpu-memory-utilization", "0.8", "--block-size", "32", "--max-model-len", "4096"],
     {"scheduler": {"gpu_memory_utilization": 0.8, "block_size": 32, "max_model_len": 4096}}),
    (["--no-enable-prefix-caching", "--enable-chunked-prefill"],
     {"scheduler": {"enable_prefix_caching": False, "enable_chunked_prefill": True}}),
    (["--kv-offloading-size", "16"], {"offload": {"kv_offloading_size": 16.0}}),
    (["--cpu-offload-gb", "4"], {"offload": {"cpu_offload_gb": 4.0}}),
    (["--async-scheduling", "--seed", "3"], {"async_scheduling": True, "seed": 3}),
    (["--generation-config", "vllm", "--override-generation-config", '{"top_p": 0.9}'],
     {"generation_config": "vllm", "sampling": {"top_p": 0.9}}),
]


def _deployment_of(args: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The deployment ``simulate`` builds from ``args``, caught before it simulates."""
    captured: list[Any] = []

    def capture(config: Any, *_: Any, **__: Any) -> Any:
        captured.append(config)
        raise ClusterSimError("captured")

    monkeypatch.setattr(simulator, "simulate", capture)  # the command imports it when run
    base = ["simulate", "--workload", EXAMPLE, "--model", "llama-3-8b", "--gpu", "h100"]
    result = CliRunner().invoke(app, [*base, *args])
    assert captured, result.output
    return captured[0]


@pytest.mark.parametrize(("args", "fields"), SPELLINGS,
                         ids=[" ".join(args) for args, _ in SPELLINGS])
def test_each_vllm_flag_spelling_sets_the_yaml_field(
        args: list[str], fields: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from_flags = _deployment_of(args, monkeypatch)
    from_file = build_deployment({"model": "llama-3-8b", "gpu": "h100", **fields})
    assert from_flags.model_dump() == from_file.model_dump()


def test_a_flag_that_does_not_apply_is_refused() -> None:
    runner = CliRunner()
    training = runner.invoke(app, ["simulate", "--workload", TRAINING, "--swap-space", "4"])
    assert training.exit_code == 2
    assert "--swap-space does not apply to a training job" in training.output
    v1 = runner.invoke(app, ["simulate", "--workload", EXAMPLE, "--model", "llama-3-8b",
                             "--gpu", "h100", "--max-num-partial-prefills", "2"])
    assert v1.exit_code == 2 and "V1 engine refuses it" in v1.output
    assert "Traceback" not in v1.output


def test_the_default_engine_is_todays_vllm_v1() -> None:
    deployment = build_deployment({"model": "llama-3-8b", "gpu": "h100"})
    assert deployment.engine == "vllm-v1-0.15"
    scheduler = resolve(deployment).scheduler
    assert (scheduler.policy, scheduler.enable_chunked_prefill, scheduler.enable_prefix_caching,
            scheduler.max_num_batched_tokens, scheduler.max_num_seqs) == (
        "running-first", True, True, 8192, 1024)
    # vLLM's --max-num-batched-tokens 4096 works out of the box (chunked prefill is on)
    assert resolve(build_deployment({"model": "llama-3-8b", "gpu": "h100", "scheduler": {
        "max_num_batched_tokens": 4096}})).scheduler.max_num_batched_tokens == 4096
    bare = build_deployment({"model": "llama-3-8b", "gpu": "h100", "engine": "none"})
    assert bare.engine is None and resolve(bare).scheduler.policy == "prefill-first"


@pytest.mark.parametrize(("field", "old", "new"), [
    ("scheduler", {"policy": "vllm"}, "prefill-first"),
    ("scheduler", {"policy": "vllm-v1"}, "running-first"),
    ("scheduler", {"policy": "sarathi"}, "stall-free"),
    ("engine", "sarathi", "sarathi-serve"),
])
def test_one_name_means_one_thing_old_names_say_their_new_one(
        field: str, old: Any, new: str) -> None:
    with pytest.raises(ClusterSimError, match=f"is now '{new}'"):
        build_deployment({"model": "llama-3-8b", "gpu": "h100", field: old})


def test_max_num_partial_prefills_holds_new_prompts_back_as_vllm_v0() -> None:
    """Two 1,000-token prompts arrive together; chunks are capped at 256 tokens and the
    budget is 512. Without a limit both are prefilled in chunks from the first step; with
    ``max_num_partial_prefills: 1`` the second starts only once the first is whole."""
    trace = make_trace([0.0, 0.0], [1000, 1000], [4, 4])
    fields = {"scheduler.max_num_batched_tokens": 512, "scheduler.enable_chunked_prefill": True,
              "scheduler.long_prefill_token_threshold": 256}
    free = simulator.simulate(make_deployment("llama-3-8b", "h100", **fields), trace)
    capped = simulator.simulate(make_deployment(
        "llama-3-8b", "h100", **fields, **{"scheduler.max_num_partial_prefills": 1}), trace)
    assert free.ok and capped.ok
    free_starts = free.requests.sort_values("request_id")["first_scheduled_s"].tolist()
    capped_rows = capped.requests.sort_values("request_id")
    assert free_starts[0] == free_starts[1] == 0.0
    first, second = capped_rows.iloc[0], capped_rows.iloc[1]
    # A's chunks (256, 256, 256, 232) run alone; B's first chunk joins A's last one, the
    # step that leaves no prompt partly done, so B starts after A does and before A's
    # first token (the end of that step)
    assert first["first_scheduled_s"] == 0.0
    assert 0.0 < second["first_scheduled_s"] < first["arrival_s"] + first["ttft_s"]
    assert second["ttft_s"] > free.requests.sort_values("request_id").iloc[1]["ttft_s"]


def test_deployment_reference_lists_every_vllm_spelling() -> None:
    from cli.schema_doc import deployment_reference

    page = deployment_reference()
    for args, _ in SPELLINGS:
        for arg in args:
            if arg.startswith("-") and not arg.startswith("--no-"):
                assert f"`{arg}`" in page, arg
