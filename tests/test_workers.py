"""The planner survives its workers: a lost worker's jobs run again, a job lost every
time is reported and the rest kept, workers die with the planner, and a Ray address
where nothing listens fails within seconds."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from planners.workers import LOST, WorkerPool, check_ray_address
from profiles.errors import ClusterSimError


def _square_once_killed(job: tuple[int, str]) -> int:
    """Kills its own worker the first time it sees job 2 (a marker file remembers)."""
    value, marker = job
    if value == 2 and not os.path.exists(marker):
        Path(marker).write_text("killed once")
        os.kill(os.getpid(), signal.SIGKILL)
    return value * value


def _square_or_die(value: int) -> int:
    if value == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return value * value


def _sleep_and_report(path: str) -> int:
    Path(path, str(os.getpid())).write_text("")
    time.sleep(60)
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (dead, not yet reaped by init) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_lost_worker_s_jobs_run_again(tmp_path: Path) -> None:
    pool = WorkerPool(2)
    try:
        marker = str(tmp_path / "marker")
        assert pool.map(_square_once_killed, [(i, marker) for i in range(6)]) == \
            [0, 1, 4, 9, 16, 25]
        assert pool.num_lost == 1
        assert pool.map(_square_once_killed, [(7, marker)]) == [49]  # the new pool works
    finally:
        pool.close()


def test_a_job_lost_every_time_is_reported_and_the_rest_kept() -> None:
    pool = WorkerPool(2, retries=2)
    try:
        results = pool.map(_square_or_die, [1, 2, 3, 4, 5])
    finally:
        pool.close()
    assert results[:2] + results[3:] == [1, 4, 16, 25] and results[2] is LOST
    assert pool.num_lost == 3  # the parallel pass, then each of the two retries


def test_workers_die_with_the_planner(tmp_path: Path) -> None:
    """A planner process (forked) starts two workers on minute-long jobs and is
    SIGKILLed; its workers are gone within seconds."""
    planner = os.fork()
    if planner == 0:  # pragma: no cover - the child never returns
        try:
            WorkerPool(2).map(_sleep_and_report, [str(tmp_path)] * 2)
        finally:
            os._exit(0)
    deadline = time.monotonic() + 30
    while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = [int(path.name) for path in tmp_path.iterdir()]
    assert len(workers) == 2 and all(_alive(pid) for pid in workers)
    os.kill(planner, signal.SIGKILL)
    os.waitpid(planner, 0)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers), "a worker outlived the planner"


def test_an_unreachable_ray_address_fails_within_seconds() -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ClusterSimError, match=rf"--ray-address 127.0.0.1:{port}: nothing "
                       r"answers there .*ray start --head"):
        check_ray_address(f"127.0.0.1:{port}")
    assert time.monotonic() - started < 6
    with pytest.raises(ClusterSimError, match="expected HOST:PORT"):
        check_ray_address("headnode")
    check_ray_address("local")  # Ray's own; nothing to check
