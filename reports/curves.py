"""Latency-against-load curves of a sweep or a comparison, as one SVG figure.

Four panels share the request rate (log) on their x axis, or the client concurrency for
a closed-loop sweep: TTFT p90, TPOT p90, E2E p90 (seconds, log) and achieved throughput;
each deployment is one line, overloaded points are hollow, and the SLOs, when given, are
dashed lines.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

__all__ = ["curves_svg"]

_PANELS = (("ttft_p90_s", "TTFT p90 (s)"), ("tpot_p90_s", "TPOT p90 (s)"),
           ("e2e_p90_s", "E2E p90 (s)"), ("requests_per_s", "throughput (req/s)"))


def curves_svg(rows: pd.DataFrame, ttft_slo_s: float | None = None,
               tpot_slo_s: float | None = None) -> str:
    """The curves of ``rows`` (``planners.sweep.SWEEP_COLUMNS``) as an SVG document."""
    closed = "concurrency" in rows and rows["concurrency"].notna().all() and len(rows)
    x = "concurrency" if closed else "rate_per_s"
    figure, axes = plt.subplots(2, 2, figsize=(10, 7))
    for axis, (column, label) in zip(axes.flat, _PANELS, strict=True):
        for name, part in rows.groupby("deployment", sort=False):
            part = part.sort_values(x)
            line, = axis.plot(part[x], part[column], marker="o", label=str(name))
            over = part[part["state"] != "STABLE"]
            axis.scatter(over[x], over[column], s=60, facecolors="white",
                         edgecolors=line.get_color(), zorder=3)
        slo = {"ttft_p90_s": ttft_slo_s, "tpot_p90_s": tpot_slo_s}.get(column)
        if slo is not None:
            axis.axhline(slo, color="grey", linestyle="--", linewidth=1, label="SLO")
        axis.set_xscale("log")
        if column != "requests_per_s":
            axis.set_yscale("log")
        axis.set_xlabel("client concurrency (requests in flight)" if closed
                        else "offered rate (req/s)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3, which="both")
    axes.flat[0].legend(fontsize=8, title="hollow: OVERLOADED", title_fontsize=7)
    figure.suptitle("latency against load", fontsize=12)
    figure.tight_layout()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Creator": None, "Date": None,
                                                   "Format": None, "Type": None})
    plt.close(figure)
    return buffer.getvalue()
