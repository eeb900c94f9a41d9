"""The sampler's cost: which defaults a request samples with, and what filtering costs.

Hand-computable: a filtering sampler adds vocab x bytes per logit / HBM bandwidth of device
time per sequence of every step, and nothing where the defaults do not filter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profiles.errors import ClusterSimError
from profiles.hardware import GB, load_gpu
from profiles.models import list_models, load_model
from simulator import build_deployment, simulate
from simulator.serving.build import resolve
from simulator.serving.engine_costs import engine_overhead
from simulator.serving.presets import ENGINE_PRESETS
from simulator.serving.sampling import SamplingOverride, model_sampling_defaults, resolve_sampling
from simulator.serving.vllm_args import parse_vllm_args, vllm_command
from validation.calibrate_serving import preset_values
from workloads.schema import RequestTrace


def test_auto_takes_the_model_s_generation_config_and_vllm_its_own() -> None:
    """Qwen3's generation_config.json sets top-k 20 and top-p 0.95: the sampler sorts.
    vLLM's own defaults and Mistral-Nemo's file (no sampling keys) do not filter; an
    override's top-p does, a temperature of 0 (greedy) never does."""
    qwen = resolve_sampling("qwen3-14b", "auto", None)
    assert qwen.values["top_k"] == 20 and qwen.values["top_p"] == 0.95 and qwen.filters
    assert "Qwen/Qwen3-14B" in qwen.source
    assert not resolve_sampling("qwen3-14b", "vllm", None).filters
    assert not resolve_sampling("mistral-nemo-12b", "auto", None).filters
    assert resolve_sampling("mistral-nemo-12b", "auto", SamplingOverride(top_p=0.9)).filters
    assert not resolve_sampling("mistral-nemo-12b", "auto", SamplingOverride(min_p=0.1)).filters
    greedy = resolve_sampling("qwen3-14b", "auto", SamplingOverride(temperature=0.0))
    assert not greedy.filters and "override" in greedy.source
    assert not resolve_sampling("yi-34b", "auto", None).filters  # unknown: vLLM's defaults


def test_every_catalog_sampling_default_names_its_file() -> None:
    for entry in list_models():
        if "generation_config" in entry:
            assert "generation_config.json" in entry["generation_source"], entry["name"]
            assert set(entry["generation_config"]) <= {"temperature", "top_p", "top_k",
                                                       "min_p", "repetition_penalty"}


def test_a_generation_config_beside_a_config_json_is_read(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert model_sampling_defaults(str(tmp_path / "config.json")) is None
    assert model_sampling_defaults("not-a-model-or-a-path") is None
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "eos_token_id": [1, 2]}))
    values, source = model_sampling_defaults(str(tmp_path / "config.json")) or ({}, "")
    assert values == {"temperature": 0.7, "top_p": 0.8} and source.endswith(
        "generation_config.json")
    (tmp_path / "generation_config.json").write_text("{not json")
    with pytest.raises(ClusterSimError, match="generation_config.json"):
        model_sampling_defaults(str(tmp_path / "config.json"))
    (tmp_path / "generation_config.json").write_text("[0.7]")
    with pytest.raises(ClusterSimError, match="expected a JSON object"):
        model_sampling_defaults(str(tmp_path / "config.json"))


def _deployment(**fields: object) -> dict:
    return {"model": "qwen3-14b", "gpu": "h100"} | fields


def test_a_filtering_sampler_costs_vocab_times_its_traffic_per_sequence() -> None:
    """Qwen3-14B on an H100 at vLLM's 240 bytes per logit: 151,936 x 240 / (3.35 TB/s x
    0.85) = 12.8 us per sequence of a step, added to what the deployment's overhead gives;
    no cost under vLLM's defaults or without an engine preset."""
    gpu, model = load_gpu("h100"), load_model("qwen3-14b")
    assert ENGINE_PRESETS["vllm-v1-0.15"].sampling_bytes_per_entry == 240.0
    expected = model.vocab_size * 240.0 / (gpu.hbm_bandwidth_gbps * GB * gpu.efficiency.memory)
    assert expected == pytest.approx(12.8e-6, rel=0.01)
    with preset_values(1e-3, 0.0):
        overhead = engine_overhead(build_deployment(_deployment()), model, gpu)
        assert overhead is not None
        assert overhead.device_per_seq_s == pytest.approx(expected)
        given = build_deployment(_deployment(cpu_overhead={"device_per_seq_s": 1e-5}))
        overhead = engine_overhead(given, model, gpu)
        assert overhead is not None
        assert overhead.device_per_seq_s == pytest.approx(1e-5 + expected)
        plain = engine_overhead(build_deployment(_deployment(generation_config="vllm")),
                                model, gpu)
        assert plain is not None and plain.device_per_seq_s == 0.0
        assert engine_overhead(build_deployment(_deployment(engine="none")), model, gpu) \
            is None


def test_a_lone_request_s_steps_take_the_sampler_s_time_too() -> None:
    """One request, four tokens: its TPOT is one step; filtering adds the per-sequence
    time of one sequence to every step, and the summary says which defaults it used."""
    trace = RequestTrace.from_columns([0.0], [64], [5])

    def tpot(**fields: object) -> tuple[float, dict]:
        result = simulate(build_deployment(_deployment(**fields)), trace)
        assert result.ok and result.summary is not None
        return result.summary["tpot_s"]["mean"], result.summary["run"]["engine"]["sampling"]

    with preset_values(1e-3, 0.0):
        sorted_, record = tpot()
        plain, plain_record = tpot(generation_config="vllm")
    gpu = load_gpu("h100")
    per_seq = 151_936 * 240.0 / (gpu.hbm_bandwidth_gbps * GB * gpu.efficiency.memory)
    assert sorted_ - plain == pytest.approx(per_seq, rel=1e-6)
    assert record["filters"] and not plain_record["filters"]


def test_the_sampling_flags_round_trip_through_vllm_serve() -> None:
    args = parse_vllm_args("vllm serve Qwen/Qwen3-14B --generation-config vllm "
                           "--override-generation-config '{\"top_p\": 0.9}'")
    assert args.overrides == {"generation_config": "vllm", "sampling": {"top_p": 0.9}}
    deployment = build_deployment({"model": args.model, "gpu": "h100"} | args.overrides)
    again = parse_vllm_args(vllm_command(deployment))
    assert again.overrides == args.overrides
    with pytest.raises(ClusterSimError, match="sampling.top_q"):
        resolve(build_deployment(_deployment(sampling={"top_q": 0.9})))
    assert ENGINE_PRESETS["vllm-v1"].sampling_bytes_per_entry == 240.0
    assert "Qrita" in ENGINE_PRESETS["vllm-v0"].sampling_source


def test_simulate_says_when_the_sampler_sorts() -> None:
    from typer.testing import CliRunner

    from cli import app

    chat = str(Path(__file__).parent.parent / "workloads" / "examples" / "chat.json")
    args = ["simulate", "--workload", chat, "--gpu", "h100", "--max-model-len", "32768"]
    qwen = CliRunner().invoke(app, [*args, "--model", "qwen3-14b"])
    assert qwen.exit_code == 0, qwen.output
    assert "top-k 20, top-p 0.95 (the model's generation_config.json)" in qwen.output
    nemo = CliRunner().invoke(app, [*args, "--model", "mistral-nemo-12b"])
    assert nemo.exit_code == 0 and "sampler sorts" not in nemo.output
    override = CliRunner().invoke(app, [*args, "--model", "mistral-nemo-12b",
                                        "--override-generation-config", '{"top_p": 0.8}'])
    assert "top-p 0.8 (the deployment's override)" in override.output
