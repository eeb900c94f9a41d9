"""Pipeline schedules as task orders, and their execution on per-stage streams.

Each physical stage runs its forward (F) and backward (B) passes in the order its
schedule dictates; a pass starts when the stage is free and its inputs have arrived::

    F(v, i) needs F(v-1, i) + send        (v: virtual stage = chunk·p + stage)
    B(v, i) needs B(v+1, i) + send, and F(v, i)

GPipe runs every forward, then every backward; 1F1B warms up with p-s-1 forwards, then
alternates; interleaved 1F1B (Narayanan et al. 2021, Sec. 2.2) gives each stage v model
chunks and orders micro-batches in groups of p. Bubbles come out of executing the order,
not from a formula (tests check them against (p-1)/(m+p-1) and its 1/v shrink).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PipelineRun", "run_pipeline", "stage_order"]

Op = tuple[str, int, int]  # ("F" | "B", chunk, micro-batch)


def stage_order(schedule: str, p: int, m: int, v: int, stage: int) -> list[Op]:
    """The passes physical ``stage`` runs, in order."""
    return _stage_orders(schedule, p, m, v)[stage]


def _stage_orders(schedule: str, p: int, m: int, v: int) -> list[list[Op]]:
    """Every physical stage's passes, in order. The k-th forward of a stage is chunk
    (k // p) % v of micro-batch (k // pv)·p + k % p; backwards take the chunks in reverse.
    Only the warm-up length differs between stages."""
    if schedule == "gpipe":
        order = [("F", 0, i) for i in range(m)] + [("B", 0, i) for i in range(m)]
        return [order] * p
    total = m * v
    batches = [(k // (p * v)) * p + k % p for k in range(total)]
    forwards: list[Op] = [("F", (k // p) % v, i) for k, i in enumerate(batches)]
    backwards: list[Op] = [("B", v - 1 - (k // p) % v, i) for k, i in enumerate(batches)]
    orders = []
    for stage in range(p):
        # Megatron's warm-up: p-s-1 forwards (1F1B); 2(p-s-1) + (v-1)p chunks (interleaved).
        warmup = (min(p - stage - 1, m) if v == 1
                  else min((p - stage - 1) * 2 + (v - 1) * p, total))
        steady = [op for pair in zip(forwards[warmup:], backwards, strict=False)
                  for op in pair]
        orders.append(forwards[:warmup] + steady + backwards[total - warmup:])
    return orders


@dataclass
class PipelineRun:
    """When every pass ran: ``spans[(op, stage)] = (start, end)`` and per-stage facts."""

    spans: dict[tuple[Op, int], tuple[float, float]]
    stage_end_s: list[float]  # when each stage's last pass ends
    last_backward_start_s: list[float]  # when each stage's last backward pass starts
    busy_s: list[float]

    @property
    def makespan_s(self) -> float:
        return max(self.stage_end_s)


def run_pipeline(schedule: str, p: int, m: int, v: int, forward_s: Sequence[float],
                 backward_s: Sequence[float], send_s: float,
                 record_spans: bool = True) -> PipelineRun:
    """Execute the schedule. ``forward_s[u]`` / ``backward_s[u]``: one pass of virtual
    stage ``u = chunk·p + stage`` (p·v entries). ``record_spans``: keep every pass's
    (start, end) in ``spans`` (a timeline needs them; a step time does not).

    NOTE: pass end times live in lists indexed [virtual stage][micro-batch] (-1 until the
    pass has run): planners execute thousands of schedules, and tuple-keyed dicts cost
    3x more.
    """
    orders = _stage_orders(schedule, p, m, v)
    num_virtual = v * p
    f_end = [[-1.0] * m for _ in range(num_virtual)]
    b_end = [[-1.0] * m for _ in range(num_virtual)]
    spans: dict[tuple[Op, int], tuple[float, float]] = {}
    cursor = [0] * p
    free = [0.0] * p
    busy = [0.0] * p
    last_b = [0.0] * p
    last_virtual = num_virtual - 1
    remaining = sum(len(order) for order in orders)
    while remaining:
        progressed = False
        for s in range(p):
            order = orders[s]
            position, length = cursor[s], len(order)
            stage_free, stage_busy = free[s], busy[s]
            while position < length:
                op = order[position]
                kind, chunk, i = op
                virtual = chunk * p + s
                if kind == "F":
                    if virtual == 0:
                        ready = 0.0
                    else:
                        prev = f_end[virtual - 1][i]
                        if prev < 0:
                            break
                        ready = prev + send_s
                    start = stage_free if stage_free > ready else ready
                    duration = forward_s[virtual]
                    stage_free = start + duration
                    f_end[virtual][i] = stage_free
                else:
                    ready = f_end[virtual][i]
                    if ready < 0:
                        break
                    if virtual != last_virtual:
                        nxt = b_end[virtual + 1][i]
                        if nxt < 0:
                            break
                        if nxt + send_s > ready:
                            ready = nxt + send_s
                    start = stage_free if stage_free > ready else ready
                    duration = backward_s[virtual]
                    stage_free = start + duration
                    b_end[virtual][i] = stage_free
                    last_b[s] = start
                stage_busy += duration
                if record_spans:
                    spans[(op, s)] = (start, stage_free)
                position += 1
            if position != cursor[s]:
                remaining -= position - cursor[s]
                progressed = True
            cursor[s], free[s], busy[s] = position, stage_free, stage_busy
        if not progressed:
            raise RuntimeError(f"pipeline schedule {schedule} deadlocked (p={p}, m={m}, v={v})")
    return PipelineRun(spans, free, last_b, busy)
