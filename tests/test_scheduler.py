"""The scheduler state machine, step by step, without SimPy."""

from __future__ import annotations

import dataclasses

import pytest

from profiles.errors import ClusterSimError
from profiles.models import load_model
from simulator.serving.config import SchedulerSettings, resolve_scheduler
from simulator.serving.kv_cache import KVCacheManager
from simulator.serving.request import Request, RequestStatus
from simulator.serving.scheduler import Scheduler, StepPlan

LLAMA3 = load_model("llama-3-8b")


def make_scheduler(policy: str = "prefill-first", num_blocks: int = 1000, block_size: int = 16,
                   num_cpu_blocks: int = 0, **knobs: object) -> Scheduler:
    knobs.setdefault("max_model_len", 4096)
    config = resolve_scheduler(SchedulerSettings(policy=policy, block_size=block_size,
                                                 **knobs), LLAMA3)
    reserve = config.max_model_len if config.kv_allocation == "reserve_max" else None
    return Scheduler(config, KVCacheManager(num_blocks, block_size, num_cpu_blocks, reserve))


def make_requests(*shapes: tuple[int, int]) -> list[Request]:
    return [Request(request_id=i, arrival_s=0.0, prompt_tokens=p, output_tokens=o)
            for i, (p, o) in enumerate(shapes)]


def step(scheduler: Scheduler, now_s: float = 0.0) -> StepPlan:
    plan = scheduler.schedule(now_s)
    assert plan is not None
    scheduler.update(plan, now_s)
    return plan


def test_presets_resolve_to_documented_knobs() -> None:
    vllm = resolve_scheduler(SchedulerSettings(policy="prefill-first"), LLAMA3)
    assert (vllm.prefill_first, vllm.enable_chunked_prefill, vllm.max_num_seqs,
            vllm.max_num_batched_tokens, vllm.kv_allocation) == (True, False, 256, 8192, "paged")
    sarathi = resolve_scheduler(SchedulerSettings(policy="stall-free"), LLAMA3)
    assert (sarathi.enable_chunked_prefill, sarathi.decodes_first,
            sarathi.max_num_batched_tokens) == (True, True, 512)
    orca = resolve_scheduler(SchedulerSettings(policy="orca"), LLAMA3)
    assert orca.kv_allocation == "reserve_max" and not orca.prefill_first
    static = resolve_scheduler(SchedulerSettings(policy="static"), LLAMA3)
    assert static.batching == "static"
    # The user's knobs win over the preset's.
    mine = resolve_scheduler(SchedulerSettings(policy="prefill-first", enable_chunked_prefill=True,
                                               max_num_batched_tokens=1024), LLAMA3)
    assert mine.enable_chunked_prefill and not mine.prefill_first and mine.decodes_first


def test_budget_below_max_model_len_without_chunking_is_refused() -> None:
    with pytest.raises(ClusterSimError, match="max_num_batched_tokens=1024.*max_model_len=8192"):
        resolve_scheduler(SchedulerSettings(policy="prefill-first",
                                            max_num_batched_tokens=1024), LLAMA3)


def test_a_budget_below_max_num_seqs_follows_the_engine() -> None:
    """vLLM refuses max_num_batched_tokens below max_num_seqs given together; its V1
    arguments lower their own max_num_seqs default to the budget instead; V0 keeps its
    default and refuses; other engines and the bare policy take the knobs as they are."""
    knobs = SchedulerSettings(policy="running-first", max_num_batched_tokens=100,
                              max_num_seqs=1024)
    v1 = resolve_scheduler(knobs, LLAMA3, "vllm-v1-0.15", seqs_given=False)
    assert (v1.max_num_seqs, v1.max_num_batched_tokens) == (100, 100)
    with pytest.raises(ClusterSimError, match=r"max_num_batched_tokens=100 is below "
                       r"max_num_seqs=1024: engine vllm-v1-0.15 refuses it"):
        resolve_scheduler(knobs, LLAMA3, "vllm-v1-0.15", seqs_given=True)
    with pytest.raises(ClusterSimError, match="engine vllm-v0 refuses it"):
        resolve_scheduler(knobs, LLAMA3, "vllm-v0", seqs_given=False)
    assert resolve_scheduler(knobs, LLAMA3).max_num_seqs == 1024
    assert resolve_scheduler(knobs, LLAMA3, "sarathi-serve", seqs_given=True).max_num_seqs == 1024
    assert resolve_scheduler(knobs.model_copy(update={"max_num_batched_tokens": 1024}),
                             LLAMA3, "vllm-v0", seqs_given=True).max_num_seqs == 1024


def test_chunked_prefill_splits_a_prompt_under_the_budget() -> None:
    """A 1000-token prompt under a 256-token budget runs as 256+256+256+232, then decodes."""
    scheduler = make_scheduler("stall-free", max_num_batched_tokens=256)
    (request,) = make_requests((1000, 3))
    scheduler.add_request(request)
    chunks = [step(scheduler).num_new_tokens[0] for _ in range(4)]
    assert chunks == [256, 256, 256, 232]
    assert request.num_output_tokens == 1  # sampled only after the last chunk
    assert step(scheduler).num_new_tokens == [1]


def test_sarathi_puts_decodes_first_and_fills_the_rest_with_a_chunk() -> None:
    scheduler = make_scheduler("stall-free", max_num_batched_tokens=256)
    first, second = make_requests((100, 10), (1000, 10))
    scheduler.add_request(first)
    step(scheduler)  # first's prefill
    scheduler.add_request(second)
    plan = step(scheduler)
    assert plan.requests == [first, second] and plan.num_new_tokens == [1, 255]


def test_vllm_prefill_first_runs_waiting_prompts_alone() -> None:
    scheduler = make_scheduler("prefill-first")
    first, second = make_requests((100, 10), (300, 10))
    scheduler.add_request(first)
    step(scheduler)
    scheduler.add_request(second)
    plan = step(scheduler)
    assert plan.requests == [second] and plan.num_new_tokens == [300]  # the decode waits
    assert step(scheduler).num_new_tokens == [1, 1]


def test_orca_mixes_whole_prompts_with_decodes_and_reserves_max_length() -> None:
    scheduler = make_scheduler("orca", num_blocks=600)
    first, second = make_requests((100, 10), (300, 10))
    scheduler.add_request(first)
    step(scheduler)
    assert scheduler.kv_cache.req_to_num_blocks[0] == 4096 // 16  # max_model_len reserved
    scheduler.add_request(second)
    plan = step(scheduler)
    assert plan.requests == [first, second] and plan.num_new_tokens == [1, 300]


def test_static_batching_admits_only_when_the_batch_drains_and_pads() -> None:
    scheduler = make_scheduler("static", num_blocks=10_000, max_num_seqs=2)
    short, long_, late = make_requests((10, 2), (10, 4), (10, 2))
    scheduler.add_request(short)
    scheduler.add_request(long_)
    step(scheduler)  # both prefill; first tokens
    scheduler.add_request(late)
    step(scheduler)  # short finishes (2 tokens)
    assert short.is_finished
    plan = step(scheduler)  # long_ decodes, short is padding, late must wait
    assert plan.requests == [long_] and len(plan.padding_context_lens) == 1
    assert plan.batch_shape().num_reqs == 2
    step(scheduler)  # long_ finishes: the batch drains
    assert long_.is_finished
    assert step(scheduler).requests == [late]


def test_recompute_preemption_takes_the_last_admitted_and_it_restarts() -> None:
    """Two requests on 4 blocks of 16: at 32+32 tokens both need a third block; the later
    one is preempted, drops its KV, and later recomputes prompt plus outputs."""
    scheduler = make_scheduler("prefill-first", num_blocks=4, max_model_len=64,
                               max_num_batched_tokens=64)
    first, second = make_requests((31, 20), (31, 20))
    scheduler.add_request(first)
    scheduler.add_request(second)
    step(scheduler)  # both prefills: 2 blocks each, 1 token out each
    plan = step(scheduler)  # token 32 of each fits in block 2
    assert plan.preempted == []
    plan = scheduler.schedule(0.0)
    assert plan is not None and plan.preempted == [second] and plan.requests == [first]
    assert second.status is RequestStatus.PREEMPTED and second.num_computed_tokens == 0
    assert second.num_output_tokens == 2 and second.num_preemptions == 1
    scheduler.update(plan, 0.0)
    scheduler.kv_cache.check()
    while not first.is_finished:
        step(scheduler)
    while not second.is_finished:
        plan = step(scheduler)
    assert second.num_output_tokens == 20 and scheduler.kv_cache.num_free_blocks == 4


def test_swap_preemption_moves_blocks_to_the_host_and_back() -> None:
    scheduler = make_scheduler("prefill-first", num_blocks=4, num_cpu_blocks=8, max_model_len=64,
                               max_num_batched_tokens=64, preemption_mode="swap")
    first, second = make_requests((31, 4), (31, 4))
    scheduler.add_request(first)
    scheduler.add_request(second)
    step(scheduler)
    step(scheduler)
    plan = step(scheduler)
    assert plan.preempted == [second] and plan.swap_out_tokens == 2 * 16
    assert second.status is RequestStatus.SWAPPED and second.num_computed_tokens == 32
    plan = step(scheduler)  # first finishes (4 tokens)
    assert first.is_finished
    plan = step(scheduler)
    assert plan.swap_in_tokens == 2 * 16 and plan.requests == [second]
    while not second.is_finished:
        step(scheduler)
    scheduler.kv_cache.check()
    assert scheduler.kv_cache.num_free_cpu_blocks == 8


def test_priority_queue_admits_lowest_priority_value_first() -> None:
    scheduler = make_scheduler("prefill-first", queue_order="priority", max_num_seqs=1)
    low, high = make_requests((10, 1), (10, 1))
    low.priority, high.priority = 5, 0
    scheduler.add_request(low)
    scheduler.add_request(high)
    assert step(scheduler).requests == [high]


def test_max_num_seqs_caps_the_running_batch() -> None:
    scheduler = make_scheduler("stall-free", max_num_seqs=3, max_num_batched_tokens=4096)
    for request in make_requests(*[(10, 5)] * 5):
        scheduler.add_request(request)
    assert len(step(scheduler).requests) == 3
    assert len(scheduler.waiting) == 2


def test_plan_is_a_plain_message() -> None:
    """StepPlan carries what the replica needs; nothing reaches into scheduler state."""
    fields = {field.name for field in dataclasses.fields(StepPlan)}
    assert {"requests", "num_new_tokens", "context_lens", "num_sampled"} <= fields
