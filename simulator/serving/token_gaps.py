"""Inter-token gaps of a run, run-length encoded: what the scheduler writes as tokens are
sampled and what the metrics read for TBT percentiles.

In one step most decodes share the same gap since their previous token, so a step adds a
few (gap, count) runs rather than one float per token: 100,000 requests x 211 tokens
would otherwise be 21 M floats. Percentiles over the runs are exact.
"""

from __future__ import annotations

import math
from array import array

__all__ = ["TokenGaps"]


class TokenGaps:
    """Inter-token gaps as (value, count) runs: exact percentiles, O(distinct runs) memory.

    Writers append runs with :meth:`add_run`; adjacent
    equal gaps may land in separate runs, which percentiles do not mind.
    """

    def __init__(self) -> None:
        self.values = array("d")
        self.counts = array("q")

    def add_run(self, gap_s: float, count: int) -> None:
        if count:
            self.values.append(gap_s)
            self.counts.append(count)

    @staticmethod
    def pending() -> tuple[float, int]:
        """An empty run to start encoding from: (nan, 0)."""
        return math.nan, 0
