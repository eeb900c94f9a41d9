"""Training memory: ZeRO model states and Korthikanti activation formulas, by hand."""

from __future__ import annotations

import pytest

from profiles.models import ModelSpec, load_model
from profiles.training_memory import activation_bytes_per_layer, model_state_bytes

GPT = ModelSpec(name="gpt-test", num_layers=4, hidden_size=6144, num_attention_heads=64,
                num_kv_heads=64, head_dim=96, intermediate_size=4 * 6144, vocab_size=51200,
                max_position_embeddings=2048, mlp_kind="standard", norm_kind="layernorm",
                linear_bias=True, learned_position_embeddings=True, hidden_dropout=0.1,
                attention_dropout=0.1)


@pytest.mark.parametrize("stage, expected", [
    (0, (2, 2, 12)), (1, (2, 2, 12 / 64)), (2, (2, 2 / 64, 12 / 64)),
    (3, (2 / 64, 2 / 64, 12 / 64)),
])
def test_zero_model_states_follow_the_paper(stage: int, expected: tuple) -> None:
    """Mixed-precision Adam, K = 12, N = 64: bytes per parameter per GPU."""
    psi = 7.5e9
    got = model_state_bytes(psi, stage, dp=64)
    assert got == pytest.approx(tuple(psi * e for e in expected))
    assert sum(model_state_bytes(psi, 0, 64)) == 16 * psi


S, B, H, A, T = 2048, 4, 6144, 64, 8


@pytest.mark.parametrize("tp, sp, recompute, formula", [
    (1, False, "none", S * B * H * (34 + 5 * A * S / H)),
    (T, False, "none", S * B * H * (10 + 24 / T + 5 * A * S / (H * T))),
    (T, True, "none", S * B * H / T * (34 + 5 * A * S / H)),
    (T, True, "selective", S * B * H * 34 / T),
    (T, False, "selective", S * B * H * (10 + 24 / T)),
    (T, False, "full", 2 * S * B * H),
    (T, True, "full", 2 * S * B * H / T),
])
def test_activation_memory_equals_korthikanti(tp: int, sp: bool, recompute: str,
                                              formula: float) -> None:
    """Korthikanti et al. 2023, Table 2, for a GPT layer (22B shape)."""
    assert activation_bytes_per_layer(GPT, S, B, tp, sp, recompute) == pytest.approx(formula)


def test_gqa_and_gated_mlp_change_the_sharded_terms() -> None:
    """Llama trains without dropout: 8h replicated (no masks), not Korthikanti's 10h."""
    llama = load_model("llama-3-70b")
    one = activation_bytes_per_layer(llama, 4096, 1, 8, True, "selective")
    h, q, kv, f = 8192, 8192, 1024, 28672
    assert one == pytest.approx(4096 * (8 * h + 4 * q + 4 * kv + 6 * f) / 8)


def test_dropout_masks_are_kept_only_where_the_model_drops_out() -> None:
    """The same GPT layer without dropout keeps neither hidden mask (1 byte each per
    token, replicated) nor, unfused, the attention dropout's mask and output per score:
    2h per token and 3·a·s² per sequence less."""
    plain = GPT.model_copy(update={"hidden_dropout": 0.0, "attention_dropout": 0.0})
    with_masks = activation_bytes_per_layer(GPT, S, B, 1, False, "none")
    without = activation_bytes_per_layer(plain, S, B, 1, False, "none")
    assert with_masks - without == pytest.approx(S * B * (2 * H + 3 * A * S))
    assert load_model("gpt-3-175b").hidden_dropout == pytest.approx(0.1)
    assert load_model("llama-3-70b").hidden_dropout == 0.0
