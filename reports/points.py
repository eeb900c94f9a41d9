"""What makes a report's points identifiable: a colour and marker per GPU type, a hover
title per point with the plan's knobs, and human column names with units.

Hover titles ride in the SVG itself: each GPU type's points are one matplotlib
collection with an id (``gid``), and :func:`with_titles` puts a ``<title>`` inside each
of its markers, in the collection's order (the order the points were given in, NaN
points dropped first), which every browser shows on hover.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pandas as pd

__all__ = ["COLUMN_NAMES", "column_name", "gpu_styles", "plan_title", "short_gpu",
           "with_titles"]

_COLOURS = ("#1b6ca8", "#d1495b", "#2e933c", "#8d5fd3", "#e08e0b", "#00798c", "#6b4226")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")

# table columns as a person reads them: name and unit
COLUMN_NAMES = {
    "index": "#", "mode": "mode", "prefill_decode": "prefill : decode", "gpu": "GPU",
    "num_gpus": "GPUs", "replicas": "replicas", "tp": "TP", "pp": "PP", "dp": "DP",
    "ep": "EP", "policy": "policy", "status": "status",
    "goodput_rate_per_s": "goodput (req/s)", "goodput_per_gpu": "goodput per GPU (req/s)",
    "ttft_p90_s": "TTFT p90 (s)", "tpot_p90_s": "TPOT p90 (s)",
    "cost_per_mtok_usd": "cost (USD per M tokens)",
    "energy_j_per_token": "energy (J per token)", "step_s": "step (s)", "mfu": "MFU",
    "cost_per_step_usd": "cost (USD per step)",
    "memory_headroom_gib": "memory headroom (GiB)", "micro_batch": "micro-batch",
    "plan.tp": "TP", "plan.pp": "PP", "plan.dp": "DP", "plan.cp": "CP", "plan.ep": "EP",
    "plan.zero_stage": "ZeRO stage", "plan.recompute": "recompute",
    "plan.schedule": "schedule", "plan.virtual_stages": "virtual stages",
    "plan.sequence_parallel": "sequence parallel", "plan.offload": "offload",
    "max_num_seqs": "max sequences", "max_num_batched_tokens": "token budget",
    "simulations": "simulations", "num_simulations": "simulations",
    "scheduler.policy": "policy", "scheduler.max_num_seqs": "max sequences",
    "scheduler.max_num_batched_tokens": "token budget",
}
_BOUND_NAMES = {"goodput_rate_per_s": "goodput (req/s)", "ttft_p90_s": "TTFT p90 (s)",
                "tpot_p90_s": "TPOT p90 (s)", "goodput_per_gpu": "goodput per GPU (req/s)",
                "cost_per_mtok_usd": "cost (USD per M tokens)"}


def column_name(column: str) -> str:
    """``goodput_rate_per_s`` -> ``goodput (req/s)``; ``bound.ttft_p90_s`` -> ``bound:
    TTFT p90 (s)``; anything unnamed keeps its field name with dots and underscores
    as spaces."""
    if column in COLUMN_NAMES:
        return COLUMN_NAMES[column]
    if column.startswith("bound."):
        rest = column.removeprefix("bound.")
        return f"bound: {_BOUND_NAMES.get(rest, rest.replace('_', ' '))}"
    return column.replace("plan.", "").replace("_", " ")


def short_gpu(name: str) -> str:
    """``H100-SXM5-80GB + A100-SXM4-80GB@300W`` -> ``H100 + A100@300W`` (legends)."""
    def short(part: str) -> str:
        gpu, at, limit = part.strip().partition("@")
        return gpu.split("-")[0] + at + limit
    return " + ".join(short(part) for part in name.split("+"))


def gpu_styles(gpus: list[str]) -> dict[str, tuple[str, str]]:
    """(colour, marker) per GPU type, fixed by the sorted type names."""
    return {gpu: (_COLOURS[i % len(_COLOURS)], _MARKERS[i % len(_MARKERS)])
            for i, gpu in enumerate(sorted(gpus))}


def plan_title(row: Any) -> str:
    """A plan's hover title: its index, GPUs, layout and metrics."""
    get = row.get if hasattr(row, "get") else lambda key, default=None: getattr(
        row, key, default)
    parts = [f"#{get('index')}", f"{get('num_gpus')} x {get('gpu')}"]
    layout = get("prefill_decode")
    if isinstance(layout, str) and layout:
        parts.append(f"disaggregated {layout}")
    else:
        parts.append(f"{get('replicas')} x TP{get('tp')} PP{get('pp')}"
                     + (f" DP{get('dp')} EP{get('ep')}" if (get("ep") or 1) > 1 else ""))
    policy = get("policy")
    if isinstance(policy, str):
        parts.append(policy)
    for key, label, scale, unit in (("goodput_per_gpu", "goodput/GPU", 1, " req/s"),
                                    ("ttft_p90_s", "TTFT p90", 1e3, " ms"),
                                    ("tpot_p90_s", "TPOT p90", 1e3, " ms"),
                                    ("cost_per_mtok_usd", "", 1, " USD/Mtok")):
        value = get(key)
        if value is not None and not pd.isna(value):
            parts.append(f"{label} {value * scale:.3g}{unit}".strip())
    return ", ".join(parts)


def with_titles(svg: str, titles: dict[str, list[str]]) -> str:
    """``svg`` with a ``<title>`` in each marker of the collections named in ``titles``.

    A collection's markers are ``<use>`` elements of one marker ``<defs>``, or, for a
    collection of one point, a single ``<path>`` that matplotlib draws in place."""
    for gid, names in titles.items():
        start = svg.find(f'<g id="{gid}">')
        if start < 0:
            continue
        end = _group_end(svg, start)
        group = svg[start:end]
        marker = r"(<use [^>]*?)/>" if "<use " in group else r"(<path [^>]*?)/>"
        parts = re.split(marker, group)
        # parts: text, marker, text, marker, ..., text; the i-th marker gets the i-th name
        out = [parts[0]]
        for i, (element, text) in enumerate(zip(parts[1::2], parts[2::2], strict=True)):
            tag = "use" if element.startswith("<use") else "path"
            out.append(f"{element}><title>{html.escape(names[i])}</title></{tag}>"
                       if i < len(names) else f"{element}/>")
            out.append(text)
        svg = svg[:start] + "".join(out) + svg[end:]
    return svg


def _group_end(svg: str, start: int) -> int:
    """Where the ``<g>`` element opening at ``start`` closes (its ``</g>``'s start)."""
    depth, at = 0, start
    for match in re.finditer(r"<g[ >]|</g>", svg[start:]):
        at = start + match.start()
        depth += -1 if match.group(0) == "</g>" else 1
        if depth == 0:
            return at
    return len(svg)
