"""Interpolating measured kernel times: monotone cubic in log-log space, per shape family.

A family is the set of rows sharing every shape column but one size (a GEMM's n and k,
varying m; a decode kernel's head layout, varying KV tokens). Within a family, time is
interpolated in (log size, log time) by a monotone piecewise cubic (Fritsch and Carlson
1980, "PCHIP"): it passes through every measured point, never overshoots between two
neighbours (monotone data stay monotone), and follows the bend where a kernel turns from
launch-bound to throughput-bound, which straight segments cut across::

    log t
      │            ●
      │        ●╯      exact at measured points; monotone between two neighbours;
      │   ●──╯         outside [smallest, largest] measured size: no answer (the caller
      │ ●─             falls back to the roofline and counts it)
      └────────────── log size

Leave-one-out error (drop a point, predict it from the rest) measures how well a table
supports interpolation; ``clustersim profile check`` reports it per operation.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Hashable, Sequence

import numpy as np

__all__ = ["Curve", "build_curves", "leave_one_out_errors"]


class Curve:
    """Time as a function of one size, from measured (size, time) points."""

    def __init__(self, sizes: Sequence[float], times: Sequence[float]) -> None:
        order = np.argsort(np.asarray(sizes, dtype=np.float64), kind="stable")
        sizes_sorted = np.asarray(sizes, dtype=np.float64)[order]
        times_sorted = np.asarray(times, dtype=np.float64)[order]
        # Repeated sizes (re-measurements) keep their median.
        unique, starts = np.unique(sizes_sorted, return_index=True)
        ends = [*starts[1:], len(sizes_sorted)]
        medians = [float(np.median(times_sorted[a:b])) for a, b in zip(starts, ends,
                                                                          strict=True)]
        self.sizes = [float(x) for x in unique]
        self.times = medians
        self._log_sizes = [math.log(x) for x in self.sizes]
        self._log_times = [math.log(t) for t in self.times]
        self._slopes = _pchip_slopes(self._log_sizes, self._log_times)

    def __call__(self, size: float) -> float | None:
        """Interpolated time at ``size``; ``None`` outside the measured range."""
        if size < self.sizes[0] or size > self.sizes[-1]:
            return None
        index = bisect.bisect_left(self.sizes, size)
        if self.sizes[index] == size:
            return self.times[index]
        x0, x1 = self._log_sizes[index - 1], self._log_sizes[index]
        y0, y1 = self._log_times[index - 1], self._log_times[index]
        d0, d1 = self._slopes[index - 1], self._slopes[index]
        width = x1 - x0
        u = (math.log(size) - x0) / width
        # Cubic Hermite basis on [x0, x1].
        h00 = (1 + 2 * u) * (1 - u) ** 2
        h10 = u * (1 - u) ** 2
        h01 = u * u * (3 - 2 * u)
        h11 = u * u * (u - 1)
        return math.exp(h00 * y0 + h10 * width * d0 + h01 * y1 + h11 * width * d1)


def _pchip_slopes(xs: list[float], ys: list[float]) -> list[float]:
    """Fritsch-Carlson derivatives: weighted harmonic means of neighbouring secants, zero
    where the data turn, one-sided at the ends; they keep each piece monotone."""
    n = len(xs)
    if n == 1:
        return [0.0]
    secants = [(ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]) for i in range(n - 1)]
    if n == 2:
        return [secants[0], secants[0]]
    slopes = [0.0] * n
    for i in range(1, n - 1):
        left, right = secants[i - 1], secants[i]
        if left * right <= 0:
            continue
        w1 = 2 * (xs[i + 1] - xs[i]) + (xs[i] - xs[i - 1])
        w2 = (xs[i + 1] - xs[i]) + 2 * (xs[i] - xs[i - 1])
        slopes[i] = (w1 + w2) / (w1 / left + w2 / right)
    for end, secant, h_end, h_next, secant_next in (
        (0, secants[0], xs[1] - xs[0], xs[2] - xs[1], secants[1]),
        (n - 1, secants[-1], xs[-1] - xs[-2], xs[-2] - xs[-3], secants[-2]),
    ):
        slope = ((2 * h_end + h_next) * secant - h_end * secant_next) / (h_end + h_next)
        if slope * secant <= 0:
            slope = 0.0
        elif secant * secant_next <= 0 and abs(slope) > abs(3 * secant):
            slope = 3 * secant
        slopes[end] = slope
    return slopes


def build_curves(keys: Sequence[Hashable], sizes: Sequence[float], times: Sequence[float]
                 ) -> dict[Hashable, Curve]:
    """One curve per family key from parallel columns."""
    grouped: dict[Hashable, tuple[list[float], list[float]]] = {}
    for key, size, time_s in zip(keys, sizes, times, strict=True):
        xs, ys = grouped.setdefault(key, ([], []))
        xs.append(float(size))
        ys.append(float(time_s))
    return {key: Curve(xs, ys) for key, (xs, ys) in grouped.items()}


def leave_one_out_errors(curves: dict[Hashable, Curve]) -> list[float]:
    """Relative errors of predicting each interior point from its family without it.

    Dropping point i changes the interpolant only between its neighbours i-1 and i+1,
    and PCHIP's slope at a point depends on that point's own neighbours alone; so the
    family without i, evaluated at i, equals the curve through the two points on each
    side of i (float for float: the same slopes from the same operands), and each point
    costs a curve of at most four points rather than a rebuild of its whole family."""
    errors: list[float] = []
    for curve in curves.values():
        sizes, times = curve.sizes, curve.times
        n = len(sizes)
        for i in range(1, n - 1):
            low, high = max(0, i - 2), min(n, i + 3)
            rest = Curve(sizes[low:i] + sizes[i + 1:high], times[low:i] + times[i + 1:high])
            predicted = rest(sizes[i])
            assert predicted is not None
            errors.append(abs(predicted - times[i]) / times[i])
    return errors
