"""Model architecture specs: what a transformer is made of, and what that costs per token.

A :class:`ModelSpec` is the static shape of a decoder-only transformer::

    embed ─► [ norm ─► attention (q,k,v,o) ─► norm ─► MLP or MoE ] x layers ─► norm ─► lm_head

It loads from a Hugging Face ``config.json`` (Llama, Mistral, Mixtral, Qwen2, GPT-2/3 style)
or from the built-in catalog (``profiles/data/models.json``), and derives the figures the
cost model and the planners need: parameter counts (total and active), FLOPs per token and
KV-cache bytes per token (GQA aware). Counts are exact functions of the config, so they can
be checked against published figures (tests hold them within 1%).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from profiles.errors import ClusterSimError, format_validation_error
from profiles.hf_configs import read_hf_config, text_config
from profiles.reading import read_json

__all__ = ["DTYPE_BYTES", "ModelSpec", "catalog_entry", "list_models", "load_model"]

DTYPE_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}

_HF_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
_CATALOG_PATH = Path(__file__).parent / "data" / "models.json"


class ModelSpec(BaseModel):
    """The architecture of a decoder-only transformer, as the cost model needs it.

    Invariants: ``num_attention_heads`` is a multiple of ``num_kv_heads``; a MoE model has
    ``num_experts >= num_experts_per_token >= 1``; a dense one has ``num_experts == 0``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)  # MLP width (per expert for MoE)
    vocab_size: int = Field(gt=0)
    max_position_embeddings: int = Field(gt=0)
    mlp_kind: Literal["gated", "standard"] = "gated"  # gated: SwiGLU, 3 matrices; standard: 2
    norm_kind: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    linear_bias: bool = False  # GPT-style: bias on every linear layer
    qkv_bias: bool = False  # Qwen2-style: bias on q, k, v only
    learned_position_embeddings: bool = False
    tie_word_embeddings: bool = False
    num_experts: int = Field(default=0, ge=0)
    num_experts_per_token: int = Field(default=0, ge=0)
    # MoE layout: routed experts of `expert_intermediate_size` (0: intermediate_size),
    # always-on shared experts of `shared_expert_intermediate_size` in all (DeepSeek:
    # n_shared_experts x moe_intermediate_size), the first `first_dense_layers` layers
    # dense (DeepSeek's first_k_dense_replace), then layer i is MoE when
    # (i + 1) % moe_layer_step == 0 (Llama 4's interleave step, Qwen's decoder_sparse_step);
    # dense layers use a plain MLP of intermediate_size.
    expert_intermediate_size: int = Field(default=0, ge=0)
    shared_expert_intermediate_size: int = Field(default=0, ge=0)
    first_dense_layers: int = Field(default=0, ge=0)
    moe_layer_step: int = Field(default=1, ge=1)
    # Attention: "gqa" covers MHA, GQA and MQA; "mla" is DeepSeek's multi-head latent
    # attention (KV cached as one kv_lora_rank latent plus a qk_rope_head_dim key per
    # token, shared by every head; head_dim is the q/k head width nope + rope).
    attention_kind: Literal["gqa", "mla"] = "gqa"
    q_lora_rank: int = Field(default=0, ge=0)
    kv_lora_rank: int = Field(default=0, ge=0)
    qk_rope_head_dim: int = Field(default=0, ge=0)
    v_head_dim: int = Field(default=0, ge=0)  # 0: head_dim
    # Sliding-window layers hold KV for the last `sliding_window` tokens only; with
    # global_layer_step n every n-th layer attends globally (Gemma 3: 6; Gemma 2: 2), with
    # 0 every layer slides (Mistral-7B v0.1).
    sliding_window: int = Field(default=0, ge=0)
    global_layer_step: int = Field(default=0, ge=0)
    qk_norm: bool = False  # Qwen3, Gemma 3: an RMSNorm over each q and k head
    norms_per_layer: int = Field(default=2, ge=1)  # Gemma 2/3: 4 (pre and post norms)
    vision_params: int = Field(default=0, ge=0)  # a vision tower's weights (held, not run)
    # Training dropout: on the residual branches after attention and the MLP (GPT-2/3,
    # OPT, Megatron-Core's default 0.1), and on the attention probabilities; 0 (Llama,
    # Mistral, Qwen, DeepSeek, Gemma) keeps no dropout mask for backward.
    hidden_dropout: float = Field(default=0.0, ge=0, lt=1)
    attention_dropout: float = Field(default=0.0, ge=0, lt=1)
    dtype: Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4"] = "bf16"
    kv_cache_dtype: Literal["fp32", "bf16", "fp16", "fp8"] = "bf16"

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.is_moe and not 1 <= self.num_experts_per_token <= self.num_experts:
            raise ValueError(f"num_experts_per_token: {self.num_experts_per_token} must be "
                             f"between 1 and num_experts ({self.num_experts})")
        if not self.is_moe and (self.num_experts_per_token or self.shared_expert_intermediate_size
                                or self.expert_intermediate_size):
            raise ValueError("num_experts: 0 (a dense model) but expert fields are set")
        if self.attention_kind == "mla" and not (self.kv_lora_rank and self.qk_rope_head_dim):
            raise ValueError("kv_lora_rank, qk_rope_head_dim: MLA needs both")
        if self.attention_kind == "gqa" and self.num_attention_heads % self.num_kv_heads:
            raise ValueError(f"num_kv_heads: {self.num_kv_heads} must divide "
                             f"num_attention_heads ({self.num_attention_heads})")
        if self.global_layer_step and not self.sliding_window:
            raise ValueError("global_layer_step: set without a sliding_window")
        return self

    # ---- layer layout -----------------------------------------------------------------

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    def is_moe_layer(self, layer: int) -> bool:
        """Whether layer ``layer`` (0-based) routes its tokens to experts."""
        return (self.is_moe and layer >= self.first_dense_layers
                and (layer + 1) % self.moe_layer_step == 0)

    @property
    def num_moe_layers(self) -> int:
        return sum(self.is_moe_layer(layer) for layer in range(self.num_layers))

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    def is_local_layer(self, layer: int) -> bool:
        """Whether layer ``layer`` attends over a sliding window only."""
        if not self.sliding_window:
            return False
        return not self.global_layer_step or (layer + 1) % self.global_layer_step != 0

    @property
    def num_local_layers(self) -> int:
        return sum(self.is_local_layer(layer) for layer in range(self.num_layers))

    # ---- per-layer parameter counts -------------------------------------------------

    @property
    def q_size(self) -> int:
        """Query width (heads x q/k head dim)."""
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        """Width of one token's K (or V) per layer: kv heads x head dim (GQA)."""
        return self.num_kv_heads * self.head_dim

    @property
    def value_head_dim(self) -> int:
        return self.v_head_dim or self.head_dim

    @property
    def o_size(self) -> int:
        """The output projection's input width (heads x value head dim)."""
        return self.num_attention_heads * self.value_head_dim

    def attention_shapes(self, tp: int = 1) -> tuple[tuple[float, float], ...]:
        """The (n, k) weight shapes of a layer's input projections on one GPU of a TP
        group (q, k, v fused for GQA; MLA's down and up projections, the down ones
        replicated on every rank)."""
        h = self.hidden_size
        heads = self.num_attention_heads / tp
        if self.attention_kind == "gqa":
            kv_heads = max(1.0, self.num_kv_heads / tp)
            return (((heads + 2 * kv_heads) * self.head_dim, h),)
        latent = self.kv_lora_rank + self.qk_rope_head_dim
        kv_up = (heads * (self.head_dim - self.qk_rope_head_dim + self.value_head_dim),
                 self.kv_lora_rank)
        q: tuple[tuple[float, float], ...] = (
            ((self.q_lora_rank, h), (heads * self.head_dim, self.q_lora_rank))
            if self.q_lora_rank else ((heads * self.head_dim, h),))
        return (*q, (latent, h), kv_up)

    @property
    def attention_params_per_layer(self) -> int:
        h = self.hidden_size
        weights = sum(int(n * k) for n, k in self.attention_shapes()) + self.o_size * h
        if self.attention_kind == "mla":
            weights += self.kv_lora_rank + self.q_lora_rank  # the latents' norms
        if self.linear_bias:
            weights += self.q_size + 2 * self.kv_size + h
        elif self.qkv_bias:
            weights += self.q_size + 2 * self.kv_size
        if self.qk_norm:
            weights += 2 * self.head_dim
        return weights

    def _mlp_params(self, width: int) -> int:
        h = self.hidden_size
        matrices = 3 if self.mlp_kind == "gated" else 2
        bias = (width * (matrices - 1) + h) if self.linear_bias else 0
        return matrices * h * width + bias

    @property
    def expert_width(self) -> int:
        """One routed expert's FFN width."""
        return self.expert_intermediate_size or self.intermediate_size

    @property
    def mlp_params_per_expert(self) -> int:
        """One routed expert (a MoE model) or the MLP (a dense one)."""
        return self._mlp_params(self.expert_width if self.is_moe else self.intermediate_size)

    @property
    def dense_mlp_params(self) -> int:
        """The MLP of a dense layer."""
        return self._mlp_params(self.intermediate_size)

    @property
    def shared_expert_params(self) -> int:
        width = self.shared_expert_intermediate_size
        return self._mlp_params(width) if width else 0

    @property
    def moe_layer_params(self) -> int:
        """A MoE layer's FFN: every routed expert, the shared experts and the router."""
        return (self.num_experts * self.mlp_params_per_expert + self.shared_expert_params
                + self.hidden_size * self.num_experts)

    @property
    def active_moe_layer_params(self) -> int:
        """A MoE layer's FFN parameters one token touches: top-k, shared, router."""
        return (self.num_experts_per_token * self.mlp_params_per_expert
                + self.shared_expert_params + self.hidden_size * self.num_experts)

    @property
    def mlp_params_per_layer(self) -> float:
        """FFN parameters of the average layer (every expert included)."""
        if not self.is_moe:
            return self.dense_mlp_params
        total = (self.num_moe_layers * self.moe_layer_params
                 + self.num_dense_layers * self.dense_mlp_params)
        return total / self.num_layers

    @property
    def active_mlp_params_per_layer(self) -> float:
        """FFN parameters one token touches in the average layer."""
        if not self.is_moe:
            return self.dense_mlp_params
        total = (self.num_moe_layers * self.active_moe_layer_params
                 + self.num_dense_layers * self.dense_mlp_params)
        return total / self.num_layers

    @property
    def active_ffn_width(self) -> float:
        """FFN width one token's activations span in the average layer (top-k routed
        and shared experts in MoE layers, the MLP in dense ones)."""
        if not self.is_moe:
            return float(self.intermediate_size)
        moe = self.num_experts_per_token * self.expert_width \
            + self.shared_expert_intermediate_size
        return (self.num_moe_layers * moe + self.num_dense_layers * self.intermediate_size
                ) / self.num_layers

    @property
    def expert_params(self) -> int:
        """Every routed expert of every MoE layer (what expert parallelism shards)."""
        return self.num_moe_layers * self.num_experts * self.mlp_params_per_expert

    @property
    def norm_params_per_layer(self) -> int:
        per_norm = 2 * self.hidden_size if self.norm_kind == "layernorm" else self.hidden_size
        return self.norms_per_layer * per_norm

    @property
    def embedding_params(self) -> int:
        """Token embeddings (plus learned positions), and the final norm."""
        params = self.vocab_size * self.hidden_size
        if self.learned_position_embeddings:
            params += self.max_position_embeddings * self.hidden_size
        params += 2 * self.hidden_size if self.norm_kind == "layernorm" else self.hidden_size
        return params

    @property
    def lm_head_params(self) -> int:
        """The output projection's own parameters (0 when tied to the embeddings)."""
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    # ---- whole-model figures --------------------------------------------------------

    @property
    def num_params(self) -> int:
        """Total parameters, every expert (and a vision tower) included."""
        per_layer = self.attention_params_per_layer + self.norm_params_per_layer
        ffn = (self.num_moe_layers * self.moe_layer_params
               + self.num_dense_layers * self.dense_mlp_params)
        return (self.num_layers * per_layer + ffn + self.embedding_params
                + self.lm_head_params + self.vision_params)

    @property
    def num_active_params(self) -> int:
        """Language-model parameters one token touches (top-k experts only for MoE)."""
        per_layer = self.attention_params_per_layer + self.norm_params_per_layer
        ffn = (self.num_moe_layers * self.active_moe_layer_params
               + self.num_dense_layers * self.dense_mlp_params)
        return self.num_layers * per_layer + ffn + self.embedding_params + self.lm_head_params

    @property
    def weight_bytes(self) -> float:
        return self.num_params * DTYPE_BYTES[self.dtype]

    def kv_bytes_per_token_layer(self, tp: int = 1) -> float:
        """KV-cache bytes one token takes in one layer on one GPU of a TP group: K and V
        of the rank's kv heads (at least one head each); MLA's latent and rope key, the
        same on every rank (the latent is not split by head)."""
        if self.attention_kind == "mla":
            width: float = self.kv_lora_rank + self.qk_rope_head_dim
        else:
            width = 2 * max(1.0, self.num_kv_heads / tp) * self.head_dim
        return width * DTYPE_BYTES[self.kv_cache_dtype]

    @property
    def num_global_layers(self) -> int:
        return self.num_layers - self.num_local_layers

    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes a token of context occupies across all layers, sliding-window
        ones included (a block holds every layer's KV; past the window a request's blocks
        grow with the global layers only: :meth:`kv_token_equivalents`)."""
        return self.num_layers * self.kv_bytes_per_token_layer()

    def kv_token_equivalents(self, tokens: float) -> float:
        """Tokens of all-layer KV a ``tokens``-long context takes: past a sliding window
        only the global layers keep growing."""
        window = self.sliding_window if self.num_local_layers else 0
        if not window or tokens <= window:
            return tokens
        return window + self.num_global_layers / self.num_layers * (tokens - window)

    def kv_bytes(self, tokens: float, tp: int = 1) -> float:
        """KV-cache bytes of a ``tokens``-long context on one GPU of a TP group, every layer
        (a sliding-window layer holds the last ``sliding_window`` tokens only)."""
        per_layer = self.kv_bytes_per_token_layer(tp)
        local = self.num_local_layers * min(tokens, self.sliding_window)
        return per_layer * (self.num_global_layers * tokens + local)

    def flops_per_token(self, context_tokens: float = 0.0) -> float:
        """Forward FLOPs of one token attending to ``context_tokens`` earlier tokens.

        2 FLOPs per multiply-add over the active matmul parameters (embedding lookup
        excluded, LM head included), plus attention's QK^T and AV: 2 x 2 x q_size per
        context token per layer (Kaplan et al. 2020, Sec. 2.1); sliding-window layers see
        at most their window.
        """
        matmul_params = self.num_active_params - self.embedding_params
        if self.tie_word_embeddings:
            matmul_params += self.vocab_size * self.hidden_size
        width = 2 * self.num_attention_heads * (self.head_dim + self.value_head_dim)
        seen = self.num_global_layers * context_tokens
        if self.num_local_layers:
            seen += self.num_local_layers * min(context_tokens, self.sliding_window)
        return 2 * matmul_params + width * seen

    # ---- loading ----------------------------------------------------------------------

    @classmethod
    def from_hf_config(cls, config: dict[str, Any], name: str) -> ModelSpec:
        """Build a spec from a Hugging Face ``config.json`` dictionary.

        Every field that shapes the model is read or refused: a config whose MoE or
        attention fields its reader does not know (a Qwen3-MoE config relabelled as
        ``mixtral``, say) fails naming the field, never loads with it dropped.

        Args:
            config: the parsed ``config.json``.
            name: the name to give the model (a catalog name or the file's folder).

        Raises:
            ClusterSimError: the ``model_type`` is not supported, a field is missing, or
                a shape field is one the reader does not model.
        """
        where = f"model config {name}"
        fields = read_hf_config(config, where)
        text = text_config(config)
        dtype = _HF_DTYPES.get(str(text.get("torch_dtype", config.get("torch_dtype",
                                                                         "bfloat16"))), "bf16")
        kv_dtype = dtype
        quantized = _quantized_dtype(config.get("quantization_config"), where)
        if quantized is not None:
            dtype = quantized
        try:
            return cls(name=name, dtype=dtype, kv_cache_dtype=kv_dtype, **fields)  # type: ignore[arg-type]
        except ValidationError as error:
            raise ClusterSimError(format_validation_error(error, where)) from None


def _quantized_dtype(quantization: Any, where: str) -> str | None:
    """The weights' dtype a ``quantization_config`` gives (None: not quantized).

    Raises:
        ClusterSimError: a quantization method or width the cost model cannot price.
    """
    if quantization is None:
        return None
    if not isinstance(quantization, dict):
        raise ClusterSimError(f"{where}: field 'quantization_config' must be an object")
    method = str(quantization.get("quant_method", ""))
    if method in ("fp8", "fbgemm_fp8"):
        return "fp8"
    if method in ("awq", "gptq", "bitsandbytes") and quantization.get("bits", 4) == 4:
        return "int4"
    if method == "compressed-tensors":
        groups = quantization.get("config_groups") or {}
        weights = [group.get("weights") or {} for group in groups.values()
                   if isinstance(group, dict)]
        kinds = {(w.get("num_bits"), w.get("type")) for w in weights}
        if kinds == {(8, "float")}:
            return "fp8"
        if kinds == {(4, "int")}:
            return "int4"
        if kinds == {(8, "int")}:
            return "int8"
    raise ClusterSimError(
        f"{where}: quantization_config quant_method {method!r} is not priced (fp8, awq / "
        f"gptq 4-bit and compressed-tensors fp8, int8, int4 are); remove it to price the "
        f"model in its torch_dtype")


@cache
def _catalog() -> dict[str, dict[str, Any]]:
    entries = json.loads(_CATALOG_PATH.read_text())["models"]
    by_name: dict[str, dict[str, Any]] = {}
    for entry in entries:
        for key in [entry["name"], *entry.get("aliases", [])]:
            by_name[key.lower()] = entry
    return by_name


def catalog_entry(name: str) -> dict[str, Any] | None:
    """The catalog entry a name or alias (case-insensitive) stands for, if any."""
    return _catalog().get(name.lower())


def list_models() -> list[dict[str, Any]]:
    """The catalog's entries (name, aliases, published figures and source, HF config)."""
    seen: dict[str, dict[str, Any]] = {}
    for entry in _catalog().values():
        seen.setdefault(entry["name"], entry)
    return list(seen.values())


def load_model(name_or_path: str) -> ModelSpec:
    """A catalog model by short name (case-insensitive) or a ``config.json`` path.

    Args:
        name_or_path: ``"llama-3-8b"``, a HF id from the catalog's aliases, a path to a
            ``config.json`` file, or a folder holding one.

    Raises:
        ClusterSimError: neither a catalog name nor a readable config file.
    """
    entry = _catalog().get(name_or_path.lower())
    if entry is not None:
        return ModelSpec.from_hf_config(entry["config"], entry["name"])
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    if path.exists():
        config = read_json(path, "model config")
        if not isinstance(config, dict):
            raise ClusterSimError(f"model config {path}: expected a JSON object")
        return ModelSpec.from_hf_config(config, path.parent.name or path.stem)
    names = ", ".join(entry["name"] for entry in list_models())
    raise ClusterSimError(
        f"model {name_or_path!r}: not in the catalog and not a config.json path; "
        f"use one of: {names}"
    )
