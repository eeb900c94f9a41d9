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
    if schedule == "gpipe":
        return [("F", 0, i) for i in range(m)] + [("B", 0, i) for i in range(m)]
    total = m * v

    def forward(k: int) -> Op:
        chunk = (k // p) % v
        return ("F", chunk, (k // (p * v)) * p + k % p)

    def backward(k: int) -> Op:
        chunk = v - 1 - (k // p) % v
        return ("B", chunk, (k // (p * v)) * p + k % p)

    # Megatron's warm-up: p-s-1 forwards (1F1B); 2(p-s-1) + (v-1)p chunks (interleaved).
    warmup = min(p - stage - 1, m) if v == 1 else min((p - stage - 1) * 2 + (v - 1) * p, total)
    order = [forward(k) for k in range(warmup)]
    f, b = warmup, 0
    while f < total:
        order.append(forward(f))
        order.append(backward(b))
        f, b = f + 1, b + 1
    order += [backward(k) for k in range(b, total)]
    return order


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
                 backward_s: Sequence[float], send_s: float) -> PipelineRun:
    """Execute the schedule. ``forward_s[u]`` / ``backward_s[u]``: one pass of virtual
    stage ``u = chunk·p + stage`` (p·v entries).

    NOTE: pass end times live in lists indexed [virtual stage][micro-batch] (-1 until the
    pass has run): planners execute thousands of schedules, and tuple-keyed dicts cost
    3x more.
    """
    orders = [stage_order(schedule, p, m, v, s) for s in range(p)]
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
            position = cursor[s]
            stage_free = free[s]
            while position < len(order):
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
                    duration = forward_s[virtual]
                else:
                    own = f_end[virtual][i]
                    if own < 0:
                        break
                    if virtual == last_virtual:
                        ready = own
                    else:
                        nxt = b_end[virtual + 1][i]
                        if nxt < 0:
                            break
                        ready = max(own, nxt + send_s)
                    duration = backward_s[virtual]
                start = stage_free if stage_free > ready else ready
                stage_free = start + duration
                if kind == "F":
                    f_end[virtual][i] = stage_free
                else:
                    b_end[virtual][i] = stage_free
                    last_b[s] = start
                busy[s] += duration
                spans[(op, s)] = (start, stage_free)
                position += 1
                remaining -= 1
                progressed = True
            cursor[s] = position
            free[s] = stage_free
        if not progressed:
            raise RuntimeError(f"pipeline schedule {schedule} deadlocked (p={p}, m={m}, v={v})")
    return PipelineRun(spans, free, last_b, busy)
