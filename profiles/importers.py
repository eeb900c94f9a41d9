"""Importers of public profile layouts into the project's profile format.

    clustersim profile import vidur DIR --gpu a100 --out my-a100/
    clustersim profile import splitwise perf_model.csv --gpu h100 --out my-h100-steps/

Vidur (``data/profiling/`` of microsoft/vidur) keeps per-layer operator times by GPU SKU
and model, and collective times by node type::

    DIR/compute/<sku>/<org>/<model>/mlp.csv      emb, norms, QKV/O/MLP GEMMs, rope, act, add
    DIR/compute/<sku>/<org>/<model>/attention.csv paged prefill and decode attention
    DIR/network/<node>/all_reduce.csv, send_recv.csv

Times are milliseconds (``time_stats.<op>.median``, the statistic Vidur uses); shapes are
the model's config per GPU shard at ``num_tensor_parallel_workers``. Each GEMM becomes a
``gemm.csv`` row (m = tokens, n and k the weight's local shape, as the roofline lays them
out), the norms, activation, rotary and residual add ``elementwise.csv`` rows, attention
``attn_prefill.csv`` / ``attn_decode.csv`` rows, and the collectives inside one node
``collective.csv`` rows. Vidur's collective ``size`` is read as bytes: read as fp16
elements (2 bytes each), its largest transfers would beat the links they ran on (a
send/recv at 457 GB/s over A100's 300 GB/s NVLink, an 8-GPU all-reduce at 348 GB/s bus
bandwidth), while as bytes they land where NCCL does (228 GB/s, 174 GB/s).

Splitwise (``data/perf_model.csv`` of the Splitwise simulator) keeps whole forward passes:
the prompt phase of ``batch_size`` identical prompts and the mean decode iteration while
they generate ``token_size`` tokens, per model, GPU and TP degree. They become
``step_prefill.csv`` and ``step_decode.csv``; repeated configurations keep their median.

Nothing here reads a file beyond the layout it names; a layout that does not match is a
one-line error naming the file and what was expected.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from profiles.errors import ClusterSimError
from profiles.hardware import load_gpu
from profiles.profile_format import KernelProfile, ProfileMetadata, TableInfo, write_profile

__all__ = ["SPLITWISE_QUEUED_RATIO", "VIDUR_SKUS", "describe", "import_splitwise",
           "import_vidur", "left_out_note", "read_splitwise", "read_vidur_attention",
           "read_vidur_collectives", "read_vidur_compute"]

# Vidur's SKU folders and the catalog GPUs they were measured on (Vidur docs/profiling.md).
VIDUR_SKUS = {"a100": "A100-SXM4-80GB", "h100": "H100-SXM5-80GB"}
SPLITWISE_HARDWARE = {"a100-80gb": "A100-SXM4-80GB", "h100-80gb": "H100-SXM5-80GB"}
# A Splitwise row whose end-to-end time exceeds this many times its prefill plus decode
# steps did not run as one batch (see read_splitwise). The file's consistent rows sit
# within 0.1% of 1; rows stopped early by an end-of-sequence token fall below 1 and are
# kept (their per-token time is still a step's).
SPLITWISE_QUEUED_RATIO = 1.5
# How the table notes word the configurations an import leaves out (left_out_note).
_LEFT_OUT = "left out, as not one batch"

_MS = 1e-3
_GEMMS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
_ELEMENTWISE = {"input_layernorm": "rmsnorm", "post_attention_layernorm": "rmsnorm",
                "mlp_act": "silu_mul", "attn_rope": "rotary", "add": "add"}
_CONFIG = ("n_head", "n_kv_head", "n_embd", "n_expanded_embd", "use_gated_mlp",
           "num_tokens", "num_tensor_parallel_workers")


def _read_csv(path: Path, needed: Iterable[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError,
            UnicodeDecodeError) as error:
        raise ClusterSimError(f"{path}: not a readable CSV ({error})") from None
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise ClusterSimError(f"{path}: missing column(s) {', '.join(missing)}; is this "
                              "the expected layout?")
    return frame


def _median(frame: pd.DataFrame, op: str) -> pd.Series:
    return pd.to_numeric(frame[f"time_stats.{op}.median"], errors="coerce") * _MS


def read_vidur_compute(root: str | Path, sku: str) -> pd.DataFrame:
    """Every operator row of every model of one SKU, long form: model, op, kind (gemm or
    elementwise), tp, m (tokens), n, k (GEMMs) or hidden (elementwise), time_s.

    Raises:
        ClusterSimError: no ``compute/<sku>/*/*/mlp.csv`` under ``root``, or a file
            without Vidur's columns.
    """
    files = sorted(Path(root).glob(f"compute/{sku}/*/*/mlp.csv"))
    if not files:
        raise ClusterSimError(f"vidur profile {root}: no compute/{sku}/<org>/<model>/mlp.csv; "
                              "give Vidur's data/profiling folder and one of its SKUs")
    parts = []
    for path in files:
        frame = _read_csv(path, [*_CONFIG, *(f"time_stats.{op}.median" for op in _GEMMS)])
        model = f"{path.parent.parent.name}/{path.parent.name}"
        tp = frame["num_tensor_parallel_workers"].astype(int)
        h = frame["n_embd"].astype(int)
        heads, kv_heads = frame["n_head"].astype(int), frame["n_kv_head"].astype(int)
        head_dim = h // heads
        q_local = heads // tp * head_dim
        # NOTE: with fewer KV heads than TP ranks each rank keeps one (as the roofline).
        kv_local = np.maximum(1, kv_heads // tp) * head_dim
        f_local = frame["n_expanded_embd"].astype(int) // tp
        gated = frame["use_gated_mlp"].astype(str).str.lower().isin(("true", "1"))
        shapes = {"attn_pre_proj": (q_local + 2 * kv_local, h),
                  "attn_post_proj": (h, q_local),
                  "mlp_up_proj": (np.where(gated, 2, 1) * f_local, h),
                  "mlp_down_proj": (h, f_local)}
        tokens = frame["num_tokens"].astype(int)
        for op, (n, k) in shapes.items():
            parts.append(pd.DataFrame({"model": model, "op": op, "kind": "gemm", "tp": tp,
                                       "m": tokens, "n": n, "k": k, "hidden": 0,
                                       "time_s": _median(frame, op)}))
        widths = {"input_layernorm": h, "post_attention_layernorm": h, "mlp_act": f_local,
                  "attn_rope": q_local + kv_local, "add": h}
        for op, width in widths.items():
            if f"time_stats.{op}.median" not in frame.columns:
                continue  # phi-2 has one norm per layer
            parts.append(pd.DataFrame({"model": model, "op": _ELEMENTWISE[op],
                                       "kind": "elementwise", "tp": tp, "m": tokens, "n": 0,
                                       "k": 0, "hidden": width, "time_s": _median(frame, op)}))
    rows = pd.concat(parts, ignore_index=True)
    return rows[np.isfinite(rows["time_s"]) & (rows["time_s"] > 0)].reset_index(drop=True)


def read_vidur_attention(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(prefill rows, decode rows) of a Vidur ``attention.csv``, in the columns of the
    profile's attention tables (batch, q_len, kv_len, head layout per GPU, time_s)."""
    path = Path(path)
    frame = _read_csv(path, ["n_embd", "n_q_head", "n_kv_head", "num_tensor_parallel_workers",
                             "batch_size", "prefill_chunk_size", "kv_cache_size", "is_prefill",
                             "time_stats.attn_prefill.median", "time_stats.attn_decode.median"])
    tp = frame["num_tensor_parallel_workers"].astype(int)
    heads = frame["n_q_head"].astype(int)
    layout = {"num_heads": heads // tp,
              "num_kv_heads": np.maximum(1, frame["n_kv_head"].astype(int) // tp),
              "head_dim": frame["n_embd"].astype(int) // heads}
    is_prefill = frame["is_prefill"].astype(str).str.lower().isin(("true", "1"))
    pre = frame[is_prefill]
    prefill = pd.DataFrame({
        "batch": 1, "q_len": pre["prefill_chunk_size"].astype(int),
        "kv_len": pre["kv_cache_size"].astype(int) + pre["prefill_chunk_size"].astype(int),
        **{key: value[is_prefill] for key, value in layout.items()},
        "time_s": _median(pre, "attn_prefill")})
    dec = frame[~is_prefill]
    decode = pd.DataFrame({
        "batch": dec["batch_size"].astype(int), "kv_len": dec["kv_cache_size"].astype(int),
        **{key: value[~is_prefill] for key, value in layout.items()},
        "time_s": _median(dec, "attn_decode")})
    keep = [t[np.isfinite(t["time_s"]) & (t["time_s"] > 0) & (t.get("q_len", 1) > 0)]
            for t in (prefill, decode)]
    return keep[0].reset_index(drop=True), keep[1].reset_index(drop=True)


def read_vidur_collectives(folder: str | Path) -> pd.DataFrame:
    """Collective rows of a Vidur ``network/<node>/`` folder: op, num_gpus, bytes, time_s
    and devices_per_node (1 = one GPU on each node, across the network)."""
    folder = Path(folder)
    parts = []
    for op in ("all_reduce", "send_recv"):
        path = folder / f"{op}.csv"
        if not path.is_file():
            continue
        frame = _read_csv(path, ["num_workers", "size", "devices_per_node",
                                 f"time_stats.{op}.median"])
        parts.append(pd.DataFrame({
            "op": op, "num_gpus": frame["num_workers"].astype(int),
            "bytes": frame["size"].astype(float),  # bytes: see the module docstring
            "devices_per_node": frame["devices_per_node"].astype(int),
            "time_s": _median(frame, op)}))
    if not parts:
        raise ClusterSimError(f"vidur network {folder}: no all_reduce.csv or send_recv.csv")
    rows = pd.concat(parts, ignore_index=True)
    return rows[np.isfinite(rows["time_s"]) & (rows["time_s"] > 0)].reset_index(drop=True)


def read_splitwise(path: str | Path) -> pd.DataFrame:
    """Splitwise's measured rows with the median of repeated configurations: model,
    hardware, tp, batch, prompt_tokens, output_tokens, prefill_s, decode_step_s.

    A row whose end-to-end time is over :data:`SPLITWISE_QUEUED_RATIO` times its prefill
    plus its decode steps did not run as one batch (Llama-2-70B at TP2 with 64 prompts of
    512 tokens: 160 s end to end against 0.8 s + 127 x 67 ms, its requests queued or
    preempted for KV space), so its times are not a step's; it is left out, and the
    frame's ``attrs["left_out"]`` names each such configuration. A zero or missing
    ``e2e_time`` is not checked."""
    frame = _read_csv(Path(path), ["model", "hardware", "prompt_size", "batch_size",
                                   "token_size", "prompt_time", "token_time",
                                   "tensor_parallel"])
    keys = ["model", "hardware", "tensor_parallel", "batch_size", "prompt_size", "token_size"]
    left_out: list[str] = []
    if "e2e_time" in frame.columns:
        steps = frame["prompt_time"] + (frame["token_size"] - 1) * frame["token_time"]
        queued = pd.to_numeric(frame["e2e_time"], errors="coerce") > (
            SPLITWISE_QUEUED_RATIO * steps)
        left_out = sorted({f"{m} {h} tp={t} batch={b} prompt={p} out={o}" for m, h, t, b, p, o
                           in frame.loc[queued, keys].itertuples(index=False)})
        frame = frame[~queued]
    grouped = frame.groupby(keys, as_index=False)[["prompt_time", "token_time"]].median()
    out = pd.DataFrame({
        "model": grouped["model"], "hardware": grouped["hardware"],
        "tp": grouped["tensor_parallel"].astype(int), "batch": grouped["batch_size"].astype(int),
        "prompt_tokens": grouped["prompt_size"].astype(int),
        "output_tokens": grouped["token_size"].astype(int),
        "prefill_s": grouped["prompt_time"] * _MS, "decode_step_s": grouped["token_time"] * _MS})
    out.attrs["left_out"] = left_out
    return out


def _metadata(gpu: str, tables: dict[str, str], source: str, models: list[str], *,
              num_gpus: int, interconnect: str, command: str, repetitions: int,
              warmup: int) -> ProfileMetadata:
    return ProfileMetadata(
        gpu=gpu, device_name=f"{gpu} (as named by the source)", num_gpus=num_gpus,
        interconnect=interconnect, driver="not recorded by the source",
        runtime="CUDA (version not recorded by the source)",
        torch="not recorded by the source", dtype="fp16", date="not recorded by the source",
        command=command, repetitions=repetitions, warmup=warmup,
        tables={op: TableInfo(file=f"{op}.csv", status="measured", note=note)
                for op, note in tables.items()},
        source=source, models=models)


def import_vidur(root: str | Path, gpu: str, out: str | Path, *, node: str | None = None,
                 attention: str | Path | None = None, command: str = "") -> KernelProfile:
    """Convert a Vidur profiling folder for one GPU into a profile folder ``out``.

    Args:
        root: Vidur's ``data/profiling`` folder (``compute/``, ``network/``).
        gpu: the catalog GPU (a100 or h100: the SKUs Vidur profiles).
        out: the profile folder to write.
        node: the ``network/`` node folder (default ``<sku>_dgx`` when present).
        attention: an ``attention.csv`` (default: the SKU's own, when present).
        command: the command that made it, for the metadata.

    Raises:
        ClusterSimError: an unknown GPU for Vidur, or files not in Vidur's layout.
    """
    spec = load_gpu(gpu)
    sku = next((key for key, name in VIDUR_SKUS.items() if name == spec.name), None)
    if sku is None:
        raise ClusterSimError(f"--gpu {gpu}: Vidur profiles {', '.join(VIDUR_SKUS)}; pick one")
    root = Path(root)
    compute = read_vidur_compute(root, sku)
    gemm = compute[compute["kind"] == "gemm"]
    tables = {
        "gemm": gemm.groupby(["m", "n", "k"], as_index=False)["time_s"].median(),
        "elementwise": compute[compute["kind"] == "elementwise"].rename(
            columns={"m": "num_tokens"}).groupby(["op", "num_tokens", "hidden"],
                                                 as_index=False)["time_s"].median(),
    }
    notes = {"gemm": "Vidur mlp.csv QKV/O/MLP GEMMs (fp16, Kineto kernel time, median)",
             "elementwise": "Vidur mlp.csv norms, activation, rotary, residual add"}
    attention_files = ([Path(attention)] if attention is not None
                       else sorted(root.glob(f"compute/{sku}/*/*/attention.csv")))
    if attention_files:
        prefill, decode = (pd.concat(parts, ignore_index=True) for parts in
                           zip(*(read_vidur_attention(p) for p in attention_files), strict=True))
        tables["attn_prefill"], tables["attn_decode"] = prefill, decode
        notes["attn_prefill"] = notes["attn_decode"] = "Vidur attention.csv (paged, block 16)"
    num_gpus, interconnect = 1, "none (compute profile of one GPU)"
    node_folder = root / "network" / (node or f"{sku}_dgx")
    if node is not None and not node_folder.is_dir():
        raise ClusterSimError(f"--node {node}: no such folder {node_folder}")
    if node_folder.is_dir():
        collectives = read_vidur_collectives(node_folder)
        inside = collectives[collectives["devices_per_node"] == collectives["num_gpus"]]
        tables["collective"] = inside.groupby(["op", "num_gpus", "bytes"],
                                              as_index=False)["time_s"].median()
        num_gpus = int(inside["num_gpus"].max())
        interconnect = f"{node_folder.name} (Vidur network profile, GPUs of one node)"
        notes["collective"] = "torch.distributed NCCL, fp16 buffers, inside one node"
    folder = Path(out)
    metadata = _metadata(spec.name, notes, f"Vidur profiling data ({root.name})",
                         sorted(compute["model"].unique()), num_gpus=num_gpus,
                         interconnect=interconnect, command=command, repetitions=20, warmup=2)
    write_profile(folder, metadata, tables)
    return KernelProfile(metadata, tables, folder)


def import_splitwise(path: str | Path, gpu: str, out: str | Path, *,
                     command: str = "") -> KernelProfile:
    """Convert Splitwise's ``perf_model.csv`` rows of one GPU into step tables.

    Raises:
        ClusterSimError: an unknown GPU for the file, or a file not in its layout.
    """
    spec = load_gpu(gpu)
    hardware = next((key for key, name in SPLITWISE_HARDWARE.items() if name == spec.name),
                    None)
    if hardware is None:
        raise ClusterSimError(f"--gpu {gpu}: the Splitwise file measures "
                              f"{', '.join(SPLITWISE_HARDWARE)}; pick one of those GPUs")
    rows = read_splitwise(path)
    left_out = [shape for shape in rows.attrs["left_out"] if f" {hardware} " in shape]
    rows = rows[rows["hardware"] == hardware]
    if rows.empty:
        raise ClusterSimError(f"{path}: no rows for hardware {hardware}")
    keys = ["model", "tp", "batch", "prompt_tokens"]
    tables = {
        "step_prefill": rows.groupby(keys, as_index=False)["prefill_s"].median().rename(
            columns={"prefill_s": "time_s"}),
        "step_decode": rows[[*keys, "output_tokens", "decode_step_s"]].rename(
            columns={"decode_step_s": "time_s"}),
    }
    notes = {"step_prefill": "prompt phase of `batch` identical prompts (Splitwise)",
             "step_decode": "mean decode iteration while generating output_tokens"}
    if left_out:
        skipped = (f"; {_LEFT_OUT} (end-to-end time over {SPLITWISE_QUEUED_RATIO:g}x "
                   f"prefill + decode steps): " + ", ".join(left_out))
        notes = {op: note + skipped for op, note in notes.items()}
    metadata = _metadata(spec.name, notes, f"Splitwise perf model ({Path(path).name})",
                         sorted(rows["model"].unique()), num_gpus=int(rows["tp"].max()),
                         interconnect="DGX (NVSwitch), as the source's machines",
                         command=command, repetitions=5, warmup=0)
    write_profile(out, metadata, tables)
    return KernelProfile(metadata, tables, Path(out))


def left_out_note(profile: KernelProfile) -> str:
    """The clause of a Splitwise import's table notes naming the configurations it left
    out as not one batch, or "" when it left none out."""
    table = profile.metadata.tables.get("step_decode")
    _, found, clause = (table.note if table else "").partition("; " + _LEFT_OUT)
    return _LEFT_OUT + clause if found else ""


def describe(profile: KernelProfile) -> dict[str, Any]:
    """Rows per table and the models covered, for the command's one-line report."""
    return {"tables": {op: len(table) for op, table in profile.tables.items()},
            "models": profile.metadata.models}

