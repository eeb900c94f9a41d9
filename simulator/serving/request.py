"""A request inside the engine: its lifecycle and its progress through tokens.

Progress follows vLLM v1's single rule, with no separate prefill and decode phases::

    num_tokens = prompt_tokens + num_output_tokens      (tokens known so far)
    a step computes num_new_tokens <= num_tokens - num_computed_tokens;
    when num_computed_tokens reaches num_tokens, the step samples one more output token.

A prefill is a step with many new tokens, a decode a step with one, a chunk anything in
between; a request preempted by recompute resets ``num_computed_tokens`` to 0 and
recomputes prompt and outputs alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

__all__ = ["ALL_SHAREABLE", "Request", "RequestStatus"]

ALL_SHAREABLE = 2**62  # Request.num_shareable_tokens when not known: every token may be


class RequestStatus(IntEnum):
    """Ordered lifecycle: WAITING → RUNNING ⇄ (PREEMPTED | SWAPPED) → FINISHED."""

    WAITING = 0
    RUNNING = 1
    PREEMPTED = 2  # KV dropped; waits to recompute
    SWAPPED = 3  # KV on the host; waits to swap back in
    FINISHED = 4

    @property
    def is_finished(self) -> bool:
        return self is RequestStatus.FINISHED


@dataclass(slots=True, eq=False)
class Request:
    """One request's state; times are simulated seconds, ``nan`` until they happen.

    Invariants: ``0 <= num_computed_tokens <= num_tokens``;
    ``num_output_tokens <= output_tokens``; a FINISHED request has
    ``num_output_tokens == output_tokens`` and holds no KV blocks.
    """

    request_id: int  # position in the trace; also the tie-breaker of queue orders
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    priority: int = 0
    status: RequestStatus = RequestStatus.WAITING
    num_computed_tokens: int = 0
    num_output_tokens: int = 0
    replica_id: int = -1
    in_flight: bool = False  # inside a pipeline micro-batch that has not returned
    scheduled_step: int = -1  # the last step id that scheduled it
    num_preemptions: int = 0
    first_scheduled_s: float = math.nan
    first_token_s: float = math.nan
    last_token_s: float = math.nan
    finish_s: float = math.nan
    # Prefix caching only: what the prompt's tokens are (see simulator.serving.token_content),
    # and how many prompt tokens came from the cache at the last admission.
    prompt_segments: list[tuple[Any, int]] | None = None
    num_cached_tokens: int = 0
    # Of its tokens (prompt, then outputs), how many lead with content another request
    # also has; past them no block can be hit but by the request itself.
    num_shareable_tokens: int = ALL_SHAREABLE
    # Speculative decoding only: the request's own acceptance rate (None: the
    # deployment's), and its drafts verified and accepted so far.
    acceptance_rate: float | None = None
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    # Disaggregation only: a prefill-pool request keeps its KV when it finishes (its
    # transfer frees it); the decode-side request records where and when its KV moved.
    keep_kv: bool = False
    prefill_replica_id: int = -1
    prefill_done_s: float = math.nan
    transfer_start_s: float = math.nan
    transfer_end_s: float = math.nan

    @property
    def num_tokens(self) -> int:
        return self.prompt_tokens + self.num_output_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is RequestStatus.FINISHED
