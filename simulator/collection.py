"""The garbage collector during a simulation.

A run allocates millions of short-lived objects (steps' tuples, requests, rows) and
makes almost no reference cycles (31 unreachable objects after a 100,000-request run),
while everything it keeps alive (the requests, the trace) sits in the older
generations. With the collector on, CPython runs it thousands of times per 100,000
requests and now and then walks every live request: about 5% of a run's CPU time, for
no garbage. A run therefore pauses the collector while it lasts (reference counting
frees everything else as before) and restores it after, when any cycles are collected.
The command line, which also reads a trace and writes its rows, raises the young
generation's threshold to 50,000 for the whole process (``cli.main``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (if it runs), then resume it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
