"""Engine presets and CPU overhead per step."""

from __future__ import annotations

import pytest

from profiles.cost_model import BatchShape
from profiles.errors import ClusterSimError
from simulator.serving.engine import resolve, simulate
from simulator.serving.presets import ENGINE_PRESETS
from tests.conftest import make_deployment, make_trace


def test_vllm_v1_preset_resolves_to_documented_knobs_per_gpu() -> None:
    h100 = resolve(make_deployment("llama-3-8b", "h100", engine="vllm-v1")).scheduler
    assert (h100.policy, h100.enable_chunked_prefill, h100.enable_prefix_caching,
            h100.prefill_first, h100.decodes_first, h100.max_num_batched_tokens,
            h100.max_num_seqs, h100.block_size, h100.preemption_mode) == (
        "running-first", True, True, False, False, 8192, 1024, 16, "recompute")
    a100 = resolve(make_deployment("llama-3-8b", "a100", engine="vllm-v1")).scheduler
    assert (a100.max_num_batched_tokens, a100.max_num_seqs) == (2048, 256)


def test_vllm_v0_and_sarathi_presets() -> None:
    v0 = resolve(make_deployment("llama-3-8b", "h100", engine="vllm-v0")).scheduler
    assert (v0.policy, v0.prefill_first, v0.enable_chunked_prefill,
            v0.enable_prefix_caching, v0.max_num_batched_tokens) == (
        "prefill-first", True, False, False, 8192)
    sarathi = resolve(make_deployment("llama-3-8b", "h100", engine="sarathi-serve")).scheduler
    assert (sarathi.max_num_batched_tokens, sarathi.max_num_seqs,
            sarathi.decodes_first) == (512, 128, True)


def test_user_knobs_win_over_the_preset() -> None:
    resolved = resolve(make_deployment("llama-3-8b", "h100", engine="vllm-v1", **{
        "scheduler.max_num_batched_tokens": 4096, "scheduler.enable_prefix_caching": False}))
    assert resolved.scheduler.max_num_batched_tokens == 4096
    assert not resolved.scheduler.enable_prefix_caching
    assert resolved.cpu_overhead is not None and resolved.cpu_overhead.step_base_s == 0.5e-3


def test_cpu_overhead_adds_the_stated_time_per_step() -> None:
    """1 ms + 0.1 ms per sequence before each step of a lone request."""
    overhead = {"step_base_s": 1e-3, "per_seq_s": 1e-4}
    with_cpu = make_deployment("llama-3-8b", "a100", cpu_overhead=overhead)
    gpu_only = make_deployment("llama-3-8b", "a100")
    workload = make_trace([0.0], [300], [5])
    fast = simulate(gpu_only, workload).requests.iloc[0]
    slow = simulate(with_cpu, workload).requests.iloc[0]
    assert slow["ttft_s"] == pytest.approx(fast["ttft_s"] + 1.1e-3, rel=1e-12)
    assert slow["e2e_s"] == pytest.approx(fast["e2e_s"] + 5 * 1.1e-3, rel=1e-12)


def test_async_scheduling_hides_cpu_time_under_the_gpu_step() -> None:
    """Overlapped, a step takes max(CPU, GPU): a 1 µs overhead vanishes, a 1 s one rules."""
    workload = make_trace([0.0], [300], [3])
    cost = resolve(make_deployment("llama-3-8b", "a100")).cost_models[0]
    prefill_s = cost.predict(BatchShape([300], [0], 1)).total_s
    small = make_deployment("llama-3-8b", "a100", async_scheduling=True,
                            cpu_overhead={"step_base_s": 1e-6})
    large = make_deployment("llama-3-8b", "a100", async_scheduling=True,
                            cpu_overhead={"step_base_s": 1.0})
    assert simulate(small, workload).requests.iloc[0]["ttft_s"] == prefill_s
    assert simulate(large, workload).requests.iloc[0]["e2e_s"] == pytest.approx(3.0)


def test_device_time_per_step_is_never_hidden_by_asynchronous_scheduling() -> None:
    """A lone request's every step takes its kernels' time plus ``device_step_s``, serial
    or overlapped: 2 ms over 5 steps puts 10 ms on its E2E either way (the 1 µs of host
    time hides under an overlapped step)."""
    workload = make_trace([0.0], [300], [5])
    plain = simulate(make_deployment("llama-3-8b", "a100"), workload).requests.iloc[0]
    for async_on in (False, True):
        deployment = make_deployment("llama-3-8b", "a100", async_scheduling=async_on,
                                     cpu_overhead={"step_base_s": 1e-6, "device_step_s": 2e-3})
        row = simulate(deployment, workload).requests.iloc[0]
        host = 0.0 if async_on else 1e-6
        assert row["ttft_s"] == pytest.approx(plain["ttft_s"] + 2e-3 + host, rel=1e-12)
        assert row["e2e_s"] == pytest.approx(plain["e2e_s"] + 5 * (2e-3 + host), rel=1e-12)


def test_the_vllm_015_preset_carries_its_fitted_device_time() -> None:
    """The fits file's device time reaches the preset with its source, and the summary."""
    overhead = ENGINE_PRESETS["vllm-v1-0.15"].overhead
    assert 0 < overhead.device_step_s < 5e-3
    assert ENGINE_PRESETS["vllm-v1"].overhead.device_step_s == 0.0  # not fitted: none
    result = simulate(make_deployment("llama-3-8b", "h100", engine="vllm-v1-0.15"),
                      make_trace([0.0], [64], [4]))
    engine = result.summary["run"]["engine"]
    assert engine["cpu_overhead"]["device_step_s"] == overhead.device_step_s
    assert "device time per step fitted" in engine["overhead_source"]


def test_summary_records_the_preset_and_every_knob() -> None:
    result = simulate(make_deployment("llama-3-8b", "h100", engine="vllm-v1"),
                      make_trace([0.0], [100], [2]))
    engine = result.summary["run"]["engine"]
    assert engine["preset"] == "vllm-v1" and "vLLM 0.10" in engine["version"]
    assert "estimate" in engine["overhead_source"]
    assert engine["cpu_overhead"]["per_seq_s"] == 5e-6
    assert result.summary["run"]["scheduler"]["enable_prefix_caching"] is True


def test_async_without_overhead_is_refused() -> None:
    with pytest.raises(ClusterSimError, match="async_scheduling needs a CPU overhead"):
        resolve(make_deployment("llama-3-8b", "h100", async_scheduling=True))


class StepEnds:
    """Records each step's (start, end)."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []

    def on_step(self, replica_id, stage_spans_s, plan, cost, kv_used_blocks) -> None:
        self.spans.append((stage_spans_s[0][0], stage_spans_s[-1][1]))


def test_asynchronous_scheduling_admits_an_arrival_one_step_later() -> None:
    """A decodes alone; B arrives in the middle of A's third step. Scheduling serially, B
    joins the step right after; with asynchronous scheduling that step was decided when
    the third started, so B joins the one after it: its first step starts exactly one
    step later. An idle replica takes a request at once either way."""
    overhead = {"step_base_s": 1e-6, "per_seq_s": 0.0, "per_token_s": 0.0}
    first_steps = []
    for async_on in (False, True):
        ends = StepEnds()
        probe = simulate(make_deployment("llama-3-8b", "h100", cpu_overhead=overhead | {
            "async_scheduling": async_on}), make_trace([0.0], [16], [40]), recorders=[ends])
        third_start, third_end = ends.spans[2]
        b_arrival = (third_start + third_end) / 2
        ends = StepEnds()
        result = simulate(make_deployment("llama-3-8b", "h100", cpu_overhead=overhead | {
            "async_scheduling": async_on}), make_trace([0.0, b_arrival], [16, 16], [40, 4]),
            recorders=[ends])
        assert probe.requests["first_scheduled_s"].iloc[0] == 0.0  # idle: at once
        b_start = result.requests["first_scheduled_s"].iloc[1]
        # The step B is first scheduled into starts when it is scheduled (the serial
        # engine's 1 µs of host time after).
        first_steps.append(min(range(len(ends.spans)),
                               key=lambda i: abs(ends.spans[i][0] - b_start)))
        assert abs(ends.spans[first_steps[-1]][0] - b_start) < 1.5e-6
    serial, asynchronous = first_steps
    assert serial == 3 and asynchronous == 4


def test_the_client_path_delays_every_token_not_the_gaps() -> None:
    """The vLLM 0.15 preset's fitted client path (from its fits file) adds to TTFT and E2E
    as the client sees them and leaves TPOT alone; the summary names its source."""
    path = ENGINE_PRESETS["vllm-v1-0.15"].client_path_s
    trace = make_trace([0.0], [64], [8])
    plain = simulate(make_deployment("llama-3-8b", "h100", engine="vllm-v1"), trace)
    fitted = simulate(make_deployment("llama-3-8b", "h100", engine="vllm-v1-0.15"), trace)
    assert path > 0
    for column in ("ttft_s", "e2e_s"):
        server = fitted.requests[column].iloc[0] - path
        assert server > 0 and fitted.requests[column].iloc[0] > plain.requests[column].iloc[0]
    assert fitted.requests["tpot_s"].iloc[0] == pytest.approx(
        (fitted.requests["e2e_s"].iloc[0] - fitted.requests["ttft_s"].iloc[0]) / 7)
    engine = fitted.summary["run"]["engine"]
    assert engine["client_path_s"] == path and "fitted" in engine["client_path_source"]
