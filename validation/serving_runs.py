"""Serving predictions against real vLLM runs: the serving group of the validation.

The measured pack's ``vllm_runs.csv`` holds real vLLM servers measured by inference-perf
(streaming, fixed output lengths) under shared-prefix workloads in load stages. Each run
whose model is in the catalog is replayed here as its client sent it and simulated as its
server was configured::

    row ─► workload: inference-perf shared_prefix of the run's profile, its stages
        ─► deployment: model, GPU, TP, the vLLM 0.15 engine preset (V1: chunked prefill,
           prefix caching, asynchronous scheduling; the train/val runs' fork states no base
           version and takes it too), max_num_batched_tokens, gpu_memory_utilization, KV blocks
           where the run's log gave them (and a context no longer than they hold),
           max_num_seqs where known (else the preset's)
        ─► per stage (requests sent in it; -1 = the whole run): E2E mean, TTFT mean and
           the per-token TPOT = (E2E mean - TTFT mean) / (output tokens - 1), both sides
           counting the tokens the server generated (below); and the run's state,
           predicted (the summary's stability) and measured (a stage whose TTFT p90
           passed ``OVERLOAD_TTFT_P90_S`` was overloaded)

Which tokens a TPOT counts. The source's ``itl_mean`` (the pack's ``tpot_mean_ms``) divides
by the mean output tokens the client counted, and inference-perf counts them by
re-tokenizing the streamed text (from which the server drops special tokens). Its servers
generated ``output_len`` tokens a request (``ignore_eos``, as the pack's README says of
the client; the counts the source's means imply are within 5% of it in every run, where
an instruct model would stop long before on random prompts otherwise), so the client's
count is short by what does not survive the round trip through text: ``client_tokens``
(implied by the three means) is 4.0-4.4% short for Llama-3.1-8B-Instruct and within 2%
for every other run. The replay compares the per-token figure per token the server
generated (``output_len``): the measured one is the source's means divided by it, so a
run's TPOT error is its decode span's error whatever its tokenizer does. The source's own
figure is ``source_tpot_ms``.

Runs the catalog cannot express (models it lacks, data parallelism, CPU KV offload) are
listed with the reason, never dropped silently. Nothing here is fitted: the errors are
the simulator's as it stands (the preset's engine-path parameters are fitted to these
runs by ``validation.calibrate_serving``, which says how). A run takes a few seconds to
simulate, so the group's rows are computed once per process.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from profiles.errors import ClusterSimError
from profiles.hardware import load_gpu
from profiles.models import load_model
from simulator import build_deployment, simulate
from validation.comparison import GROUP_MEDIAN_TOLERANCE_PTS, RECORD_TOLERANCE_PTS
from validation.error_bars import GPU_NAMES
from workloads.benchmark_tools import InferencePerfConfig, from_inference_perf

__all__ = ["GPU_NAMES", "OVERLOAD_TTFT_P90_S", "catalog_model_name", "compare_serving_runs",
           "inference_perf_config", "measured_means", "measured_state", "model_family",
           "overload_counts", "overload_mismatches", "overload_states", "replay_runs",
           "run_errors", "serving_errors", "serving_group_table", "serving_groups",
           "serving_rows", "skipped_runs"]

METRICS = ("e2e_mean", "ttft_mean", "tpot_mean")
# A measured run was overloaded when a load stage's client TTFT p90 passed this: a queue
# that grew without bound for minutes. A server that keeps up holds TTFT to a few steps.
OVERLOAD_TTFT_P90_S = 10.0


def measured_state(run: pd.DataFrame) -> str:
    """OVERLOADED or STABLE, for one measured run's rows (``OVERLOAD_TTFT_P90_S``)."""
    stages = run[run["stage_index"] >= 0]
    return ("OVERLOADED" if (stages["ttft_p90_ms"] > OVERLOAD_TTFT_P90_S * 1e3).any()
            else "STABLE")


def _means(e2e_ms: float, ttft_ms: float, output_len: int) -> dict[str, float]:
    """E2E and TTFT means and the per-token TPOT, per token the server generated."""
    return {"e2e_mean": e2e_ms, "ttft_mean": ttft_ms,
            "tpot_mean": (e2e_ms - ttft_ms) / (output_len - 1)}


def measured_means(measured: Any, output_len: int) -> dict[str, float]:
    """One measured row's E2E and TTFT means, its per-token TPOT (per token the server
    generated: ``output_len``) and the output tokens its client counted, implied by the
    source's TPOT (module docstring)."""
    e2e, ttft = float(measured.e2e_mean_ms), float(measured.ttft_mean_ms)
    return _means(e2e, ttft, output_len) | {
        "client_tokens": 1.0 + (e2e - ttft) / float(measured.tpot_mean_ms)}


def catalog_model_name(hf_id: str) -> str | None:
    """The catalog's name of a measured run's model (its Hugging Face id), or ``None``."""
    for candidate in (hf_id, hf_id.removesuffix("-Instruct")):
        try:
            return load_model(candidate).name
        except ClusterSimError:
            continue
    return None


def _why_not(run: pd.DataFrame, model: str | None) -> str | None:
    first = run.iloc[0]
    if model is None:
        return f"model {first['model']} is not in the catalog"
    if str(first["hardware"]) not in GPU_NAMES:
        return f"hardware {first['hardware']} is not in the catalog"
    if pd.notna(first["dp"]) and float(first["dp"]) > 1:
        return "data parallelism"
    if str(first["cpu_kv_offload"]).lower() == "true":
        return "CPU KV offload"
    return None


def inference_perf_config(shape: Any, stages: list[tuple[float, float]]
                          ) -> InferencePerfConfig:
    """The inference-perf workload of a measured run or profile: ``shape`` holds the
    pack's shared-prefix columns (system_prompt_len, question_len, output_len,
    num_unique_system_prompts, num_users_per_system_prompt); ``stages`` are (rate,
    duration) pairs."""
    return InferencePerfConfig.model_validate({
        "load": {"type": "constant", "stages": [
            {"rate": float(rate), "duration": float(duration)} for rate, duration in stages]},
        "data": {"type": "shared_prefix", "shared_prefix": {
            "num_groups": int(shape["num_unique_system_prompts"]),
            "num_prompts_per_group": int(shape["num_users_per_system_prompt"]),
            "system_prompt_len": int(shape["system_prompt_len"]),
            "question_len": int(shape["question_len"]),
            "output_len": int(shape["output_len"])}}})


def _config(run: pd.DataFrame) -> InferencePerfConfig:
    stages = run[run["stage_index"] >= 0].sort_values("stage_index")
    return inference_perf_config(run.iloc[0], [(s.stage_rate_rps, s.stage_duration_s)
                                               for s in stages.itertuples()])


def _deployment(run: pd.DataFrame, model: str) -> dict[str, Any]:
    first = run.iloc[0]
    scheduler: dict[str, Any] = {"max_num_batched_tokens": int(first["max_num_batched_tokens"])}
    if pd.notna(first["gpu_memory_utilization"]):  # else vLLM's default, 0.9 (the preset's)
        scheduler["gpu_memory_utilization"] = float(first["gpu_memory_utilization"])
    if pd.notna(first["max_num_seqs"]):
        scheduler["max_num_seqs"] = int(first["max_num_seqs"])
    if pd.notna(first["total_kv_blocks"]):
        blocks = int(first["total_kv_blocks"])
        scheduler["num_gpu_blocks_override"] = blocks
        # NOTE: vLLM refuses a context longer than its KV cache, so a server whose model
        # allows more (Mistral-Nemo: 1M positions) ran with a smaller --max-model-len; the
        # source does not say which, and the KV cache's size is the largest it can be.
        context = load_model(model).max_position_embeddings
        scheduler["max_model_len"] = min(context, blocks * int(first["block_size_tokens"]))
    return {"model": model, "gpu": GPU_NAMES[str(first["hardware"])],
            "parallelism": {"tp": int(first["tp"])}, "engine": "vllm-v1-0.15",
            "scheduler": scheduler}


_SIMULATED: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}  # by measured folder


def _simulated(measured_dir: str, progress: Callable[[int, int], None] | None = None
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The replayed runs' rows and the skipped runs, computed once per process."""
    if measured_dir not in _SIMULATED:
        _SIMULATED[measured_dir] = _simulate_runs(measured_dir, progress)
    return _SIMULATED[measured_dir]


def replay_runs(measured_dir: str | Path, models: Collection[str] | None = None
                ) -> pd.DataFrame:
    """The runs' rows (as :func:`serving_rows`) simulated afresh with the engine presets as
    they are now, not cached; only the runs of ``models`` (the pack's model ids) if given.
    For fitting the presets' engine-path parameters."""
    return _simulate_runs(str(Path(measured_dir).resolve()), None, models)[0]


def _simulate_runs(measured_dir: str, progress: Callable[[int, int], None] | None,
                   models: Collection[str] | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = pd.read_csv(Path(measured_dir) / "vllm_runs.csv")
    if models is not None:
        runs = runs[runs["model"].isin(list(models))]
    rows, skipped = [], []
    groups = runs.groupby("run_id", sort=True)
    for done, (run_id, run) in enumerate(groups):
        if progress is not None:
            progress(done, groups.ngroups)
        model = catalog_model_name(str(run.iloc[0]["model"]))
        reason = _why_not(run, model)
        if reason is not None or model is None:
            skipped.append({"run_id": run_id, "model": run.iloc[0]["model"],
                            "hardware": run.iloc[0]["hardware"], "reason": reason})
            continue
        config = _config(run)
        trace = from_inference_perf(config)
        try:
            result = simulate(build_deployment(_deployment(run, model)), trace)
        except ClusterSimError as error:
            skipped.append({"run_id": run_id, "model": run.iloc[0]["model"],
                            "hardware": run.iloc[0]["hardware"], "reason": str(error)})
            continue
        if not result.ok or result.requests is None:
            skipped.append({"run_id": run_id, "model": run.iloc[0]["model"],
                            "hardware": run.iloc[0]["hardware"],
                            "reason": f"simulation failed: {result.error}"})
            continue
        requests = result.requests
        states = {"predicted_state": (result.summary or {})["stability"]["state"],
                  "measured_state": measured_state(run)}
        output_len = config.data.shared_prefix.output_len
        starts = trace.metadata["stage_start_s"]
        for measured in run.itertuples():
            observed = measured_means(measured, output_len)
            if measured.stage_index >= 0:
                low = starts[int(measured.stage_index)]
                high = low + float(measured.stage_duration_s)
                part = requests[(requests["arrival_s"] >= low) & (requests["arrival_s"] < high)]
            else:
                part = requests
            predicted = _means(float(part["e2e_s"].mean()) * 1e3,
                               float(part["ttft_s"].mean()) * 1e3, output_len)
            for metric in METRICS:
                rows.append({
                    "run_id": int(str(run_id)), "model": measured.model,
                    "gpu": measured.hardware, "tp": int(measured.tp),
                    "workload": measured.workload_label, "stage": int(measured.stage_index),
                    "metric": metric, "measured_ms": observed[metric],
                    "predicted_ms": predicted[metric],
                    "source_tpot_ms": float(measured.tpot_mean_ms),
                    "client_tokens": observed["client_tokens"]} | states)
    table = pd.DataFrame(rows, columns=["run_id", "model", "gpu", "tp", "workload", "stage",
                                        "metric", "measured_ms", "predicted_ms",
                                        "source_tpot_ms", "client_tokens",
                                        "predicted_state", "measured_state"])
    table["error_pct"] = (table["predicted_ms"] - table["measured_ms"]).abs() \
        / table["measured_ms"] * 100.0
    return table, pd.DataFrame(skipped, columns=["run_id", "model", "hardware", "reason"])


def serving_rows(measured_dir: str | Path,
                 progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per run, stage and metric: measured and predicted milliseconds, error;
    ``progress`` hears (runs replayed, runs) the first time a folder is replayed."""
    return _simulated(str(Path(measured_dir).resolve()), progress)[0].copy()


def skipped_runs(measured_dir: str | Path) -> pd.DataFrame:
    """The runs the simulator cannot express yet, with the reason."""
    return _simulated(str(Path(measured_dir).resolve()))[1].copy()


def model_family(hf_id: str) -> str:
    """A run's model family: its catalog name without the size and the quantization
    (``llama-3.1-8b`` -> ``llama-3.1``, ``mixtral-8x22b`` -> ``mixtral``)."""
    name = catalog_model_name(hf_id) or hf_id.rsplit("/", 1)[-1].lower()
    name = re.sub(r"-(fp8|int8|int4|awq|gptq)$", "", name)
    return re.sub(r"-\d+(\.\d+)?b$|-\d+x\d+b$", "", name)


def serving_groups(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (GPU, model family, TP, metric) over the whole-run rows: runs, median and p90
    error, and the signed median (negative: predicted too fast)."""
    whole = rows[rows["stage"] == -1]
    families = {m: model_family(str(m)) for m in set(whole["model"])}
    out = []
    for (gpu, family, tp, metric), part in whole.assign(
            family=whole["model"].map(families)).groupby(
                ["gpu", "family", "tp", "metric"], sort=True):
        errors = part["error_pct"].to_numpy()
        signed = (part["predicted_ms"] - part["measured_ms"]) / part["measured_ms"] * 100.0
        out.append({"gpu": load_gpu(GPU_NAMES[str(gpu)]).name, "family": family,
                    "tp": int(tp), "metric": metric,
                    "runs": len(part), "median_error_pct": float(np.median(errors)),
                    "p90_error_pct": float(np.percentile(errors, 90)),
                    "signed_median_pct": float(np.median(signed))})
    return pd.DataFrame(out, columns=["gpu", "family", "tp", "metric", "runs",
                                      "median_error_pct", "p90_error_pct",
                                      "signed_median_pct"])


def serving_group_table(groups: pd.DataFrame) -> list[list[str]]:
    """:func:`serving_groups` as printed rows: GPU, family, TP, runs, then per metric
    (E2E, TPOT, TTFT) "median% (p90%)", signed median in brackets after."""
    out = []
    for (gpu, family, tp), part in groups.groupby(["gpu", "family", "tp"], sort=True):
        cells = []
        by_metric = part.set_index("metric")
        for metric in ("e2e_mean", "tpot_mean", "ttft_mean"):
            if metric not in by_metric.index:
                cells.append("-")
                continue
            g = by_metric.loc[metric]
            cells.append(f"{g['median_error_pct']:.1f}% ({g['p90_error_pct']:.1f}%) "
                         f"[{g['signed_median_pct']:+.1f}%]")
        out.append([str(gpu), str(family), str(tp), str(int(part["runs"].max())), *cells])
    return out


def serving_errors(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (GPU, metric) over the runs' whole-run rows (stage -1): runs, median and p90
    error, and the signed median (negative: predicted too fast)."""
    whole = rows[rows["stage"] == -1]
    out = []
    for (gpu, metric), part in whole.groupby(["gpu", "metric"], sort=True):
        errors = part["error_pct"].to_numpy()
        signed = ((part["predicted_ms"] - part["measured_ms"]) / part["measured_ms"] * 100.0)
        out.append({"gpu": load_gpu(GPU_NAMES[str(gpu)]).name, "operator": f"serving {metric}",
                    "num_points": len(part),
                    "median_error_pct": float(np.median(errors)),
                    "p90_error_pct": float(np.percentile(errors, 90)),
                    "max_error_pct": float(errors.max()),
                    "signed_median_pct": float(np.median(signed)),
                    "worst": "; ".join(f"run {r.run_id} {r.model} tp={r.tp} ({r.error_pct:.0f}%)"
                                       for r in part.nlargest(3, "error_pct").itertuples()),
                    "source": "vllm_runs.csv"})
    return pd.DataFrame(out)


def run_errors(rows: pd.DataFrame) -> dict[str, float]:
    """Whole-run error per run and metric, keyed ``"run <id> <metric>"`` (the baseline's
    per-run entries)."""
    whole = rows[rows["stage"] == -1]
    return {f"run {r.run_id} {r.metric}": round(float(r.error_pct), 4)
            for r in whole.itertuples()}


def overload_states(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per replayed run: its measured and predicted state (STABLE/OVERLOADED)."""
    if "predicted_state" not in rows:
        return pd.DataFrame(columns=["run_id", "model", "gpu", "measured_state",
                                     "predicted_state"])
    return (rows[["run_id", "model", "gpu", "measured_state", "predicted_state"]]
            .drop_duplicates("run_id").sort_values("run_id").reset_index(drop=True))


def overload_counts(states: pd.DataFrame) -> tuple[int, int, list[int]]:
    """Of :func:`overload_states`: runs overloaded as measured, runs predicted
    overloaded, and the runs where the two disagree."""
    return (int((states["measured_state"] == "OVERLOADED").sum()),
            int((states["predicted_state"] == "OVERLOADED").sum()),
            [int(r) for r in states[states["measured_state"]
                                    != states["predicted_state"]]["run_id"]])


def overload_mismatches(rows: pd.DataFrame) -> list[str]:
    """A line per run whose predicted state is not its measured one (both are failures:
    an overload the real server sustained, or one the simulator did not see)."""
    states = overload_states(rows)
    return [f"run {r.run_id} ({r.model}, {r.gpu}): predicted {r.predicted_state}, measured "
            f"{r.measured_state} (overloaded: a stage's TTFT p90 above "
            f"{OVERLOAD_TTFT_P90_S:g} s)"
            for r in states.itertuples() if r.predicted_state != r.measured_state]


def compare_serving_runs(rows: pd.DataFrame, baseline: dict[str, float],
                         run_tolerance_pts: float = RECORD_TOLERANCE_PTS,
                         median_tolerance_pts: float = GROUP_MEDIAN_TOLERANCE_PTS
                         ) -> tuple[list[str], list[str]]:
    """Regressions and movements of the vLLM runs against the baseline's per-run errors.

    Only runs the baseline knows are gated, so a run newly expressed (a model added to
    the catalog) is reported, never counted against the runs it joins: a run more than
    ``run_tolerance_pts`` worse fails, and so does a (GPU, metric) whose median over the
    baseline's runs is more than ``median_tolerance_pts`` worse, and so does a run whose
    predicted state (STABLE/OVERLOADED) is not its measured one.
    """
    regressions: list[str] = []
    movements: list[str] = []
    current = run_errors(rows)
    for key, error in sorted(current.items()):
        before = baseline.get(key)
        if before is None:
            movements.append(f"{key}: newly expressed, error {error:.2f}%")
        elif error > before + run_tolerance_pts:
            regressions.append(f"{key}: error {before:.2f}% -> {error:.2f}% (more than "
                               f"{run_tolerance_pts:g} points worse)")
        elif abs(error - before) >= 0.01:
            movements.append(f"{key}: error {before:.2f}% -> {error:.2f}%")
    whole = rows[rows["stage"] == -1]
    for (gpu, metric), part in whole.groupby(["gpu", "metric"], sort=True):
        keys = [f"run {r} {metric}" for r in part["run_id"] if f"run {r} {metric}" in baseline]
        if not keys:
            continue
        now = float(np.median([current[k] for k in keys]))
        then = float(np.median([baseline[k] for k in keys]))
        if now > then + median_tolerance_pts:
            regressions.append(f"{gpu} serving {metric}: median error over the baseline's "
                               f"{len(keys)} runs {then:.2f}% -> {now:.2f}% (more than "
                               f"{median_tolerance_pts:g} point worse)")
    for key in sorted(set(baseline) - set(current)):
        movements.append(f"{key}: in the baseline but no longer expressed")
    regressions += overload_mismatches(rows)
    return regressions, movements
