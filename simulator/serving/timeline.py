"""A Chrome/Perfetto trace of a serving run (open in ui.perfetto.dev).

* One complete event ("ph": "X") per step per pipeline stage: process = replica, thread
  = stage, named by what the step ran (prefill, decode or mixed, so the viewer groups
  and colours them), with its step id, and its prefill tokens and preemptions where
  nonzero, as arguments.
* Counter tracks ("ph": "C") per replica: batch size, scheduled tokens and KV blocks in
  use, at each step's start (the slices do not repeat them, to keep the file small).
* Each request's phases as async slices on a "requests" process: queued, prefill,
  decode (and for a disaggregated request the wait for decode room and the KV transfer),
  for the first ``max_requests`` requests, so the file stays small.

Times are simulated seconds turned into whole nanoseconds once, and written as
microseconds with three decimals: a slice that starts where the previous one ended has
the same timestamp, so slices on one track never overlap by a rounding step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from profiles.cost_model import StepCost
    from simulator.serving.request import Request
    from simulator.serving.scheduler import StepPlan

__all__ = ["DEFAULT_TRACE_REQUESTS", "PerfettoTrace", "ns"]

DEFAULT_TRACE_REQUESTS = 2000


def ns(seconds: float) -> int:
    """Simulated seconds as whole nanoseconds (every timestamp goes through here once)."""
    return round(seconds * 1e9)


def _us(nanoseconds: int) -> float:
    return nanoseconds / 1000


class PerfettoTrace:
    """Collects trace events; :meth:`to_json` gives the Trace Event Format document."""

    def __init__(self, max_requests: int = DEFAULT_TRACE_REQUESTS) -> None:
        self.events: list[dict[str, Any]] = []
        self.max_requests = max_requests
        self._named: set[tuple[int, int]] = set()

    def on_step(self, replica_id: int, stage_spans_s: Sequence[tuple[float, float]],
                plan: StepPlan, cost: StepCost, kv_used_blocks: int) -> None:
        num_tokens = sum(plan.num_new_tokens)
        prefill = sum(n for n in plan.num_new_tokens if n > 1)
        kind = "decode" if not prefill else "prefill" if prefill == num_tokens else "mixed"
        for stage, (start_s, end_s) in enumerate(stage_spans_s):
            if (replica_id, stage) not in self._named:
                self._named.add((replica_id, stage))
                self.events.append({"ph": "M", "name": "thread_name", "pid": replica_id,
                                    "tid": stage, "args": {"name": f"stage {stage}"}})
            start, end = ns(start_s), ns(end_s)
            args: dict[str, int] = {"step": plan.step_id}
            if prefill:
                args["prefill_tokens"] = prefill
            if plan.preempted:
                args["num_preempted"] = len(plan.preempted)
            self.events.append({"name": kind, "ph": "X", "pid": replica_id, "tid": stage,
                                "ts": _us(start), "dur": _us(end - start), "args": args})
        self.events.append({"ph": "C", "name": "batch", "pid": replica_id,
                            "ts": _us(ns(stage_spans_s[0][0])),
                            "args": {"requests": len(plan.requests), "tokens": num_tokens,
                                     "kv_used_blocks": kv_used_blocks}})

    def name_process(self, pid: int, name: str) -> None:
        """Label a process (a replica, or the requests' track) in the viewer."""
        self.events.append({"ph": "M", "name": "process_name", "pid": pid,
                            "args": {"name": name}})

    def add_request_phases(self, pid: int, request_id: int,
                           phases: Sequence[tuple[str, float, float]]) -> None:
        """One request's phases (name, start, end in seconds) as async slices on its own
        track (queued, prefill, decode; for a disaggregated request the KV transfer)."""
        for name, start_s, end_s in phases:
            if not end_s > start_s:  # nan or empty: the phase did not happen
                continue
            start, end = ns(start_s), ns(end_s)
            if end <= start:
                continue
            common = {"name": name, "cat": "request", "id": request_id, "pid": pid,
                      "tid": 0}
            self.events.append(common | {"ph": "b", "ts": _us(start),
                                         "args": {"request": request_id}})
            self.events.append(common | {"ph": "e", "ts": _us(end)})

    def add_requests(self, pid: int, requests: Sequence[Request]) -> None:
        """The colocated phases of the first ``max_requests`` requests."""
        self.name_process(pid, f"requests (first {min(len(requests), self.max_requests)})")
        for request in requests[:self.max_requests]:
            self.add_request_phases(pid, request.request_id, (
                ("queued", request.arrival_s, request.first_scheduled_s),
                ("prefill", request.first_scheduled_s, request.first_token_s),
                ("decode", request.first_token_s, request.finish_s)))

    def to_json(self) -> dict[str, Any]:
        return {"traceEvents": self.events, "displayTimeUnit": "ms"}
