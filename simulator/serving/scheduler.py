"""The scheduler: one token-budget loop whose settings give vLLM, Sarathi-Serve, Orca and
static batching.

It is a plain state machine outside SimPy: ``schedule()`` returns a :class:`StepPlan`,
the replica prices and runs it, then ``update(plan, now_s)`` applies the result. Each
step, under a budget of ``max_num_batched_tokens`` tokens and ``max_num_seqs`` requests::

    1. prefill-first (vLLM v0): if prompts are waiting and fit, run only those, whole.
    2. running requests (decodes first when ``decodes_first``): each asks for its
       remaining known tokens, cut to a chunk when chunked prefill is on; when KV blocks
       run out, preempt a victim (recompute or swap) and retry.
    3. swapped requests come back while blocks allow (no new admissions while any wait).
    4. waiting requests are admitted in queue order while tokens, sequences and KV
       blocks allow (static batching: only when nothing is running).

Speculative decoding (``num_speculative_tokens`` k > 0): a decoding request schedules
its one known token plus up to k drafts (no more than its remaining outputs need, nor than
the budget leaves), and the step verifies them all; ``update`` then draws how many drafts
the target accepted, a in 0..k with P(a >= j) = alpha^j (alpha: the request's acceptance
rate, else the deployment's), keeps their KV, and emits a + 1 tokens at once (the accepted
drafts and the target's own next token). The expected tokens per step are
(1 - alpha^(k+1)) / (1 - alpha); the draft work is priced by the cost model (BatchShape's
``draft_steps``).

Invariants, asserted after every step: scheduled tokens never exceed the budget, running
requests never exceed ``max_num_seqs``, and the KV pool never goes negative.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from profiles.cost_model import BatchShape
from simulator.serving.kv_cache import KVCacheManager
from simulator.serving.policies import QUEUE_ORDERS, VICTIM_CHOICES
from simulator.serving.request import ALL_SHAREABLE, Request, RequestStatus
from simulator.serving.token_gaps import TokenGaps

__all__ = ["Scheduler", "SchedulerConfig", "StepPlan"]

_RUNNING = RequestStatus.RUNNING


class Lazy(Protocol):
    """Running requests whose fields are held elsewhere until :meth:`materialize`: the
    first ``len(members)`` of ``running`` (decode runs' group).

    A step may take them as one block of decodes (:meth:`schedule_step`, then
    :meth:`finish_step` in ``update``) without their fields being written.
    """

    members: dict[int, Any]

    def materialize(self) -> None: ...

    def schedule_step(self, plan: StepPlan, budget: int) -> int | None: ...

    def finish_step(self, plan: StepPlan, now_s: float) -> tuple[float, int, list[Request]]: ...


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Resolved scheduler knobs (a preset plus the user's overrides; see policies)."""

    policy: str
    max_num_seqs: int
    max_num_batched_tokens: int
    block_size: int
    enable_chunked_prefill: bool
    prefill_first: bool
    decodes_first: bool
    batching: Literal["continuous", "static"]
    kv_allocation: Literal["paged", "reserve_max"]
    preemption_mode: Literal["recompute", "swap"]
    queue_order: Literal["fcfs", "priority"]
    max_model_len: int
    long_prefill_token_threshold: int = 0  # 0: a chunk may take the whole budget
    max_num_partial_prefills: int = 0  # 0: no limit on requests partly prefilled at once
    enable_prefix_caching: bool = False
    num_speculative_tokens: int = 0  # k drafts per decode step (0: no speculative decoding)
    acceptance_rate: float = 0.0  # alpha: each draft accepted with this chance, in order
    seed: int = 0  # of the acceptance draws


@dataclass(slots=True)
class StepPlan:
    """What one step runs: parallel lists, one entry per scheduled request.

    Attributes:
        step_id: per-replica step counter.
        requests: the scheduled requests.
        num_new_tokens: tokens each computes this step.
        context_lens: tokens each already had in the KV cache.
        num_sampled: requests that sample a token at the end of the step.
        padding_context_lens: static batching's finished-but-still-batched slots, which
            cost a decode each and produce nothing.
        preempted: requests preempted while building this step.
        swap_in_tokens: KV tokens copied back from the host before the step.
        swap_out_tokens: KV tokens copied to the host before the step.
        num_drafts: speculative decoding only: drafts each entry verifies (0: none).
    """

    step_id: int
    requests: list[Request] = field(default_factory=list)
    num_new_tokens: list[int] = field(default_factory=list)
    context_lens: list[int] = field(default_factory=list)
    num_sampled: int = 0
    padding_context_lens: list[int] = field(default_factory=list)
    preempted: list[Request] = field(default_factory=list)
    swap_in_tokens: int = 0
    swap_out_tokens: int = 0
    num_drafts: list[int] = field(default_factory=list)
    # A decode group's members, as one block of decodes (not in ``requests``): the group,
    # how many, and their context tokens in all.
    group: Lazy | None = None
    group_seqs: int = 0
    group_context: int = 0

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new_tokens) + self.group_seqs

    @property
    def num_seqs(self) -> int:
        """Requests in the step, a group's members included."""
        return len(self.requests) + self.group_seqs

    @property
    def num_prefill_tokens(self) -> int:
        return sum(n for n in self.num_new_tokens if n > 1)

    def batch_shape(self) -> BatchShape:
        """The cost model's view: query and context lengths, padding slots included."""
        pad = self.padding_context_lens
        drafts: list[int] = self.num_drafts
        if any(drafts):
            drafting = [c for c, d in zip(self.context_lens, drafts, strict=True) if d]
            return BatchShape(self.num_new_tokens, self.context_lens, self.num_sampled,
                              self.swap_in_tokens, self.swap_out_tokens,
                              draft_steps=max(drafts), draft_context_lens=drafting)
        if not pad:
            return BatchShape(self.num_new_tokens, self.context_lens, self.num_sampled,
                              self.swap_in_tokens, self.swap_out_tokens,
                              group_decodes=self.group_seqs,
                              group_context_tokens=self.group_context)
        return BatchShape(self.num_new_tokens + [1] * len(pad), self.context_lens + pad,
                          self.num_sampled + len(pad), self.swap_in_tokens, self.swap_out_tokens)


class Scheduler:
    """Continuous-batching scheduler of one replica.

    Args:
        config: resolved knobs.
        kv_cache: the replica's KV block pool.
        token_gaps: where inter-token gaps are recorded (TBT).
    """

    def __init__(self, config: SchedulerConfig, kv_cache: KVCacheManager,
                 token_gaps: TokenGaps | None = None) -> None:
        self.config = config
        self.kv_cache = kv_cache
        self.token_gaps = token_gaps if token_gaps is not None else TokenGaps()
        self.waiting = QUEUE_ORDERS[config.queue_order]()
        self.running: list[Request] = []
        self.swapped: list[Request] = []
        self.padding_context_lens: list[int] = []  # static batching only
        self._choose_victim = VICTIM_CHOICES[config.queue_order]
        self._next_step_id = 0
        self._chunk_cap = (config.long_prefill_token_threshold or config.max_num_batched_tokens)
        self._now_s = 0.0
        self.num_receiving = 0  # disaggregation: requests whose KV is on its way here
        self._unregistered: set[int] = set()  # received requests whose blocks wait to register
        # decode runs (simulator.serving.decode_runs): the group whose fields they hold
        self.lazy: Lazy | None = None
        # makes a group when none is held, so steps may take the decodes as one block
        # (set by a replica whose decode runs may be skipped; None: steps never do)
        self.make_group: Callable[[], Lazy] | None = None
        self._members = 0  # of this step's plan: running requests the group holds
        self._speculative = config.num_speculative_tokens > 0
        self._acceptance = np.random.default_rng(config.seed)

    # ---- queue ----------------------------------------------------------------------

    def add_request(self, request: Request) -> None:
        request.status = RequestStatus.WAITING
        self.waiting.add(request)

    def reserve_remote(self, request: Request) -> bool:
        """Disaggregation: take blocks for the KV of ``request``'s prompt, computed on
        another replica, and a sequence slot for it, if both are free now."""
        if len(self.running) + self.num_receiving >= self.config.max_num_seqs:
            return False
        if self.kv_cache.allocate_slots(request, request.prompt_tokens) is None:
            return False
        self.num_receiving += 1
        return True

    def add_remote(self, request: Request) -> None:
        """Disaggregation: ``request``'s KV has arrived; it runs from its next decode."""
        self.num_receiving -= 1
        request.num_computed_tokens = request.prompt_tokens
        self._unregistered.add(request.request_id)  # its prompt's blocks, at its first step
        request.status = _RUNNING
        self.running.append(request)

    @property
    def num_unfinished(self) -> int:
        return len(self.waiting) + len(self.running) + len(self.swapped)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.swapped)

    # ---- schedule -------------------------------------------------------------------

    def schedule(self, now_s: float) -> StepPlan | None:
        """Build the next step starting at ``now_s``, or ``None`` when nothing can run."""
        cfg = self.config
        if cfg.prefill_first and self.waiting and not self.swapped:
            prefills = self.schedule_prefills(now_s)
            if prefills is not None:
                return prefills
        self._now_s = now_s
        plan = StepPlan(step_id=self._next_step_id)
        budget = cfg.max_num_batched_tokens

        # The group of decode runs holds the first running requests' fields: the step
        # takes them as one block of decodes where it can (they come first in any order
        # below), else their fields are written back for the pass over each request.
        members = 0
        if self.make_group is not None:
            if self.lazy is None:
                self.lazy = self.make_group()
            left = self.lazy.schedule_step(plan, budget)
            if left is None:
                self.lazy.materialize()
            else:
                budget, members = left, plan.group_seqs
        elif self.lazy is not None:
            self.lazy.materialize()
        self._members = members
        running = self.running[members:] if members else self.running
        if cfg.decodes_first:
            order = [r for r in running if r.num_tokens - r.num_computed_tokens == 1]
            if len(order) < len(running):
                order += [r for r in running if r.num_tokens - r.num_computed_tokens != 1]
        else:
            order = list(running)
        # NOTE: decodes are most of every step, so their path is inlined (no helper
        # calls); anything else goes through _schedule_running.
        # NOTE: a running request with c computed tokens holds at least ceil(c/block_size)
        # blocks (KVCacheManager's invariant), so a decode needs a new block only when c is
        # a multiple of block_size; the other 15 of 16 decodes skip the call.
        allocate = self.kv_cache.allocate_slots
        block_size = self.kv_cache.block_size
        step_id = plan.step_id
        requests, new_tokens, contexts = plan.requests, plan.num_new_tokens, plan.context_lens
        num_decodes = 0
        speculative = self._speculative
        for request in order:
            if budget <= 0:
                break
            if request.in_flight or request.status is not _RUNNING:
                continue
            computed = request.num_computed_tokens
            if speculative and request.num_tokens - computed == 1:
                budget = self._schedule_speculative(plan, request, budget)
                continue
            if request.prompt_tokens + request.num_output_tokens - computed == 1 and (
                    computed % block_size or allocate(request, 1) is not None):
                requests.append(request)
                new_tokens.append(1)
                contexts.append(computed)
                num_decodes += 1
                request.scheduled_step = step_id
                request.in_flight = True
                budget -= 1
            else:
                budget = self._schedule_running(plan, request, budget)
        plan.num_sampled += num_decodes

        if self.swapped:
            budget = self._swap_in(plan, budget)
        if not self.swapped and (cfg.batching == "continuous" or not self.running):
            budget = self._admit_waiting(plan, budget)
        return self._finish_plan(plan, budget) if plan.requests or plan.group_seqs else None

    def schedule_prefills(self, now_s: float) -> StepPlan | None:
        """Prefill-first (vLLM V0): a step of only the waiting prompts that fit, whole, in
        queue order, or ``None`` (nothing changed) when the first does not fit. Reads no
        running request, so decode runs' groups stay as they are."""
        self._now_s = now_s
        plan = StepPlan(step_id=self._next_step_id)
        budget = self._admit_waiting(plan, self.config.max_num_batched_tokens)
        return self._finish_plan(plan, budget) if plan.requests else None

    def _num_new_tokens(self, request: Request, budget: int, num_computed: int = -1) -> int:
        """Tokens to grant ``request`` now: all it has, a chunk, or 0 if a whole prompt
        cannot fit (chunking off). ``num_computed`` overrides the request's own count
        (an admission with prefix-cache hits)."""
        if num_computed < 0:
            num_computed = request.num_computed_tokens
        remaining = request.num_tokens - num_computed
        if remaining <= budget and remaining <= self._chunk_cap:
            return remaining
        if not self.config.enable_chunked_prefill:
            return 0
        return min(remaining, budget, self._chunk_cap)

    def _schedule_running(self, plan: StepPlan, request: Request, budget: int) -> int:
        num_new = self._num_new_tokens(request, budget)
        if num_new == 0:
            return budget
        while self.kv_cache.allocate_slots(request, num_new) is None:
            victim = self._choose_victim(self.running[self._members:], plan.step_id)
            if victim is None or victim is request:
                self._preempt(plan, request)
                return budget
            self._preempt(plan, victim)
        self._add_to_plan(plan, request, num_new)
        return budget - num_new

    def _schedule_speculative(self, plan: StepPlan, request: Request, budget: int) -> int:
        """A decode with drafts: its known token plus up to k proposed ones, verified in
        one step (as many as its remaining outputs can use and the budget leaves)."""
        drafts = min(self.config.num_speculative_tokens,
                     request.output_tokens - request.num_output_tokens - 1, budget - 1)
        while self.kv_cache.allocate_slots(request, 1 + drafts) is None:
            victim = self._choose_victim(self.running[self._members:], plan.step_id)
            if victim is None or victim is request:
                self._preempt(plan, request)
                return budget
            self._preempt(plan, victim)
        self._add_to_plan(plan, request, 1 + drafts)
        plan.num_drafts[-1] = drafts
        plan.num_sampled += drafts  # every verified position needs its logits
        return budget - 1 - drafts

    def _accepted(self, request: Request, drafts: int) -> int:
        """Drafts the target accepts: a in 0..drafts, P(a >= j) = alpha^j."""
        alpha = request.acceptance_rate
        if alpha is None:
            alpha = self.config.acceptance_rate
        if alpha <= 0.0:
            return 0
        if alpha >= 1.0:
            return drafts
        u = float(self._acceptance.random())
        return min(drafts, int(math.log1p(-u) / math.log(alpha)))

    def _accept_drafts(self, plan: StepPlan) -> list[int]:
        """Draw each entry's accepted drafts; they become known output tokens (sent with
        the step's sampled one, so their gaps are 0) and their KV stays. Returns the
        tokens each entry computed for good: 1 + accepted for a speculative decode."""
        computed = list(plan.num_new_tokens)
        burst = 0
        for i, drafts in enumerate(plan.num_drafts):
            if drafts:
                request = plan.requests[i]
                accepted = self._accepted(request, drafts)
                request.num_output_tokens += accepted
                request.num_accepted_tokens += accepted
                request.num_draft_tokens += drafts
                computed[i] = 1 + accepted
                burst += accepted
        self.token_gaps.add_run(0.0, burst)
        return computed

    def _admit_waiting(self, plan: StepPlan, budget: int) -> int:
        cfg = self.config
        waiting = self.waiting
        while (waiting and budget > 0
               and len(self.running) + self.num_receiving < cfg.max_num_seqs):
            request = waiting.peek()
            num_hit = 0
            if request.num_computed_tokens == 0:
                num_hit = self.kv_cache.lookup_prefix(request)  # 0 without prefix caching
            num_new = self._num_new_tokens(request, budget, num_hit)
            if num_new == 0:
                break  # head-of-line: the next prompt waits for a step with room
            if (cfg.max_num_partial_prefills and num_new < request.num_tokens - num_hit
                    and self._partial_prefills(plan) >= cfg.max_num_partial_prefills):
                break  # vLLM V0: a new prompt may start in chunks only below the limit
            if self.kv_cache.allocate_slots(request, num_new, num_hit) is None:
                break
            request.num_computed_tokens = num_hit  # 0 unless the prefix cache had it
            request.num_cached_tokens = num_hit
            plan.swap_in_tokens += self.kv_cache.loaded_tokens  # host tier hits copy back
            waiting.pop()
            request.status = _RUNNING
            if request.first_scheduled_s != request.first_scheduled_s:  # nan: first time
                request.first_scheduled_s = self._now_s
            self.running.append(request)
            self._add_to_plan(plan, request, num_new)
            budget -= num_new
        return budget

    @staticmethod
    def _partial_prefills(plan: StepPlan) -> int:
        """Requests of ``plan`` whose prompt stays unfinished after it."""
        return sum(request.num_computed_tokens + new < request.prompt_tokens
                   for request, new in zip(plan.requests, plan.num_new_tokens, strict=True))

    def _swap_in(self, plan: StepPlan, budget: int) -> int:
        """Bring swapped requests back in FCFS order while their blocks and next tokens fit
        (no preemption on their behalf, so a step cannot swap a request out and in again)."""
        while (self.swapped and budget > 0
               and len(self.running) + self.num_receiving < self.config.max_num_seqs):
            request = self.swapped[0]
            num_new = self._num_new_tokens(request, budget)
            if num_new == 0:
                break
            moved = self.kv_cache.swap_in(request, num_new)
            if moved is None:
                break
            self.swapped.pop(0)
            plan.swap_in_tokens += moved * self.kv_cache.block_size
            request.status = _RUNNING
            self.running.append(request)
            self._add_to_plan(plan, request, num_new)
            budget -= num_new
        return budget

    def _add_to_plan(self, plan: StepPlan, request: Request, num_new: int) -> None:
        if self._speculative:  # every entry has its draft count (0: none)
            plan.num_drafts.append(0)
        plan.requests.append(request)
        plan.num_new_tokens.append(num_new)
        plan.context_lens.append(request.num_computed_tokens)
        if request.num_computed_tokens + num_new == request.num_tokens:
            plan.num_sampled += 1
        request.scheduled_step = plan.step_id
        request.in_flight = True

    def _preempt(self, plan: StepPlan, request: Request) -> None:
        self.running.remove(request)
        request.num_preemptions += 1
        plan.preempted.append(request)
        if self.config.preemption_mode == "swap":
            moved = self.kv_cache.swap_out(request)
            if moved is not None:
                plan.swap_out_tokens += moved * self.kv_cache.block_size
                request.status = RequestStatus.SWAPPED
                self.swapped.append(request)
                return
        # Recompute: drop the KV; prompt and outputs so far are prefilled again.
        self.kv_cache.free(request)
        request.num_computed_tokens = 0
        request.status = RequestStatus.PREEMPTED
        self.waiting.prepend(request)

    def _finish_plan(self, plan: StepPlan, budget: int) -> StepPlan:
        plan.padding_context_lens = self.padding_context_lens
        self._next_step_id += 1
        assert budget >= 0, "scheduled tokens exceed max_num_batched_tokens"
        assert len(self.running) + self.num_receiving <= self.config.max_num_seqs
        assert self.kv_cache.num_free_blocks >= 0
        return plan

    # ---- update ---------------------------------------------------------------------

    def update(self, plan: StepPlan, now_s: float) -> list[Request]:
        """Apply a finished step: advance tokens, sample, finish. Returns the finished."""
        # Inter-token gaps, run-length encoded inline (most decodes of a step share one
        # gap): (gap, run) pairs go to self.token_gaps when the gap changes.
        gaps = self.token_gaps
        if plan.group is not None:  # the block of members' decodes, first in the step
            run_gap, run_count, finished = plan.group.finish_step(plan, now_s)
        else:
            run_gap, run_count = gaps.pending()
            finished = []
        block_size = self.kv_cache.block_size
        kv_cache = self.kv_cache
        cache_blocks = kv_cache.cache_blocks if kv_cache.enables_prefix_caching else None
        # NOTE: a decode fills a block only when its count reaches a block boundary, so
        # only then (or after a longer step) can it have a block to register, and only
        # while its tokens are ones others may share (registering the rest waits for a
        # preemption). A sliding window's blocks lag the tokens, a received request's
        # prompt is not registered yet, and without the skipping every block counts: then
        # every step looks.
        every_step = (kv_cache.window > 0 or not kv_cache.skips_unshared
                      or bool(self._unregistered))
        shift = ALL_SHAREABLE if every_step else 0  # every_step: the test below always holds
        unregistered = self._unregistered
        new_tokens = (self._accept_drafts(plan) if self._speculative
                      else plan.num_new_tokens)
        for request, num_new in zip(plan.requests, new_tokens, strict=True):
            request.in_flight = False
            computed = request.num_computed_tokens + num_new
            request.num_computed_tokens = computed
            if cache_blocks is not None and (
                    computed - num_new < request.num_shareable_tokens + shift) and (
                    num_new != 1 or not computed % block_size or every_step):
                unregistered.discard(request.request_id)
                cache_blocks(request)
            num_output = request.num_output_tokens
            if computed != request.prompt_tokens + num_output:
                continue  # a prefill chunk: nothing sampled yet
            num_output += 1
            request.num_output_tokens = num_output
            if num_output == 1:
                request.first_token_s = now_s
            else:
                gap = now_s - request.last_token_s
                if gap == run_gap:
                    run_count += 1
                else:
                    gaps.add_run(run_gap, run_count)
                    run_gap, run_count = gap, 1
            request.last_token_s = now_s
            if num_output == request.output_tokens:
                request.status = RequestStatus.FINISHED
                request.finish_s = now_s
                if not request.keep_kv:
                    self.kv_cache.free(request)
                finished.append(request)
        gaps.add_run(run_gap, run_count)
        if finished:
            self.running = [r for r in self.running if r.status is not RequestStatus.FINISHED]
        if self.config.batching == "static":
            # Finished members keep costing a decode slot until the whole batch drains.
            if not self.running:
                self.padding_context_lens = []
            elif self.padding_context_lens or finished:
                self.padding_context_lens = [c + 1 for c in self.padding_context_lens] + [
                    r.num_computed_tokens for r in finished]
        return finished
