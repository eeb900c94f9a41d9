"""Expert placement: which GPUs hold which experts, so the busiest GPU does as little as
possible and tokens cross as few GPUs as possible.

Given the routing statistics (each MoE layer's expert shares and, optionally, the
co-activation of consecutive layers' experts), place each layer's experts, plus up to
``redundant`` extra copies of hot experts (DeepSeek's EPLB), on ``ranks`` GPUs of
``slots`` expert slots each. The objective, summed over layers::

    balance    the busiest rank's share of the layer's routed pairs (1/ranks at best)
    affinity   λ x the share of pairs whose token moves to another GPU between layer l's
               expert and layer l+1's (ExFlow: keep co-activated experts together), plus
               μ x the share that also moves to another node (a NIC, not NVLink)

A copy takes a share of its expert's tokens; the shares of an expert's copies sum to 1.

Two solvers, compared in the tests on small instances:

* :func:`solve_ilp`: a mixed-integer program (scipy's ``milp``, HiGHS). Binary x[l,e,r]
  (a copy of e on r), continuous y[l,e,r] (the share of e's tokens r takes, y <= x),
  z[l] >= Σ_e w[l,e] y[l,e,r] for every r, minimize Σ z[l] + λ·traffic; with affinity,
  u[l,i,j,r] <= x[l,i,r], x[l+1,j,r] marks i and j together on r and the traffic is
  Σ A[l,i,j] (1 - Σ_r u[l,i,j,r]) (one copy per expert then); likewise per node with
  u'[l,i,j,n] <= Σ_(r in n) x[l,i,r], Σ_(r in n) x[l+1,j,r]. Exact, for small sizes.
* :func:`solve_greedy`: replicas to the experts with the largest share per copy, then
  the copies, hottest first, each to the rank that least raises the objective (its load
  plus λ x the pairs it would pull off the GPUs of the previous layer's experts), then a
  local search of swaps and moves off the busiest rank. Fast, for DeepSeek-V3's 58
  layers x 256 experts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from profiles.errors import ClusterSimError
from profiles.hardware import GIB, GPUSpec
from profiles.models import DTYPE_BYTES, ModelSpec
from profiles.moe import ExpertPlacement, RoutingStats

__all__ = ["PlacementProblem", "PlacementResult", "expert_slots_that_fit", "objective",
           "plan_placement", "solve_greedy", "solve_ilp"]


@dataclass(frozen=True)
class PlacementProblem:
    """One placement instance (module docstring).

    Attributes:
        shares: [layers, experts] each expert's share of its layer's routed pairs.
        ranks: EP ranks (GPUs).
        slots: expert slots per rank per layer (memory: :func:`expert_slots_that_fit`).
        redundant: extra copies per layer beyond one per expert.
        coactivation: [layers - 1, experts, experts] pair shares from layer l's expert i
            to layer l+1's expert j (rows: i), or None (no affinity term).
        affinity_weight: λ, the weight of the moved-pairs share against the balance.
        ranks_per_node: GPUs per node (0: all on one node).
        node_weight: μ, the extra weight of pairs that also change node (they cross a
            NIC rather than NVLink).
    """

    shares: np.ndarray
    ranks: int
    slots: int
    redundant: int = 0
    coactivation: np.ndarray | None = None
    affinity_weight: float = 0.0
    ranks_per_node: int = 0
    node_weight: float = 0.0

    def __post_init__(self) -> None:
        _layers, experts = self.shares.shape
        if self.ranks * self.slots < experts + self.redundant:
            raise ClusterSimError(
                f"expert placement: {experts} experts + {self.redundant} copies need "
                f"{experts + self.redundant} slots per layer but {self.ranks} GPUs hold "
                f"{self.ranks * self.slots} ({self.slots} each); lower the copies or add GPUs")
        if self.redundant > experts * (self.ranks - 1):
            raise ClusterSimError("expert placement: more copies than ranks to put them on")

    @property
    def num_layers(self) -> int:
        return int(self.shares.shape[0])

    @property
    def num_experts(self) -> int:
        return int(self.shares.shape[1])

    @property
    def has_affinity(self) -> bool:
        return self.coactivation is not None and (self.affinity_weight > 0
                                                  or self.node_weight > 0)

    def node_matrix(self) -> np.ndarray:
        """[ranks, nodes] one-hot: which node each rank is on."""
        per = self.ranks_per_node or self.ranks
        nodes = -(-self.ranks // per)
        matrix = np.zeros((self.ranks, nodes))
        matrix[np.arange(self.ranks), np.arange(self.ranks) // per] = 1.0
        return matrix

    def weighted(self, pull: np.ndarray) -> np.ndarray:
        """λ x pairs kept on a rank plus μ x pairs kept on its node, per (expert, rank),
        from ``pull`` (pairs kept on each rank)."""
        nodes = self.node_matrix()
        return self.affinity_weight * pull + self.node_weight * (pull @ nodes @ nodes.T)


@dataclass(frozen=True)
class PlacementResult:
    """A placement: ``share[l, e, r]`` of expert e's tokens on rank r (0: no copy)."""

    share: np.ndarray
    objective: float
    balance: float  # Σ_l busiest rank's share
    traffic: float  # Σ_l moved-pairs share between consecutive layers
    node_traffic: float = 0.0  # Σ_l the share of pairs that also change node

    def placement(self) -> ExpertPlacement:
        """As the simulator's slots (each rank's copies, with their token shares)."""
        layers, _experts, ranks = self.share.shape
        held = [[np.flatnonzero(self.share[li, :, r] > 1e-9) for r in range(ranks)]
                for li in range(layers)]
        width = max(1, max(len(h) for row in held for h in row))
        slots = np.full((layers, ranks, width), -1, dtype=np.int64)
        share = np.zeros((layers, ranks, width))
        for li in range(layers):
            for r in range(ranks):
                for c, e in enumerate(held[li][r]):
                    slots[li, r, c] = e
                    share[li, r, c] = self.share[li, e, r]
        return ExpertPlacement(slots, share)


def objective(problem: PlacementProblem, share: np.ndarray
              ) -> tuple[float, float, float, float]:
    """(objective, balance, traffic, node traffic) of a placement ``share[l, e, r]``; the
    traffic terms are counted when the problem weighs them (0 otherwise)."""
    loads = np.einsum("le,ler->lr", problem.shares, share)
    balance = float(loads.max(axis=1).sum())
    traffic = node_traffic = 0.0
    if problem.has_affinity and problem.coactivation is not None:
        nodes = problem.node_matrix()
        for li in range(problem.num_layers - 1):
            pairs = problem.coactivation[li]
            together = share[li] @ share[li + 1].T  # P(i's copy and j's copy share a rank)
            traffic += float((pairs * (1.0 - together)).sum())
            same_node = (share[li] @ nodes) @ (share[li + 1] @ nodes).T
            node_traffic += float((pairs * (1.0 - same_node)).sum())
    value = (balance + problem.affinity_weight * traffic
             + problem.node_weight * node_traffic)
    return value, balance, traffic, node_traffic


def _result(problem: PlacementProblem, share: np.ndarray) -> PlacementResult:
    value, balance, traffic, node_traffic = objective(problem, share)
    return PlacementResult(share, value, balance, traffic, node_traffic)


def solve_ilp(problem: PlacementProblem, time_limit_s: float = 30.0) -> PlacementResult:
    """The exact placement by mixed-integer programming (module docstring).

    Raises:
        ClusterSimError: HiGHS found no solution in the time limit.
    """
    layers, experts, ranks = problem.num_layers, problem.num_experts, problem.ranks
    affinity = problem.has_affinity
    nodes = problem.node_matrix().shape[1]
    if affinity and problem.redundant:
        raise ClusterSimError("expert placement ILP: affinity with copies is not linear; "
                              "use redundant=0 or the greedy solver")
    n_x = layers * experts * ranks
    pairs = (layers - 1) * experts * experts * ranks if affinity else 0
    node_pairs = (layers - 1) * experts * experts * nodes if affinity else 0

    def x(li: int, e: int, r: int) -> int:
        return (li * experts + e) * ranks + r

    def y(li: int, e: int, r: int) -> int:
        return n_x + x(li, e, r)

    def z(li: int) -> int:
        return 2 * n_x + li

    def u(li: int, i: int, j: int, r: int) -> int:
        return 2 * n_x + layers + ((li * experts + i) * experts + j) * ranks + r

    def un(li: int, i: int, j: int, node: int) -> int:
        return 2 * n_x + layers + pairs + ((li * experts + i) * experts + j) * nodes + node

    n = 2 * n_x + layers + pairs + node_pairs
    cost = np.zeros(n)
    cost[2 * n_x: 2 * n_x + layers] = 1.0
    rows, cols, vals, lower, upper = [], [], [], [], []
    row = 0

    def add(entries: list[tuple[int, float]], lo: float, hi: float) -> None:
        nonlocal row
        for col, val in entries:
            rows.append(row)
            cols.append(col)
            vals.append(val)
        lower.append(lo)
        upper.append(hi)
        row += 1

    for li in range(layers):
        for e in range(experts):
            add([(y(li, e, r), 1.0) for r in range(ranks)], 1.0, 1.0)  # shares sum to 1
            add([(x(li, e, r), 1.0) for r in range(ranks)], 1.0, 1.0 + problem.redundant)
            for r in range(ranks):
                add([(y(li, e, r), 1.0), (x(li, e, r), -1.0)], -np.inf, 0.0)  # y <= x
        add([(x(li, e, r), 1.0) for e in range(experts) for r in range(ranks)],
            experts, experts + problem.redundant)
        for r in range(ranks):
            add([(x(li, e, r), 1.0) for e in range(experts)], 0.0, problem.slots)
            add([(y(li, e, r), float(problem.shares[li, e])) for e in range(experts)]
                + [(z(li), -1.0)], -np.inf, 0.0)
    if affinity:
        assert problem.coactivation is not None
        for li in range(layers - 1):
            for i in range(experts):
                for j in range(experts):
                    pair = float(problem.coactivation[li, i, j])
                    for r in range(ranks):
                        cost[u(li, i, j, r)] = -problem.affinity_weight * pair
                        add([(u(li, i, j, r), 1.0), (x(li, i, r), -1.0)], -np.inf, 0.0)
                        add([(u(li, i, j, r), 1.0), (x(li + 1, j, r), -1.0)], -np.inf, 0.0)
                    per = problem.ranks_per_node or ranks
                    for node in range(nodes):
                        members = range(node * per, min(ranks, (node + 1) * per))
                        cost[un(li, i, j, node)] = -problem.node_weight * pair
                        add([(un(li, i, j, node), 1.0)]
                            + [(x(li, i, r), -1.0) for r in members], -np.inf, 0.0)
                        add([(un(li, i, j, node), 1.0)]
                            + [(x(li + 1, j, r), -1.0) for r in members], -np.inf, 0.0)
    integrality = np.zeros(n)
    integrality[:n_x] = 1
    upper_bounds = np.ones(n)
    upper_bounds[2 * n_x: 2 * n_x + layers] = np.inf
    matrix = coo_matrix((vals, (rows, cols)), shape=(row, n)).tocsr()
    solution = milp(cost, constraints=LinearConstraint(matrix, lower, upper),
                    integrality=integrality, bounds=Bounds(np.zeros(n), upper_bounds),
                    options={"time_limit": time_limit_s, "disp": False})
    if solution.x is None:
        raise ClusterSimError(f"expert placement ILP: no solution ({solution.message})")
    share = solution.x[n_x:2 * n_x].reshape(layers, experts, ranks)
    share = np.where(share > 1e-9, share, 0.0)
    share /= share.sum(axis=2, keepdims=True)
    return _result(problem, share)


def _assign(problem: PlacementProblem, w: np.ndarray, copies: np.ndarray,
            pull: np.ndarray | None, liquid_last: bool) -> np.ndarray | None:
    """One layer's copies to ranks, hottest piece first, each to the rank it raises
    least (its load, less the weighted pairs it keeps from the previous layer's GPUs and
    node, ``pull``). With
    ``liquid_last`` the single-copy experts go first and the replicated ones fill the
    emptiest ranks after (their shares are re-split to level the ranks anyway). None
    when a copy finds no rank with a free slot that lacks it."""
    experts, ranks = len(w), problem.ranks
    layer = np.zeros((experts, ranks))
    load = np.zeros(ranks)
    used = np.zeros(ranks, dtype=np.int64)
    items = sorted(((w[e] / copies[e], e) for e in range(experts)
                    for _ in range(copies[e])), reverse=True)
    if liquid_last:
        items = ([item for item in items if copies[item[1]] == 1]
                 + [item for item in items if copies[item[1]] > 1])
    for piece, e in items:
        open_ranks = [r for r in range(ranks) if used[r] < problem.slots and layer[e, r] == 0.0]
        if not open_ranks:  # the free slots are all on ranks holding a copy already
            return None
        costs = [float(load[r]) + piece - (
            0.0 if pull is None else float(pull[e, r]) / copies[e]) for r in open_ranks]
        best = open_ranks[int(np.argmin(costs))]
        layer[e, best] = 1.0 / copies[e]
        load[best] += piece
        used[best] += 1
    return layer


def _copies(shares: np.ndarray, redundant: int, ranks: int) -> np.ndarray:
    """Copies per expert: one each, the extra ones by largest share per copy."""
    copies = np.ones(len(shares), dtype=np.int64)
    for _ in range(redundant):
        per_copy = np.where(copies < ranks, shares / copies, -1.0)
        copies[int(per_copy.argmax())] += 1
    return copies


def solve_greedy(problem: PlacementProblem, sweeps: int = 6) -> PlacementResult:
    """The fast placement: replicas, greedy assignment, then local search (module
    docstring). With affinity, the layers are placed first to last and last to first,
    and the better kept."""
    forward = _greedy(problem, sweeps)
    if not problem.has_affinity:
        return forward
    reverse = PlacementProblem(problem.shares[::-1].copy(), problem.ranks, problem.slots,
                               problem.redundant,
                               problem.coactivation[::-1].transpose(0, 2, 1).copy(),
                               problem.affinity_weight, problem.ranks_per_node,
                               problem.node_weight)
    backward = _result(problem, _greedy(reverse, sweeps).share[::-1].copy())
    return min(forward, backward, key=lambda result: result.objective)


def _greedy(problem: PlacementProblem, sweeps: int) -> PlacementResult:
    layers, experts, ranks = problem.num_layers, problem.num_experts, problem.ranks
    share = np.zeros((layers, experts, ranks))
    aff = problem.has_affinity
    for li in range(layers):
        w = problem.shares[li]
        copies = _copies(w, problem.redundant, ranks)
        # Pairs arriving from the previous layer, by the rank their expert sat on.
        pull = (problem.weighted(problem.coactivation[li - 1].T @ share[li - 1])
                if aff and li > 0 and problem.coactivation is not None else None)
        candidates = [_assign(problem, w, copies, pull, liquid_last=False)]
        if problem.redundant:
            candidates.append(_assign(problem, w, copies, pull, liquid_last=True))
        best_value, best = np.inf, share[li]
        for candidate in candidates:
            if candidate is None:
                continue
            share[li] = candidate
            if problem.redundant and not aff:
                share[li] = _split_shares(w, candidate > 0)
            # Only this layer's part differs between candidates.
            value = (objective(problem, share)[0] if aff
                     else float((w @ share[li]).max()))
            if value < best_value:
                best_value, best = value, share[li].copy()
        share[li] = best
        share[li] = _local_search(problem, share, li, sweeps)
        if problem.redundant and not aff:
            for _ in range(3):  # swaps at the copies' shares, then the shares re-split
                share[li] = _split_shares(w, share[li] > 0)
                share[li] = _local_search(problem, share, li, sweeps)
            share[li] = _split_shares(w, share[li] > 0)
            if experts * ranks <= _COPY_SEARCH_MAX:
                share[li] = _move_copies(problem, share, li)
    if aff and not problem.redundant:
        for _ in range(2):  # refine each layer against both neighbours
            for li in range(layers):
                share[li] = _local_search(problem, share, li, sweeps)
    return _result(problem, share)


_COPY_SEARCH_MAX = 512
# Weight of the loads' sum of squares in a change's gain: breaks the ties of a plateau
# (two ranks at the maximum) toward the change that levels the ranks.
_LEVEL = 1e-2  # experts x ranks up to which copies are moved one by one


def _move_copies(problem: PlacementProblem, share: np.ndarray, li: int) -> np.ndarray:
    """Moves of single copies off the busiest rank (shares re-split each time), while
    the layer's objective falls; for small layers only (an LP per trial)."""
    w = problem.shares[li]
    best = objective(problem, share)[0]
    layer = share[li].copy()
    for _ in range(4 * problem.num_experts):
        hot = int((w @ layer).argmax())
        holds = layer > 0
        found = False
        for e in np.flatnonzero(holds[:, hot]):
            for r in np.flatnonzero(~holds[e] & (holds.sum(axis=0) < problem.slots)):
                trial = holds.copy()
                trial[e, hot], trial[e, r] = False, True
                share[li] = _split_shares(w, trial)
                value = objective(problem, share)[0]
                if value < best - 1e-12:
                    best, layer, found = value, share[li].copy(), True
                    break
            if found:
                break
        share[li] = layer
        if not found:
            break
    kept: np.ndarray = layer
    return kept


def _split_shares(w: np.ndarray, holds: np.ndarray) -> np.ndarray:
    """The token shares of each expert's copies that minimize the busiest rank's load
    (a small LP over the copies), given which ranks hold which experts."""
    experts, ranks = holds.shape
    copies = np.argwhere(holds)  # (expert, rank) per copy
    n = len(copies) + 1  # the copies' shares, then the busiest load z
    cost = np.zeros(n)
    cost[-1] = 1.0
    rows, cols, vals = [], [], []
    for c, (e, _) in enumerate(copies):
        rows.append(e)
        cols.append(c)
        vals.append(1.0)
    sums = coo_matrix((vals, (rows, cols)), shape=(experts, n))
    rows, cols, vals = [], [], []
    for c, (e, r) in enumerate(copies):
        rows.append(r)
        cols.append(c)
        vals.append(float(w[e]))
    for r in range(ranks):
        rows.append(r)
        cols.append(n - 1)
        vals.append(-1.0)
    loads = coo_matrix((vals, (rows, cols)), shape=(ranks, n))
    solution = milp(cost, constraints=[LinearConstraint(sums.tocsr(), 1.0, 1.0),
                                       LinearConstraint(loads.tocsr(), -np.inf, 0.0)],
                    bounds=Bounds(np.zeros(n), np.r_[np.ones(n - 1), np.inf]))
    share = np.zeros((experts, ranks))
    if solution.x is None:  # keep the even split
        even: np.ndarray = holds / holds.sum(axis=1, keepdims=True)
        return even
    for c, (e, r) in enumerate(copies):
        share[e, r] = max(0.0, solution.x[c])
    split: np.ndarray = share / share.sum(axis=1, keepdims=True)
    return split


def _local_search(problem: PlacementProblem, share: np.ndarray, li: int, sweeps: int
                  ) -> np.ndarray:
    """Swaps of single-copy experts between ranks, and moves into free slots, while
    layer ``li``'s part of the objective falls: its busiest rank, and the weighted pairs
    that leave the GPUs (and nodes) of the neighbouring layers' experts. Balance only: moves off the
    busiest rank; with affinity, from every rank. Each expert in turn takes its best
    swap (all partners priced at once), for ``sweeps`` passes."""
    layer = share[li].copy()
    w = problem.shares[li]
    experts, ranks = layer.shape
    aff = problem.has_affinity
    # pull[e, r]: the weighted pairs kept on rank r (and its node) if e is there, from
    # the previous layer's experts and to the next layer's (zero while it is unplaced).
    pull = np.zeros_like(layer)
    if aff and problem.coactivation is not None:
        if li > 0:
            pull += problem.coactivation[li - 1].T @ share[li - 1]
        if li + 1 < problem.num_layers:
            pull += problem.coactivation[li] @ share[li + 1]
        pull = problem.weighted(pull)
    single = (layer > 0).sum(axis=1) == 1
    rank_of = layer.argmax(axis=1)
    loads = w @ layer
    used = (layer > 0).sum(axis=0)

    def best_for(e: int) -> tuple[float, int, int]:
        """(gain, partner expert or -1 for a move, target rank) of e's best change."""
        a = int(rank_of[e])
        top = np.argsort(-loads)[:3]

        def max_without(y: np.ndarray) -> np.ndarray:
            """Max load over ranks other than a and y[i], per i."""
            best = np.full(len(y), -np.inf)
            for t in top[::-1]:
                best = np.where((t != a) & (t != y), loads[t], best)
            return best

        old = loads.max()
        best: tuple[float, int, int] = (1e-12, -1, -1)
        partners = np.flatnonzero(single & (rank_of != a) & (layer[:, a] == 0))
        if partners.size:  # swaps with single-copy experts on other ranks
            r = rank_of[partners]
            delta = w[e] - w[partners]
            new = np.maximum(max_without(r), np.maximum(loads[a] - delta, loads[r] + delta))
            gains = old - new + (pull[e, r] - pull[e, a] + pull[partners, a]
                                 - pull[partners, r]) + _LEVEL * (
                loads[a] ** 2 + loads[r] ** 2 - (loads[a] - delta) ** 2
                - (loads[r] + delta) ** 2)
            i = int(gains.argmax())
            if gains[i] > best[0]:
                best = (float(gains[i]), int(partners[i]), int(r[i]))
        free = np.flatnonzero((used < problem.slots) & (np.arange(ranks) != a)
                              & (layer[e] == 0))
        if free.size:  # moves into free slots
            new = np.maximum(max_without(free), np.maximum(loads[a] - w[e],
                                                           loads[free] + w[e]))
            gains = old - new + (pull[e, free] - pull[e, a]) + _LEVEL * (
                loads[a] ** 2 + loads[free] ** 2 - (loads[a] - w[e]) ** 2
                - (loads[free] + w[e]) ** 2)
            i = int(gains.argmax())
            if gains[i] > best[0]:
                best = (float(gains[i]), -1, int(free[i]))
        return best

    def apply(e: int, f: int, r: int) -> None:
        a = int(rank_of[e])
        layer[e, a], layer[e, r] = 0.0, 1.0
        rank_of[e] = r
        shift = w[e]
        if f >= 0:
            layer[f, r], layer[f, a] = 0.0, 1.0
            rank_of[f] = a
            shift -= w[f]
        else:
            used[a] -= 1
            used[r] += 1
        loads[a] -= shift
        loads[r] += shift

    def movable() -> list[int]:
        hot = int(loads.argmax())
        return [int(e) for e in np.argsort(-w)
                if single[e] and (aff or int(rank_of[e]) == hot)]

    if experts * ranks <= _COPY_SEARCH_MAX:
        # Small layers: the best change over all experts, until none helps.
        for _ in range(sweeps * experts):
            options = [(best_for(e), e) for e in movable()]
            if not options:
                break
            (_gain, f, r), e = max(options)
            if f == -1 and r == -1:
                break
            apply(e, f, r)
    else:
        # Large layers: each expert in turn takes its best change, for a few passes.
        for _ in range(sweeps):
            changed = False
            for e in movable():
                _gain, f, r = best_for(e)
                if r >= 0 and (aff or int(rank_of[e]) == int(loads.argmax())):
                    apply(e, f, r)
                    changed = True
            if not changed:
                break
    kept: np.ndarray = layer
    return kept


def expert_slots_that_fit(model: ModelSpec, gpu: GPUSpec, ep: int, tp: int = 1,
                          gpu_memory_utilization: float = 0.9, kv_gib: float = 10.0) -> int:
    """The most routed-expert slots per MoE layer one GPU holds next to the rest of the
    weights and ``kv_gib`` of KV cache."""
    bytes_per = DTYPE_BYTES[model.dtype]
    rest = (model.num_params - model.vision_params - model.expert_params) / tp * bytes_per
    free = gpu.hbm_bytes * gpu_memory_utilization - rest - kv_gib * GIB
    per_slot = model.mlp_params_per_expert * model.num_moe_layers * bytes_per
    return max(0, int(free // per_slot))


def plan_placement(model: ModelSpec, stats: RoutingStats, ep: int, *, gpu: GPUSpec,
                   redundant: int = 0, affinity_weight: float = 0.0,
                   ranks_per_node: int = 0, node_weight: float = 0.0,
                   solver: str = "greedy", kv_gib: float = 10.0) -> PlacementResult:
    """Place ``model``'s experts on ``ep`` GPUs for ``stats``, within each GPU's memory.

    Raises:
        ClusterSimError: the experts (and copies) do not fit the GPUs' memory.
    """
    experts = model.num_experts
    needed = -(-(experts + redundant) // ep)
    fits = expert_slots_that_fit(model, gpu, ep, kv_gib=kv_gib)
    if fits < needed:
        raise ClusterSimError(
            f"expert placement: {experts} experts + {redundant} copies need {needed} slots "
            f"per GPU but {gpu.name} holds {fits} next to the other weights and {kv_gib:g} "
            f"GiB of KV; lower redundant or raise ep")
    problem = PlacementProblem(stats.shares, ep, needed, redundant, stats.coactivation,
                               affinity_weight, ranks_per_node, node_weight)
    return solve_ilp(problem) if solver == "ilp" else solve_greedy(problem)
