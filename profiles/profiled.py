"""The profiled cost model: measured kernel tables where they cover a step, roofline
elsewhere, and an account of which was used.

It fits the same seam as the roofline (``CostModel.predict(BatchShape) -> StepCost``) and
prices each operator of a step from its table:

    qkv_proj, o_proj, mlp   gemm.csv rows with the layer's (n, k) under this TP degree,
                            interpolated over m = tokens in the step
    attn_prefill            attn_prefill.csv per head layout, over causal score pairs
    attn_decode             attn_decode.csv per head layout, over KV tokens read
    elementwise             elementwise.csv (rmsnorm, silu_mul, rotary, kv_write) over tokens
    tp_allreduce            collective.csv all_reduce rows for the TP group, over bytes

An operator whose shape family is missing, or whose size falls outside the measured range,
is priced by the calibrated roofline instead, and counted: ``measured_s`` and
``fallback_s`` add up the predicted seconds from each source, so a run summary can say
how much of the prediction was measured.
"""

from __future__ import annotations

from collections.abc import Hashable

from profiles.cost_model import BatchShape, StepCost
from profiles.interpolate import Curve, build_curves
from profiles.profile_format import KernelProfile
from profiles.roofline import RooflineCostModel

__all__ = ["ProfiledCostModel", "profile_curves"]

# How each table is grouped into families and which column is the interpolated size.
_FAMILIES: dict[str, tuple[tuple[str, ...], str]] = {
    "gemm": (("n", "k"), "m"),
    "attn_prefill": (("num_heads", "num_kv_heads", "head_dim"), ""),
    "attn_decode": (("num_heads", "num_kv_heads", "head_dim"), ""),
    "elementwise": (("op", "hidden"), "num_tokens"),
    "memcpy": (("direction",), "bytes"),
    "collective": (("op", "num_gpus"), "bytes"),
}


def profile_curves(profile: KernelProfile, op: str) -> dict[Hashable, Curve]:
    """The interpolation curves of one table, by family."""
    key_columns, size = _FAMILIES[op]
    return _curves(profile, op, key_columns, size)

ELEMENTWISE_OPS = ("rmsnorm", "silu_mul", "rotary", "kv_write")


def attention_sizes(op: str, batch: float, q_len: float, kv_len: float) -> float:
    """The size an attention table row is interpolated over: causal score pairs for a
    prefill (q new tokens after kv - q cached ones), KV tokens read for a decode."""
    if op == "attn_prefill":
        return batch * q_len * (kv_len - q_len + (q_len + 1) / 2.0)
    return batch * kv_len


def _curves(profile: KernelProfile, op: str, key_columns: tuple[str, ...], size: str
            ) -> dict[Hashable, Curve]:
    table = profile.tables.get(op)
    if table is None:
        return {}
    keys = list(zip(*(table[column].tolist() for column in key_columns), strict=True))
    if op in ("attn_prefill", "attn_decode"):
        q_lens = table["q_len"].tolist() if op == "attn_prefill" else [1.0] * len(table)
        sizes = [attention_sizes(op, b, q, kv) for b, q, kv in
                 zip(table["batch"].tolist(), q_lens, table["kv_len"].tolist(), strict=True)]
    else:
        sizes = table[size].tolist()
    return build_curves(keys, sizes, table["time_s"].tolist())


class ProfiledCostModel:
    """Measured tables first, the roofline for the rest; see the module docstring.

    Args:
        profile: a loaded profile of this GPU.
        roofline: the roofline model of the same replica (fallback and layout).
    """

    def __init__(self, profile: KernelProfile, roofline: RooflineCostModel) -> None:
        self.profile = profile
        self.roofline = roofline
        self.measured_s = 0.0
        self.fallback_s = 0.0
        self.num_fallbacks = 0
        m, tp = roofline.model, roofline.tp
        h = m.hidden_size
        q_local = m.q_size // tp
        kv_local = max(1, m.num_kv_heads // tp) * m.head_dim
        f_local = m.intermediate_size // tp
        gemm = _curves(profile, "gemm", ("n", "k"), "m")
        self._gemms = {
            "qkv_proj": [gemm.get((q_local + 2 * kv_local, h))],
            "o_proj": [gemm.get((h, q_local))],
            "mlp": ([gemm.get((2 * f_local, h)), gemm.get((h, f_local))]
                    if m.mlp_kind == "gated" and not m.is_moe else [None]),
        }
        heads = (m.num_attention_heads // tp, max(1, m.num_kv_heads // tp), m.head_dim)
        layout = ("num_heads", "num_kv_heads", "head_dim")
        self._prefill = _curves(profile, "attn_prefill", layout, "").get(heads)
        self._decode = _curves(profile, "attn_decode", layout, "").get(heads)
        elementwise = _curves(profile, "elementwise", ("op", "hidden"), "num_tokens")
        widths = {"rmsnorm": h, "silu_mul": f_local, "rotary": q_local + kv_local,
                  "kv_write": 2 * kv_local}
        self._elementwise = [elementwise.get((op, widths[op])) for op in ELEMENTWISE_OPS]
        collectives = _curves(profile, "collective", ("op", "num_gpus"), "bytes")
        self._allreduce = collectives.get(("all_reduce", tp)) if tp > 1 else None
        self._token_cache: dict[int, tuple[float, float, float, float]] = {}

    @property
    def num_stages(self) -> int:
        return self.roofline.num_stages

    @property
    def measured_share(self) -> float:
        total = self.measured_s + self.fallback_s
        return self.measured_s / total if total else 0.0

    def _token_terms(self, num_tokens: int) -> tuple[float, float, float, float]:
        """Per layer: (measured s, fallback s, all-reduce s, all-reduce measured s)."""
        cached = self._token_cache.get(num_tokens)
        if cached is not None:
            return cached
        roofline_ops, _, _, roofline_allreduce = self.roofline.token_terms(num_tokens)
        measured = fallback = 0.0
        for name, curves in self._gemms.items():
            times = [curve(num_tokens) if curve is not None else None for curve in curves]
            found = [t for t in times if t is not None]
            if len(found) == len(times):
                measured += sum(found)
            else:
                fallback += roofline_ops[name]
        element_times = [curve(num_tokens) if curve is not None else None
                         for curve in self._elementwise]
        if all(t is not None for t in element_times):
            # Two norms per layer; activation, rotary and KV write once.
            known = [t for t in element_times if t is not None]
            measured += known[0] + sum(known)
        else:
            fallback += roofline_ops["elementwise"]
        allreduce, allreduce_measured = roofline_allreduce, 0.0
        if self._allreduce is not None:
            one = self._allreduce(num_tokens * self.roofline.model.hidden_size * 2.0)
            if one is not None:
                allreduce = allreduce_measured = 2.0 * one
        result = (measured, fallback, allreduce, allreduce_measured)
        self._token_cache[num_tokens] = result
        return result

    def predict(self, batch: BatchShape) -> StepCost:
        """Price ``batch`` per stage; operators from tables where covered."""
        r = self.roofline
        num_tokens, pairs, prefill_kv, prefill_q, decode_kv = r.batch_aggregates(batch)
        measured, fallback, allreduce, allreduce_measured = self._token_terms(num_tokens)
        (prefill_roof, _), (decode_roof, _) = r.attention_terms(pairs, prefill_kv, prefill_q,
                                                                decode_kv)
        for table, size, roof in ((self._prefill, pairs, prefill_roof),
                                  (self._decode, decode_kv, decode_roof)):
            if not size:
                continue
            value = table(size) if table is not None else None
            if value is None:
                fallback += roof
            else:
                measured += value
        # Whole-step terms the tables do not cover: embedding, LM head, sends, swaps.
        roofline_step = r.predict(batch)
        ops = roofline_step.operator_s
        extra = ops["embedding"] + ops["lm_head"] + ops["pp_send"] + ops["kv_swap"]
        n = r.model.num_layers
        layer_s = measured + fallback + allreduce
        stages = []
        for stage, num_layers in enumerate(r.layers_per_stage):
            seconds = num_layers * layer_s + ops["kv_swap"] / r.pp
            if stage == 0:
                seconds += ops["embedding"]
            seconds += ops["lm_head"] if stage == r.pp - 1 else ops["pp_send"] / max(1, r.pp - 1)
            stages.append(seconds)
        self.measured_s += n * (measured + allreduce_measured)
        self.fallback_s += n * (fallback + allreduce - allreduce_measured) + extra
        if fallback or allreduce != allreduce_measured:
            self.num_fallbacks += 1
        # NOTE: tables give times, not bounds: the non-communication time is split between
        # compute and memory in the roofline's proportions.
        communication = n * allreduce + ops["pp_send"] + ops["kv_swap"]
        work = sum(stages) - communication
        roof_work = roofline_step.compute_s + roofline_step.memory_s
        compute_share = roofline_step.compute_s / roof_work if roof_work else 0.0
        return StepCost(stage_s=tuple(stages), compute_s=work * compute_share,
                        memory_s=work * (1 - compute_share), communication_s=communication,
                        flops=roofline_step.flops, breakdown=roofline_step.breakdown)
