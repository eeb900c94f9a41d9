"""Fitting the kernel parameters to measured operator tables (``profiles.kernel_fit``).

    python -m validation.calibrate MEASURED_DIR [--write] [--leave-one-model-out]

``MEASURED_DIR`` is the measured pack (the shared folder's ``measured/``): Vidur's
per-operator tables for A100 and H100 (``vidur/compute``), its NCCL all-reduce tables
(``vidur/network/<sku>_dgx``), the paged attention tables (``vidur/history/a100``) and
the H100 FlashAttention-3 / FlashInfer kernel table (``attention_kernels.csv``). Each
family is fitted on its own rows only; the end-to-end figures (training runs, Splitwise
step times, serving runs) are never fitting targets, they are predictions.

The objective is the mean absolute log error, so a 10% miss costs the same at 5 µs and
at 5 ms; the optimizer is Nelder-Mead from a fixed start (deterministic). ``--write``
stores the parameters in ``profiles/data/kernel_fits.json`` with the data that fit them
and the in-sample error. ``--leave-one-model-out`` refits the GEMM parameters without
each Vidur model in turn and reports the held-out model's error next to the in-sample.

``--serving`` fits the engine-path parameters of the vLLM 0.15 preset instead (the
device time per step outside the model's kernels, and the client path per request) to
the serving group's real runs, with leave-one-model-out errors
(``validation.calibrate_serving`` says how); ``--write`` stores them in
``simulator/serving/data/engine_fits.json``.

``--training`` fits the training step's parameters to the published training runs
(``profiles.training_fit`` says which and why): each fitted die's sustained-compute
fraction and the TP-overlap share on the Megatron-family runs, then the MoE layers' host
floor on their MoE runs, with leave-one-source-out and leave-one-die-out errors;
``--write`` stores them in ``profiles/data/training_fits.json``.

``--power`` fits the power-cap exponent (``profiles.power``): the compute clock under
which the cost model's own prefill steps at Splitwise's H100 shapes slow as Splitwise's
capped machine's do (``validation.calibrate_power`` says how); ``--write`` stores it in
``profiles/data/power_cap.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize, minimize_scalar

from profiles.errors import ClusterSimError
from profiles.gemm import fitted_gemm_times
from profiles.hardware import GPUSpec, load_gpu
from profiles.importers import (
    VIDUR_SKUS,
    read_vidur_collectives,
    read_vidur_compute,
)
from profiles.kernel_fit import (
    FITS_PATH,
    AllReduceFit,
    AttentionFit,
    FitRecord,
    GemmFit,
    KernelFit,
    StreamFit,
)
from profiles.operator_times import (
    STREAM_BYTES_PER_ELEMENT,
    all_reduce_fitted_s,
    decode_attention_s,
    prefill_attention_s,
)
from profiles.power import POWER_CAP_PATH
from profiles.training_fit import TRAINING_FITS_PATH
from simulator.serving.presets import ENGINE_FITS_PATH
from validation.calibrate_power import fit_power_cap
from validation.calibrate_serving import fit_engine_path, fits_document
from validation.operators import (
    FP8_GEMM_GPUS,
    KERNELS_SOURCE,
    VIDUR_SOURCE,
    attention_rows,
    fp8_gemm_rows,
)
from validation.training_runs import expressed_runs, predict_run, run_source

__all__ = ["calibrate", "fit_all_reduce", "fit_attention", "fit_gemm", "fit_gemm_fp8",
           "fit_stream", "fit_training", "fit_training_step", "leave_one_model_out"]



def _minimize(loss: Callable[[np.ndarray], float], start: list[float]) -> np.ndarray:
    result = minimize(loss, np.array(start), method="Nelder-Mead",
                      options={"maxiter": 4000, "xatol": 1e-5, "fatol": 1e-8})
    return np.asarray(result.x)


def _log_loss(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(np.log(predicted / measured))))


def _record(data: str, predicted: np.ndarray, measured: np.ndarray) -> FitRecord:
    errors = np.abs(predicted / measured - 1.0) * 100.0
    return FitRecord(data=data, num_points=len(measured),
                     median_error_pct=round(float(np.median(errors)), 3),
                     p90_error_pct=round(float(np.percentile(errors, 90)), 3))


def fit_gemm(gpu: GPUSpec, rows: pd.DataFrame, data: str) -> GemmFit:
    """GEMM parameters from rows with m, n, k and time_s (fp16)."""
    m, n, k = (rows[c].to_numpy(dtype=float) for c in ("m", "n", "k"))
    measured = rows["time_s"].to_numpy(dtype=float)

    def build(x: np.ndarray, record: FitRecord | None = None) -> GemmFit:
        return GemmFit.model_construct(matmul=x[0], memory=x[1], small_tile=x[2],
                                       blend=x[3], launch_us=x[4], fitted=record)

    def loss(x: np.ndarray) -> float:
        if x[0] <= 0 or x[1] <= 0 or not 0 < x[2] <= 1 or x[3] < 1 or x[4] < 0:
            return 1e9
        return _log_loss(fitted_gemm_times(gpu, build(x), m, n, k, "fp16")[0], measured)

    x = _minimize(loss, [0.8, 0.85, 0.9, 3.0, 4.0])
    predicted = fitted_gemm_times(gpu, build(x), m, n, k, "fp16")[0]
    return GemmFit(matmul=round(x[0], 4), memory=round(x[1], 4), small_tile=round(x[2], 4),
                   blend=round(x[3], 4), launch_us=round(x[4], 3),
                   fitted=_record(data, predicted, measured))


def fit_gemm_fp8(gpu: GPUSpec, fit: GemmFit, rows: pd.DataFrame, data: str) -> GemmFit:
    """``fit`` with ``matmul_fp8`` fitted to FP8 GEMM rows (m, n, k, time_s), every other
    parameter held: the FP8 kernels' own fraction of the FP8 peak."""
    m, n, k = (rows[c].to_numpy(dtype=float) for c in ("m", "n", "k"))
    measured = rows["time_s"].to_numpy(dtype=float)

    def with_rate(x: float) -> GemmFit:
        return fit.model_copy(update={"matmul_fp8": x})

    def loss(x: np.ndarray) -> float:
        if not 0 < x[0] <= 1.2:
            return 1e9
        return _log_loss(fitted_gemm_times(gpu, with_rate(float(x[0])), m, n, k, "fp8")[0],
                         measured)

    x = round(float(_minimize(loss, [0.6])[0]), 4)
    predicted = fitted_gemm_times(gpu, with_rate(x), m, n, k, "fp8")[0]
    return fit.model_copy(update={"matmul_fp8": x,
                                  "fitted_fp8": _record(data, predicted, measured)})


def _stream_bytes(rows: pd.DataFrame) -> np.ndarray:
    per_element = rows["op"].map(STREAM_BYTES_PER_ELEMENT).to_numpy(dtype=float)
    tokens = rows["num_tokens"].to_numpy(dtype=float)
    return np.asarray(tokens * rows["hidden"].to_numpy(float) * per_element)


def fit_stream(gpu: GPUSpec, rows: pd.DataFrame, data: str) -> StreamFit:
    """One launch time and a bandwidth fraction per op, from elementwise rows."""
    ops = sorted(rows["op"].unique())
    num_bytes, measured = _stream_bytes(rows), rows["time_s"].to_numpy(dtype=float)
    index = rows["op"].map({op: i for i, op in enumerate(ops)}).to_numpy()
    bandwidth = gpu.hbm_bandwidth_gbps * 1e9

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(x[-1] * 1e-6 + num_bytes / (bandwidth * x[:-1][index]))

    def loss(x: np.ndarray) -> float:
        return 1e9 if min(x) <= 0 else _log_loss(predict(x), measured)

    x = _minimize(loss, [0.5] * len(ops) + [3.0])
    return StreamFit(memory={op: round(float(x[i]), 4) for i, op in enumerate(ops)},
                     launch_us=round(float(x[-1]), 3),
                     fitted=_record(data, predict(x), measured))


def fit_attention(gpu: GPUSpec, prefill: pd.DataFrame, decode: pd.DataFrame, data: str
                  ) -> AttentionFit:
    """Prefill (compute, memory, blend, launch) and decode (memory, launch) parameters."""
    pre_flops, pre_bytes = prefill["flops"].to_numpy(), prefill["bytes"].to_numpy()
    pre_time = prefill["time_s"].to_numpy()
    dec_bytes, dec_flops = decode["bytes"].to_numpy(), decode["flops"].to_numpy()
    dec_time = decode["time_s"].to_numpy()

    def with_params(x: np.ndarray, y: np.ndarray) -> GPUSpec:
        fit = AttentionFit.model_construct(prefill=x[0], prefill_memory=x[1], blend=x[2],
                                           prefill_launch_us=x[3], decode_memory=y[0],
                                           decode_launch_us=y[1], fitted={})
        return gpu.model_copy(update={"kernels": KernelFit.model_construct(attention=fit)})

    def prefill_loss(x: np.ndarray) -> float:
        if min(x) < 0 or x[0] == 0 or x[1] == 0 or x[2] < 1:
            return 1e9
        spec = with_params(x, np.array([1.0, 0.0]))
        return _log_loss(prefill_attention_s(spec, pre_flops, pre_bytes), pre_time)

    x = _minimize(prefill_loss, [0.5, 0.7, 2.0, 5.0])

    def decode_loss(y: np.ndarray) -> float:
        if y[0] <= 0 or y[1] < 0:
            return 1e9
        return _log_loss(decode_attention_s(with_params(x, y), dec_bytes, dec_flops), dec_time)

    y = _minimize(decode_loss, [0.7, 5.0])
    spec = with_params(x, y)
    return AttentionFit(
        prefill=round(x[0], 4), prefill_memory=round(x[1], 4), blend=round(x[2], 4),
        prefill_launch_us=round(x[3], 3), decode_memory=round(y[0], 4),
        decode_launch_us=round(y[1], 3),
        fitted={"prefill": _record(data, prefill_attention_s(spec, pre_flops, pre_bytes),
                                   pre_time),
                "decode": _record(data, decode_attention_s(spec, dec_bytes, dec_flops),
                                  dec_time)})


def fit_all_reduce(gpu: GPUSpec, rows: pd.DataFrame, data: str) -> AllReduceFit:
    """Ring all-reduce inside a node from rows with num_gpus, bytes and time_s."""
    sizes, counts = rows["bytes"].to_numpy(float), rows["num_gpus"].to_numpy(int)
    measured = rows["time_s"].to_numpy(float)

    def predict(x: np.ndarray) -> np.ndarray:
        fit = AllReduceFit.model_construct(latency_us=x[0], bandwidth=x[1], launch_us=x[2],
                                           fitted=None)
        spec = gpu.model_copy(update={"kernels": KernelFit.model_construct(all_reduce=fit)})
        out = np.empty_like(measured)
        for n in np.unique(counts):
            sel = counts == n
            out[sel] = all_reduce_fitted_s(spec, sizes[sel], int(n))
        return np.asarray(out)

    def loss(x: np.ndarray) -> float:
        return 1e9 if min(x) < 0 or x[1] == 0 else _log_loss(predict(x), measured)

    x = _minimize(loss, [1.0, 0.8, 10.0])
    return AllReduceFit(latency_us=round(x[0], 4), bandwidth=round(x[1], 4),
                        launch_us=round(x[2], 3), fitted=_record(data, predict(x), measured))


def calibrate(measured_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every family for every GPU the pack measures, as ``kernel_fits.json`` stores it."""
    root = Path(measured_dir)
    fits: dict[str, dict[str, Any]] = {}
    for sku, name in VIDUR_SKUS.items():
        gpu = load_gpu(name).model_copy(update={"kernels": None})
        compute = read_vidur_compute(root / "vidur", sku)
        data = f"vidur/compute/{sku}/*/*/mlp.csv ({VIDUR_SOURCE})"
        gemm = fit_gemm(gpu, compute[compute["kind"] == "gemm"], data)
        fp8 = fp8_gemm_rows(root, sku)
        if len(fp8):
            gemm = fit_gemm_fp8(gpu, gemm, fp8, f"gemm_kernels.csv, {FP8_GEMM_GPUS[sku]} "
                                                f"rows ({KERNELS_SOURCE})")
        stream = fit_stream(gpu, compute[compute["kind"] == "elementwise"].rename(
            columns={"m": "num_tokens"}), data)
        prefill, decode, attention_data = attention_rows(root, gpu)
        attention = fit_attention(gpu, prefill, decode, attention_data)
        collectives = read_vidur_collectives(root / "vidur" / "network" / f"{sku}_dgx")
        inside = collectives[(collectives["op"] == "all_reduce")
                             & (collectives["devices_per_node"] == collectives["num_gpus"])]
        all_reduce = fit_all_reduce(
            gpu, inside, f"vidur/network/{sku}_dgx/all_reduce.csv ({VIDUR_SOURCE})")
        fits[name] = KernelFit(gemm=gemm, stream=stream, attention=attention,
                               all_reduce=all_reduce).model_dump(mode="json")
    return fits


def leave_one_model_out(measured_dir: str | Path, sku: str) -> pd.DataFrame:
    """GEMM fit without each Vidur model, scored on that model: one row per model with
    the held-out median and p90 error and the in-sample fit's on the same rows."""
    root = Path(measured_dir)
    gpu = load_gpu(VIDUR_SKUS[sku]).model_copy(update={"kernels": None})
    compute = read_vidur_compute(root / "vidur", sku)
    rows = compute[compute["kind"] == "gemm"]
    full = fit_gemm(gpu, rows, "all models")
    out = []
    for model in sorted(rows["model"].unique()):
        held = rows[rows["model"] == model]
        fit = fit_gemm(gpu, rows[rows["model"] != model], f"without {model}")
        m, n, k = (held[c].to_numpy(float) for c in ("m", "n", "k"))
        measured = held["time_s"].to_numpy(float)
        scores = {}
        for label, params in (("held_out", fit), ("in_sample", full)):
            errors = np.abs(fitted_gemm_times(gpu, params, m, n, k, "fp16")[0]
                            / measured - 1) * 100
            scores[f"{label}_median_pct"] = float(np.median(errors))
            scores[f"{label}_p90_pct"] = float(np.percentile(errors, 90))
        out.append({"gpu": sku, "model": model, "num_points": len(held), **scores,
                    "matmul": fit.matmul, "memory": fit.memory})
    return pd.DataFrame(out)


# The dies whose sustained-compute fraction is fitted, each with the catalog GPUs that
# carry it (H200 is H100's GH100 with more HBM, at the same power limit). GH100 comes
# first: it also fits the TP-overlap share, which is a property of the framework, and the
# later dies hold it. Blackwell has no measured kernel tables in
# the pack, so its fraction carries the documented kernel efficiencies' error as well
# as the sustained clocks (see profiles/training_fit.py). Its runs are Megatron-Bridge's
# alone (NeMo's long-context B200 table prints layouts that are not its GPU counts, so
# those rows are not compared): one source, so no leave-one-source-out error exists.
TRAINING_DIES = {"GH100": ("H100-SXM5-80GB", "H200-SXM-141GB", "H800-SXM5-80GB"),
                 "Blackwell B200": ("B200-SXM-180GB", "GB200-NVL72"),
                 "Blackwell Ultra GB300": ("GB300-NVL72",)}
# The dies whose MoE runs fit the MoE host floor; later dies take it as it is.
MOE_FLOOR_DIES = ("GH100", "Blackwell B200")
# A die whose runs are first predicted with an earlier die's fit, the error stored beside
# its own fit: GB300 keeps GB200's BF16 and FP8 rates and HBM bandwidth in the catalog
# (Blackwell Ultra raises FP4, the attention exponent rate, the memory and the board
# power), so the GB200 fit on its runs says how far a fit carries to a part it has not
# seen; its Llama runs measure 19-27% above GB200's, hence a fraction of its own.
TRAINING_TRANSFER = {"Blackwell Ultra GB300": "Blackwell B200"}
# GPUs predicted with a die's fit and never fitted to, their error stored beside it: B300
# (HGX, 1,100 W) has B200's catalog rates, and its runs in the pack are MoE runs whose
# releases disagree with each other by up to 2.2x, too few and too noisy to fit.
TRAINING_HELD_OUT = {"Blackwell B200": ("B300-SXM-288GB",)}
# The sources the training step is fitted to: the Megatron-Core family, whose step the
# simulator describes (fused Transformer Engine kernels, TP communication overlap, the
# distributed optimizer). torchtitan's runs are always predicted, never fitted.
FIT_SOURCES = ("megatron-bridge", "nemo", "megatron-lm")

TrainingPoint = tuple[dict[str, Any], Any]


def _training_points(measured_dir: str | Path, gpus: tuple[str, ...]) -> list[TrainingPoint]:
    runs, _ = expressed_runs(measured_dir)
    return [(row, run) for row, run in runs if run.gpu.name in gpus]


def _training_errors(points: list[TrainingPoint], x: tuple[float, float],
                     floor: float = 0.0) -> np.ndarray:
    """Signed log errors (log predicted / measured) of the runs whose plans fit, under
    x = (sustained compute, hidden share of overlapped TP communication) and the MoE
    layers' host floor."""
    errors = []
    for row, run in points:
        try:
            predicted, _ = predict_run(row, run, x[0], x[1], floor)
        except ClusterSimError:
            continue
        errors.append(np.log(predicted / float(row["value"])))
    return np.array(errors)


# Nelder-Mead's starting shares of TP communication hidden (fit_training_step).
SHARE_STARTS = (0.2, 0.5, 0.8)


def fit_training_step(points: list[TrainingPoint], tp_overlap: float | None = None,
                      floor: float = 0.0) -> tuple[float, float]:
    """(sustained compute, TP overlap hidden share) minimizing the median absolute log
    error over ``points``, the best of Nelder-Mead from SHARE_STARTS (deterministic);
    with ``tp_overlap`` given, only the sustained fraction is fitted and the share is
    held."""
    def loss(x: np.ndarray) -> float:
        share = float(x[1]) if tp_overlap is None else tp_overlap
        if not (0.3 <= x[0] <= 1.2 and 0.0 <= share <= 1.0):
            return 1e9
        return float(np.median(np.abs(_training_errors(points, (x[0], share), floor))))

    if tp_overlap is not None:
        held = minimize_scalar(lambda s: loss(np.array([s])), bounds=(0.3, 1.2),
                               method="bounded", options={"xatol": 1e-4})
        return round(float(held.x), 4), tp_overlap
    # The median steps as runs cross the centre, so one simplex can stop on a terrace
    # that a small change of the model moves: a few fixed starts along the share, the best
    # of their ends (deterministic).
    ends = [minimize(loss, np.array([0.9, share]), method="Nelder-Mead",
                     options={"xatol": 1e-3, "fatol": 1e-6, "maxiter": 200})
            for share in SHARE_STARTS]
    best = min(ends, key=lambda end: float(end.fun))
    return round(float(best.x[0]), 4), round(float(best.x[1]), 4)


def _source_errors(points: list[TrainingPoint], x: tuple[float, float],
                   floor: float = 0.0) -> dict[str, float]:
    errors = np.abs(np.expm1(_training_errors(points, x, floor))) * 100
    return {"num_points": float(len(errors)), "median_error_pct": float(np.median(errors)),
            "p90_error_pct": float(np.percentile(errors, 90))}


# The MoE host floor's search grid (seconds per forward plus backward layer pass).
MOE_FLOOR_GRID = np.round(np.arange(0.0, 0.0201, 0.00025), 5)


def _moe_errors(points: list[tuple[TrainingPoint, tuple[float, float]]],
                floor: float) -> np.ndarray:
    """Signed log errors of MoE ``points``, each under its die's (sustained, share)."""
    return np.concatenate([_training_errors([p], x, floor) for p, x in points])


def fit_moe_floor(points: list[tuple[TrainingPoint, tuple[float, float]]]) -> float:
    """The MoE layers' host floor minimizing the median absolute log error over the MoE
    ``points`` (each with its die's (sustained, share)): a grid search, deterministic."""
    losses = [float(np.median(np.abs(_moe_errors(points, float(floor)))))
              for floor in MOE_FLOOR_GRID]
    return float(MOE_FLOOR_GRID[int(np.argmin(losses))])


def _moe_points(measured_dir: str | Path, document: dict[str, Any]
                ) -> dict[str, list[tuple[TrainingPoint, tuple[float, float]]]]:
    """The Megatron-family MoE runs by die, each with its die's fitted (sustained,
    share)."""
    share = float(document.get("tp_overlap_hidden", 1.0))
    out: dict[str, list[tuple[TrainingPoint, tuple[float, float]]]] = {}
    for die in MOE_FLOOR_DIES:
        for row, run in _training_points(measured_dir, TRAINING_DIES[die]):
            entry = document["gpus"].get(run.gpu.name)
            if entry and run.model.is_moe and run_source(row) in FIT_SOURCES:
                out.setdefault(die, []).append(
                    ((row, run), (float(entry["sustained_compute"]), share)))
    return out


def fit_training(measured_dir: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """(training_fits.json's document, the leave-one-source-out table). The dies'
    parameters are fitted without the MoE host floor, the floor on the MoE runs of every
    die under them, then the dies again under the floor; the floor's record holds its
    in-sample error and, per die, the error of a floor fitted without that die."""
    document, _ = _fit_dies(measured_dir, 0.0)
    floor = fit_moe_floor([p for group in _moe_points(measured_dir, document).values()
                           for p in group])
    document, table = _fit_dies(measured_dir, floor)
    groups = _moe_points(measured_dir, document)
    everything = [p for group in groups.values() for p in group]

    def median(points: list[tuple[TrainingPoint, tuple[float, float]]], f: float) -> float:
        return round(float(np.median(np.abs(np.expm1(_moe_errors(points, f)))) * 100), 3)

    document["moe_host_floor"] = {
        "seconds": floor,
        "fitted": {"data": "training_runs.csv, the Megatron-Core family's MoE runs on the "
                           "fitted dies (see the pack's README)",
                   "num_points": len(everything), "median_error_pct": median(everything, floor),
                   "median_error_pct_without_floor": median(everything, 0.0),
                   "leave_one_die_out_median_error_pct": {
                       die: median(held, fit_moe_floor(
                           [p for other, group in groups.items() if other != die
                            for p in group]))
                       for die, held in groups.items() if len(groups) > 1}}}
    return document, table


def _fit_dies(measured_dir: str | Path, floor: float) -> tuple[dict[str, Any], pd.DataFrame]:
    """The dies' sustained fractions and the TP share under the MoE host ``floor``, with
    the leave-one-source-out table."""
    document: dict[str, Any] = {
        "_comment": "Written by `python -m validation.calibrate MEASURED --training "
                    "--write`; see profiles/training_fit.py.", "gpus": {}}
    table: list[dict[str, Any]] = []
    share: float | None = None  # the TP-overlap share, fitted on the first die
    fitted_dies: dict[str, float] = {}  # each die's sustained fraction, as fitted
    for die, names in TRAINING_DIES.items():
        points = _training_points(measured_dir, names)
        fitting = [p for p in points if run_source(p[0]) in FIT_SOURCES]
        if not fitting:
            continue
        fitted = fit_training_step(fitting, share, floor)
        for source in sorted({run_source(row) for row, _ in points}):
            held = [p for p in points if run_source(p[0]) == source]
            rest = [p for p in fitting if run_source(p[0]) != source]
            fits = [("in_sample", fitted)]
            if source not in FIT_SOURCES:
                fits.append(("held_out", fitted))  # never fitted to: it is held out
            elif rest:
                fits.append(("held_out", fit_training_step(rest, share, floor)))
            # (a die with one fitting source has no fit without it: no held-out row)
            for label, x in fits:
                table.append({"die": die, "source": source, "runs": len(held), "fit": label,
                              "sustained_compute": x[0], "tp_overlap_hidden": x[1],
                              **_source_errors(held, x, floor)})
        in_sample = _source_errors(fitting, fitted, floor)
        entry: dict[str, Any] = {"sustained_compute": fitted[0], "die": die, "fitted": {
            "data": "training_runs.csv, the Megatron-Core family's runs on this die "
                    "(Megatron-Bridge, NeMo and Megatron-LM published tables; see the "
                    "pack's README)",
            "num_points": int(in_sample["num_points"]),
            "median_error_pct": round(in_sample["median_error_pct"], 3),
            "p90_error_pct": round(in_sample["p90_error_pct"], 3),
            "leave_one_source_out_median_error_pct": {
                r["source"]: round(float(r["median_error_pct"]), 3) for r in table
                if r["die"] == die and r["fit"] == "held_out"}}}
        earlier = TRAINING_TRANSFER.get(die)
        if earlier in fitted_dies:
            carried = _source_errors(fitting, (fitted_dies[earlier], fitted[1]), floor)
            entry["fitted"]["with_earlier_die_fit"] = {
                "die": earlier, "sustained_compute": fitted_dies[earlier],
                "median_error_pct": round(carried["median_error_pct"], 3),
                "p90_error_pct": round(carried["p90_error_pct"], 3)}
        fitted_dies[die] = fitted[0]
        for name in names:
            document["gpus"][name] = entry
        held_names = TRAINING_HELD_OUT.get(die, ())
        unseen = [p for p in _training_points(measured_dir, held_names)
                  if run_source(p[0]) in FIT_SOURCES] if held_names else []
        if unseen:
            errors = _source_errors(unseen, fitted, floor)
            entry["fitted"]["held_out_gpus"] = {
                "gpus": list(held_names), "num_points": int(errors["num_points"]),
                "median_error_pct": round(errors["median_error_pct"], 3),
                "p90_error_pct": round(errors["p90_error_pct"], 3)}
            for name in held_names:
                document["gpus"][name] = {**entry, "held_out": True}
        if share is None:
            share = fitted[1]
            document["tp_overlap_hidden"] = share
    return document, pd.DataFrame(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.calibrate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("measured_dir", type=Path)
    parser.add_argument("--write", action="store_true", help=f"write {FITS_PATH.name}")
    parser.add_argument("--leave-one-model-out", action="store_true")
    parser.add_argument("--training", action="store_true",
                        help="fit the training step's sustained-compute fractions, TP "
                             "overlap share and MoE host floor to the published training "
                             "runs")
    parser.add_argument("--serving", action="store_true",
                        help="fit the vLLM 0.15 preset's engine path to the vLLM runs")
    parser.add_argument("--power", action="store_true",
                        help="fit the power-cap exponent to Splitwise's capped H100 profile")
    args = parser.parse_args(argv)
    if not (args.measured_dir / "vidur").is_dir():
        print(f"error: {args.measured_dir}: no vidur/ folder; give the measured pack",
              file=sys.stderr)
        return 2
    if args.power:
        power = fit_power_cap(args.measured_dir)
        print(f"power cap {power['cap_fraction']}: prefill x{power['prefill_slowdown']}, "
              f"decode x{power['decode_slowdown']} over {power['num_points']} "
              f"configurations; exponent {power['exponent']}")
        if args.write:
            POWER_CAP_PATH.write_text(json.dumps(power, indent=1) + "\n")
            print(f"wrote {POWER_CAP_PATH}")
        return 0
    if args.training:
        document, table = fit_training(args.measured_dir)
        print(table.round(3).to_string(index=False))
        for name, entry in document["gpus"].items():
            print(f"{name}: sustained_compute {entry['sustained_compute']}, "
                  f"median {entry['fitted']['median_error_pct']}%")
        print(f"tp_overlap_hidden {document.get('tp_overlap_hidden')}")
        print(f"moe_host_floor {json.dumps(document.get('moe_host_floor'))}")
        if args.write:
            TRAINING_FITS_PATH.write_text(json.dumps(document, indent=1) + "\n")
            print(f"wrote {TRAINING_FITS_PATH}")
        return 0
    if args.serving:
        fit = fit_engine_path(args.measured_dir)
        print(fit.per_model().pivot_table(index=["model", "metric"], columns="fit",
                                          values="error_pct").round(2).to_string())
        for device_s, residual_s in fit.rounds:
            print(f"device time {device_s * 1e3:.3f} ms: median TPOT residual of the fitting "
                  f"runs {residual_s * 1e3:+.3f} ms")
        print(f"device time per step {fit.device_step_s * 1e3:.3f} ms (runs {fit.fit_runs}); "
              f"client path {fit.client_path_s * 1e3:.2f} ms")
        for factor, residual in fit.moe_rounds:
            print(f"MoE GEMM factor {factor:.3f}: median relative TPOT residual of the MoE "
                  f"runs {residual * 100:+.2f}%")
        print(f"MoE GEMM factor {fit.moe_gemm_factor:.3f} (runs {fit.moe_runs})")
        for metric, entry in fit.medians().items():
            print(f"{metric}: " + ", ".join(f"{k} {v:.1f}%" for k, v in entry.items()))
        if args.write:
            ENGINE_FITS_PATH.write_text(json.dumps(fits_document(fit), indent=1) + "\n")
            print(f"wrote {ENGINE_FITS_PATH}")
        return 0
    if args.leave_one_model_out:
        for sku in VIDUR_SKUS:
            print(leave_one_model_out(args.measured_dir, sku).round(2).to_string(index=False))
        return 0
    fits = calibrate(args.measured_dir)
    text = json.dumps({"_comment": "Written by `python -m validation.calibrate MEASURED_DIR "
                                   "--write`; each family names the data that fit it.",
                       "gpus": fits}, indent=1) + "\n"
    if args.write:
        FITS_PATH.write_text(text)
        print(f"wrote {FITS_PATH}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
