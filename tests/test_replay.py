"""Replaying a piece of a trace: the window, the cap and the rescaling, by hand."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from profiles.errors import ClusterSimError
from workloads.replay import replay, replay_window
from workloads.schema import RequestTrace


def trace() -> RequestTrace:
    """Ten requests, one a second from t = 0, prompts 100, 101, ..., in sessions a/b."""
    return RequestTrace.from_columns(
        np.arange(10.0), 100 + np.arange(10), [5] * 10, request_ids=[f"r{i}" for i in range(10)],
        extras={"session_id": ["a", "b"] * 5})


def test_the_window_keeps_its_arrivals_shifted_to_zero_and_their_fields() -> None:
    out = replay(trace(), replay_window(start_s=3, duration_s=4))
    assert out.arrival_s.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert out.request_ids == ["r3", "r4", "r5", "r6"]
    assert out.prompt_tokens.tolist() == [103, 104, 105, 106]
    assert out.extras["session_id"] == ["b", "a", "b", "a"]
    assert out.metadata["replay"] == {"start_s": 3.0, "duration_s": 4.0,
                                      "num_requests_in": 10}


def test_cap_then_time_scale_then_rate_by_hand() -> None:
    capped = replay(trace(), replay_window(max_requests=3, time_scale=0.5))
    assert capped.arrival_s.tolist() == [0.0, 0.5, 1.0]
    fast = replay(trace(), replay_window(rate_per_s=4.0))  # 9 gaps of 1 s -> of 0.25 s
    assert fast.arrival_s == pytest.approx(np.arange(10) * 0.25, abs=1e-12)
    assert fast.stats()["rate_per_s"] == pytest.approx(4.0)


def test_the_input_trace_is_left_as_it_was() -> None:
    original = trace()
    replay(original, replay_window(time_scale=3.0))
    assert original.arrival_s.tolist() == list(np.arange(10.0))
    assert "replay" not in original.metadata


@pytest.mark.parametrize(("fields", "message"), [
    ({"start_s": 100.0}, "no request of the trace arrives in from 100 s on"),
    ({"time_scale": 2.0, "rate_per_s": 3.0}, "give one"),
    ({"time_scale": 0.0}, "field 'time_scale'"),
    ({"max_requests": 0}, "field 'max_requests'"),
    ({"duration_s": float("nan")}, "field 'duration_s'"),
    ({"rate_per_s": 1e-320}, "--rate .* the rescaled arrivals run past 1e\\+09 s"),
])
def test_bad_windows_are_one_line_errors(fields: dict, message: str) -> None:
    with pytest.raises(ClusterSimError, match=message):
        replay(trace(), replay_window(**fields))
    long = RequestTrace.from_columns([0.0, 2000.0], [10, 10], [2, 2])
    with pytest.raises(ClusterSimError, match="--time-scale 1e\\+06: the rescaled arrivals"):
        replay(long, replay_window(time_scale=1e6))
    one = RequestTrace.from_columns([2.0], [10], [2])
    with pytest.raises(ClusterSimError, match="all arrive at once"):
        replay(one, replay_window(rate_per_s=1.0))


def test_simulate_replays_a_window_of_a_public_format_trace(tmp_path) -> None:
    """An Azure-format trace (timestamps, ContextTokens, GeneratedTokens), replayed from
    its 2nd second for 3 seconds at 4 requests per second."""
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"] + [
        f"2023-11-16 18:15:{i:02d}.000000,{200 + i},{8}" for i in range(10)]
    path = tmp_path / "azure.csv"
    path.write_text("\n".join(rows) + "\n")
    result = CliRunner().invoke(app, [
        "simulate", "--workload", str(path), "--model", "llama-3-8b", "--gpu", "h100",
        "--start", "2", "--duration", "3", "--rate", "4", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "replaying 3 of the trace's 10 requests (4 req/s)" in result.output
    import pandas as pd
    requests = pd.read_csv(tmp_path / "out" / "requests.csv")
    assert requests["arrival_s"].tolist() == pytest.approx([0.0, 0.25, 0.5])
    assert requests["prompt_tokens"].tolist() == [202, 203, 204]
