"""Replaying part of a real trace, faster or slower: a window, a cap, a time scale.

Public traces (Azure LLM inference, BurstGPT, Mooncake) run for hours or days at rates of
their own. ``simulate --start S --duration D --max-requests N --time-scale X`` (or
``--rate R``) replays a piece of one, in this order::

    window      keep arrivals in [start_s, start_s + duration_s) of the trace's clock,
                then shift them so the window starts at 0
    cap         keep the first max_requests of those
    time scale  multiply every arrival by time_scale (0.5: gaps halve, twice the load)
      or rate   scale arrivals so the mean rate, (n - 1) / (last - first), is rate_per_s

Lengths, ids and per-request fields are kept; the trace's metadata records what was
applied. A window that keeps nothing, or both a time scale and a rate, is refused.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from profiles.errors import ClusterSimError, format_validation_error
from workloads.schema import MAX_ARRIVAL_S, RequestTrace

__all__ = ["ReplayWindow", "replay", "replay_window"]


class ReplayWindow(BaseModel):
    """Which part of a trace to replay, and how fast."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    start_s: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False,
                                  description="first second of the trace's clock kept")
    duration_s: float | None = Field(default=None, gt=0, le=1e9, allow_inf_nan=False,
                                     description="seconds of the trace's clock kept")
    max_requests: int | None = Field(default=None, ge=1, le=100_000_000,
                                     description="requests kept (the first)")
    time_scale: float | None = Field(default=None, gt=0, le=1e6, allow_inf_nan=False,
                                     description="factor on every arrival time")
    rate_per_s: float | None = Field(default=None, gt=0, le=1e7, allow_inf_nan=False,
                                     description="mean arrival rate after rescaling")

    @property
    def is_identity(self) -> bool:
        return all(value is None for value in self.model_dump().values())


def replay_window(**fields: float | int | None) -> ReplayWindow:
    """A checked window from flag values (``None``: not given).

    Raises:
        ClusterSimError: a value out of range, named by its field.
    """
    try:
        return ReplayWindow.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        raise ClusterSimError(format_validation_error(error, "replay window")) from None


def replay(trace: RequestTrace, window: ReplayWindow) -> RequestTrace:
    """``trace`` cut to ``window`` and rescaled (module docstring).

    Raises:
        ClusterSimError: nothing left to replay, a rate asked of fewer than two arrivals
            or of arrivals that all coincide, or both a time scale and a rate.
    """
    if window.is_identity:
        return trace
    if window.time_scale is not None and window.rate_per_s is not None:
        raise ClusterSimError("--time-scale and --rate both rescale arrivals; give one")
    out = trace.take(np.ones(len(trace), dtype=bool))  # a copy: the input stays as it was
    if window.start_s is not None or window.duration_s is not None:
        start = window.start_s or 0.0
        end = start + window.duration_s if window.duration_s is not None else math.inf
        out = out.take((out.arrival_s >= start) & (out.arrival_s < end))
        out.arrival_s = out.arrival_s - start
        if len(out) == 0:
            shown = f"{start:g}-{end:g} s" if math.isfinite(end) else f"from {start:g} s on"
            raise ClusterSimError(
                f"--start / --duration: no request of the trace arrives in {shown} (its "
                f"arrivals span {trace.arrival_s[0]:g}-{trace.arrival_s[-1]:g} s)")
    if window.max_requests is not None and window.max_requests < len(out):
        out = out.take(np.arange(len(out)) < window.max_requests)
    if window.time_scale is not None:
        out.arrival_s = out.arrival_s * window.time_scale
        _check_finite(out.arrival_s, f"--time-scale {window.time_scale:g}")
    if window.rate_per_s is not None:
        span = float(out.arrival_s[-1] - out.arrival_s[0]) if len(out) > 1 else 0.0
        if span <= 0:
            raise ClusterSimError(
                f"--rate {window.rate_per_s:g}: the replayed requests all arrive at once "
                f"({len(out)} of them), so they have no rate to rescale; use --time-scale")
        with np.errstate(over="ignore", invalid="ignore"):
            factor = (len(out) - 1) / span / window.rate_per_s
            out.arrival_s = out.arrival_s[0] + (out.arrival_s - out.arrival_s[0]) * factor
        _check_finite(out.arrival_s, f"--rate {window.rate_per_s:g}")
    out.metadata["replay"] = {key: value for key, value in window.model_dump().items()
                              if value is not None} | {"num_requests_in": len(trace)}
    return out


def _check_finite(arrival_s: np.ndarray, option: str) -> None:
    """Rescaled arrivals must stay finite times (a rate near zero sends them past any
    clock)."""
    if not (np.isfinite(arrival_s).all() and arrival_s.max() <= MAX_ARRIVAL_S):
        raise ClusterSimError(f"{option}: the rescaled arrivals run past {MAX_ARRIVAL_S:g} s "
                              f"(a trace's limit); use a rate or time scale that keeps them "
                              f"within it")
