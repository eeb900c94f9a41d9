"""The serving trace: what a request is, in files and in memory.

On disk (JSON or JSONL), a trace is a list of requests, or an object
``{"metadata": {...}, "requests": [...]}``; each request::

    {"arrival_s": 0.42, "prompt_tokens": 1155, "output_tokens": 211,
     "request_id": 7, "prefix_id": "sys-1", "prefix_tokens": 100,
     "session_id": "user-3", "priority": 0, "block_hashes": [11, 12], "think_time_s": 5}

Only the first three fields are required. A request with ``think_time_s`` whose session
has an earlier turn is sent closed-loop: at the later of its ``arrival_s`` and the
previous turn's finish plus the think time. Files are validated with pydantic (one bad
field gives one line naming it); in memory a trace is a :class:`RequestTrace` of numpy
columns sorted by arrival, which is what generators make and the simulator reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from profiles.errors import ClusterSimError

__all__ = ["MAX_ARRIVAL_S", "MAX_TOKENS", "RequestRecord", "RequestTrace", "TraceFile"]

# The bounds every trace is held to, whatever its format: a token count fits in 32 bits
# (ten thousand times today's longest contexts), and an arrival lies within about 30
# years, where float64 still resolves 0.1 us (at 1e15 s it resolves 0.1 s, and a run's
# latencies round to zero).
MAX_TOKENS = 2**31 - 1
MAX_ARRIVAL_S = 1e9


class RequestRecord(BaseModel):
    """One request as a trace file states it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    arrival_s: float = Field(ge=0, le=MAX_ARRIVAL_S,
                             description="seconds from the start of the trace")
    prompt_tokens: int = Field(ge=1, le=MAX_TOKENS)
    output_tokens: int = Field(ge=1, le=MAX_TOKENS,
                               description="tokens to generate (ignore_eos style)")
    request_id: int | str | None = None
    prefix_id: str | None = None
    prefix_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    prompt_id: str | None = Field(
        default=None, description="requests with the same prompt_id send the same prompt "
        "(after the shared prefix): a benchmark client cycling through its prompts")
    session_id: str | None = None
    priority: int = Field(default=0, ge=-(2**31), le=2**31 - 1)
    block_hashes: list[Annotated[int, Field(ge=-(2**63), lt=2**63)]] | None = None
    think_time_s: float | None = Field(
        default=None, ge=0, le=MAX_ARRIVAL_S, allow_inf_nan=False,
        description="closed loop: sent this long after the session's previous turn finishes")
    acceptance_rate: float | None = Field(
        default=None, ge=0, le=1, allow_inf_nan=False, description="speculative decoding: "
        "this request's draft acceptance rate (None: the deployment's)")

    @field_validator("request_id")
    @classmethod
    def _id_in_64_bits(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise ValueError("a numeric id must fit in 64 bits; write a longer one as a "
                             "string")
        return value

    @field_validator("arrival_s")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number of seconds")
        return value

    @model_validator(mode="after")
    def _prefix_within_prompt(self) -> RequestRecord:
        if self.prefix_tokens is not None and self.prefix_tokens > self.prompt_tokens:
            raise ValueError(
                f"prefix_tokens={self.prefix_tokens} exceeds prompt_tokens={self.prompt_tokens}"
            )
        return self


def _checked(values: Any, name: str, low: float, high: float, dtype: Any) -> np.ndarray:
    """A column as ``dtype`` when every value is a finite number in [low, high]."""
    try:
        numbers = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ClusterSimError(f"trace column {name}: not all numbers") from None
    bad = ~np.isfinite(numbers) | (numbers < low) | (numbers > high)
    if dtype is np.int64:
        bad |= numbers != np.round(numbers)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ClusterSimError(f"trace request {index}: {name} must be "
                              f"{'an integer' if dtype is np.int64 else 'a number'} in "
                              f"[{low:g}, {high:g}], got {numbers[index]!r}")
    if dtype is np.int64:
        return np.asarray(values, dtype=np.int64) if np.asarray(values).dtype.kind in "iu" \
            else numbers.astype(np.int64)
    return numbers


class TraceFile(BaseModel):
    """A whole JSON trace file in its object form."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    metadata: dict[str, Any] = {}
    requests: list[RequestRecord] = Field(min_length=1)


@dataclass
class RequestTrace:
    """A serving trace as columns, sorted by arrival (stable: ties keep file order).

    Attributes:
        arrival_s: arrival times in seconds, non-decreasing. [num_requests]
        prompt_tokens: prompt lengths. [num_requests]
        output_tokens: tokens each request generates. [num_requests]
        priority: lower runs first under the priority queue order. [num_requests]
        request_ids: the ids the file gave (its row numbers when it gave none).
        extras: optional per-request fields (prefix_id, session_id, ...) by name.
        metadata: where the trace came from (generator parameters, source file).
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    priority: np.ndarray
    request_ids: list[int | str]
    extras: dict[str, list[Any]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        for name in ("prompt_tokens", "output_tokens", "priority"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"RequestTrace column {name} has the wrong length")
        if n and np.any(np.diff(self.arrival_s) < 0):
            raise ValueError("RequestTrace.arrival_s must be sorted; use RequestTrace.from_columns")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @classmethod
    def from_columns(
        cls,
        arrival_s: Any,
        prompt_tokens: Any,
        output_tokens: Any,
        priority: Any | None = None,
        request_ids: list[int | str] | None = None,
        extras: dict[str, list[Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> RequestTrace:
        """Build a trace from unsorted columns, sorting stably by arrival.

        Raises:
            ClusterSimError: an arrival or a token count out of bounds (NaN, infinite,
                negative, over MAX_ARRIVAL_S or MAX_TOKENS), naming the request.
        """
        arrival = _checked(arrival_s, "arrival_s", 0.0, MAX_ARRIVAL_S, np.float64)
        prompt_tokens = _checked(prompt_tokens, "prompt_tokens", 1, MAX_TOKENS, np.int64)
        output_tokens = _checked(output_tokens, "output_tokens", 1, MAX_TOKENS, np.int64)
        order = np.argsort(arrival, kind="stable")
        n = len(arrival)
        ids: list[int | str] = list(range(n)) if request_ids is None else list(request_ids)
        prio = np.zeros(n, dtype=np.int64) if priority is None else np.asarray(priority, np.int64)
        return cls(
            arrival_s=arrival[order],
            prompt_tokens=prompt_tokens[order],
            output_tokens=output_tokens[order],
            priority=prio[order],
            request_ids=[ids[i] for i in order],
            extras={name: [values[i] for i in order] for name, values in (extras or {}).items()},
            metadata=dict(metadata or {}),
        )

    @classmethod
    def from_records(
        cls, records: list[RequestRecord], metadata: dict[str, Any] | None = None
    ) -> RequestTrace:
        extras: dict[str, list[Any]] = {}
        for name in ("prefix_id", "prefix_tokens", "prompt_id", "session_id", "block_hashes",
                     "think_time_s", "acceptance_rate"):
            values = [getattr(record, name) for record in records]
            if any(value is not None for value in values):
                extras[name] = values
        return cls.from_columns(
            arrival_s=[r.arrival_s for r in records],
            prompt_tokens=[r.prompt_tokens for r in records],
            output_tokens=[r.output_tokens for r in records],
            priority=[r.priority for r in records],
            request_ids=[i if r.request_id is None else r.request_id
                         for i, r in enumerate(records)],
            extras=extras,
            metadata=metadata,
        )

    def take(self, keep: np.ndarray) -> RequestTrace:
        """The requests where ``keep`` (a boolean mask) is true, in order, every column
        and field with them."""
        index = np.flatnonzero(keep)
        return RequestTrace(
            arrival_s=self.arrival_s[index], prompt_tokens=self.prompt_tokens[index],
            output_tokens=self.output_tokens[index], priority=self.priority[index],
            request_ids=[self.request_ids[i] for i in index],
            extras={name: [values[i] for i in index] for name, values in self.extras.items()},
            metadata=dict(self.metadata))

    def to_records(self) -> list[dict[str, Any]]:
        """Plain dicts in the file schema, omitting fields that are unset."""
        rows: list[dict[str, Any]] = []
        for i in range(len(self)):
            row: dict[str, Any] = {
                "request_id": self.request_ids[i],
                "arrival_s": round(float(self.arrival_s[i]), 6),
                "prompt_tokens": int(self.prompt_tokens[i]),
                "output_tokens": int(self.output_tokens[i]),
            }
            if self.priority[i]:
                row["priority"] = int(self.priority[i])
            for name, values in self.extras.items():
                if values[i] is not None:
                    row[name] = values[i]
            rows.append(row)
        return rows

    def stats(self) -> dict[str, float]:
        """Means, medians and rates a user checks a trace by."""
        duration = float(self.arrival_s[-1] - self.arrival_s[0]) if len(self) > 1 else 0.0
        return {
            "num_requests": len(self),
            "duration_s": round(duration, 3),
            "rate_per_s": round((len(self) - 1) / duration, 4) if duration > 0 else 0.0,
            "prompt_tokens_mean": round(float(self.prompt_tokens.mean()), 2),
            "prompt_tokens_p50": float(np.median(self.prompt_tokens)),
            "prompt_tokens_max": int(self.prompt_tokens.max()),
            "output_tokens_mean": round(float(self.output_tokens.mean()), 2),
            "output_tokens_p50": float(np.median(self.output_tokens)),
            "output_tokens_max": int(self.output_tokens.max()),
        }
