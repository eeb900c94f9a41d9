"""Automatic prefix caching: reuse, LRU eviction, multi-turn sessions, hit rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.cost_model import BatchShape
from profiles.errors import ClusterSimError
from simulator.serving import kv_cache
from simulator.serving.engine import resolve, simulate
from simulator.serving.kv_cache import PrefixCachingKVCacheManager
from simulator.serving.request import Request
from simulator.serving.token_content import BlockHasher, prompt_segments
from tests.conftest import make_deployment
from workloads.schema import RequestTrace

CACHING = {"scheduler.enable_prefix_caching": True}


def trace(arrival_s, prompt_tokens, output_tokens, **extras) -> RequestTrace:
    return RequestTrace.from_columns(arrival_s, prompt_tokens, output_tokens,
                                     extras={name: list(values) for name, values in
                                             extras.items()})


def test_second_request_with_same_prefix_computes_only_new_tokens() -> None:
    """A 1,000-token shared prefix: 62 full blocks (992 tokens) come from the cache, so
    the second request's TTFT is exactly a 208-token prefill over 992 cached tokens."""
    deployment = make_deployment("llama-3-8b", "h100", **CACHING)
    workload = trace([0.0, 5.0], [1200, 1200], [4, 4], prefix_id=["sys", "sys"],
                     prefix_tokens=[1000, 1000])
    result = simulate(deployment, workload)
    assert result.ok, result.error
    rows = result.requests
    assert rows["num_cached_tokens"].tolist() == [0, 992]
    cost = resolve(deployment).cost_models[0]
    assert rows.loc[0, "ttft_s"] == cost.predict(BatchShape([1200], [0], 1)).total_s
    assert rows.loc[1, "ttft_s"] == pytest.approx(
        cost.predict(BatchShape([208], [992], 1)).total_s, rel=1e-12)
    without = simulate(make_deployment("llama-3-8b", "h100"), workload).requests
    saved = without.loc[1, "ttft_s"] - rows.loc[1, "ttft_s"]
    assert saved > 0.5 * without.loc[1, "ttft_s"]  # most of the prefill is gone


def test_eviction_takes_least_recently_used_blocks_first(tiny_model_path: str) -> None:
    """20 blocks of 16. A then B (96-token prefixes, 7 blocks each) finish and free their
    blocks. C needs 10 blocks: the 6 never-used ones, then A's blocks 6, 5, 4, 3 (A was
    freed first, tail first). D reuses B's 6 cached blocks whole and takes one new block,
    the next least recently used: A's block 2. E (prefix a) then finds only A's blocks
    0 and 1: 32 tokens."""
    deployment = make_deployment(tiny_model_path, "a100", **CACHING, **{
        "scheduler.num_gpu_blocks_override": 20, "scheduler.max_model_len": 320})
    workload = trace([0, 1, 2, 3, 4], [100, 100, 150, 100, 100], [1, 1, 1, 1, 1],
                     prefix_id=["a", "b", None, "b", "a"],
                     prefix_tokens=[96, 96, None, 96, 96])
    result = simulate(deployment, workload)
    assert result.ok, result.error
    assert result.requests["num_cached_tokens"].tolist() == [0, 0, 0, 96, 32]


def test_multi_turn_session_reuses_its_own_history() -> None:
    """Turn 2's prompt is turn 1's prompt and output plus a new question: the 249
    computed tokens of turn 1 give 15 full blocks (240 tokens) of hits."""
    deployment = make_deployment("llama-3-8b", "a100", **CACHING)
    workload = trace([0.0, 10.0, 20.0], [200, 350, 350], [50, 20, 20],
                     session_id=["s1", "s1", "s2"])
    rows = simulate(deployment, workload).requests
    assert rows["num_cached_tokens"].tolist() == [0, 240, 0]


def test_shared_prefix_hit_rate_is_hand_computable() -> None:
    """5 sequential requests of 200 tokens sharing a 160-token system prompt: hits are
    4 x 160 of 5 x 200 looked-up tokens = 0.64."""
    deployment = make_deployment("llama-3-8b", "a100", **CACHING)
    workload = trace([0, 1, 2, 3, 4], [200] * 5, [1] * 5, prefix_id=["sys"] * 5,
                     prefix_tokens=[160] * 5)
    summary = simulate(deployment, workload).summary
    assert summary["prefix_cache"] == {"enabled": True, "query_tokens": 1000,
                                       "hit_tokens": 640, "hit_rate": 0.64,
                                       "host_hit_tokens": 0, "host_blocks": 0}


def test_mooncake_block_hashes_define_sharing() -> None:
    deployment = make_deployment("llama-3-8b", "a100", **CACHING)
    workload = trace([0.0, 5.0], [1100, 700], [2, 2], block_hashes=[[7, 8, 9], [7, 5]])
    rows = simulate(deployment, workload).requests
    assert rows["num_cached_tokens"].tolist() == [0, 512]


def test_block_identity_is_a_chain_of_content() -> None:
    hasher = BlockHasher()
    a = prompt_segments(0, 64, prefix_id="p", prefix_tokens=40)
    b = prompt_segments(1, 64, prefix_id="p", prefix_tokens=40)
    ids_a = hasher.block_ids(a, 16, 0, 4, -1)
    ids_b = hasher.block_ids(b, 16, 0, 4, -1)
    assert ids_a[:2] == ids_b[:2] and ids_a[2] != ids_b[2]  # block 2 holds own tokens
    assert hasher.block_ids(a, 16, 2, 4, ids_a[1]) == ids_a[2:]  # incremental = whole


def test_manager_keeps_accounting_through_preemption_and_reuse() -> None:
    manager = PrefixCachingKVCacheManager(num_gpu_blocks=8, block_size=4)
    first = Request(request_id=0, arrival_s=0, prompt_tokens=10, output_tokens=2,
                    prompt_segments=[(("prefix", "p"), 8), (("prompt", 0), 2)])
    assert manager.lookup_prefix(first) == 0
    assert manager.allocate_slots(first, 10, 0) == 3
    first.num_computed_tokens = 10
    manager.cache_blocks(first)
    manager.free(first)  # preempted, not finished: identities kept
    manager.check()
    assert manager.num_free_blocks == 8 and len(manager.identity_to_block) == 2
    again = manager.lookup_prefix(first)
    first.num_computed_tokens = 0
    assert again == 8 and manager.allocate_slots(first, 2, again) == 1
    manager.check()
    assert manager.num_hit_tokens == 8 and manager.num_query_tokens == 20


def test_prefix_caching_with_swap_is_refused() -> None:
    with pytest.raises(ClusterSimError, match="preemption_mode=swap"):
        resolve(make_deployment("llama-3-8b", "a100", **CACHING,
                                **{"scheduler.preemption_mode": "swap"}))


def test_closed_loop_turn_is_sent_after_the_previous_response_and_think_time() -> None:
    """Turn 2 is in the file at t=0 but carries think_time_s=2: it is sent 2 s after
    turn 1 finishes, and then finds turn 1's prompt and output in the cache."""
    deployment = make_deployment("llama-3-8b", "a100", **CACHING)
    workload = trace([0.0, 0.0], [200, 350], [50, 10], session_id=["s", "s"],
                     think_time_s=[None, 2.0])
    rows = simulate(deployment, workload).requests
    assert rows.loc[1, "arrival_s"] == pytest.approx(rows.loc[0, "finish_s"] + 2.0)
    assert rows.loc[1, "num_cached_tokens"] == 240


def test_first_turns_arrive_on_time_after_another_session_s_next_turn() -> None:
    """Session a's second turn is sent (after its think time) before session b's first
    turn is due: b's first turn still arrives at 5 s, and every request finishes at a
    finite time (the next turn once took over the first arrivals' clock, which then
    waited for ever and ran the simulation to an infinite time)."""
    deployment = make_deployment("llama-3-8b", "a100", **CACHING)
    workload = trace([0.0, 0.0, 5.0, 5.0], [200, 300, 250, 300], [20, 20, 20, 20],
                     session_id=["a", "a", "b", "b"], think_time_s=[None, 0.1, None, 0.1])
    rows = simulate(deployment, workload).requests
    assert np.isfinite(rows[["first_token_s", "finish_s", "ttft_s"]].to_numpy()).all()
    assert rows.loc[1, "arrival_s"] < 5.0
    assert rows.loc[2, "arrival_s"] == 5.0 and rows.loc[2, "first_scheduled_s"] >= 5.0
    assert rows.loc[3, "arrival_s"] == pytest.approx(rows.loc[2, "finish_s"] + 0.1)


def test_prefix_aware_router_sends_a_shared_prefix_where_it_is_cached() -> None:
    """Two replicas; request 0 (prefix A) lands on replica 0 and finishes. Then a second
    A request and a B request arrive together: the prefix-aware router sends A to
    replica 0, where its prefix is cached (992 tokens hit), and B, cached nowhere, to the
    idle replica 1; round robin sends A to replica 1 and nothing hits."""
    workload = trace([0.0, 10.0, 10.0], [1200, 1200, 1200], [2, 2, 2],
                     prefix_id=["a", "a", "b"], prefix_tokens=[1000, 1000, 1000])
    rows = simulate(make_deployment("llama-3-8b", "h100", replicas=2, router="prefix_aware",
                                    **CACHING), workload).requests
    assert rows["replica_id"].tolist() == [0, 0, 1]
    assert rows["num_cached_tokens"].tolist() == [0, 992, 0]
    robin = simulate(make_deployment("llama-3-8b", "h100", replicas=2, router="round_robin",
                                     **CACHING), workload).requests
    assert robin["replica_id"].tolist() == [0, 1, 0]
    assert robin["num_cached_tokens"].tolist() == [0, 0, 0]


def _sharing_trace(seed: int, num_requests: int = 160) -> RequestTrace:
    """Random arrivals and lengths; some prompts share one of three system prompts, some
    are turns of a session (their prompt holds the previous turn and its answer)."""
    rng = np.random.default_rng(seed)
    prompts = rng.integers(20, 400, num_requests)
    outputs = rng.integers(1, 120, num_requests)
    prefix_ids = [f"sys-{rng.integers(3)}" if rng.random() < 0.4 else None
                  for _ in range(num_requests)]
    sessions = [int(rng.integers(num_requests // 3)) if rng.random() < 0.3 else None
                for _ in range(num_requests)]
    last: dict[int, int] = {}
    for i, session in enumerate(sessions):
        if session is None:
            continue
        if session in last:
            j = last[session]
            prompts[i] = min(prompts[j] + outputs[j] + int(rng.integers(5, 60)), 900)
        last[session] = i
    return trace(np.cumsum(rng.exponential(1 / 200, num_requests)), prompts, outputs,
                 prefix_id=prefix_ids,
                 prefix_tokens=[min(200, int(p) - 1) if pid else None
                                for pid, p in zip(prefix_ids, prompts, strict=True)],
                 session_id=sessions)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_skipping_unshared_blocks_changes_no_result(tiny_model_path: str, seed: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks no other request shares are neither hashed nor registered (unless their
    request is preempted): every row and summary figure is the same as when every block
    is, on random traces with shared prefixes, sessions and preemptions (a pool of 64
    blocks of 16 tokens runs out)."""
    deployment = make_deployment(tiny_model_path, "a100", **CACHING, **{
        "scheduler.num_gpu_blocks_override": 64, "scheduler.max_model_len": 1024})
    workload = _sharing_trace(seed)
    fast = simulate(deployment, workload)
    monkeypatch.setattr(kv_cache, "SKIP_UNSHARED", False)
    reference = simulate(deployment, workload)
    assert fast.ok and reference.ok, (fast.error, reference.error)
    assert fast.summary["preemptions"] > 0 and fast.summary["prefix_cache"]["hit_rate"] > 0
    pd.testing.assert_frame_equal(fast.requests, reference.requests, check_exact=True)
    assert {k: v for k, v in fast.summary.items() if k != "run"} == \
        {k: v for k, v in reference.summary.items() if k != "run"}


def test_unshared_blocks_are_registered_only_when_their_request_is_preempted() -> None:
    """A unique 40-token prompt (blocks of 4): nothing is registered while it runs; freed
    by a preemption, its 10 full blocks are, and its return finds them (36 tokens, one
    left to compute); its blocks are taken a run at a time, not one by one."""
    manager = PrefixCachingKVCacheManager(num_gpu_blocks=16, block_size=4)
    request = Request(request_id=0, arrival_s=0, prompt_tokens=40, output_tokens=3,
                      prompt_segments=[(("prompt", 0), 40)], num_shareable_tokens=0)
    assert manager.lookup_prefix(request) == 0
    assert manager.allocate_slots(request, 40, 0) == 10
    request.num_computed_tokens = 40
    manager.cache_blocks(request)
    manager.check()
    assert manager.identity_to_block == {} and manager.req_to_anonymous == {0: 10}
    assert list(manager.free_pool.values()) == [6]  # one run of the 6 free blocks
    manager.free(request)  # preempted: not finished
    manager.check()
    assert len(manager.identity_to_block) == 10 and manager.num_free_blocks == 16
    request.num_computed_tokens = 0
    assert manager.lookup_prefix(request) == 36


@settings(max_examples=12, deadline=None)
@given(rate=st.floats(0.5, 40.0), users=st.integers(1, 6), turns=st.integers(1, 4),
       think=st.floats(0.0, 3.0), blocks=st.sampled_from([None, 300]),
       seed=st.integers(0, 2**16))
def test_every_chat_request_finishes_at_finite_causal_times(
        rate: float, users: int, turns: int, think: float, blocks: int | None,
        seed: int) -> None:
    """Closed-loop multi-turn sessions, with and without a KV cache small enough to
    preempt: every request comes back once, finished, with finite times in causal order
    and the tokens it asked for."""
    from workloads.generators import ChatSpec, generate_chat

    workload = generate_chat(ChatSpec(
        num_requests=40, arrival={"kind": "poisson", "rate_per_s": rate},
        num_system_prompts=2, users_per_prompt=users, system_prompt_tokens=300,
        question={"kind": "lognormal", "mean": 120, "sigma": 0.3, "max": 400},
        output={"kind": "lognormal", "mean": 40, "sigma": 0.3, "max": 120},
        turns_per_session=turns, think_time_s=think, seed=seed))
    overrides = {} if blocks is None else {"scheduler.num_gpu_blocks_override": blocks,
                                           "scheduler.max_model_len": 4096}
    rows = simulate(make_deployment("llama-3-8b", "h100", **CACHING, **overrides),
                    workload).requests
    assert sorted(rows["request_id"]) == list(range(40))
    times = rows[["arrival_s", "first_scheduled_s", "first_token_s", "finish_s"]].to_numpy()
    assert np.isfinite(times).all()
    assert (np.diff(times, axis=1) >= 0).all()
    assert (rows["output_tokens"].to_numpy() == workload.output_tokens).all()
