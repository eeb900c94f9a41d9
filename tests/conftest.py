"""Shared test helpers: a tiny model, deployment and trace factories, a step checker."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from profiles.cost_model import StepCost
from simulator.serving.config import DeploymentConfig, build_deployment
from simulator.serving.scheduler import StepPlan
from workloads.schema import RequestTrace

TINY_CONFIG = {
    "model_type": "llama", "hidden_size": 256, "num_hidden_layers": 4,
    "num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 512,
    "vocab_size": 1000, "max_position_embeddings": 4096, "torch_dtype": "bfloat16",
}


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 4-layer GQA Llama-style config.json, small enough to make cost terms tiny."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    return str(folder)


def make_deployment(model: str = "llama-3-8b", gpu: str = "a100", **fields: Any
                    ) -> DeploymentConfig:
    """A deployment from keyword fields; dotted names set nested ones
    (``make_deployment(**{"scheduler.policy": "stall-free"})``). The engine is ``none``
    (the bare scheduler policy, no preset, no CPU costs: the hand-checkable simulator)
    unless the fields name one."""
    plain = {key: value for key, value in fields.items() if "." not in key}
    dotted = {key: value for key, value in fields.items() if "." in key}
    return build_deployment({"model": model, "gpu": gpu, "engine": "none", **plain}, dotted)


def make_trace(arrival_s: Sequence[float], prompt_tokens: Sequence[int],
               output_tokens: Sequence[int]) -> RequestTrace:
    return RequestTrace.from_columns(arrival_s, prompt_tokens, output_tokens)


class StepChecker:
    """A step recorder that asserts the per-step invariants of every replica."""

    def __init__(self, max_num_batched_tokens: int, max_num_seqs: int, num_blocks: int,
                 chunked: bool) -> None:
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_num_seqs = max_num_seqs
        self.num_blocks = num_blocks
        self.chunked = chunked
        self.last_end_s: dict[int, float] = {}
        self.num_steps = 0
        self.num_preempted = 0
        self.max_used_blocks = 0

    def on_step(self, replica_id: int, stage_spans_s: Sequence[tuple[float, float]],
                plan: StepPlan, cost: StepCost, kv_used_blocks: int) -> None:
        self.num_steps += 1
        self.num_preempted += len(plan.preempted)
        self.max_used_blocks = max(self.max_used_blocks, kv_used_blocks)
        assert sum(plan.num_new_tokens) <= self.max_num_batched_tokens
        if self.chunked:
            assert all(n <= self.max_num_batched_tokens for n in plan.num_new_tokens)
        assert len(plan.requests) <= self.max_num_seqs
        assert 0 <= kv_used_blocks <= self.num_blocks
        assert len({id(r) for r in plan.requests}) == len(plan.requests), "scheduled twice"
        for start_s, end_s in stage_spans_s:
            assert end_s >= start_s, "time ran backwards within a step"
        end_s = stage_spans_s[-1][1]
        assert end_s >= self.last_end_s.get(replica_id, 0.0), "steps completed out of order"
        self.last_end_s[replica_id] = end_s


@pytest.fixture
def data_dir() -> Path:
    return Path(__file__).parent / "data"
