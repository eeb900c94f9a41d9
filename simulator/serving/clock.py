"""The simulated clock's arithmetic: where steps start and end on the pipeline's stages,
and events due at exact times (decode runs compute their times ahead, to the bit)."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import simpy
from simpy.events import NORMAL, EventPriority

from simulator.serving.presets import CpuOverhead

__all__ = ["At", "delay_to", "landing", "step_spans"]


def step_spans(now_s: float, stage_s: Sequence[float], overhead: CpuOverhead | None,
               num_seqs: int, num_tokens: int, stage_free_s: list[float]
               ) -> list[tuple[float, float]]:
    """Each pipeline stage's (start, end) for a micro-batch of stage times ``stage_s``
    entering at ``now_s``; moves ``stage_free_s`` on (stages are FIFO servers; module
    docstring of replica)."""
    ready_s = now_s
    first_s = stage_s[0]
    if overhead is not None:
        # CpuOverhead.step_s, inlined (the same sum in the same order)
        host_s = (overhead.step_base_s + overhead.per_seq_s * num_seqs
                  + overhead.per_token_s * num_tokens)
        # the first stage's device work (+ 0.0: no change)
        first_s += overhead.device_step_s + overhead.device_per_seq_s * num_seqs
        if overhead.async_scheduling:
            if host_s > first_s:
                first_s = host_s
        else:
            ready_s += host_s
    start_s = stage_free_s[0]
    if ready_s > start_s:
        start_s = ready_s
    ready_s = start_s + first_s
    stage_free_s[0] = ready_s
    spans = [(start_s, ready_s)]
    for stage in range(1, len(stage_s)):
        start_s = stage_free_s[stage]
        if ready_s > start_s:
            start_s = ready_s
        ready_s = start_s + stage_s[stage]
        stage_free_s[stage] = ready_s
        spans.append((start_s, ready_s))
    return spans


def delay_to(now_s: float, target_s: float) -> float:
    """A delay that makes SimPy's clock (``now + delay``) reach ``target_s``, never less.

    ``target - now`` can fall one ulp short when the two differ by more than a factor of 2,
    and some targets are not reachable as ``now + delay`` at all; the clock then lands an
    ulp above. So an event never happens before its time, and lands exactly on it
    whenever floating point allows (tests rely on both). Each retry moves the sum by about
    one ulp of ``target_s``, so the loop runs at most a couple of times.
    """
    delay = target_s - now_s
    while now_s + delay < target_s:
        delay += math.ulp(target_s)
    return delay


def landing(now_s: float, target_s: float) -> float:
    """Where SimPy's clock lands for an event at ``target_s`` scheduled at ``now_s``."""
    return now_s + delay_to(now_s, target_s)


class At(simpy.Event):
    """An event due at the clock time ``at_s`` itself (not ``now`` plus a delay, which
    floating point may not land exactly), at SimPy's ``priority``: a time computed ahead
    (a decode run's end, an arrival a run took) is kept to the bit.

    NOTE: SimPy schedules by delay only; this pushes onto its queue as
    ``Environment.schedule`` does, with the time given whole (and sets ``_ok``/``_value``
    as ``Timeout`` does).
    """

    def __init__(self, env: simpy.Environment, at_s: float,
                 priority: EventPriority = NORMAL) -> None:
        super().__init__(env)
        self._ok = True
        self._value = None
        heapq.heappush(env._queue, (at_s, priority, next(env._eid), self))
