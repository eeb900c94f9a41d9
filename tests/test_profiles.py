"""Kernel profiles: format and loader, interpolation, the profiled cost model, the profiler."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli import app
from profiles.cluster import LinkCost
from profiles.cost_model import BatchShape
from profiles.errors import ClusterSimError
from profiles.gemm import gemm_time_s
from profiles.hardware import load_gpu
from profiles.interpolate import Curve, build_curves, leave_one_out_errors
from profiles.models import load_model
from profiles.profile_format import ProfileMetadata, TableInfo, load_profile, write_profile
from profiles.profiled import ProfiledCostModel
from profiles.roofline import RooflineCostModel
from simulator.serving.engine import simulate
from tests.conftest import make_deployment, make_trace

NONE = LinkCost(bandwidth_bytes_per_s=float("inf"), latency_s=0.0)
TOKENS = [2**i for i in range(14)]  # 1 .. 8192
EXAMPLES = Path(__file__).parent.parent / "workloads" / "examples"


def metadata(tables: dict[str, str], gpu: str = "H100-SXM5-80GB") -> ProfileMetadata:
    return ProfileMetadata(
        gpu=gpu, device_name=f"{gpu} (synthetic)", num_gpus=1, interconnect="none", driver="n/a",
        runtime="n/a", torch="n/a", dtype="bf16", date="2026-11-23", command="test",
        repetitions=1, warmup=0,
        tables={op: TableInfo(file=f"{op}.csv", status=status) for op, status in
                tables.items()})


def derived_gemm_profile(folder: Path) -> Path:
    """GEMM rows for Llama-3-8B at TP 1, timed by the roofline itself ('derived')."""
    gpu = load_gpu("h100")
    shapes = [(4096 + 2 * 1024, 4096), (4096, 4096), (2 * 14336, 4096), (4096, 14336)]
    rows = [{"m": m, "n": n, "k": k, "time_s": gemm_time_s(gpu, m, n, k)}
            for n, k in shapes for m in TOKENS]
    write_profile(folder, metadata({"gemm": "derived"}), {"gemm": pd.DataFrame(rows)})
    return folder


def test_curve_is_exact_at_points_monotone_between_and_silent_outside() -> None:
    curve = Curve([1, 4, 16, 64], [1e-5, 1.5e-5, 6e-5, 3e-4])
    assert [curve(x) for x in (1, 4, 16, 64)] == [1e-5, 1.5e-5, 6e-5, 3e-4]
    dense = [curve(x) for x in np.linspace(1, 64, 500)]
    assert all(b >= a for a, b in itertools.pairwise(dense))
    assert curve(0.5) is None and curve(65) is None


def test_leave_one_out_error_on_a_smooth_table_is_below_two_percent() -> None:
    """A launch-bound-then-linear kernel, t = 8 µs + m x 2 ns, measured at powers of 2."""
    sizes = [2**i for i in range(15)]
    curves = build_curves(["k"] * len(sizes), sizes, [8e-6 + 2e-9 * m for m in sizes])
    errors = leave_one_out_errors(curves)
    assert len(errors) == 13 and max(errors) < 0.02


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 1 << 20), st.floats(1e-7, 1.0)), min_size=1,
                max_size=40))
def test_leave_one_out_equals_rebuilding_the_family_without_the_point(
        points: list[tuple[int, float]]) -> None:
    """The check predicts each point from the two on each side of it; that is the whole
    family without the point, float for float, whatever the table's shape (noisy,
    non-monotone, repeated sizes, two points)."""
    curve = Curve([size for size, _ in points], [time_s for _, time_s in points])
    expected = []
    for i in range(1, len(curve.sizes) - 1):
        rest = Curve(curve.sizes[:i] + curve.sizes[i + 1:], curve.times[:i] + curve.times[i + 1:])
        predicted = rest(curve.sizes[i])
        assert predicted is not None
        expected.append(abs(predicted - curve.times[i]) / curve.times[i])
    assert leave_one_out_errors({"family": curve}) == expected


def test_profiled_model_matches_tables_and_counts_fallbacks(tmp_path: Path) -> None:
    profile = load_profile(derived_gemm_profile(tmp_path / "p"), expected_gpu="H100-SXM5-80GB")
    roofline = RooflineCostModel(load_model("llama-3-8b"), load_gpu("h100"), 1, 1, NONE, NONE)
    model = ProfiledCostModel(profile, roofline)
    batch = BatchShape([1] * 64, [500] * 64, num_sampled=64)  # 64 tokens: a grid point
    # At a grid point the GEMMs cost exactly their table rows; everything else is the
    # roofline's.
    gemm = profile.tables["gemm"]
    table_gemms = float(gemm[gemm.m == 64]["time_s"].sum())  # the four shapes' rows
    ops = roofline.predict(batch).operator_s
    roofline_gemms = ops["qkv_proj"] + ops["o_proj"] + ops["mlp"]
    expected = roofline.predict(batch).total_s - roofline_gemms + 32 * table_gemms
    assert model.predict(batch).total_s == pytest.approx(expected, rel=1e-12)
    measured_after_one = model.measured_s
    assert measured_after_one > 0 and model.fallback_s > 0  # attention etc. fall back
    model.predict(BatchShape([20000], [0], num_sampled=1))  # beyond the grid: falls back
    assert model.measured_s == measured_after_one and model.num_fallbacks == 2
    assert model.measured_share < 1


def test_simulation_reports_the_measured_share(tmp_path: Path) -> None:
    folder = derived_gemm_profile(tmp_path / "p")
    deployment = make_deployment("llama-3-8b", "h100", profile=str(folder))
    result = simulate(deployment, make_trace([0.0, 0.1], [300, 300], [20, 20]))
    cost = result.summary["run"]["cost_model"]
    assert cost["kind"] == "profiled" and 0.3 < cost["measured_share"] < 1.0


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "gemm.csv").write_text("m,n,time_s\n1,2,0.1\n"), "missing column"),
    (lambda d: (d / "gemm.csv").write_text("m,n,k,time_s\n1,2,3,-1\n"),
     "column 'time_s' must be a positive number"),
    (lambda d: (d / "metadata.json").write_text("{"), "not valid JSON"),
    (lambda d: (d / "gemm.csv").unlink(), "missing \\(listed in metadata.json\\)"),
    (lambda d: (d / "metadata.json").write_text(json.dumps(
        {**json.loads((d / "metadata.json").read_text()), "repetitions": 0})),
     "field 'repetitions'"),
])
def test_corrupted_profiles_are_refused(tmp_path: Path, damage, message: str) -> None:
    folder = derived_gemm_profile(tmp_path / "p")
    damage(folder)
    with pytest.raises(ClusterSimError, match=message):
        load_profile(folder)


def test_a_profile_of_another_gpu_is_refused(tmp_path: Path) -> None:
    folder = derived_gemm_profile(tmp_path / "p")
    with pytest.raises(ClusterSimError, match="measured on H100-SXM5-80GB, not A100"):
        load_profile(folder, expected_gpu="A100-SXM4-80GB")
    result = simulate(make_deployment("llama-3-8b", "a100", profile=str(folder)),
                      make_trace([0.0], [10], [2]))
    assert not result.ok and "measured on H100" in result.error


def test_profiler_runs_on_cpu_and_the_loader_reads_it_back(tmp_path: Path,
                                                           tiny_model_path: str) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "cpu-profile"
    result = CliRunner().invoke(app, [
        "profile", "--out", str(out), "--gpu", "a100", "--models", tiny_model_path,
        "--tp", "1,2", "--device", "cpu", "--dtype", "fp32", "--tiny", "--repetitions", "2",
        "--warmup", "1"])
    assert result.exit_code == 0, result.output
    profile = load_profile(out)
    assert set(profile.tables) == {"gemm", "attn_prefill", "attn_decode", "elementwise"}
    assert profile.metadata.runtime == "cpu" and profile.metadata.torch
    assert all((table["time_s"] > 0).all() for table in profile.tables.values())
    # The tiny model's TP-1 QKV GEMM (n = 256 + 2·128, k = 256) over the token grid.
    gemm = profile.tables["gemm"]
    assert set(gemm[(gemm.n == 512) & (gemm.k == 256)]["m"]) == {1, 4, 16, 64}
    prefill = profile.tables["attn_prefill"]
    assert (prefill.q_len < prefill.kv_len).any()  # chunks after cached tokens
    check = CliRunner().invoke(app, ["profile", "check", str(out)])
    assert check.exit_code == 0 and "gemm" in check.output and "p90" in check.output


def test_a_cpu_profile_labelled_as_a_gpu_is_refused_for_that_gpu(tmp_path: Path) -> None:
    """A profile whose device was a CPU predicts no GPU: loading it for its labelled GPU,
    or simulating with it, is a one-line error naming the device."""
    folder = derived_gemm_profile(tmp_path / "p")
    meta = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**meta, "device_name": "CPU x86_64"}))
    with pytest.raises(ClusterSimError, match="measured on 'CPU x86_64'"):
        load_profile(folder, expected_gpu="H100-SXM5-80GB")
    result = CliRunner().invoke(app, [
        "simulate", "--workload", str(EXAMPLES / "chat.json"), "--model", "llama-3-8b",
        "--gpu", "h100", "--profile", str(folder)])
    assert result.exit_code == 2
    assert result.output.startswith("error: profile") and "CPU x86_64" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_profile_without_out_is_a_one_line_error() -> None:
    result = CliRunner().invoke(app, ["profile", "--gpu", "h100"])
    assert result.exit_code == 2 and result.output.startswith("error: give --out")


def test_collectives_are_profiled_through_torch_distributed(tmp_path: Path,
                                                           tiny_model_path: str) -> None:
    """Two gloo processes on loopback: every collective the backend runs gets rows, and
    what it cannot run is named in the table's note."""
    pytest.importorskip("torch")
    out = tmp_path / "coll"
    result = CliRunner().invoke(app, [
        "profile", "--out", str(out), "--gpu", "a100", "--models", tiny_model_path,
        "--tp", "1", "--device", "cpu", "--dtype", "fp32", "--tiny", "--repetitions", "2",
        "--warmup", "1", "--collectives", "2"])
    assert result.exit_code == 0, result.output
    profile = load_profile(out)
    table = profile.tables["collective"]
    measured = set(table["op"])
    skipped = profile.metadata.tables["collective"].note
    for op in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv"):
        assert op in measured or op in skipped
    assert profile.metadata.num_gpus == 2 and "gloo" in profile.metadata.interconnect
    assert (table["time_s"] > 0).all()
