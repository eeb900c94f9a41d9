"""The seam between the reference driver and a model that runs batch steps for real.

The driver (``validation/reference/driver.py``) owns requests, scheduling and KV block
tables; an executor owns weights, the KV cache memory and kernels. A step crosses the
seam as :class:`StepRows` and comes back as the sampled tokens and the step's measured
device time. ``validation/reference/model.py`` is the torch executor; tests also drive the
driver with a fake one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["StepExecutor", "StepRows"]


@dataclass(frozen=True, slots=True)
class StepRows:
    """One step's rows (one per scheduled request), in the order their tokens are laid out.

    Attributes:
        token_ids: every new token of the step, row after row (Σ query_lens of them).
        query_lens: new tokens per row.
        context_lens: tokens of each row already in the KV cache.
        block_tables: each row's physical KV blocks, enough for context + query tokens.
        sampled: whether each row samples a token after this step.
    """

    token_ids: Sequence[int]
    query_lens: Sequence[int]
    context_lens: Sequence[int]
    block_tables: Sequence[Sequence[int]]
    sampled: Sequence[bool]


class StepExecutor(Protocol):
    """Runs steps on a device."""

    def run(self, rows: StepRows) -> tuple[list[int], float]:
        """Run one step: (the next token of each sampled row in row order, device
        seconds the step took)."""
        ...
