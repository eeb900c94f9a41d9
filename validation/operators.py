"""Operator-level validation: every operator the roofline prices, against measured tables.

The measured pack (the shared folder's ``measured/``; ``--measured DIR`` or the
``CLUSTERSIM_MEASURED`` variable name another) is read where it lies, never copied. For
each GPU and operator the prediction of the cost model users run (``profiles.gemm``,
``profiles.operator_times``, ``profiles.collectives``, the serving roofline) is set
against every measured row::

    gemm             Vidur mlp.csv QKV/O/MLP GEMMs by (m, n, k), fp16, A100 and H100
    gemm fp8         the H100 FP8 GEMM table (gemm_kernels.csv, DeepGEMM-format) by (m, n, k)
    rmsnorm, silu_mul, rotary, add    Vidur's elementwise kernels by (tokens, width)
    attn_prefill, attn_decode         Vidur's A100 paged attention; H100 FA3 / FlashInfer
    all_reduce       Vidur's NCCL all-reduce inside a DGX node, 2-8 GPUs, by bytes
    send_recv        Vidur's NCCL send/recv, inside a node and across two
    step_prefill, step_decode         Splitwise's whole forward passes (Llama-2-70B TP2-8,
                     BLOOM-176B TP8): the prompt phase of a batch, the mean decode step

Each (GPU, operator) gets the point count, the median, p90 and max absolute percentage
error and its worst shapes. The gate (``compare_operators``) holds each pair's median and
p90 against the committed baseline. Without the pack the group is skipped, said once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from profiles.cluster import ClusterSpec, build_cluster_graph, group_link, link_between
from profiles.collectives import engine_all_reduce_s
from profiles.cost_model import BatchShape
from profiles.gemm import fitted_gemm_times, gemm_time_terms
from profiles.hardware import GPUSpec, load_gpu
from profiles.importers import (
    SPLITWISE_HARDWARE,
    VIDUR_SKUS,
    read_splitwise,
    read_vidur_attention,
    read_vidur_collectives,
    read_vidur_compute,
)
from profiles.models import ModelSpec, load_model
from profiles.operator_times import (
    STREAM_BYTES_PER_ELEMENT,
    all_reduce_fitted_s,
    decode_attention_s,
    prefill_attention_s,
    stream_s,
)
from profiles.roofline import RooflineCostModel
from simulator.serving.presets import ENGINE_PRESETS

__all__ = [
    "DRIFT_TOLERANCE_PTS",
    "FP8_GEMM_GPUS",
    "MEDIAN_TOLERANCE_PTS",
    "P90_TOLERANCE_PTS",
    "attention_rows",
    "bloom_176b",
    "compare_drift",
    "compare_operators",
    "default_measured_dir",
    "fp8_gemm_rows",
    "operator_errors",
    "operator_rows",
    "splitwise_cost_model",
    "splitwise_model",
]

VIDUR_SOURCE = "microsoft/vidur @ 7d475133 (data/profiling), MIT"
KERNELS_SOURCE = "inference-sim/inference-sim @ 487017bc (bench_data), Apache-2.0"
H100_KERNELS_GPU = "H100 (variant not stated)"  # attention_kernels.csv's name for it

MEDIAN_TOLERANCE_PTS = 1.0
P90_TOLERANCE_PTS = 2.0
# A (GPU, operator)'s signed median error may move this far either way: a change that
# moves predictions as a whole, even towards the measurements, is reviewed and written
# to the baseline, never slipped in (a 10% error of the cost model that happened to
# offset another would pass an absolute-error gate).
DRIFT_TOLERANCE_PTS = 1.0
_WORST = 3


def default_measured_dir() -> Path | None:
    """The measured pack: ``CLUSTERSIM_MEASURED``, else the shared folder beside the
    checkout; None when neither exists."""
    named = os.environ.get("CLUSTERSIM_MEASURED")
    candidates = [Path(named)] if named else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "measured")
    return next((path for path in candidates if (path / "vidur").is_dir()), None)


def bloom_176b() -> ModelSpec:
    """BLOOM-176B as Splitwise ran it (BigScience's config: 70 layers, hidden 14,336, 112
    heads, 4h GELU MLP, LayerNorm, biases, ALiBi positions, vocabulary 250,880), fp16."""
    return ModelSpec(name="bloom-176b", num_layers=70, hidden_size=14336,
                     num_attention_heads=112, num_kv_heads=112, head_dim=128,
                     intermediate_size=4 * 14336, vocab_size=250880,
                     max_position_embeddings=2048, mlp_kind="standard", norm_kind="layernorm",
                     linear_bias=True, dtype="fp16", kv_cache_dtype="fp16")


def attention_rows(measured_dir: Path, gpu: GPUSpec) -> tuple[pd.DataFrame, pd.DataFrame,
                                                              str]:
    """(prefill, decode, data) attention rows of the pack for ``gpu``: per row the
    causal FLOPs, bytes and time (prefill), KV bytes, FLOPs and time (decode)."""
    if gpu.name == VIDUR_SKUS["a100"]:
        prefill, decode = read_vidur_attention(
            measured_dir / "vidur" / "history" / "a100" / "attention.csv")
        data = f"vidur/history/a100/attention.csv ({VIDUR_SOURCE})"
    elif gpu.name == VIDUR_SKUS["h100"]:
        table = pd.read_csv(measured_dir / "attention_kernels.csv")
        table = table[table["gpu"] == H100_KERNELS_GPU]
        pre = table[table["phase"] == "prefill"]
        prefill = pd.DataFrame({"batch": 1, "q_len": pre["seq_len"], "kv_len": pre["seq_len"],
                                "num_heads": pre["num_q_heads"],
                                "num_kv_heads": pre["num_kv_heads"],
                                "head_dim": pre["head_dim"],
                                "time_s": pre["latency_us"] * 1e-6})
        dec = table[(table["phase"] == "decode") & (table["kv_dtype"] == "bf16")]
        decode = pd.DataFrame({"batch": dec["batch_size"], "kv_len": dec["kv_len"],
                               "num_heads": dec["num_q_heads"] // dec["tp"],
                               "num_kv_heads": np.maximum(1, dec["num_kv_heads"] // dec["tp"]),
                               "head_dim": dec["head_dim"],
                               "time_s": dec["latency_us"] * 1e-6})
        data = f"attention_kernels.csv, H100 rows ({KERNELS_SOURCE})"
    else:
        raise ValueError(f"no attention tables for {gpu.name}")
    q, kv = prefill["q_len"].to_numpy(float), prefill["kv_len"].to_numpy(float)
    heads, kv_heads = prefill["num_heads"].to_numpy(float), prefill["num_kv_heads"].to_numpy(
        float)
    d, batch = prefill["head_dim"].to_numpy(float), prefill["batch"].to_numpy(float)
    prefill = prefill.assign(
        flops=4.0 * heads * d * batch * q * (kv - q + (q + 1) / 2.0),
        bytes=batch * (kv * 2 * kv_heads * d + 2 * q * heads * d) * 2.0)
    tokens = decode["batch"].to_numpy(float) * decode["kv_len"].to_numpy(float)
    decode = decode.assign(
        flops=4.0 * decode["num_heads"].to_numpy(float) * decode["head_dim"].to_numpy(float)
        * tokens,
        bytes=tokens * 2 * decode["num_kv_heads"].to_numpy(float)
        * decode["head_dim"].to_numpy(float) * 2.0)
    return prefill.reset_index(drop=True), decode.reset_index(drop=True), data


def _rows(gpu: str, operator: str, shape: list[str], measured: np.ndarray,
          predicted: np.ndarray, source: str) -> pd.DataFrame:
    return pd.DataFrame({"gpu": gpu, "operator": operator, "shape": shape,
                         "measured_s": measured, "predicted_s": predicted, "source": source})


# The FP8 GEMM table's name for each GPU it measures (DeepGEMM-format micro-benchmarks).
FP8_GEMM_GPUS = {"h100": "H100 (variant not stated)"}


def fp8_gemm_rows(measured_dir: Path, sku: str) -> pd.DataFrame:
    """The FP8 GEMM table's rows of one GPU (``gemm_kernels.csv``), times in seconds."""
    path = measured_dir / "gemm_kernels.csv"
    if sku not in FP8_GEMM_GPUS or not path.is_file():
        return pd.DataFrame(columns=["m", "n", "k", "time_s"])
    table = pd.read_csv(path)
    rows = table[table["gpu"] == FP8_GEMM_GPUS[sku]]
    return pd.DataFrame({"m": rows["m"], "n": rows["n"], "k": rows["k"],
                         "time_s": rows["latency_us"] / 1e6})


def _fp8_gemm(root: Path, gpu: GPUSpec, sku: str) -> list[pd.DataFrame]:
    """The FP8 GEMM table's rows against the fitted GEMM model at FP8."""
    rows = fp8_gemm_rows(root, sku)
    if rows.empty:
        return []
    m, n, k = (rows[c].to_numpy(float) for c in ("m", "n", "k"))
    predicted = np.array([gemm_time_terms(gpu, *shape, "fp8")[0]
                          for shape in zip(m, n, k, strict=True)])
    shapes = [f"m={a:.0f} n={b:.0f} k={c:.0f}" for a, b, c in zip(m, n, k, strict=True)]
    return [_rows(gpu.name, "gemm fp8", shapes, rows["time_s"].to_numpy(), predicted,
                  f"gemm_kernels.csv ({KERNELS_SOURCE})")]


def _compute_rows(root: Path, gpu: GPUSpec, sku: str) -> list[pd.DataFrame]:
    compute = read_vidur_compute(root / "vidur", sku)
    source = f"vidur/compute/{sku}"
    gemm = compute[compute["kind"] == "gemm"]
    m, n, k = (gemm[c].to_numpy(float) for c in ("m", "n", "k"))
    fit = gpu.kernels.gemm if gpu.kernels is not None else None
    predicted = (fitted_gemm_times(gpu, fit, m, n, k, "fp16")[0] if fit is not None else
                 np.array([gemm_time_terms(gpu, *shape, "fp16")[0]
                           for shape in zip(m, n, k, strict=True)]))
    shapes = [f"m={a:.0f} n={b:.0f} k={c:.0f}" for a, b, c in zip(m, n, k, strict=True)]
    out = [_rows(gpu.name, "gemm", shapes, gemm["time_s"].to_numpy(), predicted, source)]
    elementwise = compute[compute["kind"] == "elementwise"]
    for op, part in elementwise.groupby("op"):
        tokens, width = part["m"].to_numpy(float), part["hidden"].to_numpy(float)
        predicted = stream_s(gpu, str(op), tokens * width * STREAM_BYTES_PER_ELEMENT[str(op)])
        shapes = [f"tokens={a:.0f} width={b:.0f}" for a, b in zip(tokens, width, strict=True)]
        out.append(_rows(gpu.name, str(op), shapes, part["time_s"].to_numpy(), predicted,
                         source))
    return out


def _attention(root: Path, gpu: GPUSpec) -> list[pd.DataFrame]:
    prefill, decode, data = attention_rows(root, gpu)
    source = data.split(" (")[0]
    shapes = [f"q={q} kv={kv} heads={h}/{kh}" for q, kv, h, kh in zip(
        prefill["q_len"], prefill["kv_len"], prefill["num_heads"], prefill["num_kv_heads"],
        strict=True)]
    out = [_rows(gpu.name, "attn_prefill", shapes, prefill["time_s"].to_numpy(),
                 prefill_attention_s(gpu, prefill["flops"].to_numpy(),
                                     prefill["bytes"].to_numpy()), source)]
    shapes = [f"batch={b} kv={kv} heads={h}/{kh}" for b, kv, h, kh in zip(
        decode["batch"], decode["kv_len"], decode["num_heads"], decode["num_kv_heads"],
        strict=True)]
    out.append(_rows(gpu.name, "attn_decode", shapes, decode["time_s"].to_numpy(),
                     decode_attention_s(gpu, decode["bytes"].to_numpy(),
                                        decode["flops"].to_numpy()), source))
    return out


def _collectives(root: Path, gpu: GPUSpec, sku: str) -> list[pd.DataFrame]:
    folder = root / "vidur" / "network" / f"{sku}_dgx"
    rows = read_vidur_collectives(folder)
    source = f"vidur/network/{sku}_dgx"
    out = []
    inside = rows[(rows["op"] == "all_reduce") & (rows["devices_per_node"] == rows["num_gpus"])]
    graph = build_cluster_graph(ClusterSpec(num_nodes=2, gpus_per_node=8), gpu)
    predicted = np.empty(len(inside))
    for index, (size, n) in enumerate(zip(inside["bytes"], inside["num_gpus"], strict=True)):
        fitted = all_reduce_fitted_s(gpu, float(size), int(n))
        predicted[index] = fitted if fitted is not None else engine_all_reduce_s(
            gpu, float(size), int(n), group_link(graph, tuple(f"n0.g{i}" for i in range(n))),
            inside_node=False)
    shapes = [f"n={n} bytes={s:.0f}" for n, s in zip(inside["num_gpus"], inside["bytes"],
                                                      strict=True)]
    out.append(_rows(gpu.name, "all_reduce", shapes, inside["time_s"].to_numpy(), predicted,
                     source))
    for label, same_node in (("send_recv (nvlink)", True), ("send_recv (network)", False)):
        part = rows[(rows["op"] == "send_recv")
                    & ((rows["devices_per_node"] == 2) == same_node)]
        if part.empty:
            continue
        link = link_between(graph, "n0.g0", "n0.g1" if same_node else "n1.g0")
        sizes = part["bytes"].to_numpy(float)
        out.append(_rows(gpu.name, label, [f"bytes={s:.0f}" for s in sizes],
                         part["time_s"].to_numpy(), link.latency_s
                         + sizes / link.bandwidth_bytes_per_s, source))
    return out


def splitwise_model(name: str) -> ModelSpec:
    """The model of Splitwise's profile by its name there (fp16 weights and KV)."""
    if name == "bloom-176b":
        return bloom_176b()
    return load_model("llama-2-70b").model_copy(update={"dtype": "fp16",
                                                        "kv_cache_dtype": "fp16"})


def splitwise_cost_model(name: str, tp: int, gpu: GPUSpec) -> RooflineCostModel:
    """The cost model of Splitwise's ``name`` at ``tp`` on one node of 8 ``gpu``s (the
    DGX machines of its profile), its TP group's link read from the node's graph."""
    graph = build_cluster_graph(ClusterSpec(num_nodes=1, gpus_per_node=8), gpu)
    link = group_link(graph, tuple(f"n0.g{i}" for i in range(tp)))
    return RooflineCostModel(splitwise_model(name), gpu, tp, 1, link, link)


def _steps(root: Path) -> list[pd.DataFrame]:
    rows = read_splitwise(root / "splitwise_perf_model.csv")
    out = []
    for (hardware, model_name, tp), part in rows.groupby(["hardware", "model", "tp"]):
        if hardware not in SPLITWISE_HARDWARE:
            continue  # the power-capped rows are derived, not measured (see the pack)
        gpu = load_gpu(SPLITWISE_HARDWARE[str(hardware)])
        cost = splitwise_cost_model(str(model_name), int(tp), gpu)
        source = "splitwise_perf_model.csv"
        prefill = part.drop_duplicates(["batch", "prompt_tokens"])
        predicted = [cost.predict(BatchShape([p] * b, [0] * b, num_sampled=b)).total_s
                     for b, p in zip(prefill["batch"], prefill["prompt_tokens"], strict=True)]
        shapes = [f"{model_name} tp={tp} batch={b} prompt={p}" for b, p in
                  zip(prefill["batch"], prefill["prompt_tokens"], strict=True)]
        out.append(_rows(gpu.name, "step_prefill", shapes, prefill["prefill_s"].to_numpy(),
                         np.array(predicted), source))
        # The mean decode iteration: contexts grow from the prompt to prompt + outputs,
        # linearly, so the step at the middle context is the mean step.
        predicted = [cost.predict(BatchShape([1] * b, [p + o // 2] * b, num_sampled=b)).total_s
                     for b, p, o in zip(part["batch"], part["prompt_tokens"],
                                        part["output_tokens"], strict=True)]
        shapes = [f"{model_name} tp={tp} batch={b} prompt={p} out={o}" for b, p, o in zip(
            part["batch"], part["prompt_tokens"], part["output_tokens"], strict=True)]
        out.append(_rows(gpu.name, "step_decode", shapes, part["decode_step_s"].to_numpy(),
                         np.array(predicted), source))
    return out


# The parts of a vLLM V0 iteration that run on the host around the forward pass, as
# Vidur measured them (ms): what the vllm-v0 and sarathi-serve presets' CPU overhead
# stands for (the forward pass itself, model_execution, is the GPU step's).
CPU_OVERHEAD_PARTS = ("schedule_mean", "prepare_inputs_e2e_mean", "sampler_e2e_mean",
                      "process_model_outputs_mean")


def _cpu_overheads(root: Path) -> list[pd.DataFrame]:
    """vLLM V0's per-iteration host time on A100 against the vllm-v0 preset's overhead
    (a decode iteration of ``batch_size`` sequences, one token each)."""
    path = root / "vidur" / "history" / "a100" / "cpu_overheads.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    overhead = ENGINE_PRESETS["vllm-v0"].overhead  # looked up per call: presets can change
    measured = table[list(CPU_OVERHEAD_PARTS)].sum(axis=1).to_numpy() / 1e3
    predicted = np.array([overhead.step_s(int(b), int(b)) for b in table["batch_size"]])
    shapes = [f"{m} tp={t} batch={b}" for m, t, b in zip(
        table["model_name"], table["tensor_parallel_degree"], table["batch_size"], strict=True)]
    return [_rows(load_gpu("a100").name, "cpu_overhead vllm-v0", shapes, measured, predicted,
                  f"{VIDUR_SOURCE}: history/a100/cpu_overheads.csv")]


def operator_rows(measured_dir: str | Path,
                  gpu_loader: Callable[[str], GPUSpec] = load_gpu) -> pd.DataFrame:
    """Every measured operator row with the prediction for it (one row each)."""
    root = Path(measured_dir)
    parts: list[pd.DataFrame] = []
    for sku, name in VIDUR_SKUS.items():
        gpu = gpu_loader(name)
        parts += _compute_rows(root, gpu, sku)
        parts += _fp8_gemm(root, gpu, sku)
        parts += _attention(root, gpu)
        parts += _collectives(root, gpu, sku)
    parts += _steps(root)
    parts += _cpu_overheads(root)
    rows = pd.concat(parts, ignore_index=True)
    rows["error_pct"] = (rows["predicted_s"] - rows["measured_s"]).abs() \
        / rows["measured_s"] * 100.0
    return rows


def operator_errors(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (GPU, operator): points, median / p90 / max error, the worst shapes."""
    out = []
    for (gpu, operator), part in rows.groupby(["gpu", "operator"], sort=True):
        errors = part["error_pct"].to_numpy()
        worst = part.nlargest(_WORST, "error_pct")
        out.append({
            "gpu": gpu, "operator": operator, "num_points": len(part),
            "median_error_pct": float(np.median(errors)),
            "p90_error_pct": float(np.percentile(errors, 90)),
            "max_error_pct": float(errors.max()),
            "signed_median_pct": float(np.median((part["predicted_s"] - part["measured_s"])
                                                 / part["measured_s"] * 100.0)),
            "worst": "; ".join(f"{s} ({e:.0f}%)" for s, e in
                               zip(worst["shape"], worst["error_pct"], strict=True)),
            "source": part["source"].iloc[0]})
    return pd.DataFrame(out)


def compare_operators(errors: pd.DataFrame, baseline: dict[str, dict[str, float]]
                      ) -> tuple[list[str], list[str]]:
    """Regressions and movements of each (GPU, operator) against the baseline: a median
    more than 1 point or a p90 more than 2 points worse fails."""
    regressions: list[str] = []
    movements: list[str] = []
    for row in errors.itertuples():
        key = f"{row.gpu}/{row.operator}"
        before = baseline.get(key)
        median, p90 = float(row.median_error_pct), float(row.p90_error_pct)
        if before is None:
            movements.append(f"{key}: new operator, median {median:.2f}%, p90 {p90:.2f}%")
            continue
        if median > before["median"] + MEDIAN_TOLERANCE_PTS:
            regressions.append(f"{key}: median error {before['median']:.2f}% -> {median:.2f}% "
                               f"(more than {MEDIAN_TOLERANCE_PTS:g} point worse)")
        elif p90 > before["p90"] + P90_TOLERANCE_PTS:
            regressions.append(f"{key}: p90 error {before['p90']:.2f}% -> {p90:.2f}% "
                               f"(more than {P90_TOLERANCE_PTS:g} points worse)")
        elif abs(median - before["median"]) >= 0.01 or abs(p90 - before["p90"]) >= 0.01:
            movements.append(f"{key}: median {before['median']:.2f}% -> {median:.2f}%, "
                             f"p90 {before['p90']:.2f}% -> {p90:.2f}%")
    return regressions, movements


def compare_drift(errors: pd.DataFrame, baseline: dict[str, dict[str, float]]
                  ) -> list[str]:
    """Regressions of each (GPU, operator) whose signed median error moved more than
    DRIFT_TOLERANCE_PTS either way from the baseline's (where it records one)."""
    regressions = []
    for row in errors.itertuples():
        key = f"{row.gpu}/{row.operator}"
        before = baseline.get(key, {}).get("signed")
        signed = float(row.signed_median_pct)
        if before is not None and abs(signed - before) > DRIFT_TOLERANCE_PTS:
            regressions.append(
                f"{key}: signed median error {before:+.2f}% -> {signed:+.2f}% (predictions "
                f"moved more than {DRIFT_TOLERANCE_PTS:g} point; if intended, review and "
                "rewrite the baseline with --update-baseline)")
    return regressions
