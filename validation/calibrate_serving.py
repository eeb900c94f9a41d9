"""Fitting the vLLM 0.15 preset's engine-path parameters to the real vLLM runs.

    python -m validation.calibrate MEASURED --serving [--write]

Two named numbers, global to the engine version (never one per run, model or GPU), fitted
in this order over the serving group's replays (``validation.serving_runs``):

- ``device_step_s``: the GPU's time per step outside the model's kernels (input
  preparation, attention metadata and sampling: small launch-bound kernels that the
  operator tables do not hold). It is fitted on the runs whose every kernel is priced from
  a table measured on their GPU, so that no kernel's own error folds into it: dense models
  on a GPU with fitted kernel tables (H100, A100). MoE runs (their grouped expert GEMMs
  have no measured table) and GPUs without tables (L40S) are predicted, not fitted. The
  value makes the median TPOT residual of those runs (measured - predicted, ms per output
  token) zero. A request decodes one token a step, so a TPOT residual is a per-step
  residual; a longer step also batches more, so the value is a fixed point, found in
  rounds that each replay the runs.
- ``client_path_s``: the request's way in (HTTP, tokenization, IPC) and the first chunk's
  way out, which the engine's step loop does not see: the median TTFT residual of the same
  runs at the fitted device time (a prefill's kernels are in TTFT too). It absorbs
  whatever else the replay misses before the first token.

Leave-one-model-out: each model's runs are predicted with both parameters fitted without
them (one fixed-point round from the in-sample replay) and replayed with those values.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from profiles.hardware import load_gpu
from profiles.models import load_model
from simulator.serving.presets import ENGINE_PRESETS
from validation.error_bars import GPU_NAMES
from validation.serving_runs import catalog_model_name, replay_runs

__all__ = ["ROUNDS", "SERVING_PRESET", "TOLERANCE_S", "EngineFit", "fit_engine_path",
           "fits_document"]

SERVING_PRESET = "vllm-v1-0.15"
ROUNDS = 4  # replays of the device-time fixed point, at most
TOLERANCE_S = 10e-6  # the fixed point is reached when the median residual is below this
DEVICE_DIGITS, CLIENT_DIGITS = 7, 6  # decimals of seconds the fits file keeps
_METRIC_NAMES = ("tpot_mean", "ttft_mean", "e2e_mean")


@contextmanager
def preset_values(device_step_s: float, client_path_s: float) -> Iterator[None]:
    """The serving preset with these two values, for the duration of the block."""
    preset = ENGINE_PRESETS[SERVING_PRESET]
    ENGINE_PRESETS[SERVING_PRESET] = replace(
        preset, client_path_s=client_path_s,
        overhead=preset.overhead.model_copy(update={"device_step_s": device_step_s}))
    try:
        yield
    finally:
        ENGINE_PRESETS[SERVING_PRESET] = preset


def _fitting(models: pd.Series, gpus: pd.Series) -> np.ndarray:
    """Which runs fit the device time: dense models on GPUs with measured kernel tables."""
    dense = {m: not _is_moe(m) for m in set(models)}
    tabled = {g: _has_tables(g) for g in set(gpus)}
    return np.array([dense[m] and tabled[g] for m, g in zip(models, gpus, strict=True)],
                    dtype=bool)


def _is_moe(hf_id: str) -> bool:
    name = catalog_model_name(hf_id)
    return name is None or load_model(name).is_moe


def _has_tables(gpu: str) -> bool:
    kernels = load_gpu(GPU_NAMES[gpu]).kernels
    return kernels is not None and kernels.gemm is not None and kernels.attention is not None


def _whole(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    return rows[(rows["stage"] == -1) & (rows["metric"] == metric)].reset_index(drop=True)


def _residual_s(rows: pd.DataFrame, metric: str, exclude: str | None = None) -> float:
    """The median residual (measured - predicted) of ``metric`` over the fitting runs,
    in seconds; without the runs of model ``exclude`` if given."""
    whole = _whole(rows, metric)
    keep = _fitting(whole["model"], whole["gpu"])
    if exclude is not None:
        keep &= (whole["model"] != exclude).to_numpy()
    part = whole[keep]
    if part.empty:
        raise ValueError("no fitting run left (dense models on GPUs with kernel tables)")
    return float(np.median(part["measured_ms"] - part["predicted_ms"])) / 1e3


def _client_view(rows: pd.DataFrame, client_path_s: float) -> pd.DataFrame:
    """Rows replayed with no client path, as the client sees them with ``client_path_s``
    (every token reaches it that much later: TTFT and E2E move, TPOT does not)."""
    out = rows.copy()
    moved = out["metric"].isin(["ttft_mean", "e2e_mean"])
    out.loc[moved, "predicted_ms"] += client_path_s * 1e3
    out["error_pct"] = (out["predicted_ms"] - out["measured_ms"]).abs() \
        / out["measured_ms"] * 100.0
    return out


class EngineFit:
    """The fitted values, the rounds that found the device time, and the errors."""

    def __init__(self, device_step_s: float, client_path_s: float,
                 rounds: list[tuple[float, float]], fit_runs: list[int],
                 in_sample: pd.DataFrame, held_out: pd.DataFrame) -> None:
        self.device_step_s = device_step_s
        self.client_path_s = client_path_s
        self.rounds = rounds  # (device time replayed, median TPOT residual there), seconds
        self.fit_runs = fit_runs
        self.in_sample = in_sample  # whole-run rows as the client sees them
        self.held_out = held_out  # the same rows, each model fitted without its runs

    def per_model(self) -> pd.DataFrame:
        """Median error per model and metric, in-sample and held out."""
        out = []
        for label, rows in (("in_sample", self.in_sample), ("held_out", self.held_out)):
            whole = rows[rows["stage"] == -1]
            for (model, metric), part in whole.groupby(["model", "metric"], sort=True):
                out.append({"model": model, "metric": metric, "fit": label,
                            "runs": len(part), "error_pct": float(part["error_pct"].median())})
        return pd.DataFrame(out)

    def medians(self) -> dict[str, dict[str, float]]:
        """Per metric: the median over models of the in-sample and held-out errors, and
        the H100 runs' median error both ways (the acceptance's group)."""
        table = self.per_model()
        out: dict[str, dict[str, float]] = {}
        for metric in _METRIC_NAMES:
            part = table[table["metric"] == metric]
            entry = {f"{label}_over_models_pct": round(float(
                part[part["fit"] == label]["error_pct"].median()), 3)
                for label in ("in_sample", "held_out")}
            for label, rows in (("in_sample", self.in_sample), ("held_out", self.held_out)):
                h100 = rows[(rows["stage"] == -1) & (rows["metric"] == metric)
                            & (rows["gpu"] == "H100")]
                entry[f"h100_{label}_pct"] = round(float(h100["error_pct"].median()), 3)
            out[metric] = entry
        return out


def fit_engine_path(measured_dir: str | Path) -> EngineFit:
    """Both parameters, their rounds and the in-sample and held-out errors (docstring)."""
    device_s = ENGINE_PRESETS[SERVING_PRESET].overhead.device_step_s
    rounds: list[tuple[float, float]] = []
    for round_ in range(ROUNDS):
        with preset_values(device_s, 0.0):
            rows = replay_runs(measured_dir)
        residual = _residual_s(rows, "tpot_mean")
        rounds.append((device_s, residual))
        if abs(residual) < TOLERANCE_S or round_ == ROUNDS - 1:
            break
        # NOTE: rounded as the fits file stores it, so the rows replayed are the stored
        # value's (a run near a routing or batching tipping point moves with the last digit)
        device_s = round(max(0.0, device_s + residual), DEVICE_DIGITS)
    client_s = round(_residual_s(rows, "ttft_mean"), CLIENT_DIGITS)
    tpot = _whole(rows, "tpot_mean")
    fit_runs = sorted(int(r) for r in tpot[_fitting(tpot["model"], tpot["gpu"])]["run_id"])
    held: list[pd.DataFrame] = []
    for model in sorted(set(rows["model"])):
        # NOTE: a model none of whose runs fit the device time leaves it as fitted.
        device_without = (round(max(0.0, device_s + _residual_s(
            rows, "tpot_mean", exclude=model)), DEVICE_DIGITS)
            if _fits_any(rows, model) else device_s)
        with preset_values(device_without, 0.0):
            replayed = replay_runs(measured_dir, models=[model])
        held.append(_client_view(replayed, _residual_s(rows, "ttft_mean", exclude=model)))
    return EngineFit(device_s, client_s, rounds, fit_runs, _client_view(rows, client_s),
                     pd.concat(held, ignore_index=True))


def _fits_any(rows: pd.DataFrame, model: str) -> bool:
    tpot = _whole(rows, "tpot_mean")
    part = tpot[tpot["model"] == model]
    return bool(_fitting(part["model"], part["gpu"]).any())


def fits_document(fit: EngineFit) -> dict[str, Any]:
    """``simulator/serving/data/engine_fits.json``: the values, their sources and errors."""
    runs = int(_whole(fit.in_sample, "ttft_mean").shape[0])
    medians = fit.medians()
    return {"_comment": "Written by `python -m validation.calibrate MEASURED --serving "
                        "--write` (validation/calibrate_serving.py says how).",
            "presets": {SERVING_PRESET: {
                "device_step_s": round(fit.device_step_s, DEVICE_DIGITS),
                "device_step_source": (
                    "fitted: the median TPOT residual of the vLLM 0.15 runs of the measured "
                    "pack (vllm_runs.csv) whose every kernel has a measured table on its GPU "
                    f"(dense models on H100 and A100: runs {fit.fit_runs}), a fixed point "
                    f"reached in {len(fit.rounds)} replay{'s' if len(fit.rounds) > 1 else ''} "
                    f"from {fit.rounds[0][0] * 1e3:.4g} ms"),
                "device_step_rounds": [[round(d, DEVICE_DIGITS), round(r, DEVICE_DIGITS)]
                                       for d, r in fit.rounds],
                "client_path_s": round(fit.client_path_s, CLIENT_DIGITS),
                "source": (f"fitted: the median TTFT residual of the same {len(fit.fit_runs)} "
                           f"of the {runs} vLLM 0.15 runs of the measured pack (vllm_runs.csv, "
                           "inference-perf clients) replayed by the serving group at the "
                           "fitted device time; it absorbs whatever else the replay misses "
                           "before the first token"),
                "errors_pct": medians,
            }}}
