"""Skipping the steps where nothing happens: a run of decode steps in one move.

Between two events that change a batch (an arrival, a request finishing, a prompt to
admit, a preemption), consecutive decode steps are determined: the same requests, each
context one token longer than the step before. :func:`decode_run` prices such a run
step by step (the cost model's own ``predict``, so every float is the one the step loop
computes), then applies it at once: tokens, token gaps, KV blocks and step statistics,
with the Python work per step independent of the batch size instead of a pass over
every request in ``schedule`` and ``update``::

    arrival                                        next arrival
      │ prefill │ d │ d │ d │ d │ d │ d │ d │ d │    │
                    └──────── one move ───────┘ └ the step that spans the arrival runs
                      (ends at the first finish)  as always, so the router and the
                                                  scheduler see what they always saw

A run ends before the first step that would end at or after the next arrival (an
arrival at the same time as a step's end comes first), with the first step in which a
request finishes (its finish is reported at its time), and before a step whose KV
blocks would not fit (the preemption happens in the step loop). The blocks a decode
takes are the ones ``KVCacheManager.allocate_slots`` would take: at each block
boundary once its blocks are full. The step loop stays the reference; results are the
same to the last bit (tests/test_decode_runs.py).

Only where that holds by construction: one pipeline stage, a deterministic cost model
(the dense roofline: MoE loads are drawn per step), the plain block manager (no prefix
caching, no reservation, no sliding window), no speculative decoding, continuous
batching, open-loop arrivals, no admission lag, and no step observer but the run's
statistics. Anything else runs step by step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from profiles.cost_model import BatchShape, CostModel, StepCost
from profiles.roofline import RooflineCostModel
from simulator.serving.kv_cache import KVCacheManager, PrefixCachingKVCacheManager
from simulator.serving.metrics import StepStats
from simulator.serving.presets import CpuOverhead
from simulator.serving.request import Request, RequestStatus
from simulator.serving.scheduler import Scheduler

__all__ = ["SKIP_STEPS", "DecodeRun", "can_skip", "decode_run", "step_spans"]

# False: every step goes through schedule() and update() (the reference path).
SKIP_STEPS = True
MIN_RUN = 2  # steps: a shorter run is not worth setting up


def step_spans(now_s: float, cost: StepCost, overhead: CpuOverhead | None, num_seqs: int,
               num_tokens: int, stage_free_s: list[float]) -> list[tuple[float, float]]:
    """Each pipeline stage's (start, end) for a micro-batch entering at ``now_s``; moves
    ``stage_free_s`` on (stages are FIFO servers; module docstring of replica)."""
    spans = []
    ready_s = now_s
    stage_s = cost.stage_s
    if overhead is not None:
        host_s = overhead.step_s(num_seqs, num_tokens)
        if overhead.async_scheduling:
            stage_s = (max(stage_s[0], host_s), *stage_s[1:])
        else:
            ready_s += host_s
    for stage in range(len(stage_s)):
        start_s = max(ready_s, stage_free_s[stage])
        ready_s = start_s + stage_s[stage]
        stage_free_s[stage] = ready_s
        spans.append((start_s, ready_s))
    return spans


def landing(now_s: float, target_s: float) -> float:
    """Where SimPy's clock lands for an event at ``target_s`` scheduled at ``now_s``."""
    delay = target_s - now_s
    while now_s + delay < target_s:
        delay += math.ulp(target_s)
    return now_s + delay


def can_skip(scheduler: Scheduler, cost_model: CostModel, overhead: CpuOverhead | None,
             recorders: Sequence[object]) -> StepStats | None:
    """The run's statistics (its only step observer) when this replica's decode runs
    may be skipped (module docstring), else ``None``."""
    kv = scheduler.kv_cache
    skips = (SKIP_STEPS and cost_model.num_stages == 1
            and type(cost_model) is RooflineCostModel and cost_model.moe is None
            and ((type(kv) is KVCacheManager and kv.reserve_tokens is None and not kv.window)
                 or (type(kv) is PrefixCachingKVCacheManager and kv.skips_unshared))
            and not scheduler.config.num_speculative_tokens
            and scheduler.config.batching == "continuous"
            and (overhead is None or not overhead.async_scheduling)
            and len(recorders) == 1 and type(recorders[0]) is StepStats)
    return recorders[0] if skips else None  # type: ignore[return-value]


@dataclass
class DecodeRun:
    """A run of decode steps, applied: where the clock lands at its end (``end_s``), each
    step's end as the step loop times its event (``ends_s``), the last step's stage
    spans, the requests that finished, and whether the next arrival ended it (then the
    next step spans that arrival and must run in the step loop)."""

    end_s: float
    ends_s: list[float]
    spans: list[tuple[float, float]]
    finished: list[Request]
    before_event: bool


def decode_run(replica_id: int, scheduler: Scheduler, cost_model: CostModel,
               overhead: CpuOverhead | None, stats: StepStats, now_s: float,
               next_event_s: float, stage_free_s: list[float], spanning: bool = False
               ) -> DecodeRun | None:
    """Apply the decode steps from ``now_s`` that nothing can interrupt before
    ``next_event_s`` (module docstring), or return ``None`` (and change nothing) when
    fewer than ``MIN_RUN`` are. Requests that finish leave the batch as they do in the
    step loop (open loop: a finish changes nothing else).

    ``spanning``: nothing reads this replica's state at an arrival (one replica, or a
    router blind to load), so the run also takes the step during which the next
    arrival comes; the arrival joins the queue meanwhile and the scheduler sees it at
    the decision after that step, as in the step loop.
    """
    running = scheduler.running
    cfg = scheduler.config
    batch = len(running)
    if (scheduler.waiting or scheduler.swapped or scheduler.num_receiving or not running
            or batch > cfg.max_num_batched_tokens or batch > cfg.max_num_seqs):
        return None
    kv = scheduler.kv_cache
    block_size = kv.block_size
    # Blocks held: counts (the plain manager), or named blocks then an anonymous tail
    # (prefix caching: a run applies only once every request is past its shareable
    # tokens, so that no block is registered and every block taken is anonymous). The
    # blocks come from the front of the pool and freed ones go to its back, so while
    # no more are taken than were free at the start, taking them all after the run's
    # frees evicts the same cached blocks in the same order.
    cache = kv if isinstance(kv, PrefixCachingKVCacheManager) else None
    caching = cache is not None
    named: dict[int, list[int]] = {}
    if cache is not None:
        named = cache.req_to_blocks
        anonymous = cache.req_to_anonymous
        held_blocks = {request.request_id: len(named.get(request.request_id, ()))
                       + anonymous.get(request.request_id, 0) for request in running}
        if scheduler._unregistered or any(request.num_computed_tokens
                                          < request.num_shareable_tokens
                                          for request in running):
            return None
    else:
        held_blocks = kv.req_to_num_blocks
    contexts, remaining, firsts = [], [], []
    # a request holding h blocks at c tokens takes one more at the steps j where
    # c + j == h * block_size, then every block_size steps: it counts at residue
    # (h * block_size - c) % block_size from its first such step on
    at_residue = [0] * block_size
    late = []  # requests with a block to spare beyond the next boundary (rare)
    for i, request in enumerate(running):
        computed = request.num_computed_tokens
        outputs = request.num_output_tokens
        if (request.prompt_tokens + outputs - computed != 1 or not outputs
                or request.in_flight):
            return None  # not all decoding (a last prefill chunk samples its first token)
        first = held_blocks.get(request.request_id, 0) * block_size - computed
        if first < block_size:
            if first < 0:
                return None  # fewer blocks than tokens: not the plain manager's invariant
            at_residue[first] += 1
        else:
            late.append(i)
        contexts.append(computed)
        remaining.append(request.output_tokens - outputs)
        firsts.append(first)

    # Finishing order (stable: the step loop reports a step's finishes in batch order).
    leaving = sorted(range(batch), key=remaining.__getitem__)
    entering = sorted(late, key=firsts.__getitem__)
    entered = [firsts[i] < block_size for i in range(batch)]
    num_late = len(late)
    next_in = next_out = 0
    context_sum = sum(contexts)
    active = batch
    used = kv.num_used_blocks
    capacity = kv.num_gpu_blocks
    free0 = kv.num_free_blocks
    peak = kv.peak_used_blocks
    free_s = list(stage_free_s)
    step_now = now_s
    ones = [1] * batch
    zeros = [0] * batch
    ends: list[float] = []
    landings: list[float] = []
    figures: list[tuple[int, float, int, float]] = []  # batch, duration, used, FLOPs
    last_span = (now_s, now_s)
    j = 0
    shared_refs: dict[int, int] = {}  # prefix caching: named blocks' counts after frees
    taken_so_far = 0
    before_event = False
    while active:
        while next_in < num_late and firsts[entering[next_in]] <= j:
            i = entering[next_in]
            if remaining[i] > j:  # still in the batch
                at_residue[firsts[i] % block_size] += 1
                entered[i] = True
            next_in += 1
        if step_now >= next_event_s:
            before_event = True
            break  # the arrival comes first: this step's decision sees it
        taking = at_residue[j % block_size]
        if used + taking > capacity or (caching and taken_so_far + taking > free0):
            break  # a block would run out (the step loop preempts)
        shape = BatchShape(ones[:active], [context_sum, *zeros[:active - 1]], active)
        cost = cost_model.predict(shape)
        span = step_spans(step_now, cost, overhead, active, active, free_s)[0]
        land = landing(step_now, span[1])
        if land >= next_event_s and not spanning:
            before_event = True
            break  # the step would end at or after the next arrival
        used += taking
        taken_so_far += taking
        peak = max(peak, used)
        figures.append((active, span[1] - span[0], used, cost.flops))
        ends.append(span[1])
        landings.append(land)
        last_span = span
        step_now = land
        # this step's finishers leave (their blocks come free), the rest grow a token
        while next_out < batch and remaining[leaving[next_out]] == j + 1:
            i = leaving[next_out]
            if entered[i]:
                at_residue[firsts[i] % block_size] -= 1
            rid = running[i].request_id
            used -= held_blocks.get(rid, 0) + max(0, -(-(j + 1 - firsts[i]) // block_size))
            if cache is not None:  # a named block shared with a running request stays used
                for block in named.get(rid, ()):
                    count = shared_refs.get(block, cache.ref_count[block]) - 1
                    shared_refs[block] = count
                    used += count > 0
            context_sum -= contexts[i] + j
            active -= 1
            next_out += 1
        context_sum += active
        j += 1
    k = len(landings)
    if k < MIN_RUN:
        return None

    # Apply: the statistics and token gaps step by step (sums in the step loop's order),
    # then every request once. The first step's gaps are each request's own (some did
    # not run in the step before); after it, every request's gap is the step's.
    gaps = scheduler.token_gaps
    run_gap, run_count = gaps.pending()
    for request in running:
        gap = landings[0] - request.last_token_s
        if gap == run_gap:
            run_count += 1
        else:
            gaps.add_run(run_gap, run_count)
            run_gap, run_count = gap, 1
    gaps.add_run(run_gap, run_count)
    previous = landings[0]
    for j, ((size, duration, in_use, flops), land) in enumerate(
            zip(figures, landings, strict=True)):
        stats.add_step(replica_id, size, duration, in_use, flops)
        if j:
            gaps.add_run(land - previous, size)
        previous = land
    stage_free_s[0] = ends[-1]
    step_id = scheduler._next_step_id
    scheduler._next_step_id += k
    finished = []
    total_taken = 0
    for i in leaving:  # finishing order
        request = running[i]
        left = remaining[i]
        steps = k if k < left else left
        request.num_computed_tokens += steps
        request.num_output_tokens += steps
        request.last_token_s = landings[steps - 1]
        request.scheduled_step = step_id + steps - 1
        taken = -(-(steps - firsts[i]) // block_size)
        if taken > 0:
            if cache is not None:  # past its shareable tokens: anonymous blocks
                cache.req_to_anonymous[request.request_id] = (
                    cache.req_to_anonymous.get(request.request_id, 0) + taken)
            else:
                held_blocks[request.request_id] += taken
            total_taken += taken
        if steps == left:
            request.status = RequestStatus.FINISHED
            request.finish_s = request.last_token_s
            finished.append(request)
    if not caching:
        kv.num_free_blocks -= total_taken
    for request in finished:
        if not request.keep_kv:
            kv.free(request)
    if cache is not None and total_taken:
        cache.take_anonymous(total_taken)
    kv.peak_used_blocks = peak
    if finished:
        scheduler.running = [r for r in running if r.status is not RequestStatus.FINISHED]
    return DecodeRun(landings[-1], ends, [last_span], finished, before_event)

