"""Workloads as inference-perf and vLLM's benchmark_serving generate them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from profiles.errors import ClusterSimError
from simulator import build_deployment, simulate
from workloads.benchmark_tools import (
    InferencePerfConfig,
    VllmBenchSpec,
    from_inference_perf,
    from_vllm_bench,
    load_inference_perf,
)


def config(load_type: str = "constant", **shape: object) -> InferencePerfConfig:
    return InferencePerfConfig.model_validate({
        "load": {"type": load_type, "stages": [{"rate": 2.5, "duration": 4},
                                               {"rate": 6, "duration": 2}]},
        "api": {"type": "completion"},  # client sections are ignored
        "data": {"type": "shared_prefix", "shared_prefix": {
            "num_groups": 2, "num_prompts_per_group": 3, "system_prompt_len": 100,
            "question_len": 447, "output_len": 248} | shape}})


def test_constant_stages_run_back_to_back_and_prompts_cycle() -> None:
    """2.5 req/s for 4 s then 6 req/s for 2 s: 10 + 12 requests, evenly spaced from each
    stage's start; prompt i is group (i mod 6) // 3, question (i mod 6) % 3."""
    trace = from_inference_perf(config())
    assert len(trace) == 22
    assert trace.arrival_s[:10].tolist() == pytest.approx([i / 2.5 for i in range(10)])
    assert trace.arrival_s[10:].tolist() == pytest.approx([4 + i / 6 for i in range(12)])
    assert set(trace.prompt_tokens) == {547} and set(trace.output_tokens) == {248}
    assert trace.extras["prompt_id"][:7] == ["g0/q0", "g0/q1", "g0/q2", "g1/q0", "g1/q1",
                                             "g1/q2", "g0/q0"]
    assert trace.extras["prefix_id"][3] == "g1" and trace.extras["prefix_tokens"][0] == 100
    assert "multi-turn chat" not in trace.metadata["not_modelled"]


def test_poisson_stages_are_seeded_and_stay_in_their_stage() -> None:
    first, again = (from_inference_perf(config("poisson"), seed=7) for _ in range(2))
    assert first.arrival_s.tolist() == again.arrival_s.tolist()
    assert from_inference_perf(config("poisson"), seed=8).arrival_s.tolist() \
        != first.arrival_s.tolist()
    assert (first.arrival_s < 6).all() and (np.diff(first.arrival_s) >= 0).all()


def test_repeated_prompts_hit_the_prefix_cache_as_whole_prompts() -> None:
    """Two groups of two prompts, a 32-token system prompt and 64-token questions, blocks of
    16: the first cycle finds only its group's system prompt (0, 32, 0, 32 tokens); in the
    second every prompt is found up to its last full block before the final token (80)."""
    cfg = InferencePerfConfig.model_validate({
        "load": {"stages": [{"rate": 1, "duration": 8}]},
        "data": {"type": "shared_prefix", "shared_prefix": {
            "num_groups": 2, "num_prompts_per_group": 2, "system_prompt_len": 32,
            "question_len": 64, "output_len": 4}}})
    result = simulate(build_deployment({"model": "llama-3-8b", "gpu": "h100",
                                        "engine": "vllm-v1"}), from_inference_perf(cfg))
    assert result.requests["num_cached_tokens"].tolist() == [0, 32, 0, 32, 80, 80, 80, 80]


def test_inference_perf_config_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("load:\n  stages:\n  - rate: 1\n    duration: 10\n"
                    "data:\n  type: shared_prefix\n  shared_prefix:\n    num_groups: 2\n"
                    "    num_prompts_per_group: 2\n    system_prompt_len: 10\n"
                    "    question_lenn: 5\n    output_len: 4\n")
    with pytest.raises(ClusterSimError, match="question_len"):
        load_inference_perf(path)
    result = CliRunner().invoke(app, ["workload", "from-inference-perf", str(path),
                                      "--out", str(tmp_path / "t.json")])
    assert result.exit_code == 2 and result.output.startswith("error: inference-perf config")
    assert not (tmp_path / "t.json").exists()


def test_the_cli_writes_the_trace_and_says_what_it_does_not_model(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(config(enable_multi_turn_chat=True).model_dump()))
    result = CliRunner().invoke(app, ["workload", "from-inference-perf", str(path),
                                      "--out", str(tmp_path / "t.json")])
    assert result.exit_code == 0, result.output
    assert "not modelled: multi-turn chat" in result.output
    requests = json.loads((tmp_path / "t.json").read_text())["requests"]
    assert len(requests) == 22 and requests[6]["prompt_id"] == "g0/q0"


def test_vllm_random_lengths_and_gamma_gaps() -> None:
    """Lengths uniform in [L (1 - r), L (1 + r)]; Gamma gaps of mean 1 / rate whatever the
    burstiness; an infinite rate sends every request at time 0."""
    spec = VllmBenchSpec(num_prompts=20000, request_rate=4.0, burstiness=0.5,
                         random_input_len=1000, random_output_len=100,
                         random_range_ratio=0.25, random_prefix_len=50, seed=1)
    trace = from_vllm_bench(spec)
    prompts = trace.prompt_tokens - 50
    assert prompts.min() >= 750 and prompts.max() <= 1250
    assert trace.output_tokens.min() >= 75 and trace.output_tokens.max() <= 125
    gaps = np.diff(trace.arrival_s)
    assert gaps.mean() == pytest.approx(0.25, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(np.sqrt(1 / 0.5), rel=0.05)  # CV
    burst = from_vllm_bench(spec.model_copy(update={"request_rate": float("inf")}))
    assert (burst.arrival_s == 0).all()


def test_vllm_bench_bad_flags_are_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "workload", "from-vllm-bench", "--out", str(tmp_path / "t.json"), "--num-prompts",
        "10", "--request-rate", "-1", "--random-input-len", "8", "--random-output-len", "8"])
    assert result.exit_code == 2 and "request_rate" in result.output
    assert len(result.output.strip().splitlines()) == 1
