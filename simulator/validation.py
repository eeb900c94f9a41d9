"""Validation: predict every measured-run record and say how far off we are.

A record (``validation/records/*.json``) is one measured run: its scenario, the measured
metric and the source (paper and table, benchmark log, our own GPU run). Each record kind
has a predictor here that runs the same models a simulation uses; the error is the
absolute percentage error against the measurement. Records whose figure was used to set a
parameter are ``calibration`` and are reported apart from ``test`` records.

The regression gate compares per-record errors with the committed baseline
(``validation/baseline.json``): it fails when a group's median error rises by more than 1
percentage point or any record's error by more than 5 points. Improvements are reported
too; updating the baseline is one explicit command (``clustersim validate
--update-baseline``), and it prints which records moved.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from profiles.cluster import ClusterSpec, LinkCost, build_cluster_graph, group_link, link_between
from profiles.collectives import all_reduce_s, bus_bandwidth, nvls_link
from profiles.errors import ClusterSimError, format_validation_error
from profiles.gemm import gemm_time_s
from profiles.hardware import load_gpu
from profiles.models import ModelSpec
from profiles.training_cost import layer_cost
from simulator.reference_compare import compare_reference, load_reference_run
from simulator.training import simulate_training
from workloads.training import ParallelPlan, TrainingJob

__all__ = ["PENDING_KINDS", "PREDICTORS", "REFERENCE_STATISTICS", "Record",
           "add_reference_run", "compare_to_baseline",
           "default_records_dir", "group_errors", "load_records", "pending_records",
           "predict_records"]

GROUP_MEDIAN_TOLERANCE_PTS = 1.0
RECORD_TOLERANCE_PTS = 5.0


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Frozen):
    kind: Literal["paper", "benchmark", "maintainer", "user", "our_run"]
    citation: str = Field(min_length=3)
    locator: str = Field(min_length=3, description="table, page, figure or thread")


class Measured(_Frozen):
    metric: str
    value: float = Field(gt=0)
    unit: str
    low: float | None = None
    high: float | None = None


class Record(_Frozen):
    """One measured run and where its number comes from."""

    id: str
    group: Literal["kernels", "collectives", "serving", "training"]
    kind: str
    role: Literal["calibration", "test"]
    scenario: dict[str, Any]
    measured: Measured
    source: Source
    notes: str = ""


def default_records_dir() -> Path:
    """``validation/records`` of the source tree this package runs from."""
    return Path(__file__).resolve().parents[1] / "validation" / "records"


def load_records(folder: str | Path | None = None) -> list[Record]:
    """Every record of every ``*.json`` file in ``folder``, ids unique.

    Raises:
        ClusterSimError: a missing folder, a bad file, a record without a source, a
            duplicate id or a kind without a predictor.
    """
    folder = Path(folder) if folder is not None else default_records_dir()
    if not folder.is_dir():
        raise ClusterSimError(f"validation records {folder}: no such folder; pass --records")
    records: list[Record] = []
    for path in sorted(folder.glob("*.json")):
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))["records"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ClusterSimError(f"validation records {path}: expected an object with "
                                  f"'records' ({error})") from None
        for index, entry in enumerate(entries):
            if isinstance(entry, dict) and entry.get("kind") == "reference_run":
                # A run folder is named relative to its records file; resolved here so the
                # predictor finds it wherever the records folder is.
                scenario = dict(entry.get("scenario") or {})
                scenario["run"] = str((path.parent / str(scenario.get("run", ""))).resolve())
                entry = {**entry, "scenario": scenario}
            try:
                record = Record.model_validate(entry)
            except ValidationError as error:
                raise ClusterSimError(format_validation_error(
                    error, f"validation records {path.name} record {index}")) from None
            if record.kind not in PREDICTORS and record.kind not in PENDING_KINDS:
                known = ", ".join([*PREDICTORS, *PENDING_KINDS])
                raise ClusterSimError(f"validation record {record.id}: kind {record.kind!r} "
                                      f"is unknown; known: {known}")
            records.append(record)
    ids = [record.id for record in records]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ClusterSimError(f"validation records: duplicate ids {', '.join(duplicates)}")
    if not records:
        raise ClusterSimError(f"validation records {folder}: no records found")
    return records


# ---- predictors: one per record kind ---------------------------------------------------

def _gemm_ceiling(scenario: dict[str, Any]) -> float:
    """The best achieved TFLOP/s over a sweep of GEMM shapes, as a maximum-achievable
    benchmark reports it: m and n over ``sweep`` = [start, stop, step], k fixed."""
    gpu = load_gpu(scenario["gpu"])
    dtype, k = scenario.get("dtype", "bf16"), scenario["k"]
    start, stop, step = scenario["sweep"]
    sizes = range(start, stop + 1, step)
    return max(float(2.0 * m * n * k / gemm_time_s(gpu, m, n, k, dtype) / 1e12)
               for m in sizes for n in sizes)


def _allreduce_busbw(scenario: dict[str, Any]) -> float:
    """Bus bandwidth (GB/s) of an all-reduce inside one node, with the record's algorithm
    (ring, or NVLS where the GPU's switch has it). busbw = algbw x 2(n-1)/n, nccl-tests'
    definition."""
    gpu = load_gpu(scenario["gpu"])
    n = int(scenario["num_gpus"])
    size = float(scenario["message_bytes"])
    algorithm = scenario.get("algorithm", "ring")
    link = nvls_link(gpu) if algorithm == "nvls" else None
    if link is None:
        algorithm = "ring"
        graph = build_cluster_graph(ClusterSpec(num_nodes=1, gpus_per_node=max(n, 8)), gpu)
        link = group_link(graph, tuple(f"n0.g{i}" for i in range(n)))
    return bus_bandwidth("all_reduce", size, n, all_reduce_s(size, n, link, algorithm)) / 1e9


def _nic_p2p_bandwidth(scenario: dict[str, Any]) -> float:
    """GB/s of one GPU-to-GPU transfer between two nodes (one NIC each)."""
    gpu = load_gpu(scenario["gpu"])
    graph = build_cluster_graph(ClusterSpec(num_nodes=2, gpus_per_node=8), gpu)
    size = float(scenario["message_bytes"])
    return size / link_between(graph, "n0.g0", "n1.g0").transfer_s(size) / 1e9


_GPU_NAMES = {"A100-80GB": "a100", "A100": "a100", "H100-SXM-80GB": "h100",
              "H200-SXM-141GB": "h200"}


def _gpt(scenario: dict[str, Any]) -> ModelSpec:
    """Megatron's GPT of the record's shape: 4h MLP, learned positions, vocab 51,200."""
    h, heads = int(scenario["hidden"]), int(scenario["heads"])
    return ModelSpec(name=f"gpt-{scenario.get('params_b', '?')}b", num_layers=int(
        scenario["layers"]), hidden_size=h, num_attention_heads=heads, num_kv_heads=heads,
        head_dim=h // heads, intermediate_size=4 * h, vocab_size=51200,
        max_position_embeddings=int(scenario["seq"]), mlp_kind="standard",
        norm_kind="layernorm", linear_bias=True, learned_position_embeddings=True,
        dtype="fp16", kv_cache_dtype="fp16")


def _training_job(scenario: dict[str, Any]) -> TrainingJob:
    """The record's run as a job. Unstated settings take Megatron's defaults of the time:
    micro-batch 1, 1F1B (interleaved when the notes say so), unfused attention; "ckpt"
    and "full" mean full recomputation, "selective+SP" selective with sequence
    parallelism."""
    recompute = str(scenario.get("recompute", "none"))
    interleave = int(scenario.get("interleave", 1))
    tp, pp = int(scenario.get("tp", 1)), int(scenario.get("pp", 1))
    return TrainingJob(
        model=str(scenario["model"]), seq_len=int(scenario["seq"]),
        global_batch=int(scenario.get("gbs", int(scenario.get("mbs", 1))
                                      * int(scenario.get("dp", 1)))),
        micro_batch=int(scenario.get("mbs", 1)),
        dtype="bf16",
        plan=ParallelPlan(
            tp=tp, pp=pp, dp=int(scenario.get("dp", 1)),
            schedule="interleaved" if interleave > 1 else "1f1b",
            virtual_stages=interleave,
            sequence_parallel="SP" in recompute and tp > 1,
            recompute="full" if recompute in ("full", "ckpt") else
            "selective" if recompute.startswith("selective") else "none",
            attention_kernel="unfused", zero_stage=0))


def _training(scenario: dict[str, Any], metric: str) -> float:
    job = _training_job(scenario)
    result = simulate_training(job, gpu=_GPU_NAMES.get(scenario["gpu"], scenario["gpu"]),
                               model=_gpt(scenario))
    if metric == "iter_time_s":
        return result.step_s
    if metric == "iter_time_ms":
        return result.step_s * 1e3
    if metric == "mfu_pct":
        return result.mfu * 100.0
    return result.hardware_tflops_per_gpu  # Narayanan et al. count recomputation


def _layer_fwd_bwd(scenario: dict[str, Any]) -> float:
    """Milliseconds of one layer's forward and backward for one micro-batch."""
    job = _training_job(scenario)
    plan = job.plan
    cost = layer_cost(
        _gpt(scenario), load_gpu(_GPU_NAMES.get(scenario["gpu"], scenario["gpu"])),
        seq_len=job.seq_len, micro_batch=job.micro_batch, tp=plan.tp, cp=1, ep=1,
        sequence_parallel=plan.sequence_parallel, recompute=plan.recompute,
        attention_kernel="unfused", overlap_tp_comm=False, dtype="bf16",
        tp_link=_node_link(scenario["gpu"]), cp_link=_node_link(scenario["gpu"]),
        ep_link=_node_link(scenario["gpu"]))
    return (cost.forward_s + cost.backward_s) * 1e3


def _node_link(gpu_name: str) -> LinkCost:
    gpu = load_gpu(_GPU_NAMES.get(gpu_name, gpu_name))
    graph = build_cluster_graph(ClusterSpec(num_nodes=1, gpus_per_node=8), gpu)
    return link_between(graph, "n0.g0", "n0.g1")


@functools.cache
def _compared_run(folder: str) -> dict[str, Any]:
    return compare_reference(folder)


def _reference_run(scenario: dict[str, Any]) -> float:
    """A statistic of our measured reference run, as the simulator predicts the run: the
    step-time median (each measured batch priced by the cost model), or a TTFT, TPOT or
    E2E percentile of the replayed trace (see simulator/reference_compare.py)."""
    compared = _compared_run(scenario["run"])
    statistic = scenario["statistic"]
    seconds = (compared["per_step"]["predicted_p50_s"] if statistic == "step_time_p50"
               else compared["per_request"][statistic]["predicted_s"])
    return float(seconds * (1e3 if scenario.get("unit") == "ms" else 1.0))


PREDICTORS: dict[str, Callable[[dict[str, Any]], float]] = {
    "gemm_ceiling": _gemm_ceiling,
    "allreduce_busbw": _allreduce_busbw,
    "nic_p2p_bandwidth": _nic_p2p_bandwidth,
    "training_iter_time": lambda scenario: _training(
        scenario, "iter_time_ms" if scenario.get("unit") == "ms" else "iter_time_s"),
    "training_tflops_per_gpu": lambda scenario: _training(scenario, "tflops"),
    "training_mfu": lambda scenario: _training(scenario, "mfu_pct"),
    "training_layer_fwd_bwd": _layer_fwd_bwd,
    "reference_run": _reference_run,
}


# Record kinds with measurements but no predictor yet, and what will predict them. Such
# records are kept (with their sources) and counted, never silently dropped.
PENDING_KINDS: dict[str, str] = {
    "serving_tokens_per_s": "serving records with their workloads (our real runs)",
    "serving_p50_ttft": "serving records with their workloads (our real runs)",
    "serving_p99_tbt": "serving records with their workloads (our real runs)",
}


REFERENCE_STATISTICS = ("step_time_p50", "ttft_p50", "ttft_p90", "tpot_p50", "tpot_p90",
                        "e2e_p50", "e2e_p90")


def add_reference_run(run_dir: str | Path, run_id: str, records_dir: str | Path | None = None
                      ) -> list[Record]:
    """Join a measured reference run to the validation suite: its folder is copied to
    ``runs/<run_id>/`` beside the records, and one test record per statistic of
    :data:`REFERENCE_STATISTICS` goes into ``our_runs.json``, both written whole or not at
    all.

    Raises:
        ClusterSimError: an unreadable run, a bad id, or an id already recorded.
    """
    meta, steps, requests = load_reference_run(run_dir)
    if not run_id or not all(c.isalnum() or c in "-_." for c in run_id):
        raise ClusterSimError(f"--id {run_id!r}: use letters, digits, '-', '_' and '.'")
    folder = Path(records_dir) if records_dir is not None else default_records_dir()
    file = folder / "our_runs.json"
    existing = json.loads(file.read_text())["records"] if file.is_file() else []
    if any(entry["id"].startswith(f"{run_id}:") for entry in existing):
        raise ClusterSimError(f"--id {run_id}: already recorded in {file.name}")
    device = meta.get("device", {})
    deployment = meta.get("deployment", {})
    measured = {"step_time_p50": float(np.median(steps["device_s"]))}
    for statistic in REFERENCE_STATISTICS[1:]:
        metric, q = statistic.rsplit("_p", 1)
        measured[statistic] = float(np.percentile(requests[f"{metric}_s"].dropna(), int(q)))
    entries = [{
        "id": f"{run_id}:{statistic}", "group": "serving", "kind": "reference_run",
        "role": "test", "scenario": {"run": f"runs/{run_id}", "statistic": statistic},
        "measured": {"metric": statistic, "value": value * 1e3, "unit": "ms"},
        "source": {"kind": "our_run",
                   "citation": f"clustersim reference run on {device.get('name', '?')} "
                               f"(driver {device.get('driver', '?')}, "
                               f"{device.get('runtime', '?')}, torch "
                               f"{device.get('torch', '?')}), {meta.get('date', '?')}",
                   "locator": f"validation/records/runs/{run_id}/run.json"},
        "notes": f"{deployment.get('model')} on {deployment.get('gpu')}, "
                 f"{meta.get('workload', {}).get('num_requests')} requests of "
                 f"{meta.get('workload', {}).get('file')}; command: {meta.get('command')}",
    } for statistic, value in measured.items()]
    records = [Record.model_validate(entry) for entry in entries]
    target = folder / "runs" / run_id
    staging = folder / "runs" / f".staging-{run_id}"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(run_dir, staging)
        text = json.dumps({"records": existing + entries}, indent=1) + "\n"
        (folder / ".our_runs.json.tmp").write_text(text)
        staging.replace(target)
        (folder / ".our_runs.json.tmp").replace(file)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise ClusterSimError(f"validation records {folder}: cannot write ({error})") from None
    return records


def pending_records(records: list[Record]) -> dict[str, list[str]]:
    """Ids of records awaiting a predictor, by what will predict them."""
    pending: dict[str, list[str]] = {}
    for record in records:
        if record.kind not in PREDICTORS:
            pending.setdefault(PENDING_KINDS[record.kind], []).append(record.id)
    return pending


def predict_records(records: list[Record]) -> pd.DataFrame:
    """One row per predictable record: measured, predicted, absolute percentage error."""
    rows = []
    for record in records:
        if record.kind not in PREDICTORS:
            continue
        scenario = record.scenario | {"unit": record.measured.unit}
        predicted = PREDICTORS[record.kind](scenario)
        measured = record.measured.value
        rows.append({
            "id": record.id, "group": record.group, "kind": record.kind, "role": record.role,
            "metric": record.measured.metric, "unit": record.measured.unit,
            "measured": measured, "predicted": predicted,
            "error_pct": abs(predicted - measured) / measured * 100.0,
            "source": f"{record.source.citation}; {record.source.locator}",
        })
    return pd.DataFrame(rows)


def group_errors(rows: pd.DataFrame) -> pd.DataFrame:
    """Median, p90 and max error per (group, role), with the record count."""
    out = []
    for (group, role), part in rows.groupby(["group", "role"], sort=True):
        errors = part["error_pct"].to_numpy()
        out.append({"group": group, "role": role, "num_records": len(errors),
                    "median_error_pct": float(np.median(errors)),
                    "p90_error_pct": float(np.percentile(errors, 90)),
                    "max_error_pct": float(errors.max())})
    return pd.DataFrame(out)


def compare_to_baseline(rows: pd.DataFrame, baseline: dict[str, float]
                        ) -> tuple[list[str], list[str]]:
    """Regressions (gate failures) and movements (improvements, new records) vs baseline.

    Returns:
        (regressions, movements): one line each, naming the record or group.
    """
    regressions: list[str] = []
    movements: list[str] = []
    current = dict(zip(rows["id"], rows["error_pct"], strict=True))
    for record_id, error in current.items():
        before = baseline.get(record_id)
        if before is None:
            movements.append(f"{record_id}: new record, error {error:.2f}%")
        elif error > before + RECORD_TOLERANCE_PTS:
            regressions.append(f"{record_id}: error {before:.2f}% -> {error:.2f}% "
                               f"(more than {RECORD_TOLERANCE_PTS:g} points worse)")
        elif abs(error - before) >= 0.01:
            movements.append(f"{record_id}: error {before:.2f}% -> {error:.2f}%")
    for group, part in rows.groupby("group"):
        known = [baseline[i] for i in part["id"] if i in baseline]
        if not known:
            continue
        now = float(np.median([current[i] for i in part["id"] if i in baseline]))
        then = float(np.median(known))
        if now > then + GROUP_MEDIAN_TOLERANCE_PTS:
            regressions.append(f"group {group}: median error {then:.2f}% -> {now:.2f}% "
                               f"(more than {GROUP_MEDIAN_TOLERANCE_PTS:g} point worse)")
    for record_id in sorted(set(baseline) - set(current)):
        movements.append(f"{record_id}: in the baseline but no longer a record")
    return regressions, movements


# ---- rendering ---------------------------------------------------------------------------

ACCURACY_START = "<!-- accuracy:start (generated by `clustersim validate --update-readme`) -->"
ACCURACY_END = "<!-- accuracy:end -->"


def accuracy_markdown(rows: pd.DataFrame, pending: dict[str, list[str]]) -> str:
    """The README's "How accurate is it?" block: error per group and per record, and the
    records still awaiting a predictor."""
    groups = group_errors(rows)
    lines = [ACCURACY_START, "",
             "| group | role | records | median error | p90 error | max error |",
             "| --- | --- | --- | --- | --- | --- |"]
    for g in groups.itertuples():
        lines.append(f"| {g.group} | {g.role} | {g.num_records} | {g.median_error_pct:.1f}% "
                     f"| {g.p90_error_pct:.1f}% | {g.max_error_pct:.1f}% |")
    lines += ["", "| record | group | role | metric | measured | predicted | error | source |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows.itertuples():
        lines.append(f"| {r.id} | {r.group} | {r.role} | {r.metric} ({r.unit}) | "
                     f"{r.measured:,.4g} | {r.predicted:,.4g} | {r.error_pct:.1f}% | "
                     f"{r.source} |")
    for waiting_for, ids in pending.items():
        lines += ["", f"{len(ids)} measured records await {waiting_for}: {', '.join(ids)}."]
    lines += ["", ACCURACY_END]
    return "\n".join(lines)


def replace_accuracy_block(readme: str, block: str) -> str:
    """``readme`` with its generated accuracy block replaced by ``block``."""
    start, end = readme.find(ACCURACY_START), readme.find(ACCURACY_END)
    if start < 0 or end < 0:
        raise ClusterSimError("README has no accuracy block markers; add "
                              f"{ACCURACY_START!r} and {ACCURACY_END!r}")
    return readme[:start] + block + readme[end + len(ACCURACY_END):]


def scatter_html(rows: pd.DataFrame) -> str:
    """A self-contained page: predicted-vs-measured scatter per group, and the table."""
    # NOTE: matplotlib is imported here, not at the top, so that every other command
    # starts without its ~0.3 s import; no import cycle is involved.
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted(rows["group"].unique())
    figure, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4.5), squeeze=False)
    for axis, group in zip(axes[0], groups, strict=True):
        part = rows[rows["group"] == group]
        for role, marker in (("test", "o"), ("calibration", "x")):
            sel = part[part["role"] == role]
            axis.scatter(sel["measured"], sel["predicted"], marker=marker, label=role)
        low = float(min(part["measured"].min(), part["predicted"].min())) * 0.8
        high = float(max(part["measured"].max(), part["predicted"].max())) * 1.2
        axis.plot([low, high], [low, high], color="grey", linewidth=1)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_title(group)
        axis.set_xlabel(f"measured ({part['unit'].iloc[0]})")
        axis.set_ylabel("predicted")
        axis.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    image = base64.b64encode(buffer.getvalue()).decode("ascii")
    table = rows.drop(columns=["source"]).to_html(index=False, float_format="%.4g")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>clustersim "
            f"validation</title></head><body><h1>Predicted vs measured</h1>"
            f"<img alt='predicted vs measured' src='data:image/png;base64,{image}'>"
            f"{group_errors(rows).to_html(index=False, float_format='%.2f')}{table}"
            f"</body></html>\n")
