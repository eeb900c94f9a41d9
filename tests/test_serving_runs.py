"""The serving group: real vLLM runs replayed as their client sent them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from validation.operators import compare_operators, default_measured_dir
from validation.serving_runs import (
    compare_serving_runs,
    measured_means,
    measured_state,
    model_family,
    overload_states,
    run_errors,
    serving_errors,
    serving_group_table,
    serving_groups,
    serving_rows,
    skipped_runs,
)

COLUMNS = ["run_id", "model", "hardware", "tp", "dp", "cpu_kv_offload", "workload_label",
           "system_prompt_len", "question_len", "output_len", "num_unique_system_prompts",
           "num_users_per_system_prompt", "max_num_batched_tokens", "max_num_seqs",
           "gpu_memory_utilization", "total_kv_blocks", "block_size_tokens", "stage_index",
           "stage_rate_rps", "stage_duration_s", "e2e_mean_ms", "ttft_mean_ms", "ttft_p90_ms",
           "tpot_mean_ms"]


def pack(tmp_path: Path) -> Path:
    """Two runs: one the catalog expresses (two stages and the whole run), one it does not."""
    common = {"hardware": "H100", "tp": 1, "dp": None, "cpu_kv_offload": False,
              "workload_label": "tiny", "system_prompt_len": 32, "question_len": 64,
              "output_len": 9, "num_unique_system_prompts": 2, "num_users_per_system_prompt": 2,
              "max_num_batched_tokens": 2048, "max_num_seqs": 128,
              "gpu_memory_utilization": 0.9, "total_kv_blocks": None, "block_size_tokens": 16,
              "e2e_mean_ms": 100.0, "ttft_mean_ms": 20.0, "ttft_p90_ms": 25.0,
              "tpot_mean_ms": 11.0}
    rows = [common | {"run_id": 1, "model": "meta-llama/Llama-3.1-8B-Instruct",
                      "stage_index": stage, "stage_rate_rps": rate, "stage_duration_s": length}
            for stage, rate, length in ((0, 1.0, 5.0), (1, 2.0, 5.0), (-1, None, 10.0))]
    rows.append(common | {"run_id": 2, "model": "nobody/Unknown-7B", "stage_index": -1,
                          "stage_rate_rps": 1.0, "stage_duration_s": 5.0})
    pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp_path / "vllm_runs.csv", index=False)
    return tmp_path


def test_runs_are_replayed_per_stage_with_the_per_token_tpot(tmp_path: Path) -> None:
    """Stage 0 holds the 5 requests sent in its 5 s, stage 1 the 10 of the next 5 s; TPOT
    is (E2E mean - TTFT mean) / (9 - 1) per token the server generated, on both sides:
    the source's 11 ms divided the same 80 ms by the 8.27 tokens its client counted; the
    unknown model is listed with its reason."""
    rows = serving_rows(pack(tmp_path)).set_index(["stage", "metric"])
    for stage in (0, 1, -1):
        e2e = rows.loc[(stage, "e2e_mean"), "predicted_ms"]
        ttft = rows.loc[(stage, "ttft_mean"), "predicted_ms"]
        assert rows.loc[(stage, "tpot_mean"), "predicted_ms"] == pytest.approx((e2e - ttft) / 8)
        assert 0 < ttft < e2e
        tpot = rows.loc[(stage, "tpot_mean")]
        assert tpot["measured_ms"] == pytest.approx((100.0 - 20.0) / 8)
        assert tpot["source_tpot_ms"] == 11.0
        assert tpot["client_tokens"] == pytest.approx(1 + 80.0 / 11.0)
    skipped = skipped_runs(tmp_path)
    assert skipped["run_id"].tolist() == [2]
    assert "not in the catalog" in skipped["reason"].iloc[0]


def test_a_serving_group_one_point_worse_fails_the_gate(tmp_path: Path) -> None:
    errors = serving_errors(serving_rows(pack(tmp_path)))
    baseline = {f"{r.gpu}/{r.operator}": {"median": r.median_error_pct, "p90": r.p90_error_pct}
                for r in errors.itertuples()}
    assert compare_operators(errors, baseline)[0] == []
    worse = errors.copy()
    worse.loc[worse["operator"] == "serving e2e_mean", "median_error_pct"] += 1.5
    regressions, _ = compare_operators(worse, baseline)
    assert regressions == [f"H100-SXM5-80GB/serving e2e_mean: median error "
                           f"{errors.iloc[0].median_error_pct:.2f}% -> "
                           f"{errors.iloc[0].median_error_pct + 1.5:.2f}% "
                           "(more than 1 point worse)"]


def test_runs_group_by_gpu_model_family_and_tp() -> None:
    """Llama-3.1 8B and 70B are one family; TP 1 and 4 are two groups; the p90 of two runs'
    errors 2% and 12% is 11% (linear interpolation), the signed median of -2% and +12% 5%."""
    assert [model_family(m) for m in ("meta-llama/Llama-3.1-8B-Instruct",
                                      "meta-llama/Llama-3.1-70B-Instruct",
                                      "mistralai/Mixtral-8x22B-v0.1",
                                      "RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic")] \
        == ["llama-3.1", "llama-3.1", "mixtral", "llama-4-scout"]
    rows = pd.DataFrame({
        "run_id": [1, 2, 3, 4], "stage": [-1, -1, -1, 0], "metric": "e2e_mean", "gpu": "H100",
        "model": ["meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B-Instruct",
                  "meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Llama-3.1-70B-Instruct"],
        "tp": [1, 4, 4, 4], "measured_ms": [100.0, 100.0, 100.0, 100.0],
        "predicted_ms": [95.0, 98.0, 112.0, 50.0], "error_pct": [5.0, 2.0, 12.0, 50.0]})
    groups = serving_groups(rows).set_index("tp")
    assert groups.loc[1, "runs"] == 1 and groups.loc[1, "median_error_pct"] == 5.0
    assert groups.loc[4, "runs"] == 2  # the stage row is not a whole run
    assert groups.loc[4, "p90_error_pct"] == pytest.approx(11.0)
    assert groups.loc[4, "signed_median_pct"] == pytest.approx(5.0)
    assert set(groups["family"]) == {"llama-3.1"}
    assert serving_group_table(serving_groups(rows))[1] == [
        "H100-SXM5-80GB", "llama-3.1", "4", "2", "7.0% (11.0%) [+5.0%]", "-", "-"]


def test_a_measured_run_is_overloaded_when_a_stage_s_ttft_p90_passes_10_s() -> None:
    stages = pd.DataFrame({"stage_index": [0, 1, -1], "ttft_p90_ms": [80.0, 9_000.0, 12_000.0]})
    assert measured_state(stages) == "STABLE"  # the whole-run row (-1) is not a stage
    stages.loc[1, "ttft_p90_ms"] = 10_500.0
    assert measured_state(stages) == "OVERLOADED"


def test_an_overload_the_real_server_did_not_have_fails_the_gate(tmp_path: Path) -> None:
    """At 1-2 req/s the replay is STABLE: against a measured stable run the gate holds;
    against the same run measured overloaded (TTFT p90 20 s), it fails with the run named."""
    stable = serving_rows(pack(tmp_path))
    states = overload_states(stable)
    assert states[["run_id", "measured_state", "predicted_state"]].values.tolist() == [
        [1, "STABLE", "STABLE"]]
    assert compare_serving_runs(stable, run_errors(stable))[0] == []
    overloaded = stable.assign(measured_state="OVERLOADED")
    regressions, _ = compare_serving_runs(overloaded, run_errors(overloaded))
    assert regressions == ["run 1 (meta-llama/Llama-3.1-8B-Instruct, H100): predicted STABLE, "
                           "measured OVERLOADED (overloaded: a stage's TTFT p90 above 10 s)"]


@pytest.mark.skipif(default_measured_dir() is None, reason="no shared measured pack")
def test_the_pack_s_catalog_runs_are_all_replayed() -> None:
    """Every run of the pack is either replayed (its three metrics on each stage and the
    whole run) or listed with the reason it is not."""
    measured = default_measured_dir()
    rows, skipped = serving_rows(measured), skipped_runs(measured)
    runs = pd.read_csv(measured / "vllm_runs.csv")
    assert set(rows["run_id"]) | set(skipped["run_id"]) == set(runs["run_id"])
    assert len(rows) == 3 * len(runs[runs["run_id"].isin(rows["run_id"])])
    # no run the real server sustained is predicted overloaded, nor the other way round
    assert (overload_states(rows)["measured_state"]
            == overload_states(rows)["predicted_state"]).all()


@pytest.mark.skipif(default_measured_dir() is None, reason="no shared measured pack")
def test_the_pack_s_clients_counted_fewer_tokens_than_their_servers_generated() -> None:
    """What the serving group's per-token TPOT rests on (validation/serving_runs.py): the
    counts the records' means imply are 4.0-4.4% short of ``output_len`` for
    Llama-3.1-8B-Instruct, within 2% for every other run, and never more than 1% over."""
    measured = default_measured_dir()
    assert measured is not None
    runs = pd.read_csv(measured / "vllm_runs.csv")
    short = {}
    for row in runs.itertuples():
        counted = measured_means(row, int(row.output_len))["client_tokens"]
        short[(row.run_id, row.stage_index)] = (str(row.model), 1 - counted / row.output_len)
    llama = [s for model, s in short.values() if model == "meta-llama/Llama-3.1-8B-Instruct"]
    others = [s for model, s in short.values() if model != "meta-llama/Llama-3.1-8B-Instruct"]
    assert llama and all(0.040 <= s <= 0.044 for s in llama)
    assert others and all(-0.01 <= s <= 0.02 for s in others)
