"""Scheduling policies as settings of the one scheduler loop, plus its small named pieces.

=================  ======================================================================
policy             what it sets
=================  ======================================================================
``prefill-first``  vLLM V0's scheduler: a step with admissible prompts runs only
                   prefills, whole; paged KV, preemption by recompute, FCFS
``running-first``  vLLM V1's scheduler: chunked prefill on; running requests (decodes and
                   partial prefills) in admission order, then waiting ones; recompute
``stall-free``     Sarathi-Serve: chunked prefill under a token budget (512), decodes
                   first, then ongoing chunks, then new prompts: stall-free mixed batches
``orca``           Orca: iteration-level batching, prompts whole and mixed with decodes, no
                   paging: each request reserves KV for ``max_model_len`` on admission
``static``         FasterTransformer-style static batching: a batch is admitted only when
                   the previous one has drained; finished requests keep their decode slot
                   (padding) until the whole batch is done; KV reserved for the maximum
=================  ======================================================================

A policy names a scheduling algorithm; an engine preset (``simulator.serving.presets``:
``vllm-v1-0.15``, ``vllm-v1``, ``vllm-v0``, ``sarathi-serve``) names a product version,
which picks a policy, its knobs and its CPU costs. The two sets of names do not overlap,
so one name means one thing. Knobs keep vLLM's names where vLLM has one. A preset
supplies defaults only; anything the user sets wins. The named functions below (queue
orders, victim choice) are the policy hooks of rule 24: one line per entry, keyed by the
string a config uses.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from simulator.serving.request import Request

__all__ = ["POLICY_PRESETS", "QUEUE_ORDERS", "RENAMED_POLICIES", "VICTIM_CHOICES",
           "RequestQueue"]

# Defaults per policy. ``max_num_batched_tokens: None`` resolves to max(max_model_len, 2048)
# when chunked prefill is off, as vLLM v0 does (a whole prompt must fit in one step).
POLICY_PRESETS: dict[str, dict[str, Any]] = {
    "prefill-first": {
        "enable_chunked_prefill": False, "prefill_first": True, "decodes_first": False,
        "batching": "continuous", "kv_allocation": "paged", "max_num_seqs": 256,
        "max_num_batched_tokens": None, "preemption_mode": "recompute",
    },
    # vLLM V1: chunked prefill, running requests in admission order, then waiting ones.
    "running-first": {
        "enable_chunked_prefill": True, "prefill_first": False, "decodes_first": False,
        "batching": "continuous", "kv_allocation": "paged", "max_num_seqs": 256,
        "max_num_batched_tokens": 2048, "preemption_mode": "recompute",
    },
    "stall-free": {
        "enable_chunked_prefill": True, "prefill_first": False, "decodes_first": True,
        "batching": "continuous", "kv_allocation": "paged", "max_num_seqs": 256,
        "max_num_batched_tokens": 512, "preemption_mode": "recompute",
    },
    "orca": {
        "enable_chunked_prefill": False, "prefill_first": False, "decodes_first": True,
        "batching": "continuous", "kv_allocation": "reserve_max", "max_num_seqs": 256,
        "max_num_batched_tokens": None, "preemption_mode": "recompute",
    },
    "static": {
        "enable_chunked_prefill": False, "prefill_first": False, "decodes_first": True,
        "batching": "static", "kv_allocation": "reserve_max", "max_num_seqs": 64,
        "max_num_batched_tokens": None, "preemption_mode": "recompute",
    },
}


# Policy names of earlier releases, which clashed with engine preset names.
RENAMED_POLICIES = {"vllm": "prefill-first", "vllm-v1": "running-first", "sarathi": "stall-free"}


class RequestQueue(Protocol):
    """The waiting queue: ``add`` new arrivals, ``prepend`` preempted requests."""

    def add(self, request: Request) -> None: ...
    def prepend(self, request: Request) -> None: ...
    def peek(self) -> Request: ...
    def pop(self) -> Request: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Request]: ...


class FCFSQueue(deque[Request]):
    """First come, first served; preempted requests go back to the front (as vLLM).

    A deque itself, so the scheduler's many ``len``/truth tests of the queue stay in C.
    """

    add = deque.append
    prepend = deque.appendleft
    pop = deque.popleft  # the front, not the back

    def peek(self) -> Request:
        return self[0]


class PriorityQueue:
    """Lowest ``priority`` value first, then arrival order (the trace position)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Request]] = []

    def add(self, request: Request) -> None:
        heapq.heappush(self._heap, (request.priority, request.request_id, request))

    prepend = add  # a preempted request keeps its rank

    def peek(self) -> Request:
        return self._heap[0][2]

    def pop(self) -> Request:
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[Request]:
        return (entry[2] for entry in sorted(self._heap))


QUEUE_ORDERS: dict[str, Callable[[], RequestQueue]] = {
    "fcfs": FCFSQueue,
    "priority": PriorityQueue,
}


def _last_admitted(running: Sequence[Request], step_id: int) -> Request | None:
    """vLLM's choice: the most recently admitted request not already in this step."""
    for request in reversed(running):
        if request.scheduled_step != step_id and not request.in_flight:
            return request
    return None


def _lowest_priority(running: Sequence[Request], step_id: int) -> Request | None:
    """The request with the largest priority value (latest arrival among equals)."""
    candidates = [r for r in running if r.scheduled_step != step_id and not r.in_flight]
    return max(candidates, key=lambda r: (r.priority, r.request_id), default=None)


VICTIM_CHOICES: dict[str, Callable[[Sequence[Request], int], Request | None]] = {
    "fcfs": _last_admitted,
    "priority": _lowest_priority,
}
