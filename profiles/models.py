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

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from profiles.errors import ClusterSimError, format_validation_error

__all__ = ["DTYPE_BYTES", "ModelSpec", "list_models", "load_model"]

DTYPE_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}

_HF_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
_CATALOG_PATH = Path(__file__).parent / "data" / "models.json"


class ModelSpec(BaseModel):
    """The architecture of a decoder-only transformer, as the cost model needs it.

    Invariants: ``num_attention_heads`` is a multiple of ``num_kv_heads``; a MoE model has
    ``num_experts >= num_experts_per_token >= 1``; a dense one has ``num_experts == 0``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

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
    dtype: Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4"] = "bf16"
    kv_cache_dtype: Literal["fp32", "bf16", "fp16", "fp8"] = "bf16"

    # ---- per-layer parameter counts -------------------------------------------------

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def attention_params_per_layer(self) -> int:
        h = self.hidden_size
        weights = h * self.q_size + 2 * h * self.kv_size + self.q_size * h
        if self.linear_bias:
            weights += self.q_size + 2 * self.kv_size + h
        elif self.qkv_bias:
            weights += self.q_size + 2 * self.kv_size
        return weights

    @property
    def mlp_params_per_expert(self) -> int:
        h, f = self.hidden_size, self.intermediate_size
        matrices = 3 if self.mlp_kind == "gated" else 2
        bias = (f * (matrices - 1) + h) if self.linear_bias else 0
        return matrices * h * f + bias

    @property
    def mlp_params_per_layer(self) -> int:
        """All MLP parameters of a layer: every expert plus the router for MoE."""
        if self.is_moe:
            router = self.hidden_size * self.num_experts
            return self.num_experts * self.mlp_params_per_expert + router
        return self.mlp_params_per_expert

    @property
    def active_mlp_params_per_layer(self) -> int:
        """MLP parameters one token touches: top-k experts plus the router for MoE."""
        if self.is_moe:
            return (
                self.num_experts_per_token * self.mlp_params_per_expert
                + self.hidden_size * self.num_experts
            )
        return self.mlp_params_per_expert

    @property
    def norm_params_per_layer(self) -> int:
        per_norm = 2 * self.hidden_size if self.norm_kind == "layernorm" else self.hidden_size
        return 2 * per_norm

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
        """Total parameters, every expert included."""
        per_layer = (
            self.attention_params_per_layer + self.mlp_params_per_layer + self.norm_params_per_layer
        )
        return self.num_layers * per_layer + self.embedding_params + self.lm_head_params

    @property
    def num_active_params(self) -> int:
        """Parameters one token touches (top-k experts only for MoE)."""
        per_layer = (
            self.attention_params_per_layer
            + self.active_mlp_params_per_layer
            + self.norm_params_per_layer
        )
        return self.num_layers * per_layer + self.embedding_params + self.lm_head_params

    @property
    def weight_bytes(self) -> float:
        return self.num_params * DTYPE_BYTES[self.dtype]

    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes one token occupies across all layers: 2 (K and V) x kv heads x dim."""
        return 2 * self.num_layers * self.kv_size * DTYPE_BYTES[self.kv_cache_dtype]

    def flops_per_token(self, context_tokens: float = 0.0) -> float:
        """Forward FLOPs of one token attending to ``context_tokens`` earlier tokens.

        2 FLOPs per multiply-add over the active matmul parameters (embedding lookup
        excluded, LM head included), plus attention's QK^T and AV: 2 x 2 x q_size per
        context token per layer (Kaplan et al. 2020, Sec. 2.1).
        """
        matmul_params = self.num_active_params - self.embedding_params
        if self.tie_word_embeddings:
            matmul_params += self.vocab_size * self.hidden_size
        attention = 4 * self.num_layers * self.q_size * context_tokens
        return 2 * matmul_params + attention

    # ---- loading ----------------------------------------------------------------------

    @classmethod
    def from_hf_config(cls, config: dict[str, Any], name: str) -> ModelSpec:
        """Build a spec from a Hugging Face ``config.json`` dictionary.

        Args:
            config: the parsed ``config.json``.
            name: the name to give the model (a catalog name or the file's folder).

        Raises:
            ClusterSimError: the ``model_type`` is not supported or a field is missing.
        """
        model_type = config.get("model_type")
        try:
            fields = _HF_READERS[str(model_type)](config)
        except KeyError as missing:
            if model_type not in _HF_READERS:
                supported = ", ".join(sorted(_HF_READERS))
                raise ClusterSimError(
                    f"model config {name}: field 'model_type' is {model_type!r}; "
                    f"supported: {supported}"
                ) from None
            raise ClusterSimError(
                f"model config {name}: missing field {missing}; a Hugging Face config.json "
                f"of a {model_type} model has it"
            ) from None
        dtype = _HF_DTYPES.get(str(config.get("torch_dtype", "bfloat16")), "bf16")
        try:
            return cls(name=name, dtype=dtype, kv_cache_dtype=dtype, **fields)  # type: ignore[arg-type]
        except ValidationError as error:
            raise ClusterSimError(format_validation_error(error, f"model config {name}")) from None


def _read_llama_like(config: dict[str, Any]) -> dict[str, Any]:
    heads = config["num_attention_heads"]
    hidden = config["hidden_size"]
    fields: dict[str, Any] = {
        "num_layers": config["num_hidden_layers"],
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_kv_heads": config.get("num_key_value_heads") or heads,
        "head_dim": config.get("head_dim") or hidden // heads,
        "intermediate_size": config["intermediate_size"],
        "vocab_size": config["vocab_size"],
        "max_position_embeddings": config["max_position_embeddings"],
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", False)),
        "qkv_bias": config.get("model_type") == "qwen2" or bool(config.get("attention_bias")),
    }
    if config.get("model_type") == "mixtral":
        fields["num_experts"] = config["num_local_experts"]
        fields["num_experts_per_token"] = config["num_experts_per_tok"]
    return fields


def _read_gpt2(config: dict[str, Any]) -> dict[str, Any]:
    hidden = config["n_embd"]
    return {
        "num_layers": config["n_layer"],
        "hidden_size": hidden,
        "num_attention_heads": config["n_head"],
        "num_kv_heads": config["n_head"],
        "head_dim": hidden // config["n_head"],
        "intermediate_size": config.get("n_inner") or 4 * hidden,
        "vocab_size": config["vocab_size"],
        "max_position_embeddings": config["n_positions"],
        "mlp_kind": "standard",
        "norm_kind": "layernorm",
        "linear_bias": True,
        "learned_position_embeddings": True,
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", True)),
    }


def _read_opt(config: dict[str, Any]) -> dict[str, Any]:
    """OPT (Zhang et al. 2022): GPT-style blocks with a ReLU MLP, biases and LayerNorm,
    learned positions, the LM head tied to the embeddings."""
    hidden = config["hidden_size"]
    if config.get("word_embed_proj_dim", hidden) != hidden:
        raise KeyError("word_embed_proj_dim equal to hidden_size (OPT-350m's projection "
                       "is not modelled)")
    heads = config["num_attention_heads"]
    return {
        "num_layers": config["num_hidden_layers"],
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_kv_heads": heads,
        "head_dim": hidden // heads,
        "intermediate_size": config["ffn_dim"],
        "vocab_size": config["vocab_size"],
        "max_position_embeddings": config["max_position_embeddings"],
        "mlp_kind": "standard",
        "norm_kind": "layernorm",
        "linear_bias": bool(config.get("enable_bias", True)),
        "learned_position_embeddings": True,
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", True)),
    }


_HF_READERS = {
    "llama": _read_llama_like,
    "mistral": _read_llama_like,
    "mixtral": _read_llama_like,
    "qwen2": _read_llama_like,
    "gpt2": _read_gpt2,
    "opt": _read_opt,
}


@cache
def _catalog() -> dict[str, dict[str, Any]]:
    entries = json.loads(_CATALOG_PATH.read_text())["models"]
    by_name: dict[str, dict[str, Any]] = {}
    for entry in entries:
        for key in [entry["name"], *entry.get("aliases", [])]:
            by_name[key.lower()] = entry
    return by_name


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
    if path.is_file():
        try:
            config = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ClusterSimError(f"model config {path}: not valid JSON ({error})") from None
        if not isinstance(config, dict):
            raise ClusterSimError(f"model config {path}: expected a JSON object")
        return ModelSpec.from_hf_config(config, path.parent.name or path.stem)
    names = ", ".join(entry["name"] for entry in list_models())
    raise ClusterSimError(
        f"model {name_or_path!r}: not in the catalog and not a config.json path; "
        f"use one of: {names}"
    )
