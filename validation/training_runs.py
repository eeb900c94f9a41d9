"""Training predictions against published framework runs: the training group at scale.

The measured pack's ``training_runs.csv`` holds measured training throughput printed by
NVIDIA's Megatron-Bridge and NeMo performance tables, Megatron-LM's scaling table and
torchtitan's benchmarks, one row per metric. Each run is compared once, by its most
direct metric (tokens/s/GPU, else model TFLOP/s/GPU by Megatron's count, which is the
simulator's; NeMo's long-context table counts causal attention as half, see
``_causal_discount``)::

    row ─► model (catalog, or the printed GPT shape) ─► plan as the framework runs it:
           Megatron family: distributed optimizer (ZeRO-1 over DP x CP), gradients as
           the recipes keep them (fp32 in Megatron-LM, bf16 in NeMo's performance recipes),
           sequence parallelism with TP, TP communication overlapped, FlashAttention;
           Megatron-Bridge's FP8 recipes keep the weights as FP8 (fp8_param_gather);
           the models' own dropout (none for Llama and its kin, 0.1 for GPT);
           FSDP (Megatron's or torchtitan's): ZeRO-3; torchtitan's local batch is one
           micro-batch without PP, and with PP split into one micro-batch per stage
           (pp x stages per rank, its default); torchtitan's "selective"
           is its per-op policy (recompute "op"), its attention SDPA's FlashAttention-2,
           its pointwise ops eager unless the row says torch.compile, its FSDP under PP
           ZeRO-1 (pipelining keeps a stage's weights gathered through the step), its
           Interleaved 1F1B two stages per rank, its float8 TP gathers in FP8;
           uneven layer counts split
           with the embedding and the loss counted as layers (Megatron's
           --account-for-embedding/loss-in-pipeline-split)
        ─► simulate_training ─► predicted metric, and the memory the plan needs

Rows the simulator cannot express (a model the catalog lacks, LoRA, a layout not
printed, a GPU not in the catalog) are listed with the reason, never dropped silently.
Each row's assumptions beyond what it prints are stated in ``assumed``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from profiles.errors import ClusterSimError
from profiles.hardware import GPUSpec, load_gpu
from profiles.models import ModelSpec, load_model
from simulator.training import TrainingResult, simulate_training
from workloads.training import ParallelPlan, TrainingJob

__all__ = ["SOURCES", "ExpressedRun", "express_row", "expressed_runs", "predict_run",
           "run_source", "skipped_training_rows", "training_errors", "training_rows"]

# The pack's source repositories, by the short name the groups use.
SOURCES = {"NVIDIA-NeMo/Megatron-Bridge": "megatron-bridge", "NVIDIA/NeMo": "nemo",
           "NVIDIA/Megatron-LM": "megatron-lm", "pytorch/torchtitan": "torchtitan"}
# Metrics in the order a run is compared by (the first one it has).
METRIC_ORDER = ("tokens_per_s_per_gpu", "model_tflops_per_gpu")

# The pack's model names, as the catalog names them.
CATALOG_NAMES = {
    "LLAMA3_8B": "llama-3-8b", "LLAMA3-8B": "llama-3-8b", "LLAMA3_70B": "llama-3-70b",
    "LLAMA3-70B": "llama-3-70b", "LLAMA3.1_405B": "llama-3.1-405b",
    "LLAMA2-7B": "llama-2-7b", "LLAMA2-13B": "llama-2-13b", "LLAMA2-70B": "llama-2-70b",
    "Qwen3_30B_a3B": "qwen3-30b-a3b", "Qwen3_235B_a22B": "qwen3-235b-a22b",
    "Llama 3.1 8B": "llama-3.1-8b", "Llama 3.1 70B": "llama-3.1-70b",
    "Llama 3.1 405B": "llama-3.1-405b", "Llama 3 8B": "llama-3-8b", "Qwen3 8B": "qwen3-8b",
}
# NeMo's GPT-3 configurations (NeMo's gpt3 5b/20b/175b configs: layers, hidden, heads;
# 4h GeLU MLP, GPT-2 vocabulary, learned positions, sequence 2048).
NEMO_GPT3 = {"GPT3-5B": (24, 4096, 32), "GPT3-20B": (44, 6144, 48),
             "GPT3-175B": (96, 12288, 96)}
# GPU names of the pack, as the catalog names them; the torchtitan H100s are 96 GB HBM2e
# parts at 2.4 TB/s and a 500 W limit (torchtitan's docs/performance.md), run as the
# catalog's H100 with that memory and power limit (profiles/power.py; stated per row).
GPU_KINDS = (("H100-SXM 96GB", "h100"), ("H100", "h100"), ("H200", "h200"),
             ("GB300", "gb300"), ("B300", "b300"), ("GB200", "gb200"), ("B200", "b200"))
TORCHTITAN_POWER_W = 500.0  # torchtitan's H100s' power limit (docs/performance.md)
TORCHTITAN_SEQ = 8192  # torchtitan's Llama 3 training configs' seq_len, where not printed
# Megatron-Bridge's performance recipes that run Megatron FSDP with CPU activation
# offloading (cpu_offloading_num_layers), by (model, GPU, precision): the tables do not
# print it. Sources: NVIDIA-NeMo/Megatron-Bridge scripts/performance/configs/llama/
# llama3_workload_base_configs.py @ 00919dcf1fe1 (LLAMA3_70B_PRETRAIN_CONFIG_GB200_BF16,
# _GB200_FP8_CS, _B200_FP8_CS, _GB300_BF16 and _GB300_FP8_CS) and
# llama31_workload_base_configs.py @ 0013c9a8ed4d (LLAMA31_405B_PRETRAIN_CONFIG_GB200_FP8_CS_V1,
# _GB300_BF16_V1 and _GB300_FP8_CS_V1).
RECIPE_ACTIVATION_OFFLOAD = {
    ("LLAMA3_70B", "GB200-NVL72", "bf16"): 20, ("LLAMA3_70B", "GB200-NVL72", "fp8"): 40,
    ("LLAMA3_70B", "B200-SXM-180GB", "fp8"): 5, ("LLAMA3.1_405B", "GB200-NVL72", "fp8"): 92,
    ("LLAMA3_70B", "GB300-NVL72", "bf16"): 30, ("LLAMA3_70B", "GB300-NVL72", "fp8"): 20,
    ("LLAMA3.1_405B", "GB300-NVL72", "bf16"): 40, ("LLAMA3.1_405B", "GB300-NVL72", "fp8"): 10}


@dataclass(frozen=True)
class ExpressedRun:
    """One pack row as a job the simulator runs, and what it is compared by."""

    job: TrainingJob
    gpu: GPUSpec
    model: ModelSpec
    num_gpus: int
    assumed: str
    gpu_label: str = ""  # the group the run reports under (default: the GPU's name)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number


def _int(value: Any, default: int | None = None) -> int | None:
    number = _number(value)
    return default if number is None else int(number)


def run_source(row: Any) -> str:
    """The short name of a pack row's source repository (SOURCES), or "other"."""
    return SOURCES.get(str(row["source"]).split("@")[0].strip(), "other")


def _gpt(name: str, layers: int, hidden: int, heads: int, vocab: int, seq: int) -> ModelSpec:
    """Megatron's GPT of a printed shape: 4h GeLU MLP, LayerNorm, biases, and Megatron-
    Core's default dropout of 0.1 (TransformerConfig's, which NeMo's GPTConfig and
    Megatron-LM's --hidden-dropout/--attention-dropout keep)."""
    return ModelSpec(name=name, num_layers=layers, hidden_size=hidden,
                     num_attention_heads=heads, num_kv_heads=heads, head_dim=hidden // heads,
                     intermediate_size=4 * hidden, vocab_size=vocab,
                     max_position_embeddings=seq, mlp_kind="standard", norm_kind="layernorm",
                     linear_bias=True, learned_position_embeddings=True,
                     hidden_dropout=0.1, attention_dropout=0.1)


def _model(row: Any, seq: int) -> ModelSpec | str:
    name = str(row["model"])
    if name in CATALOG_NAMES:
        return load_model(CATALOG_NAMES[name])
    if name in NEMO_GPT3:
        return _gpt(name, *NEMO_GPT3[name], vocab=50304, seq=seq)
    shape = [_int(row[c]) for c in ("layers", "hidden", "heads")]
    if run_source(row) == "megatron-lm" and None not in shape:
        layers, hidden, heads = (int(x) for x in shape)  # type: ignore[arg-type]
        return _gpt(name, layers, hidden, heads, vocab=131072, seq=seq)
    return f"model {name} is not in the catalog"


def _gpu(row: Any) -> GPUSpec | str:
    text = str(row["gpu"])
    for pattern, name in GPU_KINDS:
        if pattern in text:
            # torchtitan's docs/performance.md: 96 GB HBM2e at 2.4 TB/s, a 500 W limit
            torchtitan = pattern == "H100-SXM 96GB"
            try:
                gpu = load_gpu(f"{name}@{TORCHTITAN_POWER_W:g}W" if torchtitan else name)
            except ClusterSimError:
                return f"GPU {text} is not in the catalog"
            if torchtitan:
                gpu = gpu.model_copy(update={"hbm_gib": 96.0, "hbm_bandwidth_gbps": 2400.0})
            return gpu
    return f"GPU {text} is not in the catalog"


def express_row(row: Any) -> ExpressedRun | str:
    """The row as a job on its GPU, or the reason it cannot be expressed."""
    notes, precision = str(row["notes"]), str(row["precision"])
    source = run_source(row)
    task = re.search(r"task=(\w+)", notes)
    if task and task.group(1).lower() == "lora":
        return "LoRA fine-tuning (frozen base weights, adapters) is not modelled"
    if "NVFP4" in precision:
        return "NVFP4 GEMMs are not in the cost model"
    if "rowwise" in precision:
        return ("rowwise-scaled FP8 (torchao's rowwise recipe): its GEMM kernels and casts "
                "have no rate in the cost model (its FP8 rate is for per-tensor and block "
                "scales)")
    num_gpus = _int(row["n_gpu"])
    if num_gpus is None or _number(row["TP"]) is None:
        return "parallel layout not printed"
    assumed = []
    seq = _int(row["seq"])
    if seq is None:
        if source != "torchtitan":
            return "sequence length not printed"
        seq = TORCHTITAN_SEQ
        assumed.append(f"seq {seq} (torchtitan's Llama 3 configs)")
    model = _model(row, seq)
    if isinstance(model, str):
        return model
    gpu = _gpu(row)
    if isinstance(gpu, str):
        return gpu
    tp, pp = _int(row["TP"], 1) or 1, _int(row["PP"], 1) or 1
    cp, vp = _int(row["CP"], 1) or 1, _int(row["VP"], 1) or 1
    ep = _int(row["EP"], 1) or 1
    if num_gpus % (tp * pp * cp):
        return f"n_gpu={num_gpus} is not a multiple of TP x PP x CP"
    dp = num_gpus // (tp * pp * cp)
    printed_dp = _int(row["DP"])
    if printed_dp is not None and printed_dp != dp:
        # the table's own columns disagree: which of them is wrong is not said
        return (f"printed layout TP {tp} x PP {pp} x DP {printed_dp} x CP {cp} is not its "
                f"{num_gpus} GPUs")
    fsdp = "FSDP" in notes and "FSDP=0" not in notes
    mbs = _int(row["mbs"], 1) or 1
    gbs = _int(row["gbs"])
    micro_batch = mbs
    if source == "torchtitan":
        gbs = gbs or mbs * dp  # mbs is the local batch per data-parallel rank
    if gbs is None:
        return "global batch not printed"
    if "not printed" in precision:
        fp8 = "implies FP8" in precision
        assumed.append("FP8 (the table's note implies it)" if fp8 else
                       "BF16 (precision not printed)")
    else:
        fp8 = any(word in precision for word in ("FP8", "float8"))
    megatron = source != "torchtitan"
    if not megatron and pp > 1 and vp == 1 and "Interleaved" in notes:
        # torchtitan's looped schedules run two stages per rank where no split is given
        # (its generate_split_points)
        vp = 2
        assumed.append("2 stages per rank (torchtitan's default for Interleaved 1F1B)")
    if not megatron and pp > 1:
        # the local batch goes through the pipeline in pp x stages-per-rank micro-batches
        # (torchtitan's default pipeline_parallel_microbatches: build_pipeline_schedule
        # takes the total number of stages); without PP it is one micro-batch
        chunks = pp * max(vp, 1)
        if mbs % chunks:
            return (f"torchtitan's local batch {mbs} does not split into its {chunks} "
                    "pipeline micro-batches")
        micro_batch = mbs // chunks
        assumed.append(f"{chunks} pipeline micro-batches of {micro_batch} (torchtitan's "
                       "default: one per stage)")
    zero_stage: Literal[0, 1, 2, 3] = 3 if fsdp else 1 if dp * cp > 1 and megatron else 0
    if fsdp and not megatron and pp > 1:
        # PyTorch's pipelining keeps an FSDP stage's weights gathered and its gradients
        # unreduced until the last backward: ZeRO-1's traffic and memory
        zero_stage = 1
        assumed.append("FSDP under PP as ZeRO-1 (weights gathered once per step)")
    recompute = str(row["recompute"]).lower()
    if not megatron and recompute in ("", "nan"):
        recompute = "selective"  # the H200 runs' default llama3_8b.toml
        assumed.append("per-op selective recomputation (the default config's)")
    offloaded = 0
    if source == "megatron-bridge" and fsdp and pp == 1 and recompute in ("", "nan"):
        offloaded = RECIPE_ACTIVATION_OFFLOAD.get(
            (str(row["model"]), gpu.name, "fp8" if fp8 else "bf16"), 0)
        if offloaded:
            assumed.append(f"activations of {offloaded} layers offloaded to the host (the "
                           f"Megatron-Bridge recipe's cpu_offloading_num_layers)")
    # Megatron-Bridge's FP8 recipes (delayed, current scaling, MXFP8) keep the weights as
    # FP8 and gather them so (fp8_param_gather, its mixed_precision recipes); torchtitan
    # does where the row says its FSDP gathers float8. (The memory is counted; the
    # gather is priced at 16 bits: ParallelPlan.fp8_param_gather.)
    fp8_weights = fp8 and (source == "megatron-bridge" or (
        "float8 all-gather" in precision and zero_stage == 3))
    if fp8_weights:
        assumed.append("FP8 weights, no 16-bit copy (the recipe's fp8_param_gather)"
                       if megatron else "FP8 weights, no 16-bit copy (FSDP float8 all-gather)")
    # torchtitan's tensorwise float8 recipe runs TP with torchao's float8 styles, which
    # gather the sequence-parallel activations in FP8 (float8_tensor_parallel.py)
    fp8_gathers = fp8 and not megatron and tp > 1
    if fp8_gathers:
        assumed.append("TP activations gathered in FP8 (torchao's float8 tensor parallelism)")
    # torchtitan's "selective" is its per-op policy (selective_ac_option "op")
    selective: Literal["selective", "op"] = "selective" if megatron else "op"
    compiled = megatron or "compile" in notes
    plan = ParallelPlan(
        tp=tp, pp=pp, dp=dp, cp=cp, ep=ep if model.is_moe else 1,
        virtual_stages=vp if vp > 1 and pp > 1 else 1,
        schedule="interleaved" if vp > 1 and pp > 1 else "1f1b",
        sequence_parallel=tp > 1,
        recompute="full" if "full" in recompute else
        selective if "selective" in recompute else "none",
        pointwise_kernels="fused" if compiled else "eager",
        zero_stage=zero_stage, activation_offload_layers=offloaded,
        # Megatron-LM keeps fp32 gradients for bf16 by default; NeMo's and Megatron-
        # Bridge's performance recipes reduce them in bf16 (grad_reduce_in_fp32 off);
        # torchtitan's FSDP reduces in fp32 (training.mixed_precision_reduce's default).
        gradient_dtype="fp32" if source in ("megatron-lm", "torchtitan") else "bf16",
        overlap_tp_comm=megatron or "AsyncTP" in notes or "async TP" in notes,
        fp8_param_gather=fp8_weights, fp8_tp_gather=fp8_gathers,
        attention_kernel="flash" if megatron else "flash2",
        embedding_in_pipeline_split=pp > 1 and model.num_layers % (pp * max(vp, 1)) != 0,
        loss_in_pipeline_split=pp > 1 and model.num_layers % (pp * max(vp, 1)) != 0)
    if gbs % (dp * micro_batch):
        return f"global batch {gbs} is not a multiple of DP {dp} x micro-batch {micro_batch}"
    job = TrainingJob(model=model.name, seq_len=seq, global_batch=gbs,
                      micro_batch=micro_batch, dtype="fp8" if fp8 else "bf16", plan=plan)
    label = gpu.name
    if "96GB" in str(row["gpu"]):
        label = "H100-SXM-96GB-500W (as H100-SXM5-80GB)"
        assumed.append(f"H100-SXM5-80GB's kernels with 96 GB of HBM2e at 2.4 TB/s, compute "
                       f"at {gpu.clock_fraction:.3f} of its rate under the "
                       f"{TORCHTITAN_POWER_W:g} W limit (profiles/power.py)")
    return ExpressedRun(job, gpu, model, num_gpus, "; ".join(assumed), label)


def _compared(table: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One row per run (its first metric of METRIC_ORDER); the others, as skipped."""
    keys = [c for c in table.columns if c not in ("id", "metric", "value", "unit")]
    chosen, skipped = [], []
    for _, run in table.groupby(keys, dropna=False, sort=False):
        ranked = sorted(run.itertuples(index=False), key=lambda r: (
            METRIC_ORDER.index(r.metric) if r.metric in METRIC_ORDER else 9))
        first = ranked[0]
        if first.metric in METRIC_ORDER:
            chosen.append(first._asdict())
        for other in ranked[1:] if first.metric in METRIC_ORDER else ranked:
            reason = (f"same run as {first.id}, compared once (by {first.metric})"
                      if first.metric in METRIC_ORDER else
                      f"metric {other.metric} alone (a range or MFU without a layout)")
            skipped.append({"id": other.id, "model": other.model, "gpu": other.gpu,
                            "reason": reason})
    return pd.DataFrame(chosen), skipped


def expressed_runs(measured_dir: str | Path) -> tuple[list[tuple[dict[str, Any], ExpressedRun]],
                                                     list[dict[str, Any]]]:
    """(each compared row with its run, each row not compared with the reason)."""
    table = pd.read_csv(Path(measured_dir) / "training_runs.csv", dtype=str)
    compared, skipped = _compared(table)
    runs = []
    for row in compared.to_dict(orient="records"):
        run = express_row(row)
        if isinstance(run, str):
            skipped.append({"id": row["id"], "model": row["model"], "gpu": row["gpu"],
                            "reason": run})
        else:
            runs.append((row, run))
    return runs, skipped


def predict_run(row: dict[str, Any], run: ExpressedRun, sustained: float | None = None,
                tp_overlap: float | None = None, moe_host_floor: float | None = None
                ) -> tuple[float, TrainingResult]:
    """The row's metric as the simulator predicts it, and the step it simulated.

    Raises:
        ClusterSimError: the simulator refuses the plan (it does not fit, say).
    """
    result = simulate_training(run.job, gpu=run.gpu.name, model=run.model, gpu_spec=run.gpu,
                               sustained=sustained, tp_overlap=tp_overlap,
                               moe_host_floor=moe_host_floor)
    if row["metric"] == "tokens_per_s_per_gpu":
        return result.tokens_per_s / run.num_gpus, result
    flops = result.model_flops - (_causal_discount(run) if "long_sequence" in
                                  str(row["source"]) else 0.0)
    return flops / result.step_s / run.num_gpus / 1e12, result


@cache
def _simulated(measured_dir: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs, skipped = expressed_runs(measured_dir)
    rows = []
    for row, run in runs:
        try:
            predicted, result = predict_run(row, run)
        except ClusterSimError as error:
            skipped.append({"id": row["id"], "model": row["model"], "gpu": row["gpu"],
                            "reason": f"the simulator refuses the plan: {error}"})
            continue
        measured = float(row["value"])
        peak = re.search(r"peak memory ([0-9.]+) GiB", str(row["notes"]))
        rows.append({"id": row["id"], "source": run_source(row), "gpu": run.gpu_label,
                     "gpu_name": run.gpu.name,
                     "model": str(row["model"]), "moe": run.model.is_moe,
                     "dtype": run.job.dtype,
                     "layout": _layout(run), "metric": row["metric"], "measured": measured,
                     "predicted": predicted, "mfu": result.mfu,
                     "memory_gib": result.memory.total / 2**30,
                     "measured_memory_gib": float(peak.group(1)) if peak else np.nan,
                     "assumed": run.assumed})
    out = pd.DataFrame(rows, columns=["id", "source", "gpu", "gpu_name", "model", "moe",
                                      "dtype", "layout",
                                      "metric", "measured", "predicted", "mfu", "memory_gib",
                                      "measured_memory_gib", "assumed"])
    out["signed_pct"] = (out["predicted"] - out["measured"]) / out["measured"] * 100.0
    out["error_pct"] = out["signed_pct"].abs()
    return out, pd.DataFrame(skipped, columns=["id", "model", "gpu", "reason"])


def _causal_discount(run: ExpressedRun) -> float:
    """Model FLOPs of a step that a causal count leaves out: half the attention scores'
    (3 x 4·b·s²·width per layer, forward and backward). NeMo's long-context table counts
    FLOPs this way: its TFLOP/s stay flat from 16K to 1M tokens only under it (without
    the discount the kernels would run at half their measured attention rate)."""
    model, job = run.model, run.job
    width = (model.q_size + model.o_size) / 2
    return 0.5 * 3.0 * 4.0 * job.global_batch * job.seq_len**2 * width * model.num_layers


def _layout(run: ExpressedRun) -> str:
    plan = run.job.plan
    parts = [f"tp{plan.tp}", f"pp{plan.pp}", f"dp{plan.dp}"]
    parts += [f"cp{plan.cp}"] if plan.cp > 1 else []
    parts += [f"ep{plan.ep}"] if plan.ep > 1 else []
    parts += [f"vp{plan.virtual_stages}"] if plan.virtual_stages > 1 else []
    parts += [f"zero{plan.zero_stage}"] if plan.zero_stage else []
    return " ".join(parts) + f" mbs{run.job.micro_batch} gbs{run.job.global_batch}"


def training_rows(measured_dir: str | Path) -> pd.DataFrame:
    """One row per compared run: measured and predicted metric, errors, memory."""
    return _simulated(str(Path(measured_dir).resolve()))[0].copy()


def skipped_training_rows(measured_dir: str | Path) -> pd.DataFrame:
    """Every pack row not compared, with the reason."""
    return _simulated(str(Path(measured_dir).resolve()))[1].copy()


def training_errors(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (GPU, source) and per GPU over all sources: runs, median / p90 / max error,
    signed median (negative: predicted slower than measured), the worst runs; in the
    operator table's columns, so the gate holds them like the kernels."""
    out = []
    groups = [((gpu, f"training {source}"), part)
              for (gpu, source), part in rows.groupby(["gpu", "source"], sort=True)]
    groups += [((gpu, "training all"), part) for gpu, part in rows.groupby("gpu", sort=True)]
    for (gpu, label), part in groups:
        errors = part["error_pct"].to_numpy()
        worst = part.nlargest(3, "error_pct")
        out.append({"gpu": gpu, "operator": label, "num_points": len(part),
                    "median_error_pct": float(np.median(errors)),
                    "p90_error_pct": float(np.percentile(errors, 90)),
                    "max_error_pct": float(errors.max()),
                    "signed_median_pct": float(np.median(part["signed_pct"])),
                    "worst": "; ".join(f"{r.id} {r.model} ({r.error_pct:.0f}%)"
                                       for r in worst.itertuples()),
                    "source": "training_runs.csv"})
    return pd.DataFrame(out)
