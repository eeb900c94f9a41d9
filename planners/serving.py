"""Planning a serving deployment: which GPUs, parallelism and scheduler, for goodput.

    candidates ─► memory check (cannot fit: out) ─► optimistic bounds ─► waves of four,
    each group's first plan first: every goodput bracketed (a passing rate, a failing
    one at most twice it), then bisected; a candidate whose optimistic bounds (its
    bracket's top as goodput) a bisected one dominates is pruned, before or during its
    bracket or before its bisection ─► Pareto set, best plans

Bounds (each is what the simulator's own models allow at best, so pruning by them never
drops a candidate exhaustive search would put on the Pareto front):

* goodput ≤ replicas x achieved FLOP/s of a replica / mean FLOPs of a request
* TTFT p90 ≥ p90 of each request's prefill alone (0 with prefix caching where the
  trace's requests may share content)
* TPOT p90 ≥ p90 of one decode step of a lone request at its prompt length
* cost per million tokens ≥ its value at the goodput bound
* goodput below a rate that failed (the bracket's top, once bracketed)

Waves have a fixed size, so the evaluated candidates, and every result, are the same for
any number of worker processes. A search starts from its group's first plan's goodput
(read from first plans only, which are never pruned) and a bisection goes on from its
own bracket, so pruning changes no evaluated candidate's result and the pruned search's
Pareto set is the exhaustive one's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planners.disaggregation import disaggregated_candidates
from planners.goodput_bars import goodput_interval
from planners.objectives import (
    IDLE_POWER_FRACTION,
    STEADY,
    GoodputResult,
    SteadyState,
    default_prices,
    find_goodput,
)
from planners.space import ServingSpace
from planners.workers import LOST, WorkerPool, check_ray_address
from profiles.cost_model import BatchShape
from profiles.errors import ClusterSimError
from profiles.hardware import load_gpu
from simulator.serving.build import ResolvedDeployment, resolve, resolve_pools, shares_tokens
from simulator.serving.config import DeploymentConfig, build_deployment
from workloads.schema import RequestTrace

__all__ = ["Candidate", "ServingPlan", "dominates", "pareto_front", "plan_rows",
           "plan_serving", "recommend"]

WAVE_SIZE = 4
WEAK_GROUP = 0.1  # a group whose first plan has under this share of the best goodput/GPU
OBJECTIVES = {  # name: +1 to maximize, -1 to minimize
    "goodput_per_gpu": +1, "cost_per_mtok_usd": -1, "ttft_p90_s": -1, "tpot_p90_s": -1}


@dataclass
class Candidate:
    """One deployment and what the planner learned about it."""

    index: int
    deployment: dict[str, Any]
    gpu: str = ""
    num_gpus: int = 0
    status: str = "pending"  # infeasible | pruned | evaluated
    reason: str = ""
    bound: dict[str, float] = field(default_factory=dict)
    goodput_rate_per_s: float = 0.0
    goodput_per_gpu: float = 0.0
    ttft_p90_s: float = math.inf
    tpot_p90_s: float = math.inf
    cost_per_mtok_usd: float | None = None
    energy_j_per_token: float | None = None
    num_simulations: int = 0
    search: GoodputResult | None = field(default=None, repr=False)  # its goodput bracket

    def metrics(self) -> dict[str, float]:
        cost = self.cost_per_mtok_usd
        return {"goodput_per_gpu": self.goodput_per_gpu, "ttft_p90_s": self.ttft_p90_s,
                "tpot_p90_s": self.tpot_p90_s,
                "cost_per_mtok_usd": math.inf if cost is None else cost}

    @property
    def mode(self) -> str:
        return "disaggregated" if "disaggregation" in self.deployment else "colocated"

    @property
    def ratio(self) -> str:
        """``"2P:3D (tp 2 / tp 1)"`` for a disaggregated plan, ``""`` for a colocated one."""
        block = self.deployment.get("disaggregation")
        if block is None:
            return ""
        p, d = block["prefill"], block["decode"]
        return (f"{p.get('replicas', 1)}P:{d.get('replicas', 1)}D (tp "
                f"{p.get('parallelism', {}).get('tp', 1)} / tp "
                f"{d.get('parallelism', {}).get('tp', 1)})")

    def row(self) -> dict[str, Any]:
        d = self.deployment
        p = d.get("parallelism", {})
        return {"index": self.index, "status": self.status, "reason": self.reason,
                "mode": self.mode, "prefill_decode": self.ratio,
                "gpu": self.gpu, "num_gpus": self.num_gpus, "replicas": d.get("replicas", 0),
                "tp": p.get("tp", 0), "pp": p.get("pp", 0), "dp": p.get("dp", 1),
                "ep": p.get("ep", 1),
                **{f"scheduler.{k}": v for k, v in d["scheduler"].items()},
                **{f"offload.{k}": v for k, v in d.get("offload", {}).items()},
                "goodput_rate_per_s": self.goodput_rate_per_s,
                "goodput_per_gpu": self.goodput_per_gpu, "ttft_p90_s": self.ttft_p90_s,
                "tpot_p90_s": self.tpot_p90_s, "cost_per_mtok_usd": self.cost_per_mtok_usd,
                "energy_j_per_token": self.energy_j_per_token,
                "num_simulations": self.num_simulations,
                **{f"bound.{k}": v for k, v in self.bound.items()}}


@dataclass
class ServingPlan:
    """Every candidate, the Pareto set, and the best plan under each objective."""

    candidates: list[Candidate]
    pareto: list[int]
    best: dict[str, int]
    inputs: dict[str, Any]
    phase_simulations: int = 0  # the disaggregation dimension's phase searches
    reasons: dict[str, str] = field(default_factory=dict)  # why each best plan was picked
    # the recommended plan's validated goodput range (planners.goodput_bars), when asked
    goodput_interval: dict[str, Any] = field(default_factory=dict)

    @property
    def num_simulations(self) -> int:
        return (self.phase_simulations + sum(c.num_simulations for c in self.candidates)
                + self.goodput_interval.get("num_simulations", 0))


TOLERANCE = 0.01  # objectives within 1% of each other (relative) count as equal


def dominates(a: dict[str, float], b: dict[str, float], tolerance: float = TOLERANCE) -> bool:
    """``a`` no worse than ``b`` on every objective and better on one, where values
    within ``tolerance`` (relative to the larger) are equal: simulated figures 1e-14
    apart are not a difference a decision should rest on."""
    better = False
    for key, sign in OBJECTIVES.items():
        x, y = a[key], b[key]
        if x == y:
            continue
        gain = sign * (x - y)
        margin = 0.0 if math.isinf(x) or math.isinf(y) else tolerance * max(abs(x), abs(y))
        if gain < -margin:
            return False
        if gain > margin:
            better = True
    return better


def pareto_front(served: list[Candidate]) -> list[int]:
    """Indices of the plans no other plan dominates (within TOLERANCE)."""
    return sorted(c.index for c in served
                  if not any(dominates(o.metrics(), c.metrics()) for o in served))


def recommend(served: list[Candidate]) -> tuple[int, str] | None:
    """The recommended plan (highest goodput per GPU on the Pareto front) and why."""
    front = set(pareto_front(served))
    group = [c for c in served if c.index in front]
    if not group:
        return None
    return _pick(group, lambda c: c.goodput_per_gpu, True,
                 "goodput per GPU, req/s, on the Pareto front")


def _pick(group: list[Candidate], value: Callable[[Candidate], float], maximize: bool,
          label: str) -> tuple[int, str]:
    """The plan of ``group`` best on ``value``; plans within TOLERANCE of the best tie and
    the tie goes, in order, to lower TTFT p90, lower TPOT p90, lower cost, higher goodput
    per GPU, lower index (a lexicographic choice, so no tied plan dominates the pick)."""
    top = max(value(c) for c in group) if maximize else min(value(c) for c in group)
    tied = [c for c in group if abs(value(c) - top) <= TOLERANCE * abs(top)]
    pick = min(tied, key=lambda c: (c.ttft_p90_s, c.tpot_p90_s,
                                    math.inf if c.cost_per_mtok_usd is None
                                    else c.cost_per_mtok_usd, -c.goodput_per_gpu, c.index))
    reason = f"{'highest' if maximize else 'lowest'} {label} ({top:.4g})"
    if len(tied) > 1:
        reason += (f"; {len(tied)} plans within {TOLERANCE:.0%} of it, and this one has the "
                   f"lowest TTFT p90 ({pick.ttft_p90_s:.3g} s) among them")
    return pick.index, reason


def _pools(deployment: DeploymentConfig) -> tuple[ResolvedDeployment, ResolvedDeployment]:
    """(the pool that prefills, the pool that decodes): one replica set twice when
    colocated."""
    if deployment.is_disaggregated:
        return resolve_pools(deployment).pools
    resolved = resolve(deployment)
    return resolved, resolved


def _gpu_label(pools: tuple[ResolvedDeployment, ResolvedDeployment]) -> tuple[str, int]:
    prefill, decode = pools
    if prefill is decode:
        return prefill.gpu.label, prefill.num_gpus
    return " + ".join(dict.fromkeys((prefill.gpu.label, decode.gpu.label))), \
        prefill.num_gpus + decode.num_gpus


def _price(pools: tuple[ResolvedDeployment, ResolvedDeployment],
           prices: dict[str, float]) -> float | None:
    """USD per hour of the whole deployment, or None when a GPU has no price."""
    unique = {id(pool): pool for pool in pools}.values()
    usd = 0.0
    for pool in unique:
        devices = [(pool.gpu.name, pool.num_gpus)]
        attention = pool.deployment.offload.decode_attention
        if attention is not None:  # Lamina's attention devices are paid for too
            devices.append((load_gpu(attention.gpu).name, pool.attention_devices))
        for name, count in devices:
            if name not in prices:
                return None
            usd += prices[name] * count
    return usd


def _flops_rate(pool: ResolvedDeployment, flops_per_request: float) -> float:
    gpu = pool.gpu
    return (pool.num_gpus * gpu.peak_flops(pool.model.dtype) * gpu.efficiency.matmul
            / flops_per_request)


def _bounds(pools: tuple[ResolvedDeployment, ResolvedDeployment], trace: RequestTrace,
            prices: dict[str, float]) -> dict[str, float]:
    prefill_pool, decode_pool = pools
    model = prefill_pool.model
    _, num_gpus = _gpu_label(pools)
    tokens = trace.prompt_tokens + trace.output_tokens
    per_token = model.flops_per_token(0)
    if prefill_pool is decode_pool:
        rate = _flops_rate(prefill_pool, per_token * float(tokens.mean()))
    else:  # each pool computes its phase's tokens only; the slower one bounds the rate
        rate = min(_flops_rate(prefill_pool, per_token * float(trace.prompt_tokens.mean())),
                   _flops_rate(decode_pool, per_token * max(
                       1e-9, float(trace.output_tokens.mean()) - 1)))
    prompts = np.unique(trace.prompt_tokens)
    prefill_model, decode_model = prefill_pool.cost_models[0], decode_pool.cost_models[0]
    prefill = {int(n): prefill_model.predict(BatchShape([int(n)], [0], 1)).total_s
               for n in prompts}
    decode = {int(n): decode_model.predict(BatchShape([1], [int(n)], 1)).total_s
              for n in prompts}
    # a prefix cache can only shorten a prompt where requests share token content
    caching = prefill_pool.scheduler.enable_prefix_caching and shares_tokens(trace)
    ttft = 0.0 if caching else float(np.percentile(
        [prefill[int(n)] for n in trace.prompt_tokens], 90))
    tpot = float(np.percentile([decode[int(n)] for n in trace.prompt_tokens], 90))
    tokens_per_s = rate * float(tokens.mean())
    usd_per_hour = _price(pools, prices)
    cost = math.inf if usd_per_hour is None else usd_per_hour / (tokens_per_s * 3600) * 1e6
    return {"goodput_per_gpu": rate / num_gpus, "ttft_p90_s": ttft, "tpot_p90_s": tpot,
            "cost_per_mtok_usd": cost, "goodput_rate_per_s": rate}


def _evaluate(job: tuple[Any, ...]) -> dict[str, Any]:
    """One goodput search, in a worker process: its bracket (``bracket`` None; given up
    where ``front`` plans dominate it even at a failing rate), or its bisection from that
    bracket."""
    (mapping, trace, ttft_slo, tpot_slo, attainment, bound, lower, prices, rule, bracket,
     front) = job
    deployment = build_deployment(mapping)

    def give_up(top: float) -> bool:
        """The goodput is below ``top``: whether a front plan dominates it even so."""
        assert front is not None
        optimistic = _optimistic_at(bound, top)
        return any(dominates(metrics, optimistic) for metrics in front)

    result = find_goodput(deployment, trace, ttft_slo_s=ttft_slo, tpot_slo_s=tpot_slo,
                          attainment=attainment, upper_rate=bound["goodput_rate_per_s"],
                          lower_rate=lower, rule=rule, bracket_only=bracket is None,
                          bracket=bracket, give_up=give_up if front else None)
    out: dict[str, Any] = {"rate": result.rate_per_s, "runs": result.num_simulations,
                           "search": result}
    summary = result.summary
    if result.complete and summary is not None and result.rate_per_s > 0:
        pools = _pools(deployment)
        total_tokens = float((trace.prompt_tokens + trace.output_tokens).sum())
        tokens_per_s = result.rate_per_s * total_tokens / len(trace)
        out |= {"ttft_p90": summary["ttft_s"]["p90"], "tpot_p90": summary["tpot_s"]["p90"]}
        usd_per_hour = _price(pools, prices)
        if usd_per_hour is not None:
            out["cost"] = usd_per_hour / (tokens_per_s * 3600) * 1e6
        if pools[0] is pools[1]:
            busy = [(pools[0], summary.get("busy_fraction", 1.0))]
        else:
            records = summary["disaggregation"]["pools"]
            busy = [(pools[0], records["prefill"]["busy_fraction"]),
                    (pools[1], records["decode"]["busy_fraction"])]
        # idle at a fraction of the TDP, busy at the board's limit (its TDP unless capped)
        watts = 0.0
        for pool, share in busy:
            idle_w = IDLE_POWER_FRACTION * pool.gpu.tdp_w
            watts += pool.num_gpus * (idle_w + share * max(0.0, pool.gpu.power_w - idle_w))
        # power over the tokens served per second at the goodput rate: the probe that
        # measured the power replays a trace of its own length (SteadyState), so its
        # makespan goes with its tokens, not with the user's trace's
        out["energy"] = watts / tokens_per_s
    return out


def plan_serving(model: str, workload: RequestTrace, *, ttft_slo_s: float, tpot_slo_s: float,
                 space: ServingSpace, attainment: float = 0.9,
                 prices: dict[str, float] | None = None, workers: int = 1,
                 prune: bool = True, ray_address: str | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 steady: SteadyState = STEADY, error_bars: bool = False) -> ServingPlan:
    """Search ``space`` for deployments of ``model`` serving ``workload`` under the SLOs.

    Args:
        model: catalog name or config path.
        workload: the trace whose shape is replayed at each tried rate.
        ttft_slo_s, tpot_slo_s: the SLOs; ``attainment`` of requests must meet both.
        space: the candidates.
        prices: USD per GPU-hour by catalog GPU name (defaults: the sourced price file).
        workers: processes for the goodput searches (1: in this process).
        prune: drop candidates whose optimistic bounds are already dominated.
        ray_address: run the goodput searches on a Ray cluster at this address
            (``"local"`` starts one here); results are the same as with the local pool.
        progress: called with (done, total) as candidates are settled.
        steady: how long each goodput probe is and what part of it is measured
            (``planners.objectives.SteadyState``; the default is the stated rule).
        error_bars: also search the recommended plan's goodput range under the serving
            group's error bars (``planners.goodput_bars``; two more goodput searches).

    Raises:
        ClusterSimError: an SLO or attainment out of range, or a Ray address where
            nothing answers.
    """
    if ttft_slo_s <= 0 or tpot_slo_s <= 0:
        raise ClusterSimError("SLOs must be positive: pass --ttft-slo and --tpot-slo in seconds")
    if not 0 < attainment <= 1:
        raise ClusterSimError(f"attainment={attainment} must be in (0, 1], e.g. 0.9")
    run_wave = _ray_runner(ray_address) if ray_address else None  # an unreachable one fails now
    price_table = default_prices() | (prices or {})
    mappings = space.candidates(model)
    phases = None
    if space.disaggregation is not None:
        disaggregated, phases = disaggregated_candidates(
            model, workload, space.disaggregation, {g.name: g.max_gpus for g in space.gpus},
            space.policies[0], ttft_slo_s, tpot_slo_s, attainment, steady=steady)
        mappings += disaggregated
    candidates = [Candidate(i, mapping) for i, mapping in enumerate(mappings)]
    for candidate in candidates:
        try:
            deployment = build_deployment(candidate.deployment)
            pools = _pools(deployment)
            candidate.gpu, candidate.num_gpus = _gpu_label(pools)
        except ClusterSimError as error:
            candidate.status, candidate.reason = "infeasible", str(error)
            continue
        candidate.bound = _bounds(pools, workload, price_table)
    feasible = sorted((c for c in candidates if c.status == "pending"),
                      key=lambda c: (-c.bound["goodput_per_gpu"], c.index))
    done = len(candidates) - len(feasible)
    if progress:
        progress(done, len(candidates))
    evaluated: list[Candidate] = []
    pool = WorkerPool(workers) if workers > 1 and not run_wave else None

    def run_jobs(wave: list[Candidate], jobs: list[Any]) -> list[dict[str, Any] | None]:
        """Each job's result, in order; ``None`` for a candidate whose worker died (it is
        marked failed)."""
        if run_wave is not None:
            results = run_wave(jobs)
        elif pool is not None:
            results = pool.map(_evaluate, jobs)
        else:
            results = [_evaluate(job) for job in jobs]
        kept: list[dict[str, Any] | None] = []
        for candidate, result in zip(wave, results, strict=True):
            if result is LOST:
                candidate.status, candidate.reason = "failed", (
                    f"its worker process died on {1 + pool.retries if pool else 1} "
                    "attempts (killed, or out of memory)")
                kept.append(None)
            else:
                kept.append(result)
        return kept

    def job(candidate: Candidate, hint: float | None, bracket: GoodputResult | None,
            front: list[dict[str, float]] | None = None) -> tuple[Any, ...]:
        return (candidate.deployment, workload, ttft_slo_s, tpot_slo_s, attainment,
                candidate.bound, hint, price_table, steady, bracket, front)

    def dominated(metrics: dict[str, float]) -> bool:
        return any(dominates(e.metrics(), metrics) for e in evaluated if e.goodput_per_gpu > 0)

    def pruned(candidate: Candidate) -> None:
        candidate.status, candidate.reason = "pruned", \
            "bounds dominated by an evaluated candidate"

    # Like candidates (same mode, GPU and parallelism) start from their group's first
    # one's goodput, and that one is never pruned: so where a search starts never
    # depends on what was pruned.
    leaders: dict[tuple[str, str, str], Candidate] = {}
    for candidate in feasible:
        leaders.setdefault(_group(candidate), candidate)
    # the groups' first ones go first (a stable sort), so the others start from their
    # goodputs
    feasible.sort(key=lambda c: leaders[_group(c)] is not c)
    finished = False
    try:
        for start in range(0, len(feasible), WAVE_SIZE):
            wave = []
            for candidate in feasible[start:start + WAVE_SIZE]:
                leader = leaders[_group(candidate)] is candidate
                if prune and not leader and dominated(_optimistic(candidate)):
                    pruned(candidate)  # its analytic bounds are already beaten
                    done += 1
                else:
                    wave.append(candidate)
            # 1. Bracket each goodput (a passing rate, and a failing one or the bound
            # above it); a follower gives up once a failing rate leaves it dominated.
            front = [e.metrics() for e in evaluated if e.goodput_per_gpu > 0] if prune else []
            results = run_jobs(wave, [
                job(c, _hint(c, leaders), None,
                    front if front and leaders[_group(c)] is not c else None) for c in wave])
            bracketed = []
            for candidate, result in zip(wave, results, strict=True):
                if result is None:
                    done += 1
                    continue
                candidate.search = result["search"]
                candidate.num_simulations = result["runs"]
                if candidate.search.complete:  # no rate passes
                    _record(candidate, result)
                    evaluated.append(candidate)
                    done += 1
                elif candidate.search.gave_up:
                    pruned(candidate)
                    done += 1
                else:
                    bracketed.append(candidate)
            # 2. Bisect the brackets, best top per GPU first, unless a bisected
            # candidate already dominates the bracket's top. Every bisection goes on
            # from its own bracket, so no goodput depends on what was pruned: the
            # pruned plan's Pareto set is the exhaustive one's.
            bracketed.sort(key=lambda c: (-_optimistic(c)["goodput_per_gpu"], c.index))
            refine = []
            for candidate in bracketed:
                leader = leaders[_group(candidate)] is candidate
                if prune and not leader and dominated(_optimistic(candidate)):
                    pruned(candidate)
                    done += 1
                else:
                    refine.append(candidate)
            results = run_jobs(refine, [job(c, None, c.search) for c in refine])
            for candidate, result in zip(refine, results, strict=True):
                done += 1
                if result is not None:
                    _record(candidate, result)
                    evaluated.append(candidate)
            if progress:
                progress(done, len(candidates))
        finished = True
    finally:
        if pool:
            pool.close(kill=not finished)  # Ctrl-C or an error: the workers go at once
    evaluated.sort(key=lambda c: c.index)
    served = [c for c in evaluated if c.goodput_per_gpu > 0]
    pareto = pareto_front(served)
    best: dict[str, int] = {}
    reasons: dict[str, str] = {}
    front = [c for c in served if c.index in set(pareto)]
    choices: list[tuple[str, list[Candidate], Callable[[Candidate], float], bool, str]] = [
        # the recommended plan: chosen on the Pareto front only
        ("goodput_per_gpu", front, lambda c: c.goodput_per_gpu, True,
         "goodput per GPU, req/s, on the Pareto front"),
        ("goodput", served, lambda c: c.goodput_rate_per_s, True, "goodput, req/s"),
        ("cost_per_mtok_usd", [c for c in served if c.cost_per_mtok_usd is not None],
         lambda c: c.cost_per_mtok_usd or 0.0, False, "cost, USD per million tokens"),
    ]
    if phases is not None:
        choices += [(f"{mode}_goodput_per_gpu", [c for c in served if c.mode == mode],
                     lambda c: c.goodput_per_gpu, True, f"goodput per GPU of a {mode} plan")
                    for mode in ("colocated", "disaggregated")]
    for name, group, value, maximize, label in choices:
        if group:
            best[name], reasons[name] = _pick(group, value, maximize, label)
    inputs = {"model": model, "ttft_slo_s": ttft_slo_s, "tpot_slo_s": tpot_slo_s,
              "attainment": attainment, "space": space.model_dump(mode="json"),
              "steady_state": {"min_requests": steady.min_requests,
                               "min_span_s": steady.min_span_s, "warm_up": steady.warm_up,
                               "drain": steady.drain, "windows": steady.windows},
              "workload": workload.stats(), "prices_usd_per_gpu_hour": price_table}
    if phases is not None:
        inputs["disaggregation_phases"] = phases.rows()
    bars: dict[str, Any] = {}
    if error_bars and "goodput_per_gpu" in best:
        pick = next(c for c in served if c.index == best["goodput_per_gpu"])
        bars = goodput_interval(build_deployment(pick.deployment), workload,
                                ttft_slo_s=ttft_slo_s, tpot_slo_s=tpot_slo_s,
                                attainment=attainment, rate_per_s=pick.goodput_rate_per_s,
                                upper_rate=pick.bound["goodput_rate_per_s"], rule=steady)
    return ServingPlan(candidates, pareto, best, inputs,
                       phases.num_simulations if phases is not None else 0, reasons, bars)


def _ray_runner(address: str) -> Callable[[list[Any]], list[dict[str, Any]]]:
    """A wave runner on Ray: one remote task per goodput search, results in order."""
    check_ray_address(address)
    try:
        import ray
    except ImportError:
        raise ClusterSimError("--ray-address needs Ray: pip install 'clustersim[ray]'") \
            from None
    if not ray.is_initialized():
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    remote = ray.remote(_evaluate)

    def run(jobs: list[Any]) -> list[dict[str, Any]]:
        return list(ray.get([remote.remote(job) for job in jobs]))

    return run


def _group(candidate: Candidate) -> tuple[str, str, str]:
    """Like candidates: the same mode, GPU and parallelism (replicas may differ)."""
    return (candidate.mode, candidate.gpu,
            json.dumps(candidate.deployment.get("parallelism", {}), sort_keys=True))


def _hint(candidate: Candidate, leaders: dict[tuple[str, str, str], Candidate]
          ) -> float | None:
    """0.9 x its group's first candidate's goodput (its bracket's passing rate until it
    is bisected), scaled by replicas: where the search starts (none for the first,
    before that one is bracketed, or in a group far behind the best). Read from the
    groups' first ones only, which every search evaluates alike."""
    leader = leaders[_group(candidate)]
    if candidate.mode != "colocated" or leader is candidate or leader.search is None:
        return None
    rate = (leader.goodput_rate_per_s if leader.status == "evaluated"
            else leader.search.rate_per_s)
    best = max(c.goodput_per_gpu for c in leaders.values())
    if rate <= 0 or leader.goodput_per_gpu < WEAK_GROUP * best:
        # a group far behind the best starts at the bound's eighth: its plans are
        # likely dominated, and that rate failing shows it at once (a hint would pass,
        # at a rate so low that each probe is long)
        return None
    scale = candidate.deployment["replicas"] / leader.deployment["replicas"]
    return 0.9 * rate * scale


def _optimistic_at(bound: dict[str, float], top: float) -> dict[str, float]:
    """Bounds with a goodput below ``top`` req/s (the cost scaled to it)."""
    share = min(1.0, top / bound["goodput_rate_per_s"])
    return {"goodput_per_gpu": bound["goodput_per_gpu"] * share,
            "cost_per_mtok_usd": bound["cost_per_mtok_usd"] / share,
            "ttft_p90_s": bound["ttft_p90_s"], "tpot_p90_s": bound["tpot_p90_s"]}


def _optimistic(candidate: Candidate) -> dict[str, float]:
    """The candidate's bounds, with its bracket's top as the goodput once bracketed."""
    top = (candidate.search.high_rate_per_s if candidate.search is not None
           else candidate.bound["goodput_rate_per_s"])
    return _optimistic_at(candidate.bound, top)


def _record(candidate: Candidate, result: dict[str, Any]) -> None:
    candidate.status = "evaluated"
    candidate.num_simulations = result["runs"]
    candidate.goodput_rate_per_s = result["rate"]
    candidate.goodput_per_gpu = result["rate"] / candidate.num_gpus
    if "ttft_p90" in result:
        candidate.ttft_p90_s = result["ttft_p90"]
        candidate.tpot_p90_s = result["tpot_p90"]
        candidate.cost_per_mtok_usd = result.get("cost")
        candidate.energy_j_per_token = result.get("energy")
    else:
        candidate.reason = "no rate meets the SLO attainment"


def plan_rows(plan: ServingPlan) -> list[dict[str, Any]]:
    return [c.row() for c in plan.candidates]

