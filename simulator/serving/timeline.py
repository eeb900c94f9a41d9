"""A Chrome/Perfetto trace of each replica's batch steps (open in ui.perfetto.dev).

One complete event ("ph": "X") per step per pipeline stage: process = replica, thread =
stage, with the batch's request, token and prefill counts as arguments. Times are
microseconds of simulated time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from profiles.cost_model import StepCost
    from simulator.serving.scheduler import StepPlan

__all__ = ["PerfettoTrace"]


class PerfettoTrace:
    """Collects trace events; :meth:`to_json` gives the Trace Event Format document."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._named: set[tuple[int, int]] = set()

    def on_step(self, replica_id: int, stage_spans_s: Sequence[tuple[float, float]],
                plan: StepPlan, cost: StepCost, kv_used_blocks: int) -> None:
        num_tokens = sum(plan.num_new_tokens)
        prefill = sum(n for n in plan.num_new_tokens if n > 1)
        for stage, (start_s, end_s) in enumerate(stage_spans_s):
            if (replica_id, stage) not in self._named:
                self._named.add((replica_id, stage))
                self.events.append({"ph": "M", "name": "thread_name", "pid": replica_id,
                                    "tid": stage, "args": {"name": f"stage {stage}"}})
            self.events.append({
                "name": f"step {plan.step_id}", "ph": "X", "pid": replica_id, "tid": stage,
                "ts": round(start_s * 1e6, 3), "dur": round((end_s - start_s) * 1e6, 3),
                "args": {"num_reqs": len(plan.requests), "num_tokens": num_tokens,
                         "prefill_tokens": prefill, "kv_used_blocks": kv_used_blocks,
                         "num_preempted": len(plan.preempted)},
            })

    def name_process(self, pid: int, name: str) -> None:
        """Label a process (a replica, or the requests' track) in the viewer."""
        self.events.append({"ph": "M", "name": "process_name", "pid": pid,
                            "args": {"name": name}})

    def add_request_phases(self, pid: int, request_id: int,
                           phases: Sequence[tuple[str, float, float]]) -> None:
        """One request's phases (name, start, end in seconds) as async slices on its own
        track (prefill, KV transfer, decode of a disaggregated request)."""
        for name, start_s, end_s in phases:
            if not end_s > start_s:  # nan or empty: the phase did not happen
                continue
            common = {"name": name, "cat": "request", "id": request_id, "pid": pid,
                      "tid": 0}
            self.events.append(common | {"ph": "b", "ts": round(start_s * 1e6, 3),
                                         "args": {"request": request_id}})
            self.events.append(common | {"ph": "e", "ts": round(end_s * 1e6, 3)})

    def to_json(self) -> dict[str, Any]:
        return {"traceEvents": self.events, "displayTimeUnit": "ms"}
