"""Model specs: catalog parameter counts against published figures, HF config loading."""

from __future__ import annotations

import json

import pytest

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
