"""Profiling collectives through torch.distributed: one process per GPU.

    clustersim profile --gpu h100 --out my-h100/ --collectives 8     (NCCL/RCCL over GPUs)
    clustersim profile ... --device cpu --collectives 2               (gloo on loopback)

Each rank runs every operation (all_reduce, all_gather, reduce_scatter, all_to_all, and
send/recv between ranks 0 and 1) over a grid of message sizes: warm-up, then timed
repetitions fenced by barriers; rank 0 keeps the median. An operation the backend does not
implement (gloo has no reduce_scatter, for one) is left out and named in the table's note.
Sizes are the bytes of the buffer each rank holds, as nccl-tests counts them.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["profile_collectives"]

OPERATIONS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(op: str, buffer: torch.Tensor, world: int, rank: int) -> None:
    if op == "all_reduce":
        dist.all_reduce(buffer)
    elif op == "all_gather":
        parts = list(buffer.chunk(world))
        dist.all_gather(parts, parts[rank].clone())
    elif op == "reduce_scatter":
        parts = list(buffer.chunk(world))
        dist.reduce_scatter(parts[rank].clone(), parts)
    elif op == "all_to_all":
        dist.all_to_all_single(torch.empty_like(buffer), buffer)
    elif rank == 0:
        dist.send(buffer, dst=1)
    elif rank == 1:
        dist.recv(buffer, src=0)


def _worker(rank: int, world: int, port: int, device: str, sizes: Sequence[int],
            repetitions: int, warmup: int, results: Any) -> None:
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    target = torch.device("cuda", rank) if device == "cuda" else torch.device("cpu")
    rows, skipped = [], []
    try:
        for op in OPERATIONS:
            for size in sizes:
                elements = max(world, size // 4 // world * world)
                buffer = torch.ones(elements, dtype=torch.float32, device=target)
                try:
                    for _ in range(warmup):
                        _run(op, buffer, world, rank)
                except (RuntimeError, ValueError):
                    skipped.append(op)
                    break
                times = []
                for _ in range(repetitions):
                    dist.barrier()
                    if device == "cuda":
                        torch.cuda.synchronize()
                    began = time.perf_counter()
                    _run(op, buffer, world, rank)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - began)
                rows.append({"op": op, "num_gpus": world if op != "send_recv" else 2,
                             "bytes": elements * 4, "time_s": statistics.median(times)})
    finally:
        dist.barrier()
        dist.destroy_process_group()
    if rank == 0:
        results.put((rows, skipped))


def profile_collectives(world: int, device: str, sizes: Sequence[int], repetitions: int,
                        warmup: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the collective table, and the operations the backend could not run."""
    if world < 2:
        raise RuntimeError("collectives need at least 2 processes (--collectives N, N >= 2)")
    if device == "cuda" and torch.cuda.device_count() < world:
        raise RuntimeError(f"--collectives {world} needs {world} visible GPUs, "
                           f"found {torch.cuda.device_count()}")
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.start_processes(  # type: ignore[attr-defined,no-untyped-call]
        _worker, args=(world, _free_port(), device, list(sizes), repetitions,
                                      warmup, results), nprocs=world, join=True,
                       start_method="spawn")
    rows, skipped = results.get()
    return rows, sorted(set(skipped))
