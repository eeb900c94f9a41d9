"""The HTML report: one self-contained file a deployment owner can mail around.

No network, no external scripts or fonts: plots are inline SVG from matplotlib, the
table sorts with a few lines of inline JavaScript. Sections:

1. inputs (model, workload, SLOs, search space) and the recommended plan
2. Pareto frontiers: goodput per GPU vs TTFT p90 and vs TPOT p90, cost per million tokens
   vs latency (serving); step time and MFU vs GPUs, cost per step (training)
3. the Pareto plans, every knob and metric, sortable
4. the recommended plan in detail: latency CDFs, batch size and KV-cache use over time,
   memory per GPU (serving, re-simulated at its goodput rate); the step timeline and
   memory (training)
5. how accurate this is: validation errors by group
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

import validation
from planners.objectives import (
    STEADY,
    SteadyState,
    request_lifetime_s,
    steady_attainment,
    steady_trace,
)
from planners.sweep import sweep
from profiles.errors import ClusterSimError
from reports.curves import curves_svg
from reports.points import column_name, gpu_styles, plan_title, short_gpu, with_titles
from simulator.serving.config import build_deployment
from simulator.serving.engine import SimulationResult, simulate
from simulator.training.step import simulate_training
from validation.error_bars import load_error_bars
from workloads.loaders import load_workload
from workloads.training import ParallelPlan, TrainingJob

__all__ = ["plan_report", "run_report"]

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1d1d1f}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f3f3f3;cursor:pointer}tr.best{background:#fff4cc}.plots svg{margin:4px}
code{background:#f5f5f5;padding:1px 3px}.note{color:#555;font-size:12px}
.wide{overflow-x:auto;max-width:100%}code{overflow-wrap:anywhere}
"""
_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach((th,i)=>th.addEventListener('click',()=>{
const t=th.closest('table'),b=t.tBodies[0],r=[...b.rows],d=th.dataset.d=th.dataset.d=='a'?'d':'a';
r.sort((x,y)=>{const p=x.cells[i].innerText,q=y.cells[i].innerText,m=parseFloat(p),n=parseFloat(q);
const c=isNaN(m)||isNaN(n)?p.localeCompare(q):m-n;return d=='a'?c:-c});
r.forEach(e=>b.appendChild(e))}));
"""


def _svg(figure: plt.Figure) -> str:
    """The figure as inline SVG with no URLs in it: no metadata block, and no namespace
    declarations (an HTML5 parser gives inline <svg> and xlink:href their namespaces)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight",
                   metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    plt.close(figure)
    return _inline(buffer.getvalue())


def _inline(text: str) -> str:
    """An SVG document as inline SVG: from its root, without namespace declarations."""
    text = text[text.index("<svg"):]
    for declaration in (' xmlns="http://www.w3.org/2000/svg"',
                        ' xmlns:xlink="http://www.w3.org/1999/xlink"'):
        text = text.replace(declaration, "")
    return text


def _scatter(frame: pd.DataFrame, x: str, y: str, pareto: set[int], best: int | None,
             xlabel: str, ylabel: str, title: str, vline: float | None = None,
             hline: float | None = None, maximize_y: bool = True) -> str:
    """Plans as points, a colour and marker per GPU type (a black edge: on the Pareto
    set), each with a hover title of its knobs and metrics."""
    figure, axis = plt.subplots(figsize=(5.2, 3.6))
    frame = frame.dropna(subset=[x, y])
    group = "gpu" if "gpu" in frame else None
    styles = gpu_styles([str(g) for g in frame[group].unique()] if group else ["plans"])
    titles: dict[str, list[str]] = {}
    for gpu, (colour, marker) in styles.items():
        part = frame[frame[group].astype(str) == gpu] if group else frame
        for on_front in (False, True):
            points = part[part["index"].isin(pareto) == on_front]
            if points.empty:
                continue
            gid = f"pts-{len(titles)}"
            titles[gid] = [plan_title(row) for row in points.to_dict(orient="records")]
            collection = axis.scatter(
                points[x], points[y], s=40 if on_front else 16, color=colour, marker=marker,
                edgecolors="black" if on_front else "none", linewidths=0.8,
                alpha=1.0 if on_front else 0.55,
                label=short_gpu(gpu) if not on_front or part["index"].isin(pareto).all()
                else None)
            collection.set_gid(gid)
    axis.scatter([], [], s=40, color="white", edgecolors="black", label="on the Pareto set")
    # NOTE: the Pareto set spans every objective, so in one 2-D view its plans are marked,
    # not joined; the step line is the frontier of just the two plotted metrics.
    frontier = _frontier_2d(frame, x, y, maximize_y)
    axis.step(frontier[x], frontier[y], where="post", color="#d1495b", linewidth=1,
              alpha=0.6, label="frontier of these two")
    if best is not None and best in set(frame["index"]):
        chosen = frame[frame["index"] == best]
        axis.scatter(chosen[x], chosen[y], marker="*", s=220, color="#edae49", zorder=5,
                     edgecolor="black", label="recommended")
    if vline is not None:
        axis.axvline(vline, color="grey", linestyle="--", linewidth=1, label="SLO")
    if hline is not None:
        axis.axhline(hline, color="grey", linestyle="--", linewidth=1, label="SLO")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=11)
    axis.xaxis.set_major_locator(MaxNLocator(5))  # ticks that do not run together
    axis.yaxis.set_major_locator(MaxNLocator(6))
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    axis.grid(alpha=0.3)
    return with_titles(_svg(figure), titles)


_LEADING = ("index", "mode", "prefill_decode", "gpu", "num_gpus", "replicas", "tp", "pp",
            "dp", "ep",
            "plan.tp", "plan.pp", "plan.dp", "plan.cp", "plan.zero_stage", "micro_batch",
            "plan.recompute", "plan.schedule", "goodput_rate_per_s", "goodput_per_gpu",
            "ttft_p90_s", "tpot_p90_s", "cost_per_mtok_usd", "energy_j_per_token", "step_s",
            "mfu", "cost_per_step_usd", "memory_headroom_gib")


def _frontier_2d(frame: pd.DataFrame, x: str, y: str, maximize_y: bool) -> pd.DataFrame:
    """Points no other point beats on both plotted metrics (lower x; higher or lower y)."""
    sign = 1.0 if maximize_y else -1.0
    ordered = frame.sort_values([x, y], ascending=[True, not maximize_y])
    best_y = -np.inf
    keep = []
    for index, value in zip(ordered.index, ordered[y], strict=True):
        if sign * value > best_y:
            keep.append(index)
            best_y = sign * value
    return ordered.loc[keep]


def _table(rows: list[dict[str, Any]], best: int | None) -> str:
    if not rows:
        return "<p>No plan met the SLOs.</p>"
    present = [c for c in rows[0] if c not in ("deployment", "reason")]
    columns = [c for c in _LEADING if c in present] + [c for c in present
                                                        if c not in _LEADING]
    head = "".join(f"<th title='{html.escape(c)}'>{html.escape(column_name(c))}</th>"
                   for c in columns)
    body = []
    for row in rows:
        cells = "".join(f"<td>{html.escape(_fmt(row.get(c)))}</td>" for c in columns)
        css = " class='best'" if row.get("index") == best else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return (f"<div class='wide'><table class='sortable'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _page(title: str, sections: list[str]) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>"
            f"{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{''.join(sections)}<script>{_SORT_JS}</script>"
            f"</body></html>\n")


def _run_section(result: SimulationResult, title: str, note: str = "") -> str:
    """Latency CDFs, batch size and KV use over time, memory per GPU, for one run."""
    assert result.requests is not None and result.summary is not None
    rows = result.requests
    plots = []
    figure, axis = plt.subplots(figsize=(5.2, 3.6))
    for column, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E")):
        values = np.sort(rows[column].dropna().to_numpy())
        if values.size:
            axis.step(values, np.arange(1, values.size + 1) / values.size, label=label)
    axis.set_xscale("log")
    axis.set_xlabel("seconds")
    axis.set_ylabel("fraction of requests")
    axis.set_title("latency CDFs", fontsize=11)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    plots.append(_svg(figure))
    events = [e for e in (result.trace or {}).get("traceEvents", []) if e.get("ph") == "C"]
    if events:
        times = np.array([e["ts"] for e in events]) / 1e6
        batch = np.array([e["args"]["requests"] for e in events])
        kv = np.array([e["args"]["kv_used_blocks"] for e in events])
        blocks = sum(result.summary["kv_cache"]["blocks_per_replica"])
        figure, axes = plt.subplots(2, 1, figsize=(5.2, 3.6), sharex=True)
        axes[0].plot(times, batch, linewidth=0.6)
        axes[0].set_ylabel("batch size")
        axes[1].plot(times, kv / max(blocks, 1) * len(result.summary["kv_cache"][
            "blocks_per_replica"]), linewidth=0.6, color="#d1495b")
        axes[1].set_ylabel("KV use")
        axes[1].set_xlabel("simulated seconds")
        axes[0].set_title("batch size and KV-cache use over time", fontsize=11)
        plots.append(_svg(figure))
    memory = result.summary["run"]["memory_per_gpu"]
    parts = {k: memory[k] for k in ("weights_gib", "activations_gib", "runtime_overhead_gib",
                                    "kv_cache_gib")}
    figure, axis = plt.subplots(figsize=(5.2, 1.8))
    left = 0.0
    for name, value in parts.items():
        axis.barh([0], [value], left=left, label=name.replace("_gib", ""))
        left += value
    axis.set_yticks([])
    axis.set_xlabel("GiB per GPU")
    axis.set_title("memory per GPU", fontsize=11)
    axis.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.45))
    plots.append(_svg(figure))
    s = result.summary
    facts = (f"TTFT p90 {s['ttft_s']['p90'] * 1e3:.0f} ms, TPOT p90 "
             f"{(s['tpot_s']['p90'] or 0) * 1e3:.1f} ms, {s['throughput']['requests_per_s']:.2f}"
             f" req/s, MFU {s['mfu']:.1%}, KV peak {s['kv_cache']['peak_usage']:.0%}")
    note_html = f"<p class='note'>{html.escape(note)}</p>" if note else ""
    return (f"<h2>{html.escape(title)}</h2><p>{html.escape(facts)}</p>{note_html}"
            f"<div class='plots'>{''.join(plots)}</div>")


def _sweep_section(deployment: Any, trace: Any, goodput: float, rule: SteadyState,
                   ttft: float, tpot: float) -> str:
    """The recommended plan's latency against load, from a quarter of its goodput to a
    quarter above it."""
    rates = [goodput * f for f in (0.25, 0.5, 0.75, 1.0, 1.25)]
    rows = sweep(deployment, trace, rates, name="recommended", ttft_slo_s=ttft,
                 tpot_slo_s=tpot, rule=rule)
    return ("<h2>Latency against load (recommended plan)</h2><p class='note'>Each point a "
            "steady-state run at that offered rate (clustersim sweep); hollow points are "
            "OVERLOADED; dashed lines are the SLOs.</p>"
            f"<div class='plots'>{_inline(curves_svg(rows, ttft, tpot))}</div>")


# The validation groups whose errors bear on each kind of plan.
_GROUPS_FOR = {"serving": ("kernels", "collectives"),
               "training": ("training", "kernels", "collectives")}


def _accuracy_section(gpus: set[str], kind: str = "serving") -> str:
    """The errors that bear on this plan: for serving, the real vLLM runs on its GPUs
    (the committed error bars) and the kernel and collective groups; for training, the
    published training runs and the same two groups."""
    try:
        records = validation.load_records()
    except ClusterSimError:
        return ""
    rows = validation.predict_records(records)
    groups = validation.group_errors(rows)
    groups = groups[groups["group"].isin(_GROUPS_FOR[kind])].rename(columns=lambda c: {
        "num_records": "records", "median_error_pct": "median error %",
        "p90_error_pct": "p90 error %", "max_error_pct": "max error %"}.get(c, c))
    table = groups.to_html(index=False, float_format="%.1f", border=0)
    serving = ""
    if kind == "serving":
        bars = load_error_bars()
        lines = [f"<tr><td>{html.escape(gpu)}</td><td>"
                 f"{html.escape(metric.split('_')[0].upper())}"
                 f"</td><td>{row['runs']}</td><td>{row['p50'] * 100:+.1f}</td><td>"
                 f"{row['p10'] * 100:+.1f} to {row['p90'] * 100:+.1f}</td></tr>"
                 for gpu in sorted(gpus) if gpu in bars
                 for metric, row in sorted(bars[gpu].items()) if isinstance(row, dict)]
        serving = ("<p>Real vLLM runs on these GPUs, signed error (predicted - measured) / "
                   "measured:</p><table><thead><tr><th>GPU</th><th>metric (mean)</th><th>"
                   "runs</th><th>median %</th><th>p10 to p90 %</th></tr></thead><tbody>"
                   + "".join(lines) + "</tbody></table>" if lines else
                   "<p>No real vLLM run of these GPUs is in the validation set.</p>")
    return (f"<h2>How accurate is this?</h2><p class='note'>Errors against measured runs "
            f"(<code>clustersim validate</code>) of the groups that bear on a {kind} plan; "
            f"GPUs in this report: {html.escape(', '.join(sorted(gpus)))}.</p>{serving}"
            f"{table}")


_MODE_OBJECTIVES = (("goodput_per_gpu", "goodput per GPU (req/s)", True),
                    ("goodput_rate_per_s", "goodput (req/s)", True),
                    ("cost_per_mtok_usd", "USD per million tokens", False),
                    ("ttft_p90_s", "TTFT p90 (s)", False),
                    ("tpot_p90_s", "TPOT p90 (s)", False))


def _mode_section(served: pd.DataFrame, front: set[int], inputs: dict[str, Any]) -> str:
    """Disaggregated vs colocated: both on one frontier plot, the best of each per
    objective, the winner per GPU count, and the phase measurements the pools came from."""
    if "mode" not in served or served["mode"].nunique() < 2:
        return ""
    figure, axis = plt.subplots(figsize=(5.2, 3.6))
    for mode, marker, color in (("colocated", "o", "#30638e"),
                                ("disaggregated", "^", "#d1495b")):
        part = served[served["mode"] == mode]
        on_front = part["index"].isin(front)
        axis.scatter(part.loc[~on_front, "ttft_p90_s"], part.loc[~on_front, "goodput_per_gpu"],
                     marker=marker, s=18, color=color, alpha=0.35)
        axis.scatter(part.loc[on_front, "ttft_p90_s"], part.loc[on_front, "goodput_per_gpu"],
                     marker=marker, s=40, color=color, label=f"{mode} (Pareto: filled)")
    axis.axvline(inputs["ttft_slo_s"], color="grey", linestyle="--", linewidth=1)
    axis.set_xlabel("TTFT p90 (s)")
    axis.set_ylabel("goodput per GPU (req/s)")
    axis.set_title("disaggregated vs colocated", fontsize=11)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    rows = []
    for column, label, maximize in _MODE_OBJECTIVES:
        best = {}
        for mode in ("colocated", "disaggregated"):
            values = served.loc[served["mode"] == mode, ["index", column]].dropna()
            if not values.empty:
                pick = values[column].idxmax() if maximize else values[column].idxmin()
                best[mode] = (int(values.loc[pick, "index"]), float(values.loc[pick, column]))
        if len(best) < 2:
            continue
        (ci, cv), (di, dv) = best["colocated"], best["disaggregated"]
        wins = "disaggregated" if (dv > cv if maximize else dv < cv) else "colocated"
        ratio = dv / cv if cv else float("nan")
        rows.append(f"<tr><td>{html.escape(label)}</td><td>#{ci}: {cv:.4g}</td>"
                    f"<td>#{di}: {dv:.4g}</td><td>{wins}</td><td>{ratio:.2f}x</td></tr>")
    by_size = []
    for num_gpus, group in served.groupby("num_gpus"):
        top = group.loc[group["goodput_per_gpu"].idxmax()]
        ratio = top.get("prefill_decode")
        detail = f" {ratio}" if isinstance(ratio, str) and ratio else ""
        by_size.append(f"<tr><td>{int(num_gpus)}</td><td>{html.escape(str(top['mode']))}"
                       f"{html.escape(detail)}</td><td>#{int(top['index'])}</td>"
                       f"<td>{top['goodput_per_gpu']:.4g}</td></tr>")
    phases = inputs.get("disaggregation_phases") or []
    phase_rows = "".join(
        f"<tr><td>{html.escape(r['phase'])}</td><td>{html.escape(str(r['gpu']))}</td>"
        f"<td>{r['tp']}</td><td>{r['goodput_per_replica']:.4g}</td>"
        f"<td>{r['goodput_per_gpu']:.4g}</td></tr>" for r in phases)
    return (
        "<h2>Disaggregated or colocated?</h2><p class='note'>Both kinds of plan went "
        "through the same goodput search under both SLOs; a disaggregated plan's ratio is "
        "its prefill:decode replicas (and their TP).</p>"
        f"<div class='plots'>{_svg(figure)}</div>"
        "<table><thead><tr><th>objective</th><th>best colocated</th><th>best "
        "disaggregated</th><th>wins</th><th>disaggregated / colocated</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        "<p>Which wins at each GPU count (goodput per GPU):</p><table><thead><tr><th>GPUs"
        "</th><th>best mode</th><th>plan</th><th>goodput per GPU</th></tr></thead>"
        f"<tbody>{''.join(by_size)}</tbody></table>"
        + ("<p>Each phase alone (the pools were sized from these):</p><table><thead><tr>"
           "<th>phase</th><th>GPU</th><th>TP</th><th>goodput per replica</th><th>per GPU"
           f"</th></tr></thead><tbody>{phase_rows}</tbody></table>" if phase_rows else ""))


def plan_report(plan_dir: str | Path, extra_plans: list[int] | None = None) -> str:
    """The HTML of a plan folder written by ``clustersim plan`` or ``plan-training``."""
    folder = Path(plan_dir)
    try:
        pareto = json.loads((folder / "pareto.json").read_text())
        inputs = json.loads((folder / "inputs.json").read_text())
        frame = pd.read_csv(folder / "candidates.csv")
    except (OSError, json.JSONDecodeError, pd.errors.ParserError) as error:
        raise ClusterSimError(f"plan folder {folder}: not a plan output ({error}); run "
                              f"'clustersim plan --out {folder}' first") from None
    if pareto.get("kind") == "training":
        return _training_report(frame, pareto, inputs)
    return _serving_report(folder, frame, pareto, inputs, extra_plans or [])


def _serving_report(folder: Path, frame: pd.DataFrame, pareto: dict[str, Any],
                    inputs: dict[str, Any], extra_plans: list[int]) -> str:
    front = {row["index"] for row in pareto["pareto"]}
    best_row = pareto["best"].get("goodput_per_gpu")
    best = best_row["index"] if best_row else None
    served = frame[(frame["status"] == "evaluated") & (frame["goodput_per_gpu"] > 0)]
    ttft, tpot = inputs["ttft_slo_s"], inputs["tpot_slo_s"]
    plots = [
        _scatter(served, "ttft_p90_s", "goodput_per_gpu", front, best, "TTFT p90 (s)",
                 "goodput per GPU (req/s)", "goodput per GPU vs TTFT p90", vline=ttft),
        _scatter(served, "tpot_p90_s", "goodput_per_gpu", front, best, "TPOT p90 (s)",
                 "goodput per GPU (req/s)", "goodput per GPU vs TPOT p90", vline=tpot),
    ]
    priced = served.dropna(subset=["cost_per_mtok_usd"])
    if not priced.empty:
        plots.append(_scatter(priced, "ttft_p90_s", "cost_per_mtok_usd", front, best,
                              "TTFT p90 (s)", "USD per million tokens",
                              "cost vs latency", vline=ttft, maximize_y=False))
    counts = frame["status"].value_counts().to_dict()
    workload = inputs.get("workload", {})
    sections = [
        "<h2>Inputs</h2><p>" + html.escape(
            f"model {inputs['model']}; SLOs TTFT p90 <= {ttft} s and TPOT p90 <= {tpot} s "
            f"for {inputs['attainment']:.0%} of requests; workload "
            f"{workload.get('num_requests')} requests, prompt mean "
            f"{workload.get('prompt_tokens_mean')}, output mean "
            f"{workload.get('output_tokens_mean')}; {len(frame)} candidates "
            f"({', '.join(f'{v} {k}' for k, v in counts.items())})") + "</p>"
        f"<p class='note'>search space: <code>{html.escape(json.dumps(inputs['space']))}"
        f"</code></p>",
        f"<h2>Pareto frontiers</h2><div class='plots'>{''.join(plots)}</div>",
        "<h2>Pareto plans</h2><p class='note'>Click a header to sort. The highlighted row "
        "is the recommended plan (highest goodput per GPU).</p>"
        + (f"<p>Recommended #{best}: "
           f"{html.escape(pareto.get('reasons', {}).get('goodput_per_gpu', ''))}.</p>"
           if best is not None else "")
        + _interval_note(pareto.get("goodput_interval") or {})
        + _table(pareto["pareto"], best),
        _mode_section(served, front, inputs),
    ]
    workload_path = folder / "workload.json"
    chosen = [i for i in [best, *extra_plans] if i is not None]
    rule = SteadyState(**inputs["steady_state"]) if "steady_state" in inputs else STEADY
    if workload_path.is_file():
        trace = load_workload(workload_path)
        by_index = {row["index"]: row for row in pareto["pareto"]} | {
            row["index"]: row for row in pareto["best"].values()}
        for index in chosen:
            row = by_index.get(index)
            if row is None:
                raise ClusterSimError(f"--plan {index}: not a Pareto or best plan of this "
                                      f"folder; pick one of {sorted(by_index)}")
            deployment = build_deployment(row["deployment"])
            rate = row["goodput_rate_per_s"] or 1.0
            probe = steady_trace(trace, rate, rule, tpot)
            result = simulate(deployment, probe, record_trace=True)
            if result.ok and result.requests is not None and result.summary is not None:
                s = result.summary
                met = steady_attainment(result.requests, ttft, tpot, rule,
                                        request_lifetime_s(trace, tpot))
                note = (
                    f"Offered {rate:.3g} req/s: {len(probe):,} requests over "
                    f"{probe.arrival_s[-1] - probe.arrival_s[0]:.0f} s of arrivals"
                    + (", the workload extended by resampling its own requests"
                       if "extended_from_requests" in probe.metadata else "")
                    + f". Served {s['throughput']['requests_per_s']:.3g} req/s over the "
                    f"whole run, the final drain included. SLO attainment in the steady "
                    f"windows (after a warm-up of the first {rule.warm_up:.0%} of arrivals or "
                    f"one {request_lifetime_s(trace, tpot):.0f}-s lifetime of the longest "
                    f"requests, whichever is longer, and before the last {rule.drain:.0%}, "
                    f"worst of {rule.windows}): {met:.1%}; "
                    f"{s['stability']['state']}.")
                sections.append(_run_section(result, f"Plan #{index} at its goodput, "
                                                     f"{rate:.2f} req/s", note))
                if index == best:
                    sections.append(_sweep_section(deployment, trace, rate, rule, ttft, tpot))
    gpus = {str(g) for g in served["gpu"].unique()}
    sections.append(_accuracy_section(gpus))
    return _page(f"clustersim plan: {inputs['model']}", sections)


def _interval_note(bars: dict[str, Any]) -> str:
    """The recommended plan's validated goodput range (``planners.goodput_bars``)."""
    if not bars:
        return ""
    return (f"<p>Its goodput, {bars['rate_per_s']:.3g} req/s, has a validated range of "
            f"{bars['low_rate_per_s']:.3g} to {bars['high_rate_per_s']:.3g} req/s: "
            f"{html.escape(bars['method'])} ({html.escape(bars['group'])}, {bars['runs']} real "
            "vLLM runs).</p>")


def _training_report(frame: pd.DataFrame, pareto: dict[str, Any], inputs: dict[str, Any]
                     ) -> str:
    front = {row["index"] for row in pareto["pareto"]}
    best_row = pareto["best"].get("step_s")
    best = best_row["index"] if best_row else None
    done = frame[frame["status"] == "evaluated"].copy()
    done["num_gpus"] = done["plan.tp"] * done["plan.pp"] * done["plan.dp"] * done["plan.cp"]
    plots = [
        _scatter(done, "num_gpus", "step_s", front, best, "GPUs", "step time (s)",
                 "step time vs GPUs", maximize_y=False),
        _scatter(done, "num_gpus", "mfu", front, best, "GPUs", "MFU", "MFU vs GPUs"),
    ]
    if done["cost_per_step_usd"].notna().any():
        plots.append(_scatter(done.dropna(subset=["cost_per_step_usd"]), "step_s",
                              "cost_per_step_usd", front, best, "step time (s)",
                              "USD per step", "cost vs step time", maximize_y=False))
    job = TrainingJob.model_validate(inputs["job"])
    sections = [
        "<h2>Inputs</h2><p>" + html.escape(
            f"model {job.model} on {job.gpu}, sequence {job.seq_len}, global batch "
            f"{job.global_batch}; {len(frame)} plans, {len(done)} can run") + "</p>",
        f"<h2>Pareto frontiers</h2><div class='plots'>{''.join(plots)}</div>",
        "<h2>Pareto plans</h2>" + _table(pareto["pareto"], best),
    ]
    if best_row is not None:
        plan = best_row["deployment"]
        trial = job.model_copy(update={"plan": ParallelPlan.model_validate(plan["plan"]),
                                       "micro_batch": plan["micro_batch"]})
        result = simulate_training(trial, record_trace=True)
        events = [e for e in (result.trace or {})["traceEvents"]
                  if e["ph"] == "X" and e["tid"] == 0]
        figure, axis = plt.subplots(figsize=(10, 0.4 + 0.35 * trial.plan.pp))
        for event in events:
            color = "#4a90d9" if event["name"].startswith("F") else "#d1495b"
            if event["name"] == "optimizer":
                color = "#555555"
            axis.barh(event["pid"], event["dur"] / 1e6, left=event["ts"] / 1e6, height=0.8,
                      color=color, edgecolor="none")
        axis.set_yticks(range(trial.plan.pp))
        axis.set_ylabel("stage")
        axis.set_xlabel("seconds (forward blue, backward red)")
        axis.invert_yaxis()
        memory = result.memory.as_gib()
        sections.append(
            f"<h2>Recommended plan #{best}: one step</h2><p>" + html.escape(
                f"step {result.step_s:.3f} s, MFU {result.mfu:.1%}, memory per GPU "
                + ", ".join(f"{k} {v:.1f} GiB" for k, v in memory.items())) + "</p>"
            f"<div class='plots'>{_svg(figure)}</div>")
    sections.append(_accuracy_section({str(job.gpu)}, "training"))
    return _page(f"clustersim training plan: {job.model}", sections)


def run_report(result: SimulationResult) -> str:
    """The single-run part of the report, for ``simulate --report``."""
    assert result.summary is not None
    run = result.summary["run"]
    title = f"clustersim run: {run['model']} on {run['num_gpus']} x {run['gpu']}"
    return _page(title, [_run_section(result, "Run"), _accuracy_section({run["gpu"]})])


