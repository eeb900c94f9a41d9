"""The garbage collector's pace during a simulation.

A run allocates millions of short-lived objects (steps' tuples, requests, rows) that
form no reference cycles, while everything it keeps alive (the requests, the trace)
sits in the older generations. At CPython's default young-generation threshold of 700
allocations, the collector runs thousands of times per 100,000 requests and now and
then walks every live request: about 5% of a run's CPU time, for no garbage. A run
raises the threshold while it lasts; cycles are still collected, only less often.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["YOUNG_THRESHOLD", "fewer_collections"]

YOUNG_THRESHOLD = 50_000  # allocations between young-generation collections


@contextmanager
def fewer_collections(young: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """Raise the young-generation threshold to ``young`` (never lower it) for the block,
    then restore the thresholds as they were."""
    thresholds = gc.get_threshold()
    if thresholds[0] < young:
        gc.set_threshold(young, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
