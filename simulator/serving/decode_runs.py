"""Skipping the steps where nothing happens: a run of decode steps in one move.

Between two events that change a batch (an arrival, a prompt to admit, a preemption),
consecutive decode steps are determined: the same requests, each context one token
longer than the step before, less the ones that finish. :func:`decode_run` prices such
a run step by step (``RooflineCostModel.decode_step``: ``predict``'s floats for a
decode-only batch) and applies it in one move: token gaps and step statistics per
step, KV blocks at the block boundaries ``allocate_slots`` would cross, finishes at
their step's time. The requests' own fields wait in the replica's :class:`DecodeGroup`
until a step that reads them comes, so the Python work of a run is per step and per
joining or finishing request, not per decode::

    arrival                                        next arrival
      │ prefill │ d │ d │ d │ d │ d │ d │ d │ d │    │
                    └──────── one move ───────┘ └ the step that spans the arrival runs
                                                  in the step loop (or ends the run,
                                                  when nothing reads the replica then)

A run ends before a step that would end at or after the next arrival (an arrival at a
step's end comes first), or takes that step as its last when nothing reads the
replica's state at an arrival (one replica, or routing blind to load; the arrival
waits in the queue for the decision after it, as always); it ends before a step whose
KV blocks would not fit (the step loop preempts), and under prefix caching before it
would take more blocks than were free. On the one replica of an
open-loop run with prefill-first scheduling (vLLM V0) a run goes on through arrivals:
at the decision after one it takes the arrivals landed by then from the source
(``Arrivals.take``), runs their prefill-only step (the scheduler's own calls, or the
same in one pass: ``arrival_prefills``), and the new requests join the group, so the
Python loop runs per arrival and per finish, with no SimPy event or scheduler pass for
either. The step loop stays the reference
(``SKIP_STEPS = False``); results are the same to the last bit
(tests/test_decode_runs.py).

With pipeline stages a run is the one micro-batch of a lightly loaded replica (all its
running requests, each step through every stage, ``RooflineCostModel.decode_stages``),
and it never takes the step an arrival comes during (a free stage would start the
arrival's micro-batch at once).

Only where that holds by construction: a deterministic cost model
(the dense roofline: MoE loads are drawn per step), the plain block manager or prefix
caching without host tier or sliding window (and every request past its shareable
tokens, so no block needs registering), no speculative decoding, continuous batching,
open-loop arrivals, and no step observer but the run's statistics (an asynchronous
scheduler's admission lag holds only arrivals during a step, and no arrival comes
during a run it takes part in). Anything else runs step by step.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from profiles.cost_model import CostModel
from profiles.roofline import RooflineCostModel
from simulator.serving.arrival_prefills import fuses, prefill_step, unshared
from simulator.serving.clock import At, delay_to, landing, step_spans
from simulator.serving.decode_group import DecodeGroup, Member
from simulator.serving.kv_cache import KVCacheManager, PrefixCachingKVCacheManager
from simulator.serving.metrics import StepStats
from simulator.serving.presets import CpuOverhead
from simulator.serving.request import Request, RequestStatus
from simulator.serving.scheduler import Scheduler

__all__ = ["SKIP_STEPS", "At", "DecodeGroup", "DecodeRun", "can_skip", "decode_run", "delay_to",
           "landing", "step_spans"]

# False: every step goes through schedule() and update() (the reference path).
SKIP_STEPS = True


def can_skip(scheduler: Scheduler, cost_model: CostModel, overhead: CpuOverhead | None,
             recorders: Sequence[object]) -> StepStats | None:
    """The run's statistics (its only step observer) when this replica's decode runs
    may be skipped (module docstring), else ``None``."""
    kv = scheduler.kv_cache
    skips = (SKIP_STEPS
            and type(cost_model) is RooflineCostModel and cost_model.prices_decodes_alone
            and ((type(kv) is KVCacheManager and kv.reserve_tokens is None and not kv.window)
                 or (type(kv) is PrefixCachingKVCacheManager and kv.skips_unshared))
            and not scheduler.config.num_speculative_tokens
            and scheduler.config.batching == "continuous"
            and len(recorders) == 1 and type(recorders[0]) is StepStats)
    return recorders[0] if skips else None  # type: ignore[return-value]


@dataclass
class DecodeRun:
    """A run of steps, applied: where the clock lands at its end (``end_s``), the last
    step's stage spans, the requests that finished (in step order), and whether the
    next arrival ended it (then the next step spans that arrival and must run in the
    step loop)."""

    end_s: float
    spans: list[tuple[float, float]]
    finished: list[Request]
    before_event: bool


def decode_run(replica_id: int, scheduler: Scheduler, cost_model: CostModel,
               overhead: CpuOverhead | None, stats: StepStats, now_s: float,
               next_event_s: float, stage_free_s: list[float], spanning: bool = False,
               take: Callable[[float], list[Request]] | None = None,
               next_event: Callable[[], float] | None = None) -> DecodeRun | None:
    """Apply the decode steps from ``now_s`` that nothing can interrupt before
    ``next_event_s`` (module docstring), or return ``None`` when none can run (the
    running requests may have joined the replica's group meanwhile). Requests that
    finish leave the batch as they do in the step loop (open loop: a finish changes
    nothing else).

    ``spanning``: nothing reads this replica's state at an arrival (one replica, or a
    router blind to load), so the run also takes the step during which the next
    arrival comes; the arrival joins the queue meanwhile and the scheduler sees it at
    the decision after that step, as in the step loop.

    ``take`` (spanning, one replica, prefill-first): the run goes
    on through arrivals. At the decision after an arrival it takes the arrivals landed
    by then from the open-loop source (``Arrivals.take``; ``next_event`` gives the next
    one's time), runs their prefill-only step as the step loop would (the scheduler's
    own :meth:`~Scheduler.schedule_prefills`, ``predict`` and ``update``, or
    :func:`~simulator.serving.arrival_prefills.prefill_step`, the same in one pass, where
    it applies), and the new requests join the group; so does an idle replica at the
    next arrival. It stops where the step loop must take over: blocks running out, or a
    prompt that does not fit (that decision is the step loop's, at the run's end).
    """
    if not _join(scheduler):
        return None
    group = scheduler.lazy
    assert isinstance(group, DecodeGroup)
    run, why = _advance(group, replica_id, cost_model, overhead, stats, now_s, next_event_s,
                        stage_free_s, spanning)
    if take is None or next_event is None:
        return run
    fused = fuses(scheduler)
    kv = scheduler.kv_cache
    cache = kv if isinstance(kv, PrefixCachingKVCacheManager) else None
    assert isinstance(cost_model, RooflineCostModel)  # can_skip
    step_now = run.end_s if run is not None else now_s
    spans = run.spans if run is not None else []
    finished = run.finished if run is not None else []
    while why != "blocks":
        next_s = next_event()
        if why == "drained" and next_s > step_now:
            if next_s == math.inf:
                break  # nothing more to run
            step_now = next_s  # idle until it lands; the decision is then
        take(step_now)
        admitted = None
        if fused and (cache is None or unshared(scheduler.waiting)):
            # the same calls, in one pass (arrival_prefills)
            step = prefill_step(scheduler, cost_model, overhead, stats, replica_id,
                                step_now, stage_free_s)
            if step is None:
                break  # the step loop decides at step_now (it preempts or decodes)
            spans, step_now, done, admitted = step
            finished.extend(done)
        else:
            plan = scheduler.schedule_prefills(step_now)
            if plan is None:
                break  # the step loop decides at step_now (it preempts or decodes)
            used = scheduler.kv_cache.num_used_blocks
            cost = cost_model.predict(plan.batch_shape())
            spans = step_spans(step_now, cost.stage_s, overhead, plan.num_seqs,
                               plan.num_tokens, stage_free_s)
            end = spans[-1][1]
            land = step_now + (end - step_now)  # landing(), inlined for its usual case
            step_now = land if land >= end else landing(step_now, end)
            finished.extend(scheduler.update(plan, step_now))
            stats.add_step(replica_id, plan.num_seqs, end - spans[0][0], used, cost.flops)
        if not _join(scheduler, admitted):
            break  # a request the group cannot hold (the step loop runs on from here)
        group = scheduler.lazy
        assert isinstance(group, DecodeGroup)
        why = "event"
        next_s = next_event()
        if step_now >= next_s:
            continue  # another arrival came during the prefill: its decision is next
        run, why = _advance(group, replica_id, cost_model, overhead, stats, step_now,
                            next_s, stage_free_s, spanning)
        if run is not None:
            step_now, spans = run.end_s, run.spans
            finished.extend(run.finished)
    if not spans:
        return None
    return DecodeRun(step_now, spans, finished, True)


def _join(scheduler: Scheduler, admitted: list[Request] | None = None) -> bool:
    """Put the running requests that are not yet in the replica's decode group into it
    (making the group if there is none); ``False``, changing nothing, when one of them
    cannot join (module docstring). ``admitted``: a fused prefill step's requests that
    did not finish (arrival_prefills), each decoding with its whole sequence computed and
    its blocks taken; when they are the running requests after the members, they join
    without the tests."""
    running = scheduler.running
    cfg = scheduler.config
    if (scheduler.waiting or scheduler.swapped or scheduler.num_receiving or not running
            or len(running) > cfg.max_num_batched_tokens or len(running) > cfg.max_num_seqs):
        return False
    kv = scheduler.kv_cache
    cache = kv if isinstance(kv, PrefixCachingKVCacheManager) else None
    if cache is not None and scheduler._unregistered:
        return False
    group = scheduler.lazy
    block_size = kv.block_size
    if (admitted is not None and isinstance(group, DecodeGroup)
            and len(group.members) + len(admitted) == len(running)):
        join = group.join
        for request in admitted:
            rid = request.request_id
            blocks = (((len(cache.req_to_blocks.get(rid, ())) if cache.req_to_blocks else 0)
                       + cache.req_to_anonymous.get(rid, 0))
                      if cache is not None else kv.req_to_num_blocks[rid])
            join(request, blocks * block_size - request.num_computed_tokens, blocks)
        return True
    if not isinstance(group, DecodeGroup):
        group = DecodeGroup(scheduler)
    # Joiners: the running requests after the members, each decoding (a last prefill
    # chunk samples its first token: not yet) and, under prefix caching, past its
    # shareable tokens (then no block of it is registered and every block it takes is
    # anonymous). A request holding h blocks at c tokens takes one more at its steps j
    # where c + j == h * block_size, then every block_size steps.
    joining = []
    for request in running[len(group.members):]:
        computed = request.num_computed_tokens
        outputs = request.num_output_tokens
        if (request.prompt_tokens + outputs - computed != 1 or not outputs
                or request.in_flight
                or (cache is not None and computed < request.num_shareable_tokens)):
            return False
        rid = request.request_id
        blocks = (len(cache.req_to_blocks.get(rid, ())) + cache.req_to_anonymous.get(rid, 0)
                  if cache is not None else kv.req_to_num_blocks.get(rid, 0))
        if blocks * block_size < computed:
            return False  # fewer blocks than tokens: not the managers' invariant
        joining.append((request, blocks * block_size - computed, blocks))
    for request, first, blocks in joining:
        group.join(request, first, blocks)
    scheduler.lazy = group
    return True


def _advance(group: DecodeGroup, replica_id: int, cost_model: CostModel,
             overhead: CpuOverhead | None, stats: StepStats, now_s: float,
             next_event_s: float, stage_free_s: list[float], spanning: bool
             ) -> tuple[DecodeRun | None, str]:
    """Run the group's steps from ``now_s`` while they fit (module docstring). Returns
    the run (``None`` when no step fits) and why it stopped: ``"event"`` (the next
    arrival), ``"blocks"`` (a block would run out) or ``"drained"`` (every request
    finished)."""
    scheduler = group.scheduler
    kv = scheduler.kv_cache
    cache = kv if isinstance(kv, PrefixCachingKVCacheManager) else None
    members = group.members
    block_size = kv.block_size
    at_residue, late, leaving = group.at_residue, group.late, group.leaving
    start = step = group.step
    context_sum = group.context_sum
    active = len(members)
    used = kv.num_gpu_blocks - kv.num_free_blocks  # num_used_blocks
    capacity = kv.num_gpu_blocks
    # prefix caching takes a run's blocks after its frees: no more than were free
    take_limit = kv.num_free_blocks if cache is not None else math.inf
    # prefix caching: the requests' named blocks (none while nothing is shared, and this
    # loop names none, so the lookups below are skipped while it is empty)
    named_of: dict[int, list[int]] = cache.req_to_blocks if cache is not None else {}
    peak = kv.peak_used_blocks
    num_stages = len(stage_free_s)
    # stages' free times as the run goes (a copy: a step not taken must not move them;
    # with one stage, free_first below)
    free_s = list(stage_free_s) if num_stages > 1 else stage_free_s
    step_now = now_s
    assert isinstance(cost_model, RooflineCostModel)
    decode_step = cost_model.decode_step
    decode_pricing = cost_model.decode_pricing
    priced = -1  # the batch size the inlined terms below are for
    c = m = a = e = h = f = launch = kv_bytes = bandwidth = n = fk = 0.0
    k = 0  # steps taken
    gone: list[tuple[int, float, Member]] = []  # (step taken, its end, member) of finishes
    shared_refs: dict[int, int] = {}  # prefix caching: named blocks' counts after frees
    last_begin = last_end = now_s
    last_stages: list[tuple[float, float]] = []
    decode_stages = cost_model.decode_stages
    spans: list[tuple[float, float]] = []
    taken = 0
    why = "drained"
    # the run's engine costs, fixed over it (step_spans' terms for one stage)
    device_s = overhead.device_step_s if overhead is not None else 0.0
    device_seq_s = overhead.device_per_seq_s if overhead is not None else 0.0
    overlapped = overhead is not None and overhead.async_scheduling
    # NOTE: the group changes only in steps that are taken (a late member's entry is a
    # function of the step alone), so stopping anywhere leaves it consistent.
    # The first step's gaps: the members that ran the group's last step share one; one
    # that joined since has its own (the step loop's run-length encoding, in order).
    gaps = scheduler.token_gaps
    add_run = gaps.add_run
    # StepStats.add_step and later steps' gap runs, inlined: the same sums in the same
    # order, written back at the end
    sums = stats.replica_sums(replica_id)
    busy_s, block_s, total_flops = sums
    batch_sizes: list[int] = []
    gap_values: list[float] = []
    # the heaps' next steps (only this loop pops them while it runs)
    next_late = late[0][0] if late else math.inf
    next_leave = leaving[0][0] if leaving else math.inf
    free_first = free_s[0]  # one stage: its free time, kept here
    while active:
        if next_late <= step:
            group.enter_late(step)
            next_late = late[0][0] if late else math.inf
        if step_now >= next_event_s:
            why = "event"
            break  # the arrival comes first: this step's decision sees it
        taking = at_residue[step % block_size]
        if used + taking > capacity or taken + taking > take_limit:
            why = "blocks"
            break  # a block would run out (the step loop preempts)
        ready = step_now
        if num_stages == 1:
            if active != priced:
                terms = decode_pricing(active)
                if terms is not None:
                    c, m, a, e, h, f, launch, kv_bytes, bandwidth, n, fk = terms
                priced = active if terms is not None else -1
            if priced == active:  # decode_step, inlined (RooflineCostModel.decode_pricing)
                tokens = context_sum + active
                seconds = n * (c + (m + (launch + tokens * kv_bytes / bandwidth)) + a) + e + h
                flops = f + fk * tokens  # an int below 2**53 multiplies as its float
            else:
                seconds, flops = decode_step(active, context_sum)
            # step_spans for one stage, inlined
            if overhead is not None:
                host_s = overhead.step_s(active, active)
                if device_s or device_seq_s:
                    seconds += device_s + device_seq_s * active
                if overlapped:  # the host's work hides under the step's
                    seconds = max(seconds, host_s)
                else:
                    ready += host_s
            begin = free_first
            if ready > begin:
                begin = ready
            end = begin + seconds
            free_first = end
        else:  # the one micro-batch through every stage
            stage_s, flops = decode_stages(active, context_sum)
            spans = step_spans(step_now, stage_s, overhead, active, active, free_s)
            begin, end = spans[0][0], spans[-1][1]
        land = step_now + (end - step_now)  # landing(), inlined for its usual case
        if land < end:
            land = landing(step_now, end)
        if land >= next_event_s and not spanning:
            why = "event"
            break  # the step would end at or after the next arrival
        # The step is taken: its statistics and gaps now, in the step loop's order.
        used += taking
        taken += taking
        if used > peak:
            peak = used
        duration = end - begin
        busy_s += duration
        block_s += used * duration
        total_flops += flops
        batch_sizes.append(active)
        if k:
            gap_values.append(land - step_now)
        else:  # DecodeGroup.member_gaps, inlined (no member has left yet)
            fresh = group.fresh
            run_gap, run_count = math.nan, 0
            if active > len(fresh):  # the members that ran the group's last step
                run_gap, run_count = land - group.last_land_s, active - len(fresh)
            for request in fresh:
                gap = land - request.last_token_s
                if gap == run_gap:
                    run_count += 1
                else:
                    add_run(run_gap, run_count)
                    run_gap, run_count = gap, 1
            add_run(run_gap, run_count)
        k += 1
        last_begin, last_end, last_stages = begin, end, spans
        step_now = land
        # this step's finishers leave (their blocks come free), the rest grow a token
        while next_leave == step + 1:
            _, _, rid = heapq.heappop(leaving)
            next_leave = leaving[0][0] if leaving else math.inf
            member = members.pop(rid)
            gone.append((k - 1, land, member))
            if member.entered:
                at_residue[(member.joined + member.first) % block_size] -= 1
            # DecodeGroup.taken, inlined: blocks it took in the group
            after_first = step + 1 - member.joined - member.first
            used -= member.blocks + (-(-after_first // block_size) if after_first > 0 else 0)
            named = named_of.get(rid) if named_of else None
            if named:  # prefix caching: a named block shared with a running request stays
                assert cache is not None
                for block in named:
                    count = shared_refs.get(block, cache.ref_count[block]) - 1
                    shared_refs[block] = count
                    used += count > 0
            context_sum -= member.computed + (step - member.joined)
            active -= 1
        context_sum += active
        step += 1
    if not k:
        return None, why
    last_spans = last_stages if num_stages > 1 else [(last_begin, last_end)]
    sums[0], sums[1], sums[2] = busy_s, block_s, total_flops
    stats.batch_sizes.extend(batch_sizes)
    stats.num_steps += k
    gaps.values.extend(gap_values)
    gaps.counts.extend(batch_sizes[1:])  # every later step's one run: its batch

    group.fresh = []
    group.step, group.context_sum = step, context_sum
    group.last_land_s = step_now  # the last step's landing
    step_id = scheduler._next_step_id
    scheduler._next_step_id += k
    group.last_step_id = step_id + k - 1
    for stage, (_, stage_end) in enumerate(last_spans):
        stage_free_s[stage] = stage_end
    kv.peak_used_blocks = peak
    if cache is None:
        kv.num_free_blocks -= taken
    finished = []
    if cache is None:  # the plain manager: write() and free() inlined, per request
        req_blocks = kv.req_to_num_blocks
        for j, end_s, member in gone:  # by step, then in running order (the heap's order)
            request = member.request
            steps = start + j + 1 - member.joined
            request.num_computed_tokens = member.computed + steps
            request.num_output_tokens = member.outputs + steps
            after_first = steps - member.first
            grown = -(-after_first // block_size) if after_first > 0 else 0
            request.last_token_s = request.finish_s = end_s
            request.scheduled_step = step_id + j
            request.status = RequestStatus.FINISHED
            if request.keep_kv:
                if grown:
                    req_blocks[request.request_id] += grown
            else:
                kv.num_free_blocks += req_blocks.pop(request.request_id, 0) + grown
            finished.append(request)
    else:  # prefix caching: an unshared request's write() and free() inlined, others'
        # the manager's own (each free reads only its request's entries, so freeing each
        # after its write is freeing them all after all the writes, in the same order)
        anonymous_of = cache.req_to_anonymous
        pool = cache.free_pool
        for j, end_s, member in gone:
            request = member.request
            steps = start + j + 1 - member.joined
            request.last_token_s = request.finish_s = end_s
            request.scheduled_step = step_id + j
            request.status = RequestStatus.FINISHED
            rid = request.request_id
            if request.keep_kv or (named_of and named_of.get(rid)):
                group.write(member, steps)
                if not request.keep_kv:
                    kv.free(request)
            else:  # its blocks all anonymous: one run back to the pool
                request.num_computed_tokens = member.computed + steps
                request.num_output_tokens = member.outputs + steps
                after_first = steps - member.first
                anonymous = anonymous_of.pop(rid, 0) + (
                    -(-after_first // block_size) if after_first > 0 else 0)
                if named_of and named_of.pop(rid, None) is not None:  # looked up, unnamed
                    cache.req_to_num_registered.pop(rid, None)
                    cache.req_to_identities.pop(rid, None)
                if anonymous > 0:  # _push_anonymous, inlined for its usual case
                    if pool and (last := next(reversed(pool))) < 0:
                        pool[last] += anonymous
                        cache.num_free_blocks += anonymous
                    else:
                        cache._push_anonymous(anonymous)
            finished.append(request)
    if cache is not None and taken:  # take_anonymous, inlined for its usual case
        front = next(iter(cache.free_pool))
        if front < 0 and cache.free_pool[front] > taken:
            cache.free_pool[front] -= taken
            cache.num_free_blocks -= taken
        else:
            cache.take_anonymous(taken)
    if len(finished) > 4:
        scheduler.running = [r for r in scheduler.running
                             if r.status is not RequestStatus.FINISHED]
    else:  # a few: list.remove's scan (identity) beats a Python pass
        for request in finished:
            scheduler.running.remove(request)
    return DecodeRun(step_now, last_spans, finished, why == "event"), why
