"""A serving replica in simulated time: one SimPy process that runs batch steps.

The process loops: ask the scheduler for a step, price it with the cost model, hold the
replica for that long, apply the result. With pipeline parallelism up to ``pp``
micro-batches are in flight; stages are FIFO servers, so each micro-batch's passage is
computed when it enters (stage s starts when both the stage is free and the micro-batch
left stage s-1) and the process needs one event per micro-batch, not one per stage::

    stage 0 │ mb0 │ mb1 │ mb2 │
    stage 1       │ mb0 │ mb1 │ mb2 │          a request is in at most one micro-batch;
    stage 2             │ mb0 │ mb1 │ mb2 │    its next step waits until its tokens return

An idle replica sleeps on a wake-up event that :meth:`Replica.submit` triggers.

Asynchronous scheduling (vLLM V1's, on by default from 0.12 on) decides step k+1 while
step k runs, from the requests it had when step k started, so a request that arrives
during step k joins step k+2, not k+1::

    steps      | k-1 | k   | k+1 | k+2 |
    decided at       ^s(k-1) ^s(k)  ^s(k+1)      arrival in step k ──► first in step k+2

With one pipeline stage the replica holds such an arrival back until the step that was
running when it came has been followed by one more decision; an idle replica takes it at
once, as the engine does when it is waiting for work.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator, Sequence
from typing import Any

import simpy

from profiles.cost_model import CostModel, StepCost
from simulator.serving.decode_group import DecodeGroup
from simulator.serving.decode_runs import (
    At,
    DecodeRun,
    can_skip,
    decode_run,
    delay_to,
    step_spans,
)
from simulator.serving.metrics import StepRecorder
from simulator.serving.presets import CpuOverhead
from simulator.serving.request import Request
from simulator.serving.scheduler import Scheduler, StepPlan

__all__ = ["Replica", "delay_to"]

# A decode run that must stop before the next arrival is tried only when that arrival is
# at least this many of the last step's durations away: gathering a batch into a run and
# writing it back costs about what a few steps in the step loop do, so shorter runs
# would cost more than they save (where many replicas share the arrivals, most would be
# that short). Either path gives the same results; this only chooses the cheaper.
MIN_RUN_STEPS = 3.0


class Replica:
    """One model replica: a scheduler, its KV cache, a cost model and the step process.

    Args:
        env: the simulation environment.
        replica_id: index of the replica in the cluster.
        scheduler: this replica's scheduler (owns the KV cache).
        cost_model: prices this replica's steps.
        recorders: observers of every completed step.
        cpu_overhead: host time per step (engine presets); ``None`` for none. Serial
            engines pay it before the micro-batch enters stage 0; with asynchronous
            scheduling it overlaps stage 0 (the step takes the longer of the two).
        on_finish: called with each request as it finishes (closed-loop sessions).
    """

    def __init__(self, env: simpy.Environment, replica_id: int, scheduler: Scheduler,
                 cost_model: CostModel, recorders: Sequence[StepRecorder],
                 cpu_overhead: CpuOverhead | None = None,
                 on_finish: Callable[[Request], None] | None = None) -> None:
        self.env = env
        self.replica_id = replica_id
        self.scheduler = scheduler
        self.cost_model = cost_model
        self.recorders = list(recorders)
        self.cpu_overhead = cpu_overhead
        self.on_finish = on_finish
        self.num_outstanding = 0
        self._wake: simpy.Event | None = None
        # Asynchronous scheduling's one-step admission lag (module docstring): arrivals
        # held back, and the start time of the step now running (None when idle).
        self._admission_lag = (cpu_overhead is not None and cpu_overhead.async_scheduling
                               and cost_model.num_stages == 1)
        self._held: list[Request] = []
        self._running_since_s: float | None = None
        self.last_spans: list[tuple[float, float]] = []  # the last completed step's stages
        self.num_kv_held = 0  # disaggregation: finished prefills whose KV awaits transfer
        # Decode runs are skipped (simulator.serving.decode_runs) once the engine gives
        # the time of the next arrival; None: every step is run.
        self.next_event_s: Callable[[], float] | None = None
        self.observed_at_arrivals = True  # a router reads this replica's load at arrivals
        self._stats = can_skip(scheduler, cost_model, cpu_overhead, self.recorders)
        # The one replica of an open-loop run: a decode run may take the arrivals itself
        # (decode_runs.decode_run's ``take``) where their prefill-only steps are
        # prefill-first's.
        self.take_arrivals: Callable[[float], list[Request]] | None = None
        self._takes = self._stats is not None and scheduler.config.prefill_first
        self.process = env.process(self.run())

    def group_decodes(self) -> None:
        """Let steps take the running decodes as one block (``Scheduler.make_group``)
        where this replica's decode runs may be skipped and it has one stage (with
        more, the members would be in several micro-batches): the same results, with
        Python work per step that does not grow with the batch (a colocated run's
        replicas)."""
        if self._stats is not None and self.cost_model.num_stages == 1:
            scheduler = self.scheduler
            self.scheduler.make_group = lambda: DecodeGroup(scheduler)

    @property
    def kv_usage(self) -> float:
        return self.scheduler.kv_cache.usage

    def submit(self, request: Request) -> None:
        """Hand a new request to this replica (called at its arrival time)."""
        request.replica_id = self.replica_id
        self.num_outstanding += 1
        if self._admission_lag and self._running_since_s is not None:
            self._held.append(request)
            return
        self.scheduler.add_request(request)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def receive(self, request: Request) -> None:
        """Disaggregation: ``request``'s KV arrived in blocks this replica reserved for it
        (``scheduler.reserve_remote``); it decodes from the next step."""
        request.replica_id = self.replica_id
        self.scheduler.add_remote(request)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def wake(self) -> None:
        """Let an idle replica look for work again (blocks were freed from outside)."""
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def cached_prefix_tokens(self, request: Request) -> int:
        """Prompt tokens of ``request`` this replica's prefix cache holds now (routers)."""
        return self.scheduler.kv_cache.peek_prefix(request)

    def _admit_held(self, before_s: float) -> None:
        """Give the scheduler the held requests that arrived before ``before_s``."""
        if not self._held:
            return
        keep = []
        for request in self._held:
            if request.arrival_s < before_s:
                self.scheduler.add_request(request)
            else:
                keep.append(request)
        self._held = keep

    def run(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        scheduler = self.scheduler
        num_stages = self.cost_model.num_stages
        stage_free_s = [0.0] * num_stages
        # (end time, plan, cost, per-stage spans, KV blocks in use) per micro-batch in
        # flight, oldest first
        in_flight: deque[tuple[float, StepPlan, StepCost, list[tuple[float, float]], int]] = \
            deque()
        head_timeout: simpy.Event | None = None
        spans_event = False  # the step due now spans the next arrival (no decode run)
        while True:
            next_event_s = (self.next_event_s() if self._stats is not None
                            and self.next_event_s is not None else -math.inf)
            # NOTE: with the admission lag, an arrival during the step a run would span
            # is held for a decision the run does not make: no spanning then
            # NOTE: with pipeline stages a free stage starts an arrival's micro-batch
            # during a step at once: no spanning either
            spanning = not (self.observed_at_arrivals or self._admission_lag
                            or num_stages > 1)
            last = self.last_spans
            if (next_event_s > env.now and not in_flight and not spans_event
                    and not self._held
                    and (spanning or not last or next_event_s - env.now
                         >= MIN_RUN_STEPS * (last[-1][1] - last[0][0]))):
                assert self._stats is not None
                # NOTE: no local keeps the arrival source's method: the run's frame
                # outlives the run, and the source holds every request
                run = decode_run(self.replica_id, scheduler, self.cost_model,
                                 self.cpu_overhead, self._stats, env.now, next_event_s,
                                 stage_free_s, spanning=spanning,
                                 take=self.take_arrivals if spanning and self._takes else None,
                                 next_event=self.next_event_s)
                if run is not None:
                    yield from self._land(run)
                    # the step that spans the arrival: the step loop's, unless the run
                    # took it (then the arrival waits for the next decision, as always)
                    spans_event = run.before_event and (self.observed_at_arrivals
                                                        or self._admission_lag)
                    continue
            spans_event = False
            while len(in_flight) < num_stages:
                plan = scheduler.schedule(env.now)
                if plan is None:
                    break
                cost = self.cost_model.predict(plan.batch_shape())
                spans = step_spans(env.now, cost.stage_s, self.cpu_overhead, plan.num_seqs,
                                   plan.num_tokens, stage_free_s)
                in_flight.append((spans[-1][1], plan, cost, spans,
                                  scheduler.kv_cache.num_used_blocks))
                if self._admission_lag:
                    self._running_since_s = spans[0][0]

            if not in_flight and self._held:
                # Idle: the engine takes whatever waits at once.
                self._admit_held(math.inf)
                self._running_since_s = None
                continue
            if not in_flight:
                self._running_since_s = None
                # Blocks held for a KV transfer (either way) come free without a step.
                waiting_on_transfer = self.num_kv_held or scheduler.num_receiving
                if scheduler.has_work() and not waiting_on_transfer:
                    raise RuntimeError(
                        f"replica {self.replica_id} stalled at t={env.now:.6f}s with "
                        f"{scheduler.num_unfinished} unfinished requests and nothing runnable"
                    )
                self._wake = env.event()
                yield self._wake
                self._wake = None
                continue

            end_s = in_flight[0][0]
            if head_timeout is None:
                head_timeout = env.timeout(delay_to(env.now, end_s))
            if len(in_flight) < num_stages:
                # A pipeline slot is free: a new arrival may start a micro-batch early.
                self._wake = env.event()
                yield head_timeout | self._wake
                self._wake = None
                if not head_timeout.processed:
                    continue
            else:
                yield head_timeout
            head_timeout = None
            _, plan, cost, spans, used = in_flight.popleft()
            if self._admission_lag and self._held:
                # The next step was decided when this one started: only arrivals before
                # then are in it; the rest wait for the decision after it.
                self._admit_held(spans[0][0])
            finished = scheduler.update(plan, env.now)
            self.num_outstanding -= len(finished)
            self.last_spans = spans
            for recorder in self.recorders:
                recorder.on_step(self.replica_id, spans, plan, cost, used)
            if finished and self.on_finish is not None:
                for request in finished:
                    self.on_finish(request)

    def _land(self, run: DecodeRun) -> Generator[simpy.Event, Any, None]:
        """Let the clock reach the end of a decode run, where the step loop's would (an
        event at that very time), then report its finished requests."""
        env = self.env
        yield At(env, run.end_s)
        self.last_spans = run.spans
        self.num_outstanding -= len(run.finished)
        if run.finished and self.on_finish is not None:
            for request in run.finished:
                self.on_finish(request)
        run.finished = []  # a run through many arrivals: let its requests go
