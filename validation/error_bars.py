"""Error bars on serving predictions, from how far the simulator missed real vLLM runs.

For each GPU, and each metric the serving group checks (E2E mean, TTFT mean, TPOT of
means), the signed relative errors of the replayed runs, ``e = (predicted - measured) /
measured``, give the range a measurement would have fallen in::

    measured = predicted / (1 + e)      e between the group's 10th and 90th percentiles
    interval = [predicted / (1 + e_p90), predicted / (1 + e_p10)]

The nearest group is the run's GPU when it has at least ``MIN_RUNS`` replayed runs, else
every GPU pooled (said in the output). The percentiles are stored, with the run counts,
in ``validation/serving_error_bars.json``, written with the baseline
(``clustersim validate --update-baseline``): derived figures, so predictions carry them
where the measured pack is not. A small group gives a narrow band that is not a
confidence interval; the run count is shown beside it.

Training steps get the same treatment from the published training runs: the signed
errors of the predicted throughput (tokens/s or model TFLOP/s per GPU, one run per row)
per GPU die of the fitted step (``profiles.training_fit``), or every run pooled where the
die has fewer than ``MIN_RUNS``; in ``validation/training_error_bars.json``::

    tokens/s in [predicted / (1 + e_p90), predicted / (1 + e_p10)]
    step     in [predicted x (1 + e_p10), predicted x (1 + e_p90)]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from profiles.hardware import load_gpu
from profiles.reading import read_json
from profiles.training_fit import die_of
from simulator import to_json_text, write_text

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ERROR_BARS_PATH", "GPU_NAMES", "MIN_RUNS", "TRAINING_BARS_PATH",
           "build_error_bars", "build_training_error_bars", "interval", "load_error_bars",
           "nearest_group", "training_interval", "training_range_text", "write_error_bars"]

ERROR_BARS_PATH = Path(__file__).resolve().parent / "serving_error_bars.json"
TRAINING_BARS_PATH = Path(__file__).resolve().parent / "training_error_bars.json"
MIN_RUNS = 3
# the hardware names of the measured serving runs, as the catalog names the GPUs
GPU_NAMES = {"H100": "h100", "A100-80GB": "a100", "L40S": "l40s"}
# summary key of each checked metric: (statistic of the summary, its name in the group)
_METRICS = {"e2e_mean": ("e2e_s", "mean"), "ttft_mean": ("ttft_s", "mean"),
            "tpot_mean": ("tpot_of_means_s", None)}


def build_error_bars(rows: pd.DataFrame) -> dict[str, Any]:
    """Signed-error percentiles per GPU (catalog name) and metric, and pooled ("all"),
    from the serving group's whole-run rows."""
    whole = rows[rows["stage"] == -1].assign(
        signed=lambda r: (r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"])
    groups: dict[str, Any] = {}
    for label, part in [("all", whole),
                        *((load_gpu(GPU_NAMES[str(gpu)]).name, p)
                          for gpu, p in whole.groupby("gpu"))]:
        groups[label] = {
            metric: _percentiles(values)
            for metric, values in ((m, part[part["metric"] == m]["signed"].to_numpy())
                                   for m in _METRICS) if len(values)}
    return {"_comment": "Signed relative errors (predicted - measured) / measured of the "
                        "serving group's replayed vLLM runs; written by `clustersim validate "
                        "--update-baseline`.", "groups": groups}


def write_error_bars(bars: dict[str, Any], path: Path = ERROR_BARS_PATH) -> Path:
    write_text(path, to_json_text(bars))
    return path


def load_error_bars(path: Path = ERROR_BARS_PATH) -> dict[str, Any]:
    """The committed error bars ({} when none were written)."""
    if not path.is_file():
        return {}
    bars: dict[str, Any] = read_json(path, "error bars").get("groups", {})
    return bars


def nearest_group(bars: dict[str, Any], gpu: str) -> tuple[dict[str, Any], str]:
    """The error bars of ``gpu`` (catalog name) when it has ``MIN_RUNS`` runs, else every
    GPU's pooled; with the group's label ({} when there are none)."""
    group, label = bars.get(gpu), gpu
    if group is None or min((g["runs"] for g in group.values()), default=0) < MIN_RUNS:
        group, label = bars.get("all"), "all GPUs"
    return group or {}, label


def interval(summary: dict[str, Any], bars: dict[str, Any] | None = None) -> dict[str, Any]:
    """The validated range of a run's checked metrics (module docstring), or an empty
    mapping when there are no error bars."""
    if "disaggregation" in summary:
        return {}  # the serving group holds no disaggregated runs: nothing validates one
    bars = load_error_bars() if bars is None else bars
    group, label = nearest_group(bars, summary["run"]["gpu"])
    if not group:
        return {}
    out: dict[str, Any] = {"group": label, "method": "predicted / (1 + e) for e between the "
                           "10th and 90th percentiles of the group's signed errors"}
    for metric, (key, stat) in _METRICS.items():
        entry = summary.get(key)
        value = entry.get(stat) if stat is not None and isinstance(entry, dict) else entry
        if metric not in group or value is None or not np.isfinite(value):
            continue
        e = group[metric]
        out[metric] = {"predicted_s": float(value), "low_s": float(value) / (1 + e["p90"]),
                       "high_s": float(value) / (1 + e["p10"]), "runs": e["runs"]}
    return out


def _percentiles(values: np.ndarray) -> dict[str, Any]:
    return {"runs": len(values), "p10": float(np.percentile(values, 10)),
            "p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90))}


def build_training_error_bars(rows: pd.DataFrame) -> dict[str, Any]:
    """Signed-error percentiles of the training runs' throughput per fitted GPU die, and
    pooled ("all"), from :func:`validation.training_runs.training_rows`."""
    signed = ((rows["predicted"] - rows["measured"]) / rows["measured"]).to_numpy()
    die_of_row = rows["gpu_name"].map(die_of).to_numpy()
    groups = {"all": _percentiles(signed)}
    for die in sorted({d for d in die_of_row if isinstance(d, str)}):
        groups[die] = _percentiles(signed[die_of_row == die])
    return {"_comment": "Signed relative errors (predicted - measured) / measured of the "
                        "throughput of the published training runs the validation expresses, "
                        "per GPU die of the fitted step; written by `clustersim validate "
                        "--update-baseline`.", "groups": groups}


def training_interval(gpu: str, step_s: float, tokens_per_s: float,
                      bars: dict[str, Any] | None = None) -> dict[str, Any]:
    """The validated range of a training step's throughput and time on ``gpu`` (catalog
    name), from its die's error bars (module docstring); {} when there are none."""
    if bars is None:
        bars = load_error_bars(TRAINING_BARS_PATH)
    die = die_of(gpu)
    group, label = (bars.get(die), f"{die} runs") if die else (None, "")
    if group is None or group["runs"] < MIN_RUNS:
        group, label = bars.get("all"), "all runs"
    if not group:
        return {}
    low, high = group["p10"], group["p90"]
    return {"group": label, "runs": group["runs"],
            "method": "predicted / (1 + e) for e between the 10th and 90th percentiles of "
                      "the group's signed throughput errors",
            "tokens_per_s": {"predicted": tokens_per_s, "low": tokens_per_s / (1 + high),
                             "high": tokens_per_s / (1 + low)},
            "step_s": {"predicted": step_s, "low": step_s * (1 + low),
                       "high": step_s * (1 + high)}}


def training_range_text(bars: dict[str, Any], with_tokens: bool = True) -> str:
    """One line for a :func:`training_interval` range, as the CLI prints it."""
    parts = ([f"{bars['tokens_per_s']['low']:,.0f}-{bars['tokens_per_s']['high']:,.0f} "
              "tokens/s"] if with_tokens else [])
    parts.append(f"step {bars['step_s']['low']:.3f}-{bars['step_s']['high']:.3f} s")
    return (f"validated range ({bars['group']}, {bars['runs']} published runs): "
            + ", ".join(parts) + " (10th-90th percentile of the validation errors)")
