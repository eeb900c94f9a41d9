"""Hugging Face ``config.json`` readers: one per model family, each returning the fields
of a :class:`profiles.models.ModelSpec`.

Every field that shapes a model is read or refused: the readers look their fields up
through a dictionary that records what was read, and any shape field left unread (MoE
layout, attention kind, windows, a vision tower) fails naming it, so a config whose
family is mislabelled never loads with parts of it dropped.
"""

from __future__ import annotations

from typing import Any

from profiles.errors import ClusterSimError

__all__ = ["read_hf_config", "text_config"]


def read_hf_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    """The ModelSpec fields of a parsed ``config.json`` (``where`` names it in errors).

    Raises:
        ClusterSimError: the ``model_type`` is not supported, a field is missing, or a
            shape field is one its reader does not model.
    """
    model_type = config.get("model_type")
    reader = _HF_READERS.get(str(model_type))
    if reader is None:
        supported = ", ".join(sorted(_HF_READERS))
        raise ClusterSimError(
            f"{where}: field 'model_type' is {model_type!r}; supported: {supported}")
    for scope in (config, config.get("text_config")):
        for key in _POSITIVE_KEYS:
            value = scope.get(key) if isinstance(scope, dict) else None
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 < value < 2**31):
                raise ClusterSimError(f"{where}: field '{key}' must be a positive integer "
                                      f"below 2^31, got {str(value)[:40]!r}")
    tracked = _Tracked(config)
    try:
        fields = reader(tracked)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as error:
        raise ClusterSimError(f"{where}: a field has a value of the wrong kind ({error}); "
                              "compare it with the model's published config.json") from None
    except KeyError as missing:
        raise ClusterSimError(
            f"{where}: missing field {missing}; a Hugging Face config.json of a "
            f"{model_type} model has it") from None
    except _Unsupported as error:
        raise ClusterSimError(f"{where}: {error}") from None
    unread = [f"{key}={value!r}" for key in _SHAPE_KEYS
              if (value := tracked.unread(key)) not in (None, False, 0, [], {})]
    if unread:
        raise ClusterSimError(
            f"{where}: {', '.join(unread)} not read for model_type {model_type!r}, so "
            f"the model would load without them; fix the model_type (e.g. qwen3_moe, "
            f"deepseek_v3, llama4) or remove the fields")
    return fields


class _Unsupported(Exception):
    """A config field holds a value the model spec cannot represent."""


class _Tracked(dict[str, Any]):
    """A config dictionary that remembers which keys a reader looked at (nested
    ``text_config`` included), so the fields nobody read can be refused."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.read: set[str] = set()
        nested = data.get("text_config")
        self.text: _Tracked | None = _Tracked(nested) if isinstance(nested, dict) else None

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def unread(self, key: str) -> Any:
        """The value of ``key`` if present and never read, here or in text_config."""
        if key in self and key not in self.read:
            return dict.get(self, key)
        return self.text.unread(key) if self.text is not None else None


# Fields that change a model's shape: a reader reads each one its family has, and any
# other present with a value is refused rather than silently dropped.
# Fields that, when a config has them, must be positive integers (a string "5", zero
# heads or 2^63 layers would reach the arithmetic of the spec).
_POSITIVE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "intermediate_size", "vocab_size",
                  "max_position_embeddings", "head_dim", "moe_intermediate_size",
                  "num_local_experts", "num_experts", "n_routed_experts", "num_experts_per_tok")

_SHAPE_KEYS = (
    "num_local_experts", "num_experts", "n_routed_experts", "num_experts_per_tok",
    "moe_intermediate_size", "n_shared_experts", "shared_expert_intermediate_size",
    "first_k_dense_replace", "moe_layer_freq", "decoder_sparse_step", "mlp_only_layers",
    "interleave_moe_layer_step", "intermediate_size_mlp", "kv_lora_rank", "q_lora_rank",
    "qk_rope_head_dim", "v_head_dim", "sliding_window", "sliding_window_pattern",
    "layer_types", "attention_chunk_size", "use_sliding_window", "vision_config",
)


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's part of a (possibly multimodal) config."""
    nested = config.get("text_config")
    if isinstance(config, _Tracked) and config.text is not None:
        return config.text
    return nested if isinstance(nested, dict) else config


def _common(config: dict[str, Any]) -> dict[str, Any]:
    heads = config["num_attention_heads"]
    hidden = config["hidden_size"]
    return {
        "num_layers": config["num_hidden_layers"],
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_kv_heads": config.get("num_key_value_heads") or heads,
        "head_dim": config.get("head_dim") or hidden // heads,
        "intermediate_size": config["intermediate_size"],
        "vocab_size": config["vocab_size"],
        "max_position_embeddings": config["max_position_embeddings"],
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", False)),
        "attention_dropout": float(config.get("attention_dropout") or 0.0),
    }


def _read_llama_like(config: dict[str, Any]) -> dict[str, Any]:
    """Llama, Mistral, Mixtral, Qwen2, Qwen2-MoE, Qwen3 and Qwen3-MoE."""
    model_type = config.get("model_type")
    fields = _common(config)
    fields["qkv_bias"] = model_type in ("qwen2", "qwen2_moe") or bool(
        config.get("attention_bias"))
    if model_type in ("qwen3", "qwen3_moe"):
        fields["qk_norm"] = True
    if model_type == "mixtral":
        fields["num_experts"] = config["num_local_experts"]
        fields["num_experts_per_token"] = config["num_experts_per_tok"]
    if model_type in ("qwen2_moe", "qwen3_moe"):
        fields["num_experts"] = config["num_experts"]
        fields["num_experts_per_token"] = config["num_experts_per_tok"]
        fields["expert_intermediate_size"] = config["moe_intermediate_size"]
        fields["moe_layer_step"] = config.get("decoder_sparse_step") or 1
        if config.get("mlp_only_layers"):
            raise _Unsupported("field 'mlp_only_layers': dense layers at chosen indices "
                               "are not modelled; only every decoder_sparse_step-th layer")
        if model_type == "qwen2_moe":
            fields["shared_expert_intermediate_size"] = config[
                "shared_expert_intermediate_size"]
    if model_type in ("mistral", "mixtral") and config.get("sliding_window"):
        fields["sliding_window"] = config["sliding_window"]
    if model_type in ("qwen2", "qwen3", "qwen2_moe", "qwen3_moe"):
        config.get("sliding_window")  # only used with use_sliding_window
        config.get("max_window_layers")
        if config.get("use_sliding_window"):
            raise _Unsupported("field 'use_sliding_window': Qwen's bottom-layer sliding "
                               "window is not modelled")
    return fields


def _read_deepseek(config: dict[str, Any]) -> dict[str, Any]:
    """DeepSeek-V2 and V3: MLA attention, shared plus routed experts, first k dense."""
    fields = _common(config)
    nope, rope = config["qk_nope_head_dim"], config["qk_rope_head_dim"]
    fields |= {
        "attention_kind": "mla", "head_dim": nope + rope, "qk_rope_head_dim": rope,
        "v_head_dim": config["v_head_dim"], "kv_lora_rank": config["kv_lora_rank"],
        "q_lora_rank": config.get("q_lora_rank") or 0,
        "num_kv_heads": fields["num_attention_heads"],
    }
    experts = config.get("n_routed_experts") or 0
    if experts:
        if (config.get("moe_layer_freq") or 1) != 1:
            raise _Unsupported("field 'moe_layer_freq': only 1 (every layer after the "
                               "first_k_dense_replace) is modelled")
        width = config["moe_intermediate_size"]
        fields |= {
            "num_experts": experts, "num_experts_per_token": config["num_experts_per_tok"],
            "expert_intermediate_size": width,
            "shared_expert_intermediate_size": (config.get("n_shared_experts") or 0) * width,
            "first_dense_layers": config.get("first_k_dense_replace") or 0,
        }
    return fields


def _vit_params(vision: dict[str, Any], cls_token: bool, patch_bias: bool) -> int:
    """A ViT tower: pre-norm blocks with biased attention and a 2-matrix MLP, patch and
    position embeddings, a final LayerNorm."""
    h, f = vision["hidden_size"], vision["intermediate_size"]
    patch, image = vision["patch_size"], vision["image_size"]
    block = 4 * h * h + 4 * h + 2 * h * f + f + h + 4 * h
    positions = (image // patch) ** 2 + (1 if cls_token else 0)
    embed = vision.get("num_channels", 3) * patch * patch * h + (h if patch_bias else 0)
    return int(vision["num_hidden_layers"] * block + embed + positions * h
               + (h if cls_token else 0) + 2 * h)


def _read_llama4(config: dict[str, Any]) -> dict[str, Any]:
    """Llama 4 (Scout, Maverick): routed top-k experts plus one shared expert on every
    interleave step-th layer, dense layers of intermediate_size_mlp elsewhere; chunked
    local attention on 3 of 4 layers (priced as a sliding window of the chunk), the
    vision tower's weights held."""
    text = text_config(config)
    fields = _common(text)
    width = text["intermediate_size"]
    fields |= {
        "intermediate_size": text.get("intermediate_size_mlp") or width,
        "num_experts": text["num_local_experts"],
        "num_experts_per_token": text["num_experts_per_tok"],
        "expert_intermediate_size": width, "shared_expert_intermediate_size": width,
        "moe_layer_step": text.get("interleave_moe_layer_step") or 1,
    }
    text.get("moe_layers")
    if text.get("attention_chunk_size"):
        fields["sliding_window"] = text["attention_chunk_size"]
        fields["global_layer_step"] = text.get("no_rope_layer_interval") or 4
    if text.get("sliding_window"):
        raise _Unsupported("field 'sliding_window': Llama 4 uses attention_chunk_size")
    vision = config.get("vision_config")
    if isinstance(vision, dict):
        h = vision["hidden_size"]
        shuffled = int(h / vision.get("pixel_shuffle_ratio", 0.5) ** 2)
        inner = vision["projector_input_dim"]
        adapter = shuffled * inner + inner * vision["projector_output_dim"]
        projector = vision["vision_output_dim"] * fields["hidden_size"]
        fields["vision_params"] = (_vit_params(vision, cls_token=True, patch_bias=False)
                                   + 2 * h + adapter + projector)  # + the pre-norm
    return fields


def _read_gemma3(config: dict[str, Any]) -> dict[str, Any]:
    """Gemma 3: GeGLU MLP, four norms and a q/k norm per layer, tied embeddings, local
    sliding-window layers with a global one every sliding_window_pattern layers, a SigLIP
    vision tower on the multimodal sizes."""
    text = text_config(config)
    fields = _common(text)
    fields |= {
        "tie_word_embeddings": bool(text.get("tie_word_embeddings", True)),
        "qk_norm": True, "norms_per_layer": 4, "head_dim": text["head_dim"],
        "sliding_window": text["sliding_window"],
    }
    text.get("query_pre_attn_scalar")
    layer_types = text.get("layer_types")
    if layer_types:
        globals_at = [i for i, kind in enumerate(layer_types) if kind == "full_attention"]
        step = globals_at[0] + 1 if globals_at else 0
        if globals_at != list(range(step - 1, len(layer_types), step)):
            raise _Unsupported("field 'layer_types': only a global layer every n layers "
                               "is modelled")
        fields["global_layer_step"] = step
    else:
        fields["global_layer_step"] = text.get("sliding_window_pattern") or 6
    vision = config.get("vision_config")
    if isinstance(vision, dict):
        h = vision["hidden_size"]
        fields["vision_params"] = (_vit_params(vision, cls_token=False, patch_bias=True)
                                   + h * fields["hidden_size"] + h)  # projector and norm
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
        # GPT2Config's defaults where the file leaves them out
        "hidden_dropout": float(config.get("resid_pdrop", 0.1)),
        "attention_dropout": float(config.get("attn_pdrop", 0.1)),
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
        # OPTConfig's defaults where the file leaves them out
        "hidden_dropout": float(config.get("dropout", 0.1)),
        "attention_dropout": float(config.get("attention_dropout", 0.0)),
    }


_HF_READERS = {
    "llama": _read_llama_like,
    "mistral": _read_llama_like,
    "mixtral": _read_llama_like,
    "qwen2": _read_llama_like,
    "qwen2_moe": _read_llama_like,
    "qwen3": _read_llama_like,
    "qwen3_moe": _read_llama_like,
    "deepseek_v2": _read_deepseek,
    "deepseek_v3": _read_deepseek,
    "llama4": _read_llama4,
    "llama4_text": _read_llama4,
    "gemma3": _read_gemma3,
    "gemma3_text": _read_gemma3,
    "gpt2": _read_gpt2,
    "opt": _read_opt,
}
