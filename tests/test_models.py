"""Model specs: catalog parameter counts against published figures, HF config loading."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from profiles.errors import ClusterSimError
from profiles.models import ModelSpec, list_models, load_model


@pytest.mark.parametrize("entry", list_models(), ids=lambda e: e["name"])
def test_catalog_parameter_counts_within_one_percent_of_published(entry: dict) -> None:
    """Derived total (and, for MoE, active) parameters match the published figures."""
    spec = load_model(entry["name"])
    assert spec.num_params / 1e9 == pytest.approx(entry["published_params_b"], rel=0.01)
    if "published_active_params_b" in entry:
        assert spec.num_active_params / 1e9 == pytest.approx(
            entry["published_active_params_b"], rel=0.01)


def test_catalog_has_the_required_models() -> None:
    names = {entry["name"] for entry in list_models()}
    assert {"llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "llama-3-70b",
            "llama-3.1-405b", "mistral-7b", "mixtral-8x7b", "qwen2.5-72b",
            "gpt-3-175b"} <= names


def test_llama3_8b_hand_computed_figures() -> None:
    """Llama-3-8B: 8.03 B params; KV = 2·32 layers·8 heads·128·2 B = 128 KiB per token."""
    spec = load_model("LLAMA-3-8B")  # names are case-insensitive
    assert spec.num_params == 8_030_261_248
    assert spec.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2
    # FLOPs per token without context: 2 x (params - embedding table - final norm).
    assert spec.flops_per_token(0) == 2 * (spec.num_params - 128256 * 4096 - 4096)
    # Attention adds 4 · layers · q_size per context token.
    assert spec.flops_per_token(1000) - spec.flops_per_token(0) == 4 * 32 * 4096 * 1000


def test_gqa_shrinks_kv_but_not_attention_flops() -> None:
    mha = load_model("llama-2-7b")
    assert mha.kv_bytes_per_token == 2 * 32 * 4096 * 2
    gqa = load_model("mistral-7b")
    assert gqa.kv_bytes_per_token == mha.kv_bytes_per_token // 4


def test_mixtral_active_parameters_count_two_experts() -> None:
    spec = load_model("mixtral-8x7b")
    assert spec.is_moe and spec.num_experts == 8 and spec.num_experts_per_token == 2
    expert = 3 * 4096 * 14336
    assert spec.num_params - spec.num_active_params == 32 * 6 * expert


def test_loads_hf_config_from_path(tmp_path) -> None:
    config = {"model_type": "qwen2", "hidden_size": 1024, "num_hidden_layers": 2,
              "num_attention_heads": 16, "num_key_value_heads": 2, "intermediate_size": 2048,
              "vocab_size": 5000, "max_position_embeddings": 2048, "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    spec = load_model(str(tmp_path))
    assert spec.qkv_bias and spec.tie_word_embeddings and spec.lm_head_params == 0
    assert isinstance(spec, ModelSpec)


def test_unknown_model_type_names_the_field(tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "mamba", "hidden_size": 8}))
    with pytest.raises(ClusterSimError, match="model_type.*'mamba'.*supported"):
        load_model(str(path))


def test_missing_field_is_named(tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    with pytest.raises(ClusterSimError, match="missing field 'num_attention_heads'"):
        load_model(str(path))


def test_unknown_name_lists_the_catalog() -> None:
    with pytest.raises(ClusterSimError, match="not in the catalog.*llama-3-8b"):
        load_model("llama-9")


# ---- MoE layouts and attention kinds ---------------------------------------------------

def _catalog_config(name: str) -> dict:
    return next(e for e in list_models() if e["name"] == name)["config"]


def test_qwen3_moe_relabelled_as_mixtral_is_refused_not_miscounted() -> None:
    """A Qwen3-MoE config with model_type mixtral would count 128 experts of the dense
    width (233 B parameters): its moe_intermediate_size is named and refused instead."""
    config = dict(_catalog_config("qwen3-30b-a3b"), model_type="mixtral",
                  num_local_experts=128)
    with pytest.raises(ClusterSimError, match="moe_intermediate_size"):
        ModelSpec.from_hf_config(config, "relabelled")
    assert load_model("qwen3-30b-a3b").num_params / 1e9 == pytest.approx(30.5, rel=0.01)


def test_deepseek_layout_first_dense_then_moe_with_shared_experts() -> None:
    """DeepSeek-V2-Lite by hand: 1 dense layer, 26 MoE layers of 64 routed experts of
    width 1408 plus 2 shared ones; MLA caches a 512 latent + a 64 rope key per token."""
    spec = load_model("deepseek-v2-lite")
    h = 2048
    expert = 3 * h * 1408
    assert (spec.num_dense_layers, spec.num_moe_layers) == (1, 26)
    assert not spec.is_moe_layer(0) and spec.is_moe_layer(1)
    assert spec.moe_layer_params == 64 * expert + 2 * expert + h * 64
    assert spec.active_moe_layer_params == (6 + 2) * expert + h * 64
    # q (no LoRA) 2048 x 16·192, kv down 2048 x 576, kv up 512 x 16·256, o 16·128 x 2048,
    # the latent's norm.
    assert spec.attention_params_per_layer == (h * 16 * 192 + h * 576 + 512 * 16 * 256
                                               + 16 * 128 * h + 512)
    assert spec.kv_bytes_per_token_layer() == (512 + 64) * 2
    assert spec.kv_bytes_per_token_layer(tp=8) == (512 + 64) * 2  # the latent is not split
    assert spec.kv_bytes_per_token == 27 * 576 * 2


def test_llama4_maverick_interleaves_moe_and_dense_layers() -> None:
    spec = load_model("llama-4-maverick")
    assert spec.num_moe_layers == spec.num_dense_layers == 24
    assert [spec.is_moe_layer(i) for i in range(4)] == [False, True, False, True]
    assert spec.shared_expert_intermediate_size == spec.expert_width == 8192
    assert spec.intermediate_size == 16384  # the dense layers' MLP
    assert spec.num_local_layers == 36  # chunked attention on 3 of every 4 layers


def test_gemma3_sliding_window_layers_and_their_kv() -> None:
    """Gemma 3 1B: 26 layers, a global one every 6th (4 global, 22 local of window 512);
    a 4096-token context keeps 4096 tokens in the global layers, 512 in the local ones."""
    spec = load_model("gemma-3-1b")
    assert (spec.num_global_layers, spec.num_local_layers) == (4, 22)
    per_layer = 2 * 1 * 256 * 2
    assert spec.kv_bytes(4096) == per_layer * (4 * 4096 + 22 * 512)
    assert spec.kv_bytes(100) == per_layer * 26 * 100
    assert spec.qk_norm and spec.norms_per_layer == 4 and spec.tie_word_embeddings


@pytest.mark.parametrize("field,value", [("mlp_only_layers", [3]),
                                         ("use_sliding_window", True)])
def test_unmodelled_layouts_are_refused_by_name(field: str, value: object) -> None:
    config = dict(_catalog_config("qwen3-30b-a3b"), **{field: value})
    with pytest.raises(ClusterSimError, match=field):
        ModelSpec.from_hf_config(config, "odd")


def test_moe_spec_invariants() -> None:
    base = load_model("mixtral-8x7b").model_dump()
    with pytest.raises(ValidationError, match="num_experts_per_token"):
        ModelSpec(**(base | {"num_experts_per_token": 9}))
    with pytest.raises(ValidationError, match="kv_lora_rank"):
        ModelSpec(**(base | {"attention_kind": "mla"}))
