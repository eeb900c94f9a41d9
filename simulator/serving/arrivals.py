"""Arrivals: when each request reaches the server.

Open loop, each request arrives at its trace time. A closed-loop session's next turn
arrives only once the previous one has finished, plus its think time. With a client
concurrency limit (vLLM's benchmark ``--max-concurrency N``, inference-perf's
concurrency stages) at most N requests are in flight. A request that arrives while N
are out waits at the client, and is sent when one finishes. Its ``arrival_s`` becomes
the send time, since that is where the client starts its clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator, Sequence
from typing import Any

import simpy
from simpy.events import URGENT

from simulator.serving.clock import At, delay_to
from simulator.serving.request import Request
from workloads.schema import RequestTrace

__all__ = ["ArrivalTimeout", "Arrivals", "closed_loop_turns"]


class ArrivalTimeout(simpy.Event):
    """A timeout at URGENT priority, so arrivals precede same-time scheduling decisions.

    NOTE: SimPy's Timeout always uses NORMAL priority; this mirrors its constructor
    (``_ok``/``_value`` as Timeout sets them) with the priority changed.
    """

    def __init__(self, env: simpy.Environment, delay: float) -> None:
        super().__init__(env)
        self._ok = True
        self._value = None
        env.schedule(self, URGENT, delay)


class Arrivals:
    """Hands each request to ``submit`` at its arrival time; a closed-loop session's next
    turn arrives only after the previous one finished plus its think time, and with
    ``max_concurrency`` no more than that many are in flight (call :meth:`on_finish` with
    every finished request)."""

    def __init__(self, env: simpy.Environment, workload: RequestTrace,
                 requests: Sequence[Request], submit: Callable[[Request], None],
                 max_concurrency: int | None = None) -> None:
        self.env = env
        self.requests = requests
        self.submit = submit if max_concurrency is None else self._send
        self._server = submit
        self.next_turn = closed_loop_turns(workload)
        self.think = workload.extras.get("think_time_s", [])
        self.max_concurrency = max_concurrency
        self.in_flight = 0
        self.held: deque[Request] = deque()  # arrived, waiting at the client for a slot
        # open loop: when the next arrival lands (0 until the arrivals start: no request
        # can be running before then; inf after the last)
        self.next_arrival_s = 0.0
        self._first: list[Request] = []  # the arrivals no earlier turn waits on, in order
        self._cursor = 0  # the next of them to arrive

    def _send(self, request: Request) -> None:
        assert self.max_concurrency is not None
        if self.in_flight >= self.max_concurrency:
            self.held.append(request)
            return
        self.in_flight += 1
        request.arrival_s = self.env.now  # the client's clock starts when it sends
        self._server(request)

    def start(self) -> None:
        waiting_on = set(self.next_turn.values())
        self._first = [r for r in self.requests if r.request_id not in waiting_on]
        self._cursor = 0
        self._set_next(self.env.now)
        self.env.process(self._arrive_first())

    def _set_next(self, after_s: float) -> None:
        """Where the clock lands for the next of the first arrivals, the one before it
        having landed at ``after_s`` (its process's clock then): the request's time, or
        at once when that has passed (inf after the last)."""
        if self._cursor == len(self._first):
            self.next_arrival_s = math.inf
            return
        arrival_s = self._first[self._cursor].arrival_s
        self.next_arrival_s = (after_s + delay_to(after_s, arrival_s) if arrival_s > after_s
                               else after_s)

    def take(self, until_s: float) -> list[Request]:
        """Open loop: submit now every arrival that lands at or before ``until_s``, in
        order, and return them. A replica that nothing else observes (decode runs) takes
        its arrivals inside a run this way; the arrival process then skips them, and each
        lands where it would have (:meth:`_set_next` chains the same times)."""
        taken = []
        first, submit = self._first, self.submit
        at_s = self.next_arrival_s
        while at_s <= until_s:
            cursor = self._cursor
            request = first[cursor]
            self._cursor = cursor = cursor + 1
            # _set_next(at_s), inlined with delay_to's usual case
            if cursor == len(first):
                next_s = math.inf
            else:
                next_s = first[cursor].arrival_s
                if next_s > at_s:
                    landed = at_s + (next_s - at_s)
                    next_s = landed if landed >= next_s else at_s + delay_to(at_s, next_s)
                else:
                    next_s = at_s
            self.next_arrival_s = next_s
            submit(request)
            taken.append(request)
            at_s = next_s
        return taken

    def _arrive_first(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        while self._cursor < len(self._first):
            at_s = self.next_arrival_s
            assert math.isfinite(at_s), "the first arrivals' clock was lost"
            if at_s > env.now:
                yield At(env, at_s, URGENT)
                continue  # a replica may have taken it meanwhile
            request = self._first[self._cursor]
            self._cursor += 1
            self._set_next(env.now)
            self.submit(request)

    def on_finish(self, request: Request) -> None:
        if self.max_concurrency is not None:
            self.in_flight -= 1
            if self.held:
                self._send(self.held.popleft())
        follow = self.next_turn.get(request.request_id)
        if follow is not None:
            turn = self.requests[follow]
            turn.arrival_s = max(turn.arrival_s, self.env.now + float(self.think[follow]))
            self.env.process(self._arrive([turn]))

    def _arrive(self, batch: Sequence[Request]) -> Generator[simpy.Event, Any, None]:
        """A closed-loop session's next turn, after its think time. It leaves
        :attr:`next_arrival_s` alone: that is the first arrivals' clock, which
        :meth:`_arrive_first` waits on (only an open-loop run reads it elsewhere, and an
        open-loop run has no next turns)."""
        env = self.env
        for request in batch:
            if request.arrival_s > env.now:
                yield ArrivalTimeout(env, delay_to(env.now, request.arrival_s))
            self.submit(request)

    def next_arrival(self) -> float:
        """When the next arrival lands (open loop; inf after the last)."""
        return self.next_arrival_s

    @property
    def is_open_loop(self) -> bool:
        """Every arrival time is the trace's: no session waits on a finish, no client
        limit (so :attr:`next_arrival_s` is the next time a request can arrive)."""
        return not self.next_turn and self.max_concurrency is None


def closed_loop_turns(workload: RequestTrace) -> dict[int, int]:
    """previous turn → next turn, for session turns that carry ``think_time_s``."""
    sessions = workload.extras.get("session_id")
    think = workload.extras.get("think_time_s")
    if sessions is None or think is None:
        return {}
    last: dict[Any, int] = {}
    chain: dict[int, int] = {}
    for i, session in enumerate(sessions):
        if session is None:
            continue
        if session in last and think[i] is not None:
            chain[last[session]] = i
        last[session] = i
    return chain
