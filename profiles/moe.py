"""Mixture-of-experts layers: how tokens spread over experts, where experts live, and
what a step's expert GEMMs and all-to-alls cost on the busiest GPU.

Routing (``profiles.routing``) gives each MoE layer's expert shares; each step draws its
expert loads from them: the T·k routed pairs of T tokens with top-k routing are a
multinomial draw per layer (seeded; the at-most-once-per-token constraint of top-k is
not modelled, a small effect for k << E). Placement (``profiles.expert_placement``)
says which expert copies each EP rank holds and the share of tokens each copy takes.

Cost per MoE layer, on each rank, from the step's drawn loads::

    experts    a grouped GEMM over the rank's slots: tiles of every expert packed into
               waves on the GPU's units (each expert's rows padded to its tile rows, the
               few-tokens-per-expert loss), or the bytes of the touched experts' weights
               (at a few tokens each, decode), joined as the fitted GEMM kernels join them
    dispatch   with the tokens spread over the ranks (DP attention), each routed pair
    combine    whose expert is on another rank sends the token's hidden vector there and
               back; a rank's traffic to its own node crosses the scale-up link, to other
               nodes its NIC (each GPU's own share)

(with ExFlow's coherent dispatch a token instead stays on its expert's GPU after a layer
and moves on from there only if its next expert lives elsewhere: one all-to-all per
layer, the crossing share set by the placement and the layers' co-activation), and the
layer waits for the slowest rank: the step's expert time is the sum over MoE
layers of the busiest rank's (from the loads of at most ``MAX_SAMPLED_LAYERS`` layers
drawn at random each step, scaled to all of them: unbiased, and cheap on 58-layer
models). With TP attention (tokens replicated on every rank) there
is no dispatch: each rank runs its experts on the tokens it holds and the TP all-reduce
combines (vLLM's TP + expert parallel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from profiles.errors import ClusterSimError
from profiles.expert_cache import ExpertCache, Policy
from profiles.expert_placement import ExpertPlacement, load_placement
from profiles.hardware import GB, GPUSpec
from profiles.models import DTYPE_BYTES, ModelSpec
from profiles.routing import RoutingConfig, RoutingStats, load_routing_trace, routing_stats

__all__ = ["EPLinks", "ExpertLayers", "ExpertPlacement", "RoutingConfig", "RoutingStats",
           "load_placement", "load_routing_trace", "routing_stats"]

# A step draws the loads of at most this many MoE layers (a random subset, its sum
# scaled to all of them): DeepSeek-V3's 58 layers of 256 experts would cost ~1 ms a step.
MAX_SAMPLED_LAYERS = 16
_SMALLEST_TILE_ROWS = 16
_TILE_ROWS = 128
_TILE_COLS = 128


@dataclass(frozen=True)
class EPLinks:
    """The links an EP group's all-to-all crosses (bytes/s per GPU, per direction)."""

    ranks_per_node: int
    scale_up_bytes_per_s: float
    nic_bytes_per_s: float
    scale_up_latency_s: float
    nic_latency_s: float


class ExpertLayers:
    """Prices the MoE layers of one replica's step (module docstring).

    Args:
        model: a MoE model.
        gpu: the GPUs' SKU.
        tp: the width experts are split over when not expert-parallel (ep == 1).
        ep: expert-parallel ranks (1: every rank holds every expert, TP-split).
        tokens_spread: the step's tokens are split over the ranks (DP attention), so
            routed pairs travel in an all-to-all; False: replicated (TP attention).
        stats: routing statistics (:func:`routing_stats`).
        placement: the experts' slots; the linear placement when None.
        links: the EP group's links (needed when tokens_spread).
        seed: seeds the per-step load draws.
        dispatch: ``home`` (two all-to-alls a layer) or ``coherent`` (ExFlow, one).
        cache: (resident experts per layer per GPU, policy) when the experts live in
            host memory behind a GPU cache (``profiles.expert_cache``); None: all on GPU.
        gemm_factor: the serving engine's fused MoE kernel's time over this grouped-GEMM
            model's, which runs the experts' tiles at the dense GEMM fit's speed (an
            engine preset's fitted ``moe_gemm_factor``; 1.0: no engine kernel's own).
    """

    def __init__(self, model: ModelSpec, gpu: GPUSpec, *, tp: int, ep: int,
                 tokens_spread: bool, stats: RoutingStats,
                 placement: ExpertPlacement | None = None, links: EPLinks | None = None,
                 seed: int = 0, dispatch: Literal["home", "coherent"] = "home",
                 cache: tuple[int, Policy] | None = None, gemm_factor: float = 1.0) -> None:
        if not gemm_factor > 0:
            raise ValueError(f"gemm_factor must be positive, got {gemm_factor}")
        self.gemm_factor = gemm_factor
        if placement is None:
            placement = ExpertPlacement.linear(model.num_moe_layers, model.num_experts, ep)
        if placement.num_ranks != ep:
            raise ClusterSimError(f"moe placement: {placement.num_ranks} ranks, but ep={ep}")
        if tokens_spread and ep > 1 and links is None:
            raise ValueError("an all-to-all needs the EP group's links")
        self.model = model
        self.gpu = gpu
        self.ep = ep
        self.tokens_spread = tokens_spread and ep > 1
        self.stats = stats
        self.placement = placement
        self.links = links
        self.rng = np.random.default_rng(seed)
        width = model.expert_width / (tp if ep == 1 else 1)
        gated = model.mlp_kind == "gated"
        h = model.hidden_size
        # The two grouped GEMMs of an expert: up (gate and up fused) and down.
        self._shapes = ((width * (2 if gated else 1), h), (h, width))
        self._element = DTYPE_BYTES[model.dtype]
        fit = gpu.kernels.gemm if gpu.kernels is not None else None
        tiling = gpu.gemm_tiling
        self._units = tiling.compute_units if tiling is not None else 1
        matmul = fit.matmul if fit is not None else gpu.efficiency.matmul
        memory = fit.memory if fit is not None else gpu.efficiency.memory
        self._unit_rate = gpu.compute_flops(model.dtype) * matmul / self._units
        self._small_tile = fit.small_tile if fit is not None else 1.0
        self._bytes_per_s = gpu.hbm_bandwidth_gbps * GB * memory
        self._blend = fit.blend if fit is not None else None
        self._launch_s = 2 * (fit.launch_us * 1e-6 if fit is not None else 5e-6)
        self._pair_bytes = h * 2.0  # a token's hidden vector in 16-bit, each way
        self._expected_share = placement.rank_loads(stats.shares)  # [layers, ranks]
        self.dispatch = dispatch
        # Share of each layer's routed pairs that cross GPUs in one all-to-all: home
        # dispatch sends (ep-1)/ep of them out and back (two all-to-alls); coherent
        # dispatch (ExFlow) sends a pair on from its previous expert's GPU unless its
        # next expert is there too (one all-to-all; layer 0 from the token's home).
        # Of the crossing pairs, the share that leaves the node (a NIC, not NVLink):
        # home dispatch spreads evenly over the peers; coherent follows the placement.
        per_node = min(links.ranks_per_node, ep) if links is not None else ep
        even_remote = (ep - per_node) / (ep - 1) if ep > 1 else 0.0
        self._remote = np.full(stats.num_layers, even_remote)
        if dispatch == "coherent":
            moving = 1.0 - placement.stay_fraction(stats)
            moving[0] = (ep - 1) / ep
            leaving = 1.0 - placement.stay_fraction(stats, per_node)
            leaving[0] = (ep - per_node) / ep
            self._remote = np.where(moving > 0, leaving / np.maximum(moving, 1e-12), 0.0)
            self._moving = moving
            self._all_to_alls = 1.0
        else:
            self._moving = np.full(stats.num_layers, (ep - 1) / ep if ep > 1 else 0.0)
            self._all_to_alls = 2.0
        self._table_rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        layers = stats.num_layers
        self._sampled_layers = min(layers, MAX_SAMPLED_LAYERS)
        self.cache: ExpertCache | None = None
        if cache is not None:
            # Offloaded experts: every layer's cache sees every step (no subsampling).
            self._sampled_layers = layers
            predicted = np.where(placement.slots >= 0, np.take_along_axis(
                stats.shares[:, None, :], np.maximum(placement.slots, 0), axis=2)
                * placement.share, 0.0)
            expert_bytes = (model.mlp_params_per_expert * self._element
                            / (tp if ep == 1 else 1))
            self.cache = ExpertCache(placement.slots, cache[0], cache[1], expert_bytes,
                                     gpu.host_link.bandwidth_gbps * GB, predicted)

    # ---- pieces ------------------------------------------------------------------------

    def draw_loads(self, num_tokens: int, layers: np.ndarray | None = None) -> np.ndarray:
        """[layers, experts] routed rows per expert for a step of ``num_tokens`` tokens
        (of the MoE layers ``layers``, all by default)."""
        pairs = num_tokens * self.model.num_experts_per_token
        shares = self.stats.shares if layers is None else self.stats.shares[layers]
        return self.rng.multinomial(pairs, shares).astype(np.float64)

    def slot_rows(self, loads: np.ndarray, layers: np.ndarray | None = None) -> np.ndarray:
        """[layers, ranks, slots] rows each slot computes for per-expert ``loads``."""
        p = self.placement
        slots = p.slots if layers is None else p.slots[layers]
        share = p.share if layers is None else p.share[layers]
        rows = np.take_along_axis(loads[:, None, :], np.maximum(slots, 0), axis=2)
        return np.where(slots >= 0, rows * share, 0.0)

    def _tables(self, largest: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row count n = 0..N: an expert's busy tile-seconds, its longest tile and its
        bytes' seconds, over both GEMMs (built once, grown as larger loads appear)."""
        if self._table_rows is not None and len(self._table_rows[0]) > largest:
            return self._table_rows
        size = max(1024, 1 << int(largest).bit_length())
        rows = np.arange(size, dtype=np.float64)
        safe = np.maximum(rows, 1.0)
        tile_rows = np.minimum(_TILE_ROWS, np.maximum(
            _SMALLEST_TILE_ROWS, 2.0 ** np.ceil(np.log2(safe))))
        slow = np.where(tile_rows < _TILE_ROWS, self._small_tile, 1.0)
        busy = np.zeros(size)
        longest = np.zeros(size)
        memory = np.zeros(size)
        for n, k in self._shapes:
            tile_s = tile_rows * _TILE_COLS * k * 2.0 / (self._unit_rate * slow)
            busy += np.ceil(safe / tile_rows) * np.ceil(n / _TILE_COLS) * tile_s
            longest += tile_s
            memory += (rows * k + k * n + rows * n) * self._element / self._bytes_per_s
        for table in (busy, longest, memory):
            table[0] = 0.0
        self._table_rows = (busy, longest, memory)
        return self._table_rows

    def grouped_gemm_s(self, rows: np.ndarray) -> np.ndarray:
        """Seconds of each rank's grouped expert GEMMs; ``rows`` is [..., slots]. The
        tiles of all its experts pack into waves on the GPU's units, at least one tile's
        time; the touched experts' weights are read once each."""
        index = np.rint(rows).astype(np.int64)
        busy, longest, memory = self._tables(int(index.max(initial=0)))
        compute = np.maximum(busy[index].sum(axis=-1) / self._units,
                             longest[index].max(axis=-1))
        traffic = memory[index].sum(axis=-1)
        if self._blend is None:
            seconds = np.maximum(compute, traffic)
        else:
            p = self._blend
            seconds = (compute**p + traffic**p) ** (1.0 / p)
        return np.where(compute > 0, seconds * self.gemm_factor + self._launch_s, 0.0)

    def dispatch_bytes(self, loads: np.ndarray, layers: np.ndarray | None = None
                       ) -> np.ndarray:
        """[layers, ranks] bytes each rank receives in one dispatch: the pairs its slots
        compute whose token lives on another rank (tokens spread evenly over ranks)."""
        if not self.tokens_spread:
            return np.zeros((loads.shape[0], self.ep))
        rank_rows = self.slot_rows(loads, layers).sum(axis=2)
        moving = self._moving if layers is None else self._moving[layers]
        received: np.ndarray = rank_rows * moving[:, None] * self._pair_bytes
        return received

    def all_to_all_s(self, received: np.ndarray, num_tokens: int,
                     layers: np.ndarray | None = None) -> np.ndarray:
        """[layers] seconds of one dispatch (or combine): the slowest rank's traffic,
        what it receives and what it sends, over its scale-up link and its NIC."""
        links = self.links
        assert links is not None
        ep = self.ep
        remote = (self._remote if layers is None else self._remote[layers])[:, None]
        # Each rank sends its share of the T·k pairs that leave it, evenly.
        moving = self._moving if layers is None else self._moving[layers]
        sent = (num_tokens * self.model.num_experts_per_token / ep * moving * self._pair_bytes)
        traffic = np.maximum(received, sent[:, None])
        seconds = (traffic * (1 - remote) / links.scale_up_bytes_per_s
                   + links.scale_up_latency_s)
        across = traffic * remote / links.nic_bytes_per_s + links.nic_latency_s
        seconds = np.where(remote > 0, np.maximum(seconds, across), seconds)
        slowest: np.ndarray = seconds.max(axis=1)
        return slowest

    # ---- the step ----------------------------------------------------------------------

    def step_s(self, num_tokens: int) -> tuple[float, float]:
        """(expert GEMM seconds, all-to-all seconds) of one step over every MoE layer,
        each layer at its busiest rank, from one draw of the routing."""
        if num_tokens <= 0:
            return 0.0, 0.0
        total = self.stats.num_layers
        layers = None
        if self._sampled_layers < total:
            layers = np.sort(self.rng.choice(total, self._sampled_layers, replace=False))
        scale = total / self._sampled_layers
        loads = self.draw_loads(num_tokens, layers)
        rows = self.slot_rows(loads, layers)
        per_layer = self.grouped_gemm_s(rows).max(axis=1)
        experts = float(per_layer.sum())
        if self.cache is not None:
            experts += self.cache.step(rows, per_layer, layers)
        comm = 0.0
        if self.tokens_spread:
            received = self.dispatch_bytes(loads, layers)
            comm = self._all_to_alls * float(
                self.all_to_all_s(received, num_tokens, layers).sum())
        return float(experts) * scale, comm * scale

    def crossing_share(self) -> float:
        """Mean share of a MoE layer's routed pairs that cross GPUs in one all-to-all."""
        return float(self._moving.mean())

    def all_to_all_bytes(self, num_tokens: int) -> float:
        """Bytes one step's all-to-alls move between GPUs over every MoE layer (dispatch
        and combine, or coherent dispatch's one), from the expected crossing shares."""
        if not self.tokens_spread:
            return 0.0
        pairs = num_tokens * self.model.num_experts_per_token
        return float(self._all_to_alls * pairs * self._pair_bytes * self._moving.sum())

    def node_crossing_share(self) -> float:
        """Mean share of a MoE layer's routed pairs that cross nodes in one all-to-all."""
        return float((self._moving * self._remote).mean())

    def imbalance(self) -> float:
        """Expected busiest rank's share over the mean share, averaged over layers."""
        return float((self._expected_share.max(axis=1) * self.ep).mean())
