"""Workloads as benchmark tools generate them: inference-perf and vLLM's benchmark_serving.

    clustersim workload from-inference-perf config.yaml --out trace.json [--seed S]
    clustersim workload from-vllm-bench --num-prompts 1000 --request-rate 4 \\
        --random-input-len 1024 --random-output-len 128 --out trace.json

inference-perf (kubernetes-sigs) with ``data.type: shared_prefix`` builds
``num_groups x num_prompts_per_group`` prompts once, each a group's system prompt
(``system_prompt_len`` tokens, shared by the group) and a question of its own
(``question_len``), asking for ``output_len`` tokens, and sends them in a cycle, so whole
prompts repeat after every ``num_groups x num_prompts_per_group`` requests::

    request    0      1      ...  P-1       P      ...  G*P-1     G*P    ...
    prompt     g0/q0  g0/q1       g0/q(P-1) g1/q0       g(G-1)/.. g0/q0  (repeats)

``load.stages`` run back to back, each ``rate`` requests per second for ``duration``
seconds; ``load.type: constant`` spaces them evenly, ``poisson`` draws exponential gaps
(seeded). The trace marks the system prompt as a shared prefix and each question as a
repeated prompt (``prompt_id``), which is what a prefix cache sees. Two things of the
real client are not in a trace and are said in its metadata: inference-perf waits for a
stage to drain before the next starts (here stages start on time), and its multi-turn
chat option, which this converter does not model. (In inference-perf's code a session's
context grows by each round's prompt and answer, one round per user per cycle; over the
measured runs' 10-20 minutes that would put contexts at tens of thousands of tokens, and
the attention reads alone would raise an 8B model's TPOT on H100 well above the 7.6-8.1 ms
measured. The measured runs do not show that growth, so the replay keeps single-turn
prompts. Nor do they show the session lock's closed loop, a user's next round sent only
once its previous one is answered: replayed that way, the runs whose answers outlast a
user's turn in the cycle (reasoning-lite at 1 request/s over 23 users) run at 23
concurrent requests, and Llama-4-Scout's TPOT there comes out 26% under the measured
28.7 ms, against 15% with open-loop arrivals; so the replay keeps open-loop arrivals.)

vLLM's ``benchmark_serving.py --dataset-name random`` draws prompt and output lengths
uniformly in ``[L (1 - r), L (1 + r)]`` for ``--random-range-ratio r`` (vLLM 0.8 and
later) and sends ``--num-prompts`` requests at ``--request-rate`` per second with Gamma
gaps of shape ``--burstiness`` (1 = Poisson; an infinite rate sends all at once).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from profiles.errors import ClusterSimError, format_validation_error
from workloads.overrides import read_mapping
from workloads.schema import RequestTrace

__all__ = ["InferencePerfConfig", "VllmBenchSpec", "from_inference_perf", "from_vllm_bench",
           "load_inference_perf"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LoadStage(_Strict):
    rate: float = Field(gt=0, le=1e6, description="requests per second")
    duration: float = Field(gt=0, le=1e7, description="seconds")


class Load(_Strict):
    type: Literal["constant", "poisson"] = "constant"
    stages: list[LoadStage] = Field(min_length=1)
    interval: float | None = Field(default=None, ge=0, description="client pause between "
                                   "stages (not in the trace)")


class SharedPrefix(_Strict):
    num_groups: int = Field(ge=1, le=100_000)
    num_prompts_per_group: int = Field(ge=1, le=100_000)
    system_prompt_len: int = Field(ge=0, le=10_000_000)
    question_len: int = Field(ge=1, le=10_000_000)
    output_len: int = Field(ge=1, le=10_000_000)
    enable_multi_turn_chat: bool = False


class Data(_Strict):
    type: Literal["shared_prefix"]
    shared_prefix: SharedPrefix


class InferencePerfConfig(BaseModel):
    """The workload part of an inference-perf config; its other sections (api, server,
    tokenizer, report, ...) configure the client and are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    load: Load
    data: Data


def load_inference_perf(path: str | Path) -> InferencePerfConfig:
    """Read and check an inference-perf YAML (or JSON) config.

    Raises:
        ClusterSimError: an unreadable file, or a field missing or out of range.
    """
    data = read_mapping(path, "inference-perf config")
    try:
        return InferencePerfConfig.model_validate(data)
    except ValidationError as error:
        raise ClusterSimError(format_validation_error(
            error, f"inference-perf config {path}")) from None


def from_inference_perf(config: InferencePerfConfig, seed: int = 0,
                        source: str = "") -> RequestTrace:
    """The request stream of an inference-perf shared_prefix config (module docstring)."""
    rng = np.random.default_rng(seed)
    shape = config.data.shared_prefix
    arrivals: list[np.ndarray] = []
    stage_starts = []
    start = 0.0
    for stage in config.load.stages:
        count = max(1, round(stage.rate * stage.duration))
        if config.load.type == "constant":
            times = start + np.arange(count) / stage.rate
        else:
            times = start + np.cumsum(rng.exponential(1.0 / stage.rate, count))
            times = times[times < start + stage.duration]
        arrivals.append(times)
        stage_starts.append(start)
        start += stage.duration
    arrival = np.concatenate(arrivals)
    n = len(arrival)
    cycle = shape.num_groups * shape.num_prompts_per_group
    index = np.arange(n) % cycle
    groups, questions = index // shape.num_prompts_per_group, index % shape.num_prompts_per_group
    prompt = shape.system_prompt_len + shape.question_len
    extras: dict[str, list[Any]] = {
        "prompt_id": [f"g{g}/q{q}" for g, q in zip(groups, questions, strict=True)]}
    if shape.system_prompt_len:
        extras["prefix_id"] = [f"g{g}" for g in groups]
        extras["prefix_tokens"] = [shape.system_prompt_len] * n
    metadata = {
        "generator": "inference-perf shared_prefix", "source": source, "seed": seed,
        "load_type": config.load.type, "stage_start_s": stage_starts,
        "stages": [stage.model_dump() for stage in config.load.stages],
        "shared_prefix": shape.model_dump(),
        "not_modelled": ["the client's wait for a stage to drain before the next"]
        + (["multi-turn chat"] if shape.enable_multi_turn_chat else []),
    }
    return RequestTrace.from_columns(arrival, [prompt] * n, [shape.output_len] * n,
                                     extras=extras, metadata=metadata)


class VllmBenchSpec(_Strict):
    """``benchmark_serving.py --dataset-name random`` flags (vLLM 0.8 and later)."""

    num_prompts: int = Field(ge=1, le=100_000_000)
    request_rate: float = Field(gt=0, description="requests per second; inf = all at once")
    burstiness: float = Field(default=1.0, gt=0, le=1e6)
    random_input_len: int = Field(ge=1, le=10_000_000)
    random_output_len: int = Field(ge=1, le=10_000_000)
    random_range_ratio: float = Field(default=0.0, ge=0, lt=1)
    random_prefix_len: int = Field(default=0, ge=0, le=10_000_000)
    seed: int = Field(default=0, ge=0, lt=2**64)


def from_vllm_bench(spec: VllmBenchSpec) -> RequestTrace:
    """The requests vLLM's random dataset and request timing would send (module docstring);
    a ``random_prefix_len`` prefix is one prefix shared by every request, as vLLM's is."""
    rng = np.random.default_rng(spec.seed)
    r = spec.random_range_ratio

    def lengths(mean: int) -> np.ndarray:
        low, high = max(1, int(mean * (1 - r))), max(1, int(mean * (1 + r)))
        return rng.integers(low, high + 1, spec.num_prompts)

    inputs, outputs = lengths(spec.random_input_len), lengths(spec.random_output_len)
    if math.isinf(spec.request_rate):
        arrival = np.zeros(spec.num_prompts)
    else:
        theta = 1.0 / (spec.request_rate * spec.burstiness)
        gaps = rng.gamma(spec.burstiness, theta, spec.num_prompts)
        arrival = np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    extras: dict[str, list[Any]] = {}
    if spec.random_prefix_len:
        extras = {"prefix_id": ["random-prefix"] * spec.num_prompts,
                  "prefix_tokens": [spec.random_prefix_len] * spec.num_prompts}
    metadata = {"generator": "vllm benchmark_serving random", **spec.model_dump()}
    return RequestTrace.from_columns(arrival, inputs + spec.random_prefix_len, outputs,
                                     extras=extras, metadata=metadata)
