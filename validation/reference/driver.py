"""The reference executor's driver: a trace replayed in wall-clock time through the
project's own scheduler, each scheduled step run for real by an executor.

This is how predictions meet measurements: the batches a real device runs are exactly
the ones the simulator's scheduler forms, so the simulated and the measured run differ
only in how long each step takes::

    wall clock ──► arrivals due ──► Scheduler.schedule(now) ──► StepPlan
                                                                   │ rows: tokens, block tables
                                                                   ▼
                              Scheduler.update(plan, now) ◄── executor.run(rows) on the GPU
                                                                   │ sampled tokens, device s
                                                                   ▼
                                                   step rows + request rows (TTFT, TPOT, E2E)

The driver owns what the simulator keeps only as counts: the physical KV block of every
token (a free list and a block table per request, sized by the same block count as the
scheduler's pool, so an allocation the scheduler allows always succeeds here) and every
request's token ids (random prompts from the run's seed, then the sampled outputs, so a
request preempted by recompute prefills exactly its tokens again). It runs one replica
on one device: tensor and pipeline parallelism, swap preemption, prefix caching and
static batching are refused with a one-line error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from profiles.errors import ClusterSimError
from simulator.serving.engine import ResolvedDeployment, make_kv_cache, make_requests
from simulator.serving.metrics import request_rows
from simulator.serving.scheduler import Scheduler
from simulator.serving.token_gaps import TokenGaps
from validation.reference.executor import StepExecutor, StepRows
from workloads.schema import RequestTrace

__all__ = ["STEP_COLUMNS", "BlockTables", "ReferenceRun", "check_reference_deployment",
           "run_reference"]

STEP_COLUMNS = ["step_id", "start_s", "end_s", "device_s", "num_requests", "num_tokens",
                "num_sampled", "num_decodes", "query_lens", "context_lens"]


class BlockTables:
    """Physical KV blocks: a free list and each request's table, in token order.

    Invariant: every block is either free or in exactly one table.
    """

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.block_size = block_size
        self.num_blocks = num_blocks
        self._free = list(range(num_blocks - 1, -1, -1))  # pop() hands out 0, 1, 2, ...
        self.tables: dict[int, list[int]] = {}

    def ensure(self, request_id: int, num_tokens: int) -> list[int]:
        """The request's table, grown to hold ``num_tokens`` tokens."""
        table = self.tables.setdefault(request_id, [])
        needed = -(-num_tokens // self.block_size) - len(table)
        if needed > len(self._free):
            raise RuntimeError(f"KV blocks exhausted: request {request_id} needs {needed} "
                               f"more, {len(self._free)} free (scheduler and executor "
                               "disagree on the block count)")
        for _ in range(needed):
            table.append(self._free.pop())
        return table

    def free(self, request_id: int) -> None:
        self._free.extend(reversed(self.tables.pop(request_id, [])))

    @property
    def num_free(self) -> int:
        return len(self._free)


@dataclass
class ReferenceRun:
    """What a reference run measured: one row per step, one per request (the simulator's
    request columns), and the run's facts."""

    steps: pd.DataFrame
    requests: pd.DataFrame
    wall_s: float
    num_gpu_blocks: int


def check_reference_deployment(resolved: ResolvedDeployment) -> None:
    """Refuse what the reference executor does not run (one line naming the field).

    Raises:
        ClusterSimError: a deployment of several GPUs or replicas, swap preemption,
            prefix caching or static batching.
    """
    deployment, scheduler = resolved.deployment, resolved.scheduler
    parallelism = deployment.parallelism
    if parallelism.tp != 1 or parallelism.pp != 1 or deployment.replicas != 1:
        raise ClusterSimError("parallelism: the reference executor runs one replica on one "
                              "GPU; set tp=1, pp=1, replicas=1")
    if scheduler.preemption_mode != "recompute":
        raise ClusterSimError("scheduler.preemption_mode: the reference executor recomputes "
                              "preempted requests; set it to recompute")
    if scheduler.enable_prefix_caching:
        raise ClusterSimError("scheduler.enable_prefix_caching: the reference executor does "
                              "not share KV blocks; turn it off")
    if scheduler.batching != "continuous":
        raise ClusterSimError("scheduler.policy: the reference executor runs continuous "
                              "batching; use vllm, vllm-v1, sarathi or orca")


def run_reference(resolved: ResolvedDeployment, workload: RequestTrace,
                  executor: StepExecutor, *, seed: int = 0,
                  clock: Callable[[], float] = time.perf_counter,
                  sleep: Callable[[float], None] = time.sleep) -> ReferenceRun:
    """Replay ``workload`` through the deployment's scheduler, running every step on
    ``executor``; times are wall-clock seconds since the run started.

    Args:
        resolved: the deployment (one GPU; see :func:`check_reference_deployment`).
        workload: the requests, sorted by arrival; each is submitted when its arrival
            time has passed on the wall clock.
        executor: runs the steps (``validation.reference.model.ReferenceModel``).
        seed: seeds the prompts' token ids.
        clock, sleep: the wall clock (tests pass a simulated one).

    Raises:
        ClusterSimError: a deployment the executor does not run.
    """
    check_reference_deployment(resolved)
    memory, config = resolved.memory, resolved.scheduler
    scheduler = Scheduler(config, make_kv_cache(resolved), TokenGaps())
    blocks = BlockTables(memory.num_gpu_blocks, memory.block_size)
    rng = np.random.default_rng(seed)
    vocab = resolved.model.vocab_size
    requests = make_requests(workload)
    token_ids = [rng.integers(0, vocab, size=r.prompt_tokens).tolist() for r in requests]

    steps: list[tuple[object, ...]] = []
    num_submitted = num_finished = 0
    started = clock()
    while num_finished < len(requests):
        now_s = clock() - started
        while num_submitted < len(requests) and requests[num_submitted].arrival_s <= now_s:
            scheduler.add_request(requests[num_submitted])
            num_submitted += 1
        plan = scheduler.schedule(now_s)
        if plan is None:
            if num_submitted == len(requests):
                raise RuntimeError(f"reference run stalled at {now_s:.3f} s with "
                                   f"{scheduler.num_unfinished} requests and nothing runnable")
            sleep(max(0.0, requests[num_submitted].arrival_s - now_s))
            continue
        for request in plan.preempted:
            blocks.free(request.request_id)
        rows_tokens: list[int] = []
        tables: list[list[int]] = []
        sampled: list[bool] = []
        for request, num_new, context in zip(plan.requests, plan.num_new_tokens,
                                             plan.context_lens, strict=True):
            ids = token_ids[request.request_id]
            rows_tokens.extend(ids[context:context + num_new])
            tables.append(list(blocks.ensure(request.request_id, context + num_new)))
            sampled.append(context + num_new == request.num_tokens)
        rows = StepRows(rows_tokens, list(plan.num_new_tokens), list(plan.context_lens),
                        tables, sampled)
        new_tokens, device_s = executor.run(rows)
        end_s = clock() - started
        sampling = [r for r, s in zip(plan.requests, sampled, strict=True) if s]
        if len(new_tokens) != len(sampling):
            raise RuntimeError(f"executor returned {len(new_tokens)} tokens for "
                               f"{len(sampling)} sampled rows")
        for request, token in zip(sampling, new_tokens, strict=True):
            token_ids[request.request_id].append(token)
        for request in scheduler.update(plan, end_s):
            blocks.free(request.request_id)
            num_finished += 1
        steps.append((plan.step_id, now_s, end_s, device_s, len(plan.requests),
                      plan.num_tokens, len(sampling),
                      sum(1 for n in plan.num_new_tokens if n == 1),
                      " ".join(map(str, plan.num_new_tokens)),
                      " ".join(map(str, plan.context_lens))))
    wall_s = clock() - started
    if blocks.num_free != blocks.num_blocks or scheduler.kv_cache.num_used_blocks:
        raise RuntimeError("KV blocks leaked in the reference run")
    return ReferenceRun(pd.DataFrame(steps, columns=STEP_COLUMNS),
                        request_rows(requests, workload.request_ids).to_pandas(), wall_s,
                        memory.num_gpu_blocks)
