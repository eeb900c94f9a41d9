"""Speculative decoding: the acceptance identities, its cost, its effect on KV, and the
vLLM flag that turns it on."""

from __future__ import annotations

import math

import pytest

from profiles.cost_model import BatchShape
from profiles.errors import ClusterSimError
from profiles.speculative import expected_tokens_per_step
from simulator import build_deployment, simulate
from simulator.serving.build import make_kv_cache, make_requests, resolve
from simulator.serving.scheduler import Scheduler
from tests.conftest import make_trace

BASE = {"model": "llama-3-8b", "gpu": "h100", "engine": "none"}


def spec(method: str = "ngram", k: int = 4, alpha: float = 0.6, **more: object) -> dict:
    return {"speculative": {"method": method, "num_speculative_tokens": k,
                            "acceptance_rate": alpha, **more}}


@pytest.mark.parametrize(("alpha", "k"), [(0.0, 3), (0.5, 1), (0.6, 4), (0.8, 5), (1.0, 3)])
def test_expected_tokens_per_step_is_the_geometric_sum(alpha: float, k: int) -> None:
    expected = k + 1 if alpha == 1.0 else (1 - alpha ** (k + 1)) / (1 - alpha)
    assert expected_tokens_per_step(alpha, k) == pytest.approx(expected, rel=1e-12)
    assert expected_tokens_per_step(alpha, k) == pytest.approx(
        sum(alpha ** j for j in range(k + 1)), rel=1e-12)


@pytest.mark.parametrize(("alpha", "k"), [(0.0, 4), (0.6, 4), (0.8, 2), (1.0, 3)])
def test_simulated_tokens_per_step_match_the_identity(alpha: float, k: int) -> None:
    """20 requests of 1,200 outputs: tokens per decode step, counted from the run, within
    3 standard errors of (1 - alpha^(k+1)) / (1 - alpha); exact at alpha 0 and 1."""
    n, outputs = 20, 1200
    result = simulate(build_deployment(BASE | spec("ngram", k, alpha)),
                      make_trace([0.0] * n, [64] * n, [outputs] * n))
    assert result.ok, result.error
    record = result.summary["run"]["speculative"]
    assert result.requests["output_tokens"].tolist() == [outputs] * n  # tokens conserved
    # every decode step but a request's last few drafts k: steps = drafts / k (+ the
    # steps whose drafts were cut to the outputs left, at most k per request)
    accepted, drafts = record["accepted_tokens"], record["draft_tokens"]
    decode_tokens = n * (outputs - 1)
    steps = decode_tokens - accepted  # each step emits 1 + its accepted drafts
    per_step = decode_tokens / steps
    expected = expected_tokens_per_step(alpha, k)
    if alpha in (0.0, 1.0):
        assert accepted == (0 if alpha == 0.0 else drafts)
        assert per_step == pytest.approx(expected, rel=0.01)  # the last steps draft less
    else:
        variance = sum((j + 1) ** 2 * (alpha ** j) * (1 - alpha if j < k else 1)
                       for j in range(k + 1)) - expected ** 2
        assert abs(per_step - expected) < 3 * math.sqrt(variance / steps) + 0.01
        assert record["measured_acceptance"] == pytest.approx(accepted / drafts)


@pytest.mark.parametrize("method", ["ngram", "eagle", "draft_model"])
def test_acceptance_zero_is_never_faster_than_plain_decoding(method: str) -> None:
    trace = make_trace([0.0, 0.0, 0.05, 0.3], [300, 800, 64, 1500], [200, 90, 300, 40])
    extra = {"model": "llama-3.2-1b"} if method == "draft_model" else {}
    plain = simulate(build_deployment(BASE), trace)
    zero = simulate(build_deployment(BASE | spec(method, 4, 0.0, **extra)), trace)
    assert plain.ok and zero.ok, zero.error
    for slow, fast in zip(zero.requests.itertuples(), plain.requests.itertuples(),
                          strict=True):
        assert slow.e2e_s >= fast.e2e_s
        assert slow.output_tokens == fast.output_tokens


def test_high_acceptance_speeds_up_a_memory_bound_decode() -> None:
    """One request, batch 1: a decode step reads the weights whatever its query length,
    so verifying 4 drafts costs little more than one token, and at alpha 0.8 a step
    yields 3.36 tokens on average."""
    trace = make_trace([0.0], [128], [512])
    plain = simulate(build_deployment(BASE), trace).requests.iloc[0]
    fast = simulate(build_deployment(BASE | spec("eagle", 4, 0.8)), trace).requests.iloc[0]
    speedup = plain["tpot_s"] / fast["tpot_s"]
    assert 2.0 < speedup < expected_tokens_per_step(0.8, 4)


def test_the_step_prices_k_plus_one_verify_tokens_and_k_draft_passes() -> None:
    resolved = resolve(build_deployment(BASE | spec("eagle", 3, 0.5)))
    cost = resolved.cost_models[0]
    contexts = [500, 900]
    verify = BatchShape([4, 4], contexts, 8)
    drafted = BatchShape([4, 4], contexts, 8, draft_steps=3, draft_context_lens=contexts)
    head = cost.proposer.predict(BatchShape([1, 1], contexts, 2)).total_s
    assert cost.predict(drafted).total_s == pytest.approx(
        cost.predict(verify).total_s + 3 * head, rel=1e-12)
    assert cost.predict(drafted).operator_s["spec_draft"] == pytest.approx(3 * head)
    ngram = resolve(build_deployment(BASE | spec("ngram", 3, 0.5))).cost_models[0]
    assert ngram.predict(drafted).total_s == ngram.predict(verify).total_s


def test_drafts_take_kv_slots_and_a_draft_model_its_memory() -> None:
    plain = resolve(build_deployment(BASE))
    with_model = resolve(build_deployment(BASE | spec("draft_model", 4, 0.5,
                                                      model="llama-3.2-1b")))
    assert with_model.memory.weight_bytes > plain.memory.weight_bytes
    assert with_model.memory.num_gpu_blocks < plain.memory.num_gpu_blocks
    # a 15-token prompt, then its first decode: alone it needs slot 16 (one block); with 8
    # drafts it needs slots 16-24 (two blocks), kept after a rejection
    held = {}
    for name, extra in (("plain", {}), ("drafts", spec("ngram", 8, 0.0))):
        resolved = resolve(build_deployment(BASE | extra))
        kv = make_kv_cache(resolved)
        scheduler = Scheduler(resolved.scheduler, kv)
        request = make_requests(make_trace([0.0], [15], [64]))[0]
        scheduler.add_request(request)
        scheduler.update(scheduler.schedule(0.0), 0.01)  # prefill: the first token
        plan = scheduler.schedule(0.01)
        assert plan.num_new_tokens == ([9] if name == "drafts" else [1])
        held[name] = kv.num_gpu_blocks - kv.num_free_blocks
        scheduler.update(plan, 0.02)
        assert request.num_output_tokens == 2 and request.num_computed_tokens == 16
    assert held == {"plain": 1, "drafts": 2}


def test_a_requests_own_acceptance_rate_wins(tmp_path) -> None:
    from workloads.schema import RequestTrace

    trace = RequestTrace.from_columns([0.0, 0.0], [64, 64], [400, 400],
                                      extras={"acceptance_rate": [0.0, 1.0]})
    result = simulate(build_deployment(BASE | spec("ngram", 3, 0.5)), trace)
    rows = result.requests.sort_values("request_id")
    assert rows.iloc[1]["e2e_s"] < rows.iloc[0]["e2e_s"]


@pytest.mark.parametrize(("block", "message"), [
    ({"method": "draft_model", "num_speculative_tokens": 3, "acceptance_rate": 0.5},
     "needs the draft's model"),
    ({"method": "ngram", "num_speculative_tokens": 0, "acceptance_rate": 0.5},
     "num_speculative_tokens"),
    ({"method": "ngram", "num_speculative_tokens": 3}, "acceptance_rate"),
    ({"method": "medusa", "num_speculative_tokens": 3, "acceptance_rate": 0.5}, "method"),
])
def test_bad_speculative_blocks_are_one_line_errors(block: dict, message: str) -> None:
    with pytest.raises(ClusterSimError, match=message):
        build_deployment(BASE | {"speculative": block})


def test_a_draft_with_another_vocabulary_is_refused() -> None:
    result = simulate(build_deployment(BASE | spec("draft_model", 3, 0.5, model="qwen3-8b")),
                      make_trace([0.0], [10], [10]))
    assert not result.ok and "tokenizer" in str(result.error)


def test_the_vllm_flag_sets_the_same_deployment(monkeypatch) -> None:
    from tests.test_vllm_flags import _deployment_of

    flags = _deployment_of(["--speculative-config", '{"method": "eagle", '
                            '"num_speculative_tokens": 3, "acceptance_rate": 0.7}'],
                           monkeypatch)
    assert flags.speculative == build_deployment(
        {"model": "llama-3-8b", "gpu": "h100"} | spec("eagle", 3, 0.7)).speculative
