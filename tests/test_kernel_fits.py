"""Kernels fitted to measured tables: the fitted GEMM and all-reduce models by hand, the
importers of Vidur's and Splitwise's layouts, and the operator group of the validation
gate (which needs the shared measured pack and skips without it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from profiles.collectives import custom_all_reduce_s, engine_all_reduce_s
from profiles.errors import ClusterSimError
from profiles.gemm import fitted_gemm_times
from profiles.hardware import GPUSpec, load_gpu
from profiles.importers import import_splitwise, import_vidur, read_splitwise
from profiles.kernel_fit import FitRecord, GemmFit, KernelFit
from profiles.profile_format import load_profile
from validation.operators import (
    compare_operators,
    default_measured_dir,
    operator_errors,
    operator_rows,
)

ROOT = Path(__file__).parent.parent
RECORD = FitRecord(data="hand-made", num_points=1, median_error_pct=0, p90_error_pct=0)
MEASURED = default_measured_dir()
needs_pack = pytest.mark.skipif(MEASURED is None, reason="no shared measured pack")


def gemm_fit(**fields: float) -> GemmFit:
    values = {"matmul": 0.5, "memory": 0.5, "small_tile": 1.0, "blend": 1.0,
              "launch_us": 10.0} | fields
    return GemmFit(**values, fitted=RECORD)


def test_a_full_wave_gemm_is_launch_plus_compute_plus_memory() -> None:
    """13,824 = 108 x 128: every tile config fills whole waves of the A100's 108 SMs, so
    with blend 1 (a sum) the time is 10 µs + 2mnk / (312 T x 0.5) + 3 x 2 m² / (2,039 G
    x 0.5)."""
    gpu = load_gpu("a100")
    m = n = k = 13824.0
    seconds, compute_bound = fitted_gemm_times(gpu, gemm_fit(), np.array([m]), np.array([n]),
                                               np.array([k]), "fp16")
    expected = 10e-6 + 2 * m * n * k / (312e12 * 0.5) + 3 * m * n * 2 / (2039e9 * 0.5)
    assert seconds[0] == pytest.approx(expected, rel=1e-12)
    assert compute_bound[0]


def test_a_skinny_gemm_runs_on_the_tiles_that_waste_least() -> None:
    """m = 144, n = k = 4096 on 108 SMs: 128-row tiles give 2 x 32 = 64 tiles of 128 rows,
    64-row tiles 3 x 32 = 96 tiles of 64 rows; both one wave, so the 64-row kernel takes
    half the time (at small_tile 1), and the library is modelled as picking it."""
    gpu = load_gpu("a100")
    fit = gemm_fit(blend=60.0, launch_us=0.0, memory=1.2)  # ~max(); memory 44 µs < compute
    seconds, _ = fitted_gemm_times(gpu, fit, np.array([144.0]), np.array([4096.0]),
                                   np.array([4096.0]), "fp16")
    per_unit = 312e12 * 0.5 / 108
    assert seconds[0] == pytest.approx(64 * 128 * 4096 * 2 / per_unit, rel=2e-2)


def with_kernels(gpu: GPUSpec, **families: object) -> GPUSpec:
    return gpu.model_copy(update={"kernels": KernelFit(**families)})


def test_the_engine_all_reduce_is_one_shot_small_two_shot_large_nccl_above_8_mib() -> None:
    gpu = load_gpu("h100")
    fit = gpu.kernels.all_reduce
    launch = gpu.kernels.stream.launch_us * 1e-6
    link = 450e9 * min(1.0, fit.bandwidth)
    lat = fit.latency_us * 1e-6
    small, mid = 128 * 2**10, 2 * 2**20
    assert custom_all_reduce_s(gpu, small, 8) == pytest.approx(
        launch + 2 * lat + 7 * small / link)
    assert custom_all_reduce_s(gpu, mid, 8) == pytest.approx(
        launch + 4 * lat + 2 * 7 / 8 * mid / link)
    assert custom_all_reduce_s(gpu, mid, 2) == pytest.approx(launch + 2 * lat + mid / link)
    assert custom_all_reduce_s(gpu, 16 * 2**20, 8) is None  # NCCL takes it
    assert custom_all_reduce_s(gpu, small, 3) is None  # groups of 2, 4, 6, 8 only
    big = engine_all_reduce_s(gpu, 16 * 2**20, 8, None, inside_node=True)  # type: ignore[arg-type]
    steps = 14
    assert big == pytest.approx(fit.launch_us * 1e-6 + steps * lat
                                + steps / 8 * 16 * 2**20 / (450e9 * fit.bandwidth))


# ---- importers -------------------------------------------------------------------------

def vidur_tree(root: Path) -> Path:
    """A two-row Vidur layout: one model's mlp.csv at TP 1 and 2, and a DGX network."""
    folder = root / "compute" / "a100" / "org" / "tiny"
    folder.mkdir(parents=True)
    ops = ["emb", "input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj",
           "post_attention_layernorm", "mlp_up_proj", "mlp_act", "mlp_down_proj", "add"]
    rows = []
    for tp in (1, 2):
        row = {f"time_stats.{op}.median": 0.010 * (i + 1) for i, op in enumerate(ops)}
        row |= {"n_head": 8, "n_kv_head": 2, "n_embd": 512, "n_expanded_embd": 1024,
                "vocab_size": 1000, "use_gated_mlp": True, "num_tokens": 64,
                "num_tensor_parallel_workers": tp}
        rows.append(row)
    pd.DataFrame(rows).to_csv(folder / "mlp.csv", index=False)
    network = root / "network" / "a100_dgx"
    network.mkdir(parents=True)
    pd.DataFrame({"time_stats.all_reduce.median": [0.02, 0.03], "rank": 0,
                  "num_workers": [2, 2], "size": [1024, 2048], "collective": "all_reduce",
                  "devices_per_node": [2, 1]}).to_csv(network / "all_reduce.csv")
    return root


def test_vidur_import_lays_gemms_out_as_the_roofline_does(tmp_path: Path) -> None:
    """Hidden 512 over 8 heads (d = 64), 2 KV heads, FFN 1024, gated: at TP 2 the QKV GEMM
    is n = (8/2 + 2 x 2/2) x 64 = 384, k = 512; the up GEMM n = 2 x 512 = 1024; times in
    seconds; the cross-node all-reduce row is left out of the node's table."""
    profile = import_vidur(vidur_tree(tmp_path / "vidur"), "a100", tmp_path / "out")
    loaded = load_profile(tmp_path / "out", expected_gpu="A100-SXM4-80GB")
    gemm = loaded.tables["gemm"]
    shapes = set(zip(gemm.n, gemm.k, strict=True))
    assert {(384, 512), (512, 256), (1024, 512), (512, 512)} <= shapes
    qkv = gemm[(gemm.n == 384) & (gemm.k == 512)]
    assert qkv["time_s"].tolist() == pytest.approx([0.030e-3])
    assert set(loaded.tables["elementwise"]["op"]) == {"rmsnorm", "rotary", "silu_mul", "add"}
    assert loaded.tables["collective"][["num_gpus", "bytes"]].values.tolist() == [[2, 1024]]
    assert profile.metadata.models == ["org/tiny"] and "Vidur" in profile.metadata.source


def test_importers_refuse_what_they_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(ClusterSimError, match="Vidur profiles a100, h100"):
        import_vidur(vidur_tree(tmp_path / "v"), "mi300x", tmp_path / "out")
    with pytest.raises(ClusterSimError, match="no compute/h100"):
        import_vidur(tmp_path / "v", "h100", tmp_path / "out")
    bad = tmp_path / "perf.csv"
    bad.write_text("model,hardware\nx,y\n")
    with pytest.raises(ClusterSimError, match="missing column"):
        import_splitwise(bad, "a100", tmp_path / "sw")


def test_splitwise_import_keeps_the_median_of_repeats(tmp_path: Path) -> None:
    csv = tmp_path / "perf.csv"
    header = ("model,hardware,prompt_size,batch_size,token_size,peak_power,average_power,"
              "prompt_time,token_time,e2e_time,tensor_parallel\n")
    rows = "".join(f"llama2-70b,a100-80gb,512,1,128,0,0,{p},{t},0,8\n"
                   for p, t in ((100, 40), (110, 42), (400, 41)))
    csv.write_text(header + rows)
    result = CliRunner().invoke(app, ["profile", "import", "splitwise", str(csv), "--gpu",
                                      "a100", "--out", str(tmp_path / "sw")])
    assert result.exit_code == 0, result.output
    profile = load_profile(tmp_path / "sw")
    assert profile.tables["step_prefill"]["time_s"].tolist() == pytest.approx([0.110])
    assert profile.tables["step_decode"]["time_s"].tolist() == pytest.approx([0.041])


def test_splitwise_rows_that_did_not_run_as_one_batch_are_left_out(tmp_path: Path) -> None:
    """A configuration whose end-to-end time is far over its prefill plus decode steps
    (queued or preempted) is not a step's measurement: it is left out and named; a row
    stopped early (end-to-end under the sum) and one without an end-to-end time stay."""
    csv = tmp_path / "perf.csv"
    header = ("model,hardware,prompt_size,batch_size,token_size,peak_power,average_power,"
              "prompt_time,token_time,e2e_time,tensor_parallel\n")
    # 100 ms + 127 x 40 ms = 5,180 ms of steps
    rows = ("llama2-70b,a100-80gb,512,1,128,0,0,100,40,5180,8\n"
            "llama2-70b,a100-80gb,512,2,128,0,0,100,40,9000,8\n"     # 1.74x: queued
            "llama2-70b,a100-80gb,512,4,128,0,0,100,40,1000,8\n"     # stopped early
            "llama2-70b,a100-80gb,512,8,128,0,0,100,40,,8\n")        # not recorded
    csv.write_text(header + rows)
    frame = read_splitwise(csv)
    assert sorted(frame["batch"]) == [1, 4, 8]
    assert frame.attrs["left_out"] == ["llama2-70b a100-80gb tp=8 batch=2 prompt=512 out=128"]
    profile = import_splitwise(csv, "a100", tmp_path / "sw")
    assert "batch=2" in profile.metadata.tables["step_decode"].note
    assert sorted(profile.tables["step_prefill"]["batch"]) == [1, 4, 8]
    result = CliRunner().invoke(app, ["profile", "import", "splitwise", str(csv), "--gpu",
                                      "a100", "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert "left out, as not one batch" in result.output and "batch=2" in result.output


@needs_pack
def test_the_shared_vidur_pack_imports_and_drives_the_profiled_model(tmp_path: Path) -> None:
    out = tmp_path / "a100"
    result = CliRunner().invoke(app, ["profile", "import", "vidur", str(MEASURED / "vidur"),
                                      "--gpu", "a100", "--out", str(out),
                                      "--attention", str(MEASURED / "vidur" / "history"
                                                         / "a100" / "attention.csv")])
    assert result.exit_code == 0, result.output
    run = CliRunner().invoke(app, [
        "simulate", "--workload", str(ROOT / "workloads" / "examples" / "chat.json"),
        "--model", "llama-3-70b", "--gpu", "a100", "--tp", "2", "--profile", str(out),
        "--out", str(tmp_path / "run")])
    assert run.exit_code == 0, run.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["run"]["cost_model"]["measured_share"] > 0.5


# ---- the operator group of the gate ---------------------------------------------------

@needs_pack
def test_the_operator_gate_passes_now_and_fails_on_a_10_percent_slower_gemm() -> None:
    baseline = json.loads((ROOT / "validation" / "baseline.json").read_text())["operators"]
    errors = operator_errors(operator_rows(MEASURED))
    assert compare_operators(errors, baseline)[0] == []

    def slower(name: str) -> GPUSpec:
        gpu = load_gpu(name)
        gemm = gpu.kernels.gemm.model_copy(update={"matmul": gpu.kernels.gemm.matmul * 0.9})
        return gpu.model_copy(update={"kernels": gpu.kernels.model_copy(update={"gemm": gemm})})

    worse = operator_errors(operator_rows(MEASURED, gpu_loader=slower))
    regressions, _ = compare_operators(worse, baseline)
    assert any(line.startswith("A100-SXM4-80GB/gemm:") for line in regressions)
    assert any(line.startswith("H100-SXM5-80GB/gemm:") for line in regressions)


@needs_pack
def test_committed_fit_records_say_what_the_validation_measures() -> None:
    """Each fitted family's in-sample error, stored beside its parameters, is the error the
    operator group reports for it now (the fits and the committed file agree)."""
    errors = operator_errors(operator_rows(MEASURED)).set_index(["gpu", "operator"])
    for name in ("A100-SXM4-80GB", "H100-SXM5-80GB"):
        kernels = load_gpu(name).kernels
        assert errors.loc[(name, "gemm"), "median_error_pct"] == pytest.approx(
            kernels.gemm.fitted.median_error_pct, abs=0.01)
        assert errors.loc[(name, "attn_decode"), "median_error_pct"] == pytest.approx(
            kernels.attention.fitted["decode"].median_error_pct, abs=0.01)
        assert errors.loc[(name, "all_reduce"), "median_error_pct"] == pytest.approx(
            kernels.all_reduce.fitted.median_error_pct, abs=0.01)


@needs_pack
def test_the_shared_splitwise_file_imports_per_gpu(tmp_path: Path) -> None:
    """Splitwise's file: Llama-2-70B (TP 2, 4, 8) and BLOOM-176B (TP 8) on each GPU; the
    power-capped H100 rows are a derived variant and stay out of the H100 profile."""
    for gpu in ("a100", "h100"):
        profile = import_splitwise(MEASURED / "splitwise_perf_model.csv", gpu, tmp_path / gpu)
        assert profile.metadata.models == ["bloom-176b", "llama2-70b"]
        prefill = load_profile(tmp_path / gpu).tables["step_prefill"]
        assert set(prefill["tp"]) == {2, 4, 8} and (prefill["time_s"] > 0).all()
    a100 = load_profile(tmp_path / "a100").tables["step_decode"]
    h100 = load_profile(tmp_path / "h100").tables["step_decode"]
    assert len(a100) == len(h100) > 0


@needs_pack
def test_the_v0_cpu_overhead_is_checked_against_vidur_s_measured_iterations() -> None:
    """Each of the 78 measured vLLM V0 iterations (A100, batch 8-256, TP 1-4) against
    the vllm-v0 preset's per-step overhead: 1 ms + 40 us per sequence, stated as an
    estimate. The hand count for batch 32: 1 + 32 x 0.04 = 2.28 ms."""
    rows = operator_rows(MEASURED)
    cpu = rows[rows["operator"] == "cpu_overhead vllm-v0"]
    assert len(cpu) == 78 and set(cpu["gpu"]) == {"A100-SXM4-80GB"}
    batch32 = cpu[cpu["shape"].str.endswith("batch=32")]
    assert batch32["predicted_s"].to_numpy() == pytest.approx(2.28e-3)
    assert (batch32["measured_s"] > 1e-3).all()
