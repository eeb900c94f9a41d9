"""Fitting the vLLM 0.15 preset's engine-path parameters to the real vLLM runs.

    python -m validation.calibrate MEASURED --serving [--write]

Three named numbers, global to the engine version (never one per run, model or GPU), fitted
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

- ``moe_gemm_factor``: vLLM's fused MoE kernel's time over the grouped-GEMM model's,
  which prices the experts' tiles at the dense GEMM fit's speed (no fused-MoE kernel table
  has been measured). Fitted on the MoE runs on GPUs with kernel tables (H100: Mixtral and
  Llama-4-Scout) after the two above, which it does not touch (they are fitted on dense
  runs): the factor that makes their median relative TPOT residual zero, found by the
  secant method over replays of those runs.

Leave-one-model-out: each model's runs are predicted with the parameters fitted without
them (one fixed-point round from the in-sample replay; for a MoE model, the factor where
the other MoE models' median residual crosses zero between the last two replays) and
replayed with those values.
"""

from __future__ import annotations

import math
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
MOE_DIGITS = 3  # decimals of the MoE factor the fits file keeps
MOE_TOLERANCE = 0.003  # the MoE factor is fitted when the median residual is below 0.3%
_METRIC_NAMES = ("tpot_mean", "ttft_mean", "e2e_mean")


@contextmanager
def preset_values(device_step_s: float, client_path_s: float,
                  moe_gemm_factor: float | None = None) -> Iterator[None]:
    """The serving preset with these values (the MoE factor as it is unless given), for
    the duration of the block."""
    preset = ENGINE_PRESETS[SERVING_PRESET]
    ENGINE_PRESETS[SERVING_PRESET] = replace(
        preset, client_path_s=client_path_s,
        moe_gemm_factor=(preset.moe_gemm_factor if moe_gemm_factor is None
                         else moe_gemm_factor),
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


def _moe_fitting(models: pd.Series, gpus: pd.Series) -> np.ndarray:
    """Which runs fit the MoE factor: MoE models on GPUs with measured kernel tables."""
    moe = {m: _is_moe(m) and catalog_model_name(m) is not None for m in set(models)}
    tabled = {g: _has_tables(g) for g in set(gpus)}
    return np.array([moe[m] and tabled[g] for m, g in zip(models, gpus, strict=True)],
                    dtype=bool)


def _moe_residual(rows: pd.DataFrame, exclude: str | None = None) -> float:
    """The median relative TPOT residual ((measured - predicted) / measured) of the MoE
    fitting runs, without model ``exclude`` if given; NaN when none is left."""
    whole = _whole(rows, "tpot_mean")
    keep = _moe_fitting(whole["model"], whole["gpu"])
    if exclude is not None:
        keep &= (whole["model"] != exclude).to_numpy()
    part = whole[keep]
    if part.empty:
        return math.nan
    return float(np.median((part["measured_ms"] - part["predicted_ms"])
                           / part["measured_ms"]))


def _secant(points: list[tuple[float, float]]) -> float:
    """The next factor from (factor, residual) points: the secant through the last two,
    or a first step that assumes the experts are half of a step's time."""
    (f0, r0) = points[-2] if len(points) > 1 else (math.nan, math.nan)
    f1, r1 = points[-1]
    if len(points) < 2 or r1 == r0:
        return f1 * (1.0 + 2.0 * r1)
    return f1 - r1 * (f1 - f0) / (r1 - r0)


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
                 in_sample: pd.DataFrame, held_out: pd.DataFrame,
                 moe_gemm_factor: float = 1.0,
                 moe_rounds: list[tuple[float, float]] | None = None,
                 moe_runs: list[int] | None = None) -> None:
        self.device_step_s = device_step_s
        self.client_path_s = client_path_s
        self.moe_gemm_factor = moe_gemm_factor
        self.moe_rounds = moe_rounds or []  # (factor replayed, median relative residual)
        self.moe_runs = moe_runs or []
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
    # the MoE factor: secant rounds over replays of the MoE fitting runs alone
    moe_models = sorted(set(tpot[_moe_fitting(tpot["model"], tpot["gpu"])]["model"]))
    moe_runs = sorted(int(r) for r in tpot[_moe_fitting(tpot["model"], tpot["gpu"])]["run_id"])
    factor = ENGINE_PRESETS[SERVING_PRESET].moe_gemm_factor
    moe_rounds = [(factor, _moe_residual(rows))]
    replays = {factor: rows}
    while moe_models and abs(moe_rounds[-1][1]) >= MOE_TOLERANCE and len(moe_rounds) < ROUNDS:
        factor = round(max(0.5, _secant(moe_rounds)), MOE_DIGITS)
        with preset_values(device_s, 0.0, factor):
            replays[factor] = replay_runs(measured_dir, models=moe_models)
        moe_rounds.append((factor, _moe_residual(replays[factor])))
    if moe_models:
        moe_rows = replays[factor]
        rows = pd.concat([rows[~rows["model"].isin(moe_models)], moe_rows], ignore_index=True)
    held: list[pd.DataFrame] = []
    for model in sorted(set(rows["model"])):
        # NOTE: a model none of whose runs fit the device time leaves it as fitted.
        device_without = (round(max(0.0, device_s + _residual_s(
            rows, "tpot_mean", exclude=model)), DEVICE_DIGITS)
            if _fits_any(rows, model) else device_s)
        factor_without = (_factor_without(replays, moe_rounds, model)
                          if model in moe_models else factor)
        with preset_values(device_without, 0.0, factor_without):
            replayed = replay_runs(measured_dir, models=[model])
        held.append(_client_view(replayed, _residual_s(rows, "ttft_mean", exclude=model)))
    return EngineFit(device_s, client_s, rounds, fit_runs, _client_view(rows, client_s),
                     pd.concat(held, ignore_index=True), factor, moe_rounds, moe_runs)


def _factor_without(replays: dict[float, pd.DataFrame], rounds: list[tuple[float, float]],
                    model: str) -> float:
    """The MoE factor fitted without ``model``'s runs: where the other MoE models' median
    residual crosses zero between the last two replays (the secant through them), or the
    fitted factor when no other MoE model is left."""
    points = [(f, _moe_residual(replays[f], exclude=model)) for f, _ in rounds[-2:]]
    if math.isnan(points[-1][1]):
        return rounds[-1][0]
    return round(max(0.5, _secant(points)), MOE_DIGITS)


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
                "moe_gemm_factor": round(fit.moe_gemm_factor, MOE_DIGITS),
                "moe_gemm_source": (
                    "fitted: the factor on the grouped-GEMM model's expert time that makes "
                    "the median relative TPOT residual zero over the MoE runs of the measured "
                    f"pack on GPUs with kernel tables (H100: runs {fit.moe_runs}), found in "
                    f"{len(fit.moe_rounds)} replays by the secant method"),
                "moe_gemm_rounds": [[round(f, MOE_DIGITS), round(r, 5)]
                                    for f, r in fit.moe_rounds],
                "errors_pct": medians,
            }}}
