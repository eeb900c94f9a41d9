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
    stage ``u = chunk·p + stage`` (p·v entries)."""
    orders = [stage_order(schedule, p, m, v, s) for s in range(p)]
    done: dict[tuple[Op, int], tuple[float, float]] = {}
    cursor = [0] * p
    free = [0.0] * p
    busy = [0.0] * p
    last_virtual = v * p - 1
    remaining = sum(len(order) for order in orders)
    while remaining:
        progressed = False
        for s in range(p):
            while cursor[s] < len(orders[s]):
                op = orders[s][cursor[s]]
                kind, chunk, i = op
                virtual = chunk * p + s
                if kind == "F":
                    if virtual == 0:
                        ready = 0.0
                    else:
                        prev = done.get((("F", (virtual - 1) // p, i), (virtual - 1) % p))
                        if prev is None:
                            break
                        ready = prev[1] + send_s
                    duration = forward_s[virtual]
                else:
                    own = done.get((("F", chunk, i), s))
                    if own is None:
                        break
                    if virtual == last_virtual:
                        ready = own[1]
                    else:
                        nxt = done.get((("B", (virtual + 1) // p, i), (virtual + 1) % p))
                        if nxt is None:
                            break
                        ready = max(own[1], nxt[1] + send_s)
                    duration = backward_s[virtual]
                start = max(free[s], ready)
                free[s] = start + duration
                busy[s] += duration
                done[(op, s)] = (start, free[s])
                cursor[s] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            raise RuntimeError(f"pipeline schedule {schedule} deadlocked (p={p}, m={m}, v={v})")
    last_b = [max(span[0] for (op, s), span in done.items() if s == stage and op[0] == "B")
              for stage in range(p)]
    return PipelineRun(done, free, last_b, busy)
