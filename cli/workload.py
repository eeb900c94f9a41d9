"""``clustersim workload``: generate synthetic request traces and inspect trace files.

    clustersim workload generate --out w.json --num-requests 1000 --rate 2 --prompt ... --output ...
    clustersim workload chat --out chat.json ... (shared system prompts, multi-turn sessions)
    clustersim workload stats trace.json
    clustersim workload from-inference-perf config.yaml --out trace.json
    clustersim workload from-vllm-bench --num-prompts 1000 --request-rate 4 ... --out trace.json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from cli.common import console, fail, user_errors
from profiles.errors import format_validation_error
from simulator import to_json_text
from workloads.benchmark_tools import (
    VllmBenchSpec,
    from_inference_perf,
    from_vllm_bench,
    load_inference_perf,
)
from workloads.generators import (
    ChatSpec,
    GeneratorSpec,
    generate,
    generate_chat,
    parse_distribution,
)
from workloads.loaders import load_workload, save_workload
from workloads.schema import RequestTrace

__all__ = ["app"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Generate and inspect request traces.")

TraceOut = Annotated[Path, typer.Option(help="trace file to write (.json or .jsonl)")]
SpecT = TypeVar("SpecT", bound=BaseModel)


def _spec(model: type[SpecT], command: str, **fields: Any) -> SpecT:
    """A generator spec from a command's flags; a bad value is the one-line error."""
    try:
        return model(**fields)
    except ValidationError as error:
        fail(format_validation_error(error, f"workload {command}"))


def _arrival_spec(arrival: str, rate: float, cv: float | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"kind": arrival, "rate_per_s": rate}
    if cv is not None:
        spec["cv"] = cv
    return spec


def _save_and_report(trace: RequestTrace, out: Path) -> None:
    save_workload(trace, out)
    stats = trace.stats()
    console.print(f"wrote {out}: {stats['num_requests']:,} requests over "
                  f"{stats['duration_s']:,.1f} s, prompt mean {stats['prompt_tokens_mean']:.0f}, "
                  f"output mean {stats['output_tokens_mean']:.0f}")


@app.command("generate")
@user_errors
def generate_command(
    out: TraceOut,
    num_requests: Annotated[int, typer.Option(help="requests to generate")],
    rate: Annotated[float, typer.Option(help="mean arrival rate, requests per second")],
    prompt: Annotated[str, typer.Option(
        help="prompt lengths, e.g. lognormal:mean=1155,sigma=0.5,max=8192")],
    output: Annotated[str, typer.Option(help="output lengths, e.g. fixed:value=128")],
    arrival: Annotated[str, typer.Option(help="poisson or gamma")] = "poisson",
    cv: Annotated[float | None, typer.Option(
        help="gamma arrivals: coefficient of variation of the gaps")] = None,
    seed: Annotated[int, typer.Option(
        min=0, max=2**32 - 1, help="seed of the arrival and length draws")] = 0,
) -> None:
    """Generate a synthetic trace (seeded: the same flags give the same file)."""
    arrival_spec = _arrival_spec(arrival, rate, cv)
    spec = _spec(GeneratorSpec, "generate", num_requests=num_requests, arrival=arrival_spec,
                 prompt=parse_distribution(prompt, "--prompt"),
                 output=parse_distribution(output, "--output"), seed=seed)
    trace = generate(spec)
    _save_and_report(trace, out)


@app.command("chat")
@user_errors
def chat_command(
    out: TraceOut,
    num_requests: Annotated[int, typer.Option(help="requests to generate")],
    rate: Annotated[float, typer.Option(help="mean arrival rate, requests per second")],
    num_system_prompts: Annotated[int, typer.Option(help="distinct system prompts")],
    users_per_prompt: Annotated[int, typer.Option(help="users sharing each system prompt")],
    system_prompt_tokens: Annotated[int, typer.Option(help="tokens of each system prompt")],
    question: Annotated[str, typer.Option(help="question lengths, e.g. fixed:value=450")],
    output: Annotated[str, typer.Option(help="output lengths, e.g. fixed:value=250")],
    turns: Annotated[int, typer.Option(help="turns per conversation")] = 1,
    think_time: Annotated[float, typer.Option(
        help="seconds a user waits between its turns' arrivals")] = 0.0,
    arrival: Annotated[str, typer.Option(help="poisson or gamma")] = "poisson",
    cv: Annotated[float | None, typer.Option(help="gamma arrivals: CV of the gaps")] = None,
    seed: Annotated[int, typer.Option(
        min=0, max=2**32 - 1, help="seed of the arrival and length draws")] = 0,
) -> None:
    """Generate a shared-prefix, multi-turn chat trace (for prefix caching studies)."""
    arrival_spec = _arrival_spec(arrival, rate, cv)
    spec = _spec(ChatSpec, "chat", num_requests=num_requests, arrival=arrival_spec,
                 num_system_prompts=num_system_prompts, users_per_prompt=users_per_prompt,
                 system_prompt_tokens=system_prompt_tokens,
                 question=parse_distribution(question, "--question"),
                 output=parse_distribution(output, "--output"), turns_per_session=turns,
                 think_time_s=think_time, seed=seed)
    trace = generate_chat(spec)
    _save_and_report(trace, out)


@app.command("stats")
@user_errors
def stats_command(
    path: Annotated[Path, typer.Argument(help="trace file")],
    workload_format: Annotated[str | None, typer.Option(
        "--format", help="trace format (detected when omitted)")] = None,
) -> None:
    """Print a trace's request count, rate and length statistics as JSON."""
    trace = load_workload(path, workload_format)
    sys.stdout.write(to_json_text(trace.stats() | {"metadata": trace.metadata}))


@app.command("from-inference-perf")
@user_errors
def from_inference_perf_command(
    config: Annotated[Path, typer.Argument(help="inference-perf config (YAML)")],
    out: TraceOut,
    seed: Annotated[int, typer.Option(
        min=0, max=2**32 - 1, help="seeds Poisson arrivals")] = 0,
) -> None:
    """The request stream of an inference-perf shared_prefix config (load stages, prompts
    cycled as the tool sends them)."""
    trace = from_inference_perf(load_inference_perf(config), seed=seed, source=config.name)
    _save_and_report(trace, out)
    for item in trace.metadata["not_modelled"]:
        console.print(f"not modelled: {item}")


@app.command("from-vllm-bench")
@user_errors
def from_vllm_bench_command(
    out: TraceOut,
    num_prompts: Annotated[int, typer.Option(help="as vLLM's --num-prompts")],
    request_rate: Annotated[float, typer.Option(help="requests per second (inf: all at once)")],
    random_input_len: Annotated[int, typer.Option(help="as --random-input-len")],
    random_output_len: Annotated[int, typer.Option(help="as --random-output-len")],
    random_range_ratio: Annotated[float, typer.Option(help="as --random-range-ratio")] = 0.0,
    random_prefix_len: Annotated[int, typer.Option(help="as --random-prefix-len")] = 0,
    burstiness: Annotated[float, typer.Option(help="Gamma shape of the gaps (1: Poisson)")] = 1.0,
    seed: Annotated[int, typer.Option(
        min=0, max=2**32 - 1, help="seed of the arrival and length draws")] = 0,
) -> None:
    """The requests of vLLM's benchmark_serving with --dataset-name random."""
    spec = _spec(VllmBenchSpec, "from-vllm-bench", num_prompts=num_prompts,
                 request_rate=request_rate, burstiness=burstiness,
                 random_input_len=random_input_len, random_output_len=random_output_len,
                 random_range_ratio=random_range_ratio, random_prefix_len=random_prefix_len,
                 seed=seed)
    _save_and_report(from_vllm_bench(spec), out)
