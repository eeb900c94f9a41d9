"""Where the planner's goodput searches run: worker processes that survive the loss of
one of them and die with the planner, or a Ray cluster that answers within seconds.

A worker lost mid-job (killed, out of memory) breaks a ``ProcessPoolExecutor`` and, with
it, every job in flight. ``WorkerPool.map`` starts a fresh pool and runs those jobs
again, ``retries`` times; a job lost every time comes back as ``LOST``, and the planner
marks its candidate failed and keeps the rest. Each worker asks the kernel to kill it
when the planner dies (Linux's parent-death signal), ignores Ctrl-C (the planner's to
handle) and leaves at once when its parent is already gone, so no worker outlives the
planner however it ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from profiles.errors import ClusterSimError

__all__ = ["LOST", "WorkerPool", "check_ray_address"]

# What map returns for a job whose worker died on every attempt.
LOST = object()

RAY_CONNECT_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """A worker's initializer: SIGKILL when the planner dies; no Ctrl-C of its own."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # a libc without prctl
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != parent:  # the planner died before the signal was armed
        os._exit(1)


class WorkerPool:
    """``workers`` processes for ``map``; ``close`` ends them (``kill`` for Ctrl-C)."""

    def __init__(self, workers: int, retries: int = 1) -> None:
        self.workers = workers
        self.retries = retries
        self.num_lost = 0  # pools broken by a lost worker, over the pool's life
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, initializer=_die_with_parent,
                                   initargs=(os.getpid(),))

    def map(self, function: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
        """``function(job)`` for every job, in order. The jobs run in parallel; those
        in flight when a worker died run again one at a time (so one job that kills its
        worker cannot take the others down with it, and one that ran out of memory
        beside the others gets the machine to itself), ``retries`` times; ``LOST``
        for a job whose worker died every time. An exception the function raises (a
        bug, not a lost worker) propagates."""
        futures = [self._pool.submit(function, job) for job in jobs]
        results: list[Any] = [LOST] * len(jobs)
        lost = []
        for index, future in enumerate(futures):
            try:
                results[index] = future.result()
            except BrokenProcessPool:
                lost.append(index)
        if lost:
            self._restart()
        for index in lost:
            for _ in range(self.retries):
                try:
                    results[index] = self._pool.submit(function, jobs[index]).result()
                    break
                except BrokenProcessPool:
                    self._restart()
        return results

    def _restart(self) -> None:
        self.num_lost += 1
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._start()

    def close(self, kill: bool = False) -> None:
        """Shut the workers down: after their jobs, or at once (``kill``, on Ctrl-C)."""
        if kill:
            # NOTE: the executor offers no way to stop a running job; its processes
            # are reachable only through this private mapping.
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.kill()
        self._pool.shutdown(wait=not kill, cancel_futures=True)


def check_ray_address(address: str) -> None:
    """Fail within seconds when nothing listens at a Ray ``host:port`` (``ray.init``
    would retry for minutes); ``local`` and ``auto`` are left to Ray.

    Raises:
        ClusterSimError: the address is malformed or nothing answers there.
    """
    if address in ("local", "auto"):
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterSimError(f"--ray-address {address!r}: expected HOST:PORT (for example "
                              "10.0.0.1:6379), ray://HOST:PORT, auto or local")
    try:
        with socket.create_connection((host.strip("[]"), int(port)),
                                      timeout=RAY_CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or error)
        raise ClusterSimError(
            f"--ray-address {address}: nothing answers there ({reason} within "
            f"{RAY_CONNECT_TIMEOUT_S:g} s); start the head with `ray start --head` or "
            "give its address") from None
