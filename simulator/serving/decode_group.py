"""The decode group: the running requests of a replica whose fields decode runs and
grouped steps leave behind until a step must look at each of them.

Members are the first ``len(members)`` running requests, in order, each decoding one
token a step. At group step g a member has run g - joined more decodes than when it
joined; its KV blocks follow from the step too (a new block every ``block_size``
steps, from its first boundary on). So a run of steps (``decode_runs``) or a step that
takes the members as one block of decodes (``Scheduler.schedule`` with
``make_group``) costs Python work per step and per joining or finishing request, not
per decode, and :meth:`DecodeGroup.materialize` writes the requests' fields back when
something must read them.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from simulator.serving.kv_cache import PrefixCachingKVCacheManager
from simulator.serving.request import Request, RequestStatus
from simulator.serving.scheduler import Scheduler, StepPlan

__all__ = ["DecodeGroup", "Member"]


@dataclass(slots=True)
class Member:
    """A request in a decode group, as it was when it joined (group step ``joined``):
    at group step g it has run g - joined more decodes, one token each."""

    request: Request
    joined: int
    computed: int  # tokens computed when it joined
    outputs: int  # output tokens then
    first: int  # its first new block comes at its step ``first`` after joining
    blocks: int  # blocks held then (prefix caching: named ones, then anonymous)
    entered: bool  # its block boundaries are counted in ``at_residue``


class DecodeGroup:
    """The decoding requests of a replica whose fields decode runs leave behind: their
    tokens, last token time and KV blocks are those of the group's step count, and
    :meth:`materialize` writes them into the requests. A request joins at the first
    run after its prefill and leaves when it finishes; the scheduler materializes the
    group before any step that looks at the running requests (a prefill-only step does
    not), so between arrivals a replica's Python work is per step and per joining or
    finishing request, not per decode.

    Invariant: the members are the first ``len(members)`` running requests, in order
    (requests join in running order, and an admitted request is appended to it).
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.members: dict[int, Member] = {}
        self.fresh: list[Request] = []  # joined since the last group step
        self.step = 0  # group steps run
        self.last_land_s = math.nan  # when the last one ended: its members' last token
        self.last_step_id = -1
        self.at_residue = [0] * scheduler.kv_cache.block_size  # take a block at steps r
        self.late: list[tuple[int, int, int]] = []  # (step of first block, order, rid)
        self.leaving: list[tuple[int, int, int]] = []  # (step after its last, order, rid)
        self.order = 0
        self.context_sum = 0  # the members' tokens computed, at the group's step

    def taken(self, member: Member, steps: int) -> int:
        """Blocks ``member`` takes in its first ``steps`` steps in the group."""
        return max(0, -(-(steps - member.first) // len(self.at_residue)))

    def join(self, request: Request, first: int, blocks: int) -> None:
        rid = request.request_id
        member = Member(request, self.step, request.num_computed_tokens,
                         request.num_output_tokens, first, blocks, False)
        self.members[rid] = member
        self.fresh.append(request)
        self.order += 1
        heapq.heappush(self.leaving, (self.step + request.output_tokens
                                      - request.num_output_tokens, self.order, rid))
        if first < len(self.at_residue):
            self.at_residue[(self.step + first) % len(self.at_residue)] += 1
            member.entered = True
        else:
            heapq.heappush(self.late, (self.step + first, self.order, rid))
        self.context_sum += member.computed

    def write(self, member: Member, steps: int) -> None:
        """Give ``member``'s request its tokens and blocks after ``steps`` group steps."""
        request = member.request
        request.num_computed_tokens = member.computed + steps
        request.num_output_tokens = member.outputs + steps
        taken = self.taken(member, steps)
        if taken:
            kv = self.scheduler.kv_cache
            rid = request.request_id
            if isinstance(kv, PrefixCachingKVCacheManager):  # past its shared tokens
                kv.req_to_anonymous[rid] = kv.req_to_anonymous.get(rid, 0) + taken
            else:
                kv.req_to_num_blocks[rid] += taken

    def enter_late(self, step: int) -> None:
        """Count the block boundaries of the members whose first new block comes by
        group step ``step`` (those joined more than a block's tokens before one)."""
        at_residue, late, members = self.at_residue, self.late, self.members
        while late and late[0][0] <= step:
            _, _, rid = heapq.heappop(late)
            member = members.get(rid)
            if member is not None and not member.entered:
                at_residue[(member.joined + member.first) % len(at_residue)] += 1
                member.entered = True

    def member_gaps(self, now_s: float) -> tuple[float, int]:
        """The members' token gaps for a step landing at ``now_s``, run-length encoded
        into the scheduler's gaps as the step loop would (the members that ran the last
        group step share one gap, each one joined since has its own), less the last run,
        returned for the caller to go on from."""
        gaps = self.scheduler.token_gaps
        run_gap, run_count = gaps.pending()
        old = len(self.members) - len(self.fresh)
        if old:
            run_gap, run_count = now_s - self.last_land_s, old
        for request in self.fresh:
            gap = now_s - request.last_token_s
            if gap == run_gap:
                run_count += 1
            else:
                gaps.add_run(run_gap, run_count)
                run_gap, run_count = gap, 1
        return run_gap, run_count

    def schedule_step(self, plan: StepPlan, budget: int) -> int | None:
        """Put the members in ``plan`` as one block of decodes, first in the step, where
        the step loop would schedule each of them as a decode: the decoding requests
        right after them join first, the block fits the token budget and its new KV
        blocks are free (they are taken now, as the members' allocations would be).
        Returns the budget left, or ``None`` (nothing changed but joins) when the step
        must look at each request (the scheduler then materializes the group)."""
        scheduler = self.scheduler
        kv = scheduler.kv_cache
        cache = kv if isinstance(kv, PrefixCachingKVCacheManager) else None
        if cache is not None and scheduler._unregistered:
            return None
        members = self.members
        block_size = kv.block_size
        running = scheduler.running
        for request in running[len(members):]:  # decoding requests join, in order
            computed = request.num_computed_tokens
            outputs = request.num_output_tokens
            if (request.prompt_tokens + outputs - computed != 1 or not outputs
                    or request.in_flight
                    or (cache is not None and computed < request.num_shareable_tokens)):
                break
            rid = request.request_id
            blocks = (len(cache.req_to_blocks.get(rid, ()))
                      + cache.req_to_anonymous.get(rid, 0)
                      if cache is not None else kv.req_to_num_blocks.get(rid, 0))
            if blocks * block_size < computed:
                break
            self.join(request, blocks * block_size - computed, blocks)
        active = len(members)
        if not active:
            return budget
        if active > budget:
            return None  # the budget ends inside the block
        step = self.step
        if self.late and self.late[0][0] <= step:
            self.enter_late(step)
        taking = self.at_residue[step % block_size]
        if taking > kv.num_free_blocks:
            return None  # a member's block would not fit (the step loop preempts)
        if taking:
            if cache is not None:
                cache.take_anonymous(taking)
            else:
                kv.num_free_blocks -= taking
            used = kv.num_gpu_blocks - kv.num_free_blocks
            if used > kv.peak_used_blocks:
                kv.peak_used_blocks = used
        plan.group, plan.group_seqs, plan.group_context = self, active, self.context_sum
        plan.num_sampled += active
        return budget - active

    def finish_step(self, plan: StepPlan, now_s: float) -> tuple[float, int, list[Request]]:
        """The members' side of ``update`` for a step that took them as a block, ending
        at ``now_s``: their token gaps (the run-length state the update goes on from, as
        it would be after their entries) and those that finished, written back and freed,
        in running order."""
        scheduler = self.scheduler
        run_gap, run_count = self.member_gaps(now_s)
        step = self.step
        members, leaving = self.members, self.leaving
        block_size = len(self.at_residue)
        finished = []
        while leaving and leaving[0][0] == step + 1:
            _, _, rid = heapq.heappop(leaving)
            member = members.pop(rid)
            if member.entered:
                self.at_residue[(member.joined + member.first) % block_size] -= 1
            self.context_sum -= member.computed + (step - member.joined)
            self.write(member, step + 1 - member.joined)
            request = member.request
            request.last_token_s = request.finish_s = now_s
            request.scheduled_step = plan.step_id
            request.status = RequestStatus.FINISHED
            finished.append(request)
        self.context_sum += len(members)
        self.step = step + 1
        self.fresh = []
        self.last_land_s = now_s
        self.last_step_id = plan.step_id
        kv = scheduler.kv_cache
        for request in finished:
            if not request.keep_kv:
                kv.free(request)
        return run_gap, run_count, finished

    def materialize(self) -> None:
        """Write every member's state into its request and dissolve the group."""
        for member in self.members.values():
            steps = self.step - member.joined
            if steps:
                self.write(member, steps)
                member.request.last_token_s = self.last_land_s
                member.request.scheduled_step = self.last_step_id
        self.scheduler.lazy = None
