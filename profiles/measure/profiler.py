"""The kernel profiler: measure a device's operator times into a profile folder.

    clustersim profile --gpu h100 --out my-h100/            (CUDA or ROCm: same torch API)
    clustersim profile --gpu a100 --device cpu --tiny ...   (tiny shapes; what tests run)

For each model and TP degree it measures the GEMMs the layers produce (QKV, output,
gate+up, down, LM head) over a grid of token counts; attention prefill (causal, GQA; whole
prompts and chunks after cached tokens) and decode over batch x KV length, through the
reference executor's paged attention (``profiles.measure.kernels``: keys gathered from
shuffled KV blocks, then torch's scaled_dot_product_attention, which picks FlashAttention
or the memory-efficient kernel where the device has them); the elementwise kernels
(RMSNorm, SiLU-and-multiply, rotary, KV-cache write); and, on a GPU, pinned host<->device
copies. Timing: device
events on a GPU (wall clock with a synchronize on the CPU), warm-up runs, a cache flush
before every repetition, the median.
With ``collectives`` >= 2 it also measures all-reduce, all-gather, reduce-scatter,
all-to-all and send/recv through torch.distributed, one process per GPU
(``profiles.measure.collectives``; gloo processes on the CPU).

This module needs torch (the ``profile`` extra), as does all of ``profiles.measure``; the
rest of ``profiles`` never imports it.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import pandas as pd
import torch
import torch.nn.functional as F

from profiles.measure.collectives import profile_collectives
from profiles.measure.device import command_line, device_facts
from profiles.measure.kernels import (
    TORCH_DTYPES,
    decode_attention,
    key_slots,
    prefill_attention,
)
from profiles.models import ModelSpec, load_model
from profiles.profile_format import (
    KernelProfile,
    ProfileMetadata,
    TableInfo,
    load_profile,
    write_profile,
)

__all__ = ["ProfileGrid", "run_profile"]

_BLOCK_SIZE = 16  # KV block of the profiled paged cache (vLLM's default)

class ProfileGrid:
    """The sizes to measure. ``tiny`` keeps every dimension small (CPU tests)."""

    def __init__(self, tiny: bool) -> None:
        if tiny:
            self.tokens = [1, 4, 16, 64]
            self.decode_batches = [1, 4]
            self.kv_lens = [16, 64]
            self.prefill_lens = [8, 32, 64]
            self.chunk_lens = [8]
            self.copy_bytes = [2**16, 2**20]
            self.max_decode_kv_tokens = 2**10
        else:
            self.tokens = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
            self.decode_batches = [1, 4, 16, 64, 256]
            self.kv_lens = [128, 512, 2048, 8192, 32768]
            self.prefill_lens = [128, 512, 1024, 2048, 4096, 8192]
            self.chunk_lens = [256, 512, 2048]
            self.copy_bytes = [2**20, 2**24, 2**28, 2**30]
            # 2^20 KV tokens of one layer is more than a GPU holds for the whole model
            # (Llama-3-8B: 128 KiB a token, 128 GiB for 2^20 tokens).
            self.max_decode_kv_tokens = 2**20


class _Timer:
    def __init__(self, device: torch.device, repetitions: int, warmup: int) -> None:
        self.device = device
        self.repetitions = repetitions
        self.warmup = warmup
        flush_bytes = 256 * 2**20 if device.type == "cuda" else 8 * 2**20
        self._flush = torch.empty(flush_bytes // 4, dtype=torch.float32, device=device)

    def __call__(self, fn: Callable[[], object]) -> float:
        for _ in range(self.warmup):
            fn()
        self._sync()
        times = []
        for _ in range(self.repetitions):
            self._flush.zero_()  # evict the operands from the caches
            if self.device.type == "cuda":
                start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
                end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(float(start.elapsed_time(end)) / 1e3)
            else:
                self._sync()
                began = time.perf_counter()
                fn()
                self._sync()
                times.append(time.perf_counter() - began)
        return float(statistics.median(times))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _gemm_shapes(model: ModelSpec, tp: int) -> list[tuple[int, int]]:
    """(n, k) of the layer GEMMs and the LM head under TP (weights are n x k)."""
    h = model.hidden_size
    q = model.q_size // tp
    kv = max(1, model.num_kv_heads // tp) * model.head_dim
    f = model.intermediate_size // tp
    shapes = [(q + 2 * kv, h), (h, q), (h, f), (model.vocab_size // tp, h)]
    shapes.append((2 * f, h) if model.mlp_kind == "gated" else (f, h))
    return sorted(set(shapes))


def run_profile(out: str | Path, *, gpu: str, models: Sequence[str], tp_degrees: Sequence[int],
                device: str = "cuda", dtype: Literal["bf16", "fp16", "fp32"] = "bf16",
                tiny: bool = False, repetitions: int = 10, warmup: int = 3,
                collectives: int = 0,
                progress: Callable[[int, int], None] | None = None) -> KernelProfile:
    """Measure and write a profile folder; returns it loaded back (so it is checked).
    ``progress`` hears (shape groups measured, shape groups)."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA/ROCm device visible; pass --device cpu to try the profiler")
    torch_dtype = TORCH_DTYPES[dtype]
    timer = _Timer(dev, repetitions, warmup)
    grid = ProfileGrid(tiny)
    specs = [load_model(name) for name in models]
    rows: dict[str, list[dict[str, object]]] = {op: [] for op in
                                                 ("gemm", "attn_prefill", "attn_decode",
                                                  "elementwise")}

    gemm_shapes = sorted({shape for spec in specs for tp in tp_degrees
                          for shape in _gemm_shapes(spec, tp)})
    layouts = sorted({(spec.num_attention_heads // tp, max(1, spec.num_kv_heads // tp),
                       spec.head_dim) for spec in specs for tp in tp_degrees})
    widths = set()
    for spec in specs:
        for tp in tp_degrees:
            kv = max(1, spec.num_kv_heads // tp) * spec.head_dim
            widths |= {("rmsnorm", spec.hidden_size),
                       ("silu_mul", spec.intermediate_size // tp),
                       ("rotary", spec.q_size // tp + kv), ("kv_write", 2 * kv)}
    groups, done = len(gemm_shapes) + len(layouts) + len(widths), 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, groups)

    for n, k in gemm_shapes:
        weight = torch.randn(n, k, dtype=torch_dtype, device=dev)
        for m in grid.tokens:
            x = torch.randn(m, k, dtype=torch_dtype, device=dev)
            rows["gemm"].append({"m": m, "n": n, "k": k,
                                 "time_s": timer(_matmul(x, weight))})
        tick()

    # Attention is timed through the reference executor's own kernels (paged keys behind
    # scattered block tables, as a serving engine holds them), so a profile predicts what
    # that executor measures.
    for heads, kv_heads, head_dim in layouts:
        for length in grid.prefill_lens:
            k_cache, v_cache, index, _ = _paged_keys([length], kv_heads, head_dim,
                                                     torch_dtype, dev)
            # Whole prompts, then chunks of new queries after length - chunk cached tokens
            # (causal from the bottom right: each query sees the cache and its own past).
            for q_len in [length, *(c for c in grid.chunk_lens if c < length)]:
                query = torch.randn(q_len, heads, head_dim, dtype=torch_dtype, device=dev)
                seconds = timer(_prefill(query, k_cache, v_cache, index[0]))
                rows["attn_prefill"].append({"batch": 1, "q_len": q_len, "kv_len": length,
                                             "num_heads": heads, "num_kv_heads": kv_heads,
                                             "head_dim": head_dim, "time_s": seconds})
        for batch in grid.decode_batches:
            for kv_len in grid.kv_lens:
                if batch * kv_len > grid.max_decode_kv_tokens:
                    continue  # more KV than a GPU holds for one layout: never scheduled
                k_cache, v_cache, index, mask = _paged_keys([kv_len] * batch, kv_heads,
                                                            head_dim, torch_dtype, dev)
                query = torch.randn(batch, heads, head_dim, dtype=torch_dtype, device=dev)
                seconds = timer(_decode(query, k_cache, v_cache, index, mask))
                rows["attn_decode"].append({"batch": batch, "kv_len": kv_len,
                                            "num_heads": heads, "num_kv_heads": kv_heads,
                                            "head_dim": head_dim, "time_s": seconds})
                del k_cache, v_cache, index, mask
        tick()

    for op, width in sorted(widths):
        for tokens in grid.tokens:
            x = torch.randn(tokens, width, dtype=torch_dtype, device=dev)
            rows["elementwise"].append({"op": op, "num_tokens": tokens, "hidden": width,
                                        "time_s": timer(_elementwise(op, x))})
        tick()

    tables = {op: pd.DataFrame(table) for op, table in rows.items()}
    notes = {op: "" for op in tables}
    if dev.type == "cuda":
        tables["memcpy"] = _copies(timer, grid, dev)
        notes["memcpy"] = "pinned host memory, non_blocking copies"
    num_gpus, interconnect = 1, "none (one device)"
    if collectives >= 2:
        collective_rows, skipped = profile_collectives(
            collectives, dev.type, grid.copy_bytes, repetitions, warmup)
        tables["collective"] = pd.DataFrame(collective_rows)
        notes["collective"] = ("not run by this backend: " + ", ".join(skipped)) if skipped \
            else ""
        num_gpus = collectives
        interconnect = ("as the devices are linked (NCCL/RCCL picks the path)"
                        if dev.type == "cuda" else "gloo over loopback TCP (CPU processes)")
    facts = device_facts(device)
    metadata = ProfileMetadata(
        gpu=gpu, device_name=facts["name"], num_gpus=num_gpus, interconnect=interconnect,
        driver=facts["driver"], runtime=facts["runtime"], torch=facts["torch"], dtype=dtype,
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        command=command_line(), repetitions=repetitions,
        warmup=warmup,
        tables={op: TableInfo(file=f"{op}.csv", status="measured", note=notes[op])
                for op in tables})
    write_profile(out, metadata, tables)
    return load_profile(out)


def _matmul(x: torch.Tensor, weight: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        return x @ weight.T
    return run


def _paged_keys(lengths: list[int], kv_heads: int, head_dim: int, dtype: torch.dtype,
                dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                            torch.Tensor]:
    """A one-layer paged cache holding rows of ``lengths`` keys in shuffled blocks of
    ``_BLOCK_SIZE``: (k cache, v cache, key slots [rows, max keys], key mask)."""
    blocks_per_row = [-(-length // _BLOCK_SIZE) for length in lengths]
    order = torch.randperm(sum(blocks_per_row)).tolist()
    tables, used = [], 0
    for count in blocks_per_row:
        tables.append(order[used:used + count])
        used += count
    shape = (used * _BLOCK_SIZE, kv_heads, head_dim)
    k_cache = torch.randn(shape, dtype=dtype, device=dev)
    v_cache = torch.randn(shape, dtype=dtype, device=dev)
    index, mask = key_slots(tables, lengths, _BLOCK_SIZE, dev)
    return k_cache, v_cache, index, mask


def _prefill(query: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             index: torch.Tensor) -> Callable[[], object]:
    return lambda: prefill_attention(query, k_cache, v_cache, index)


def _decode(query: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
            index: torch.Tensor, mask: torch.Tensor) -> Callable[[], object]:
    return lambda: decode_attention(query, k_cache, v_cache, index, mask)


def _elementwise(op: str, x: torch.Tensor) -> Callable[[], object]:
    if op == "rmsnorm":
        weight = torch.ones(x.shape[1], dtype=x.dtype, device=x.device)
        return lambda: x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6) \
            .to(x.dtype) * weight
    if op == "silu_mul":
        return lambda: F.silu(x) * x
    if op == "rotary":
        cos, sin = torch.randn_like(x), torch.randn_like(x)
        return lambda: x * cos + torch.roll(x, 1, dims=-1) * sin
    cache = torch.empty(x.shape[0] * 2, x.shape[1], dtype=x.dtype, device=x.device)
    slots = torch.arange(0, x.shape[0] * 2, 2, device=x.device)
    return lambda: cache.index_copy_(0, slots, x)


def _copies(timer: _Timer, grid: ProfileGrid, dev: torch.device) -> pd.DataFrame:
    rows = []
    for size in grid.copy_bytes:
        host = torch.empty(size, dtype=torch.uint8).pin_memory()
        device_buffer = torch.empty(size, dtype=torch.uint8, device=dev)
        rows.append({"direction": "h2d", "bytes": size,
                     "time_s": timer(_copy(device_buffer, host))})
        rows.append({"direction": "d2h", "bytes": size,
                     "time_s": timer(_copy(host, device_buffer))})
    return pd.DataFrame(rows)


def _copy(target: torch.Tensor, source: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        return target.copy_(source, non_blocking=True)
    return run
