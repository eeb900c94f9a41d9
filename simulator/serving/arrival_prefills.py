"""An arrival's prefill-only step inside a decode run, in one function.

A decode run on the one replica of an open-loop, prefill-first run goes on through
arrivals (``decode_runs``): at the decision after one, the scheduler admits the
prompts that landed (``Scheduler.schedule_prefills``), the cost model prices the
prefill-only step, ``Scheduler.update`` samples their first tokens, and the new
requests join the decode group. That is eight calls and a ``StepPlan`` per arrival,
about half of a long run's time. :func:`prefill_step` does the same work in one pass
for the case that holds there almost always: a FCFS queue and the plain block manager
(no prefix caching, so nothing is looked up or registered). Each line mirrors the
scheduler's, in its order; the scheduler's methods stay the reference
(``FUSED = False``), and tests/test_decode_runs.py checks both paths against the step
loop, to the last bit.
"""

from __future__ import annotations

from collections.abc import Iterable

from profiles.roofline import RooflineCostModel
from simulator.serving.clock import landing, step_spans
from simulator.serving.kv_cache import NO_HITS, KVCacheManager, PrefixCachingKVCacheManager
from simulator.serving.metrics import StepStats
from simulator.serving.policies import FCFSQueue
from simulator.serving.presets import CpuOverhead
from simulator.serving.request import Request, RequestStatus
from simulator.serving.scheduler import Scheduler

__all__ = ["FUSED", "fuses", "prefill_step", "unshared"]

# False: the scheduler's own calls (schedule_prefills, update) run every such step.
FUSED = True

_RUNNING = RequestStatus.RUNNING
_FINISHED = RequestStatus.FINISHED


def fuses(scheduler: Scheduler) -> bool:
    """Whether :func:`prefill_step` may stand in for ``scheduler``'s prefill-only steps:
    a FCFS queue, the plain block manager or prefix caching that skips unshared blocks
    (then for steps of :func:`unshared` prompts only), whole prompts (prefill-first has
    chunked prefill off), continuous batching, no speculative decoding."""
    kv = scheduler.kv_cache
    cfg = scheduler.config
    blocks = ((type(kv) is KVCacheManager and kv.reserve_tokens is None and not kv.window)
              or (type(kv) is PrefixCachingKVCacheManager and kv.skips_unshared
                  and not scheduler._unregistered))
    return (FUSED and blocks and type(scheduler.waiting) is FCFSQueue
            and cfg.batching == "continuous" and not cfg.enable_chunked_prefill
            and not scheduler._speculative)


def unshared(waiting: Iterable[Request]) -> bool:
    """Whether no waiting prompt shares a token with another request: under prefix
    caching, :func:`prefill_step` admits only such prompts (nothing to look up, nothing
    to register; any other step is the scheduler's)."""
    for request in waiting:  # noqa: SIM110 (a loop beats all() over one or two)
        if request.num_shareable_tokens:
            return False
    return True


def prefill_step(scheduler: Scheduler, cost_model: RooflineCostModel, overhead: CpuOverhead | None,
                 stats: StepStats, replica_id: int, now_s: float, stage_free_s: list[float]
                 ) -> tuple[list[tuple[float, float]], float, list[Request], list[Request]
                            ] | None:
    """``schedule_prefills(now_s)``, ``predict``, ``step_spans``, ``update`` and
    ``StepStats.add_step`` of one prefill-only step, where :func:`fuses` holds.

    Returns:
        (the step's stage spans, where the clock lands at its end, the requests it
        finished, the ones it admitted that did not finish, in order), or ``None``
        (nothing changed) when no waiting prompt fits now.
    """
    # ---- Scheduler.schedule_prefills: _admit_waiting
    cfg = scheduler.config
    waiting = scheduler.waiting
    assert isinstance(waiting, FCFSQueue)  # fuses()
    running = scheduler.running
    kv = scheduler.kv_cache
    cache = kv if type(kv) is PrefixCachingKVCacheManager else None
    pending = cache._pending_hits if cache is not None else {}
    block_size = kv.block_size
    req_blocks = kv.req_to_num_blocks
    chunk_cap = scheduler._chunk_cap
    seats = cfg.max_num_seqs - scheduler.num_receiving
    budget = cfg.max_num_batched_tokens
    step_id = scheduler._next_step_id
    scheduler._now_s = now_s
    admitted: list[Request] = []
    new_tokens: list[int] = []
    while waiting and budget > 0 and len(running) < seats:
        request = waiting[0]
        # NOTE: a decode run takes arrivals into an empty queue, so every waiting request
        # is fresh: no output yet (a preempted one waits only where runs do not go)
        assert not request.num_output_tokens
        # lookup_prefix of an unshared prompt, inlined: nothing found (its note of that,
        # which the allocation that follows takes back, is made only where none follows)
        looked_up = cache is not None and request.num_computed_tokens == 0
        # _num_new_tokens with no prefix hit and chunked prefill off: all or nothing
        num_new = request.prompt_tokens + request.num_output_tokens
        if num_new > budget or num_new > chunk_cap:
            if looked_up:
                pending[request.request_id] = NO_HITS
            break  # head-of-line: the next prompt waits for a step with room
        if cache is not None:
            if not looked_up:
                if cache.allocate_slots(request, num_new, 0) is None:
                    break
            else:  # allocate_slots' admission with nothing cached, inlined
                rid = request.request_id
                named = cache.req_to_blocks.get(rid)
                anonymous = cache.req_to_anonymous.get(rid, 0)
                needed = (-(-(request.num_computed_tokens + num_new) // block_size)
                          - (len(named) if named is not None else 0) - anonymous)
                if needed > cache.num_free_blocks:
                    break  # (allocate_slots took its lookup's note back first)
                cache.num_query_tokens += num_new  # its num_tokens
                cache.loaded_tokens = 0
                if needed > 0 and not named:  # every block anonymous (unshared)
                    cache._grow_anonymous(rid, anonymous, needed)
                else:
                    if named is None:
                        named = cache.req_to_blocks[rid] = []
                    cache._grow(request, named, anonymous, max(needed, 0))
        else:  # KVCacheManager.allocate_slots, inlined
            rid = request.request_id
            held = req_blocks.get(rid, 0)
            needed = -(-(request.num_computed_tokens + num_new) // block_size) - held
            if needed > 0:
                if needed > kv.num_free_blocks:
                    break
                kv.num_free_blocks -= needed  # _take
                req_blocks[rid] = held + needed
                used = kv.num_gpu_blocks - kv.num_free_blocks
                if used > kv.peak_used_blocks:
                    kv.peak_used_blocks = used
        request.num_computed_tokens = 0
        request.num_cached_tokens = 0
        waiting.popleft()
        request.status = _RUNNING
        if request.first_scheduled_s != request.first_scheduled_s:  # nan: first time
            request.first_scheduled_s = now_s
        running.append(request)
        # _add_to_plan (its in_flight is set and cleared within the step)
        admitted.append(request)
        new_tokens.append(num_new)
        request.scheduled_step = step_id
        budget -= num_new
    if not admitted:
        return None
    scheduler._next_step_id = step_id + 1  # _finish_plan

    # ---- the step: predict, step_spans, landing
    used = kv.num_gpu_blocks - kv.num_free_blocks
    cost = cost_model.prefill_cost(new_tokens)  # every row samples: num_sampled rows
    stage_s = cost.stage_s
    if overhead is None and len(stage_s) == 1:  # step_spans, inlined for its usual case
        begin = stage_free_s[0]
        if now_s > begin:
            begin = now_s
        end = begin + stage_s[0]
        stage_free_s[0] = end
        spans = [(begin, end)]
    else:
        spans = step_spans(now_s, stage_s, overhead, len(admitted), sum(new_tokens),
                           stage_free_s)
        end = spans[-1][1]
    land = now_s + (end - now_s)  # landing(), inlined for its usual case
    if land < end:
        land = landing(now_s, end)

    # ---- Scheduler.update, for a plan of fresh admissions: each samples its first token
    # (no gap to record), no group, and under prefix caching no block of an unshared
    # prompt is registered
    finished: list[Request] = []
    for request, num_new in zip(admitted, new_tokens, strict=True):
        request.in_flight = False
        request.num_computed_tokens += num_new  # all its tokens: it samples one
        request.num_output_tokens = 1
        request.first_token_s = request.last_token_s = land
        if request.output_tokens == 1:
            request.status = _FINISHED
            request.finish_s = land
            if not request.keep_kv:
                kv.free(request)
            finished.append(request)
    if finished:
        scheduler.running = [r for r in scheduler.running if r.status is not _FINISHED]
        admitted = [r for r in admitted if r.status is not _FINISHED]
    stats.add_step(replica_id, len(new_tokens), end - spans[0][0], used, cost.flops)
    return spans, land, finished, admitted
