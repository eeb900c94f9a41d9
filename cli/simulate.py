"""``simulate`` (also ``clustersim simulate``): a serving deployment on a request trace,
or a training job's step, printed and optionally written.

    simulate --workload trace.json --model llama-3-8b --gpu h100 --out results/
    simulate --workload train_llama3_70b.json --tp 4 --pp 8 --dp 2 --out results/
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import (
    console,
    deployment_from_flags,
    fail,
    parse_routing,
    progress_bar,
    silent_progress,
    step_breakdown_table,
    user_errors,
)

__all__ = ["SERVING_FIELDS", "TRACE_FORMATS", "simulate_command"]

# workloads.loaders.FORMATS, named here so that `simulate --help` imports no library code
# (tests/test_startup.py checks the two agree)
TRACE_FORMATS = ("json", "jsonl", "azure", "burstgpt", "mooncake")


# Each serving flag's deployment field (its parameter name: the flag, vLLM's spelling
# where vLLM has one, as the options below list). docs/deployment.md is generated from
# this table and the deployment models (python -m cli.schema_doc).
SERVING_FIELDS: dict[str, str] = {
    "model": "model", "gpu": "gpu", "replicas": "replicas", "router": "router",
    "seed": "seed", "engine": "engine", "async_scheduling": "async_scheduling",
    "profile": "profile", "dtype": "dtype", "quantization": "quantization",
    "kv_cache_dtype": "kv_cache_dtype",
    "tp": "parallelism.tp", "pp": "parallelism.pp", "dp": "parallelism.dp",
    "ep": "parallelism.ep", "enable_expert_parallel": "parallelism.enable_expert_parallel",
    "scheduler": "scheduler.policy", "max_num_seqs": "scheduler.max_num_seqs",
    "max_num_batched_tokens": "scheduler.max_num_batched_tokens",
    "block_size": "scheduler.block_size",
    "gpu_memory_utilization": "scheduler.gpu_memory_utilization",
    "enable_chunked_prefill": "scheduler.enable_chunked_prefill",
    "enable_prefix_caching": "scheduler.enable_prefix_caching",
    "preemption_mode": "scheduler.preemption_mode",
    "max_model_len": "scheduler.max_model_len", "swap_space": "scheduler.swap_space_gib",
    "num_gpu_blocks_override": "scheduler.num_gpu_blocks_override",
    "scheduling_policy": "scheduler.queue_order",
    "long_prefill_token_threshold": "scheduler.long_prefill_token_threshold",
    "max_num_partial_prefills": "scheduler.max_num_partial_prefills",
    "cpu_offload_gb": "offload.cpu_offload_gb", "offload_prefetch": "offload.prefetch",
    "kv_offloading_size": "offload.kv_offloading_size",
    "expert_placement": "moe.placement",
    "num_nodes": "cluster.num_nodes", "gpus_per_node": "cluster.gpus_per_node",
    "ttft_slo": "slo.ttft_s", "tpot_slo": "slo.tpot_s",
    "speculative_config": "speculative", "generation_config": "generation_config",
    "override_generation_config": "sampling",
}


def _json_object(text: str, flag: str) -> dict[str, Any]:
    """A flag's JSON object (vLLM's ``--speculative-config '{...}'``)."""
    from profiles.errors import ClusterSimError
    from profiles.reading import parse_json

    try:
        value = parse_json(text, flag)
    except ClusterSimError as error:
        fail(f"{error}; e.g. '{{\"method\": \"ngram\", \"num_speculative_tokens\": 4, "
             f"\"acceptance_rate\": 0.6}}'")
    if not isinstance(value, dict):
        fail(f"{flag}: expected a JSON object, got {type(value).__name__}")
    return value


def routing_overrides(routing: str | None) -> dict[str, Any]:
    """``--routing`` as deployment overrides (``moe.routing.*``)."""
    if routing is None:
        return {}
    return {f"moe.routing.{key}": value for key, value in parse_routing(routing).items()}


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value * 1e3:,.1f}"


def _print_header(summary: dict[str, Any]) -> None:
    run = summary["run"]
    engine = run["engine"]["preset"]
    tail = (f", engine {engine}" if engine else "") + f", {summary['num_requests']:,} requests"
    disagg = summary.get("disaggregation")
    if disagg is None:
        p = run["deployment"]["parallelism"]
        layout = f"tp={p['tp']}, pp={p['pp']}" + (
            f", dp={p['dp']}, ep={p['ep']}" if p["ep"] > 1 or p["dp"] > 1 else "")
        console.print(
            f"[bold]{run['model']}[/] on {run['num_gpus']} x {run['gpu']} "
            f"({run['deployment']['replicas']} replica(s), {layout}), "
            f"policy {run['scheduler']['policy']}" + tail)
        sampling = run.get("engine", {}).get("sampling")
        overhead = run.get("engine", {}).get("cpu_overhead") or {}
        if sampling and sampling["filters"] and overhead.get("device_per_seq_s"):
            v = sampling["values"]
            shown = ", ".join(text for text, on in (
                (f"temperature {v['temperature']:g}", True),
                (f"top-k {v['top_k']:g}", v["top_k"] > 0),
                (f"top-p {v['top_p']:g}", v["top_p"] < 1),
                (f"min-p {v['min_p']:g}", v["min_p"] > 0)) if on)
            origin = ("the deployment's override" if sampling["overridden"]
                      else "the model's generation_config.json")
            console.print(f"sampling {shown} ({origin}): the sampler sorts each sequence's "
                          f"logits, {overhead['device_per_seq_s'] * 1e6:.1f} us per sequence "
                          f"per step")
        moe = run.get("moe")
        if moe:
            console.print(
                f"experts: {moe['num_experts']} x {moe['moe_layers']} MoE layers, top-"
                f"{moe['top_k']}, routing {moe['routing']}, placement {moe['placement']} "
                f"({moe['slots_per_gpu']} expert slots per GPU); busiest EP rank "
                f"{moe['expected_imbalance']:.2f}x the mean load"
                + (", tokens by all-to-all (DP attention)" if moe["all_to_all"] else ""))
            cache = moe.get("expert_cache")
            if cache:
                console.print(
                    f"expert cache ({cache['policy']}, {cache['gpu_experts']} experts per "
                    f"layer per GPU, the rest in host memory): hit rate "
                    f"{cache['hit_rate']:.1%}, {cache['copied_gb']:,.1f} GB copied in")
        return
    pools = disagg["pools"]
    console.print(
        f"[bold]{run['model']}[/] disaggregated {disagg['ratio']} on {run['num_gpus']} GPUs "
        f"({disagg['placement']} placement): " + "; ".join(
            f"{name} {pool['replicas']} x {pool['gpu']} tp={pool['tp']} pp={pool['pp']}"
            + (f" dp={pool['dp']} ep={pool['ep']}" if pool.get("ep", 1) > 1 else "")
            + f" (busy {pool['busy_fraction']:.0%})" for name, pool in pools.items()) + tail)
    transfer = disagg["transfer"]
    links = ", ".join(f"{tier} {link['bytes'] / 1e9:,.1f} GB (busiest port busy "
                      f"{link['max_busy_fraction']:.1%})"
                      for tier, link in disagg["links"].items()) or "none"
    console.print(
        f"KV transfers ({transfer['mode']}): {transfer['num_transfers']:,}, p50 "
        f"{_fmt_ms(transfer['kv_transfer_s']['p50'])} ms, p90 "
        f"{_fmt_ms(transfer['kv_transfer_s']['p90'])} ms; wait for decode room p90 "
        f"{_fmt_ms(transfer['kv_wait_s']['p90'])} ms; links: {links}; prefilled on the "
        f"decode pool: {disagg['prefilled_on_decode_pool']:,}")


def _print_summary(summary: dict[str, Any], runtime_s: float) -> None:
    _print_header(summary)
    run = summary["run"]
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    table.add_column("latency (ms)")
    for column in ("mean", "p50", "p90", "p99"):
        table.add_column(column, justify="right")
    for key, label in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("tbt_s", "TBT (ITL)"),
                       ("e2e_s", "E2E"), ("queueing_delay_s", "queueing")):
        row = summary[key]
        table.add_row(label, *(_fmt_ms(row[c]) for c in ("mean", "p50", "p90", "p99")))
    console.print(table)
    tp = summary["throughput"]
    good = summary["goodput"]
    console.print(
        f"throughput {tp['requests_per_s']:.3f} req/s, {tp['output_tokens_per_s']:,.0f} output "
        f"tok/s, {tp['total_tokens_per_s']:,.0f} total tok/s; MFU {summary['mfu']:.1%}; "
        f"KV peak {summary['kv_cache']['peak_usage']:.1%}; "
        f"mean batch {summary['batches']['mean_batch_size']:.1f}; "
        f"preemptions {summary['preemptions']}"
    )
    spec = run.get("speculative")
    if spec:
        measured = spec["measured_acceptance"]
        console.print(
            f"speculative decoding ({spec['method']}, {spec['num_speculative_tokens']} drafts "
            f"per step, alpha {spec['acceptance_rate']:g}): {spec['accepted_tokens']:,} of "
            f"{spec['draft_tokens']:,} drafts accepted (draft acceptance rate "
            f"{'-' if measured is None else f'{measured:.1%}'}); mean acceptance length "
            f"{spec['expected_tokens_per_step']:.2f} expected")
    offload = run.get("offload") or {}
    if offload.get("cpu_offload_gb"):
        console.print(
            f"weights offloaded: {offload['cpu_offload_gb']:g} GiB per GPU on "
            f"{offload['weights_tier']} ({'prefetched' if offload['prefetch'] else 'read in place'}"
            f"), {offload['weight_stream_gbps']:.1f} GB/s: "
            f"{offload['weight_stream_s_per_step'] * 1e3:,.0f} ms of streaming per step")
    cost = run["cost_model"]
    if cost["kind"] == "profiled":
        console.print(f"cost model: profile {cost['profile']} ({cost['profile_gpu']}, "
                      f"{cost['profile_date']}); {cost['measured_share']:.1%} of predicted "
                      f"time from measured tables")
    cache = summary["prefix_cache"]
    if cache["enabled"]:
        console.print(f"prefix cache hit rate {cache['hit_rate']:.1%} "
                      f"({cache['hit_tokens']:,} of {cache['query_tokens']:,} prompt tokens)")
    if good["slo_attainment"] is not None:
        console.print(f"goodput {good['requests_per_s']:.3f} req/s "
                      f"(SLO attainment {good['slo_attainment']:.1%})")
    bars = summary.get("error_bars")
    if bars:
        ranges = ", ".join(f"{name} {_fmt_ms(row['low_s'])}-{_fmt_ms(row['high_s'])} ms"
                           for name, row in bars.items() if isinstance(row, dict))
        runs = max(row["runs"] for row in bars.values() if isinstance(row, dict))
        console.print(f"validated range ({bars['group']}, up to {runs} real vLLM runs): "
                      f"{ranges}")
    admitted = summary.get("requests")
    if admitted and admitted["rejected"]:
        first = admitted["rejected_requests"][0]
        console.print(f"rejected {admitted['rejected']:,} of {admitted['submitted']:,} "
                      f"requests, as vLLM answers 400 (request {first['request_id']!r}: "
                      f"{first['reason']}; all listed in summary.json)")
    state = summary["stability"]
    console.print(f"{state['state']}: {state['evidence']}")
    console.print(f"simulated {summary['makespan_s']:,.1f} s in {runtime_s:.2f} s "
                  f"({summary['batches']['num_steps']:,} steps)")


@user_errors
def simulate_command(
    workload: Annotated[Path, typer.Option(help="trace file (.json, .jsonl, .csv)")],
    deployment: Annotated[Path | None, typer.Option(
        help="deployment file (YAML or JSON); flags override its fields")] = None,
    model: Annotated[str | None, typer.Option(help="catalog name or config.json path")] = None,
    gpu: Annotated[str | None, typer.Option(
        help="catalog name or GPU JSON file; @<watts>W sets a power limit (h100@500W)")] = None,
    tp: Annotated[int | None, typer.Option(
        "--tp", "--tensor-parallel-size", "-tp", help="tensor-parallel degree")] = None,
    pp: Annotated[int | None, typer.Option(
        "--pp", "--pipeline-parallel-size", "-pp", help="pipeline-parallel degree")] = None,
    replicas: Annotated[int | None, typer.Option(help="model replicas (data parallel)")] = None,
    engine: Annotated[str | None, typer.Option(
        help="engine preset: vllm-v1-0.15 (the default: today's vLLM), vllm-v1 (0.10), "
             "vllm-v0, sarathi-serve, or none (the bare scheduler policy)")] = None,
    async_scheduling: Annotated[bool | None, typer.Option(
        "--async-scheduling/--no-async-scheduling",
        help="overlap the engine's CPU overhead with the GPU step")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="policy: prefill-first (vLLM V0), running-first (vLLM V1), stall-free "
             "(Sarathi-Serve), orca or static; unset: the engine's")] = None,
    max_num_seqs: Annotated[int | None, typer.Option(
        help="sequences per step (unset: the engine's)")] = None,
    max_num_batched_tokens: Annotated[int | None, typer.Option(
        help="tokens per step (unset: the engine's)")] = None,
    block_size: Annotated[int | None, typer.Option(help="tokens per KV block")] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option(
        help="share of GPU memory the engine may use (0-1]")] = None,
    enable_chunked_prefill: Annotated[bool | None, typer.Option(
        "--enable-chunked-prefill/--no-enable-chunked-prefill",
        help="split prompts across steps")] = None,
    enable_prefix_caching: Annotated[bool | None, typer.Option(
        "--enable-prefix-caching/--no-enable-prefix-caching",
        help="share KV blocks of equal prefixes")] = None,
    preemption_mode: Annotated[str | None, typer.Option(help="recompute or swap")] = None,
    max_model_len: Annotated[int | None, typer.Option(
        help="longest prompt + output a request may have")] = None,
    swap_space: Annotated[float | None, typer.Option(
        help="host KV swap space per GPU, GiB")] = None,
    num_gpu_blocks_override: Annotated[int | None, typer.Option(
        help="KV blocks per replica instead of the memory plan's")] = None,
    scheduling_policy: Annotated[str | None, typer.Option(
        help="waiting-queue order: fcfs or priority (per-request 'priority' column)")] = None,
    long_prefill_token_threshold: Annotated[int | None, typer.Option(
        help="largest prefill chunk of one request per step (0: no cap)")] = None,
    max_num_partial_prefills: Annotated[int | None, typer.Option(
        help="requests partly prefilled at once (vLLM V0 only)")] = None,
    kv_offloading_size: Annotated[float | None, typer.Option(
        help="GiB of host memory per replica for evicted prefix-cache KV blocks")] = None,
    vllm_args: Annotated[str | None, typer.Option(
        help="a vllm serve command line (\"serve MODEL -tp 4 ...\") to simulate; other "
             "flags win over its values")] = None,
    speculative_config: Annotated[str | None, typer.Option(
        help="speculative decoding as JSON: {\"method\": ngram|eagle|eagle3|mtp|draft_model, "
             "\"num_speculative_tokens\": k, \"acceptance_rate\": alpha, \"model\": draft}")
    ] = None,
    generation_config: Annotated[str | None, typer.Option(
        help="sampling defaults: auto (the model's generation_config.json, vLLM's default) "
             "or vllm (vLLM's own: no top-k/top-p)")] = None,
    override_generation_config: Annotated[str | None, typer.Option(
        help="server-wide sampling parameters as JSON: {\"temperature\": t, \"top_p\": p, "
             "\"top_k\": k, \"min_p\": m}")] = None,
    dtype: Annotated[str | None, typer.Option(
        help="weights' and activations' format: auto, bfloat16, float16 (half) or "
             "float32")] = None,
    router: Annotated[str | None, typer.Option(
        help="round_robin, least_outstanding, least_kv")] = None,
    cpu_offload_gb: Annotated[float | None, typer.Option(
        help="GiB of weights per GPU kept in host memory and streamed each step (vLLM)")
    ] = None,
    offload_prefetch: Annotated[bool | None, typer.Option(
        "--offload-prefetch/--no-offload-prefetch",
        help="stream offloaded weights ahead of compute (FlexGen) instead of in place")] = None,
    num_nodes: Annotated[int | None, typer.Option(help="cluster nodes")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(help="GPUs per cluster node")] = None,
    ttft_slo: Annotated[float | None, typer.Option(help="TTFT SLO in seconds")] = None,
    tpot_slo: Annotated[float | None, typer.Option(help="TPOT SLO in seconds")] = None,
    seed: Annotated[int | None, typer.Option(
        min=0, max=2**32 - 1, help="seed of every random draw")] = None,
    profile: Annotated[str | None, typer.Option(
        help="kernel profile folder (measured tables; roofline elsewhere)")] = None,
    start: Annotated[float | None, typer.Option(
        help="replay from this second of the trace's clock (serving)")] = None,
    duration: Annotated[float | None, typer.Option(
        help="replay this many seconds of the trace's clock (serving)")] = None,
    max_requests: Annotated[int | None, typer.Option(
        help="replay at most this many requests, the first (serving)")] = None,
    time_scale: Annotated[float | None, typer.Option(
        help="multiply every arrival time by this (0.5: twice the load)")] = None,
    rate: Annotated[float | None, typer.Option(
        help="rescale arrivals to this mean rate, requests per second")] = None,
    workload_format: Annotated[str | None, typer.Option(
        help=f"trace format: {', '.join(TRACE_FORMATS)} (detected when omitted)")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for the output files")] = None,
    output_format: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
    trace: Annotated[bool, typer.Option(help="also write a Perfetto trace.json")] = False,
    trace_requests: Annotated[int, typer.Option(
        min=0, help="requests whose phases the trace shows (the first N)")] = 2000,
    report: Annotated[Path | None, typer.Option(
        help="also write the single-run HTML report to this file")] = None,
    dp: Annotated[int | None, typer.Option(
        "--dp", "--data-parallel-size", "-dp",
        help="data-parallel degree (serving: data-parallel attention ranks per replica)")] = None,
    cp: Annotated[int | None, typer.Option(help="training: context-parallel degree")] = None,
    ep: Annotated[int | None, typer.Option(
        help="expert-parallel degree (serving: 1 or tp x dp, vLLM's EP size)")] = None,
    enable_expert_parallel: Annotated[bool | None, typer.Option(
        "--enable-expert-parallel/--no-enable-expert-parallel",
        help="serving: shard the experts over tp x dp GPUs (sets --ep)")] = None,
    quantization: Annotated[str | None, typer.Option(
        "--quantization", "-q",
        help="weights' format: fp8, int8, int4, awq or gptq (vLLM's --quantization)")] = None,
    kv_cache_dtype: Annotated[str | None, typer.Option(
        help="KV cache format: auto, fp8 (fp8_e4m3, fp8_e5m2), bf16 or fp16")] = None,
    routing: Annotated[str | None, typer.Option(
        help="serving MoE routing: uniform, zipf:S (Zipf exponent S) or a routing-trace "
             "file")] = None,
    expert_placement: Annotated[str | None, typer.Option(
        help="serving MoE expert placement: linear, round_robin or a placement file")] = None,
    virtual_stages: Annotated[int | None, typer.Option(
        help="training: model chunks per stage (interleaved schedule)")] = None,
    schedule: Annotated[str | None, typer.Option(
        help="training: gpipe, 1f1b or interleaved")] = None,
    sequence_parallel: Annotated[bool | None, typer.Option(
        "--sequence-parallel/--no-sequence-parallel",
        help="training: shard norms and dropout over the TP group")] = None,
    recompute: Annotated[str | None, typer.Option(
        help="training: none, selective (Megatron's attention core), full, or op "
             "(torchtitan's per-op policy)")] = None,
    attention_kernel: Annotated[str | None, typer.Option(
        help="training: flash (FlashAttention-3 / cuDNN), flash2 (PyTorch SDPA's "
             "FlashAttention-2) or unfused")] = None,
    pointwise_kernels: Annotated[str | None, typer.Option(
        help="training: fused (Megatron-Core, torch.compile) or eager (PyTorch op by "
             "op)")] = None,
    zero_stage: Annotated[int | None, typer.Option(help="training: ZeRO stage 0-3")] = None,
    offload: Annotated[str | None, typer.Option(
        help="training: none, cpu (ZeRO-Offload) or nvme (ZeRO-Infinity)")] = None,
    activation_offload_layers: Annotated[int | None, typer.Option(
        help="training: layers whose activations go to the host (Megatron-Core's CPU "
             "offloading)")] = None,
    fp8_param_gather: Annotated[bool | None, typer.Option(
        "--fp8-param-gather/--no-fp8-param-gather",
        help="training: FP8 weights with no 16-bit copy (Megatron's --fp8-param-gather; "
             "needs dtype fp8)")] = None,
    fp8_tp_gather: Annotated[bool | None, typer.Option(
        "--fp8-tp-gather/--no-fp8-tp-gather",
        help="training: sequence parallelism's all-gathers in FP8 (torchtitan's float8 "
             "tensor parallelism; needs dtype fp8)")] = None,
    micro_batch: Annotated[int | None, typer.Option(help="training: sequences")] = None,
    global_batch: Annotated[int | None, typer.Option(help="training: sequences")] = None,
    num_gpus: Annotated[int | None, typer.Option(
        help="training: GPUs, checked against the plan's degrees")] = None,
) -> None:
    """Simulate a serving deployment on a request trace, or a training job's step."""
    flags = dict(locals())  # the parameters, by name, for SERVING_FIELDS
    from simulator import check_output_folder, simulate, write_outputs, write_text
    from simulator.serving.vllm_args import parse_vllm_args
    from validation.error_bars import interval
    from workloads.loaders import load_workload
    from workloads.overrides import read_mapping
    from workloads.replay import replay, replay_window
    from workloads.training import is_training_file
    training_only = {"--cp": cp, "--virtual-stages": virtual_stages, "--schedule": schedule,
                     "--sequence-parallel": sequence_parallel, "--recompute": recompute,
                     "--attention-kernel": attention_kernel,
                     "--pointwise-kernels": pointwise_kernels,
                     "--zero-stage": zero_stage, "--offload": offload,
                     "--activation-offload-layers": activation_offload_layers,
                     "--fp8-param-gather": fp8_param_gather,
                     "--fp8-tp-gather": fp8_tp_gather,
                     "--micro-batch": micro_batch, "--global-batch": global_batch,
                     "--num-gpus": num_gpus}
    serving_only = {"--replicas": replicas, "--engine": engine,
                    "--async-scheduling": async_scheduling, "--scheduler": scheduler,
                    "--max-num-seqs": max_num_seqs,
                    "--max-num-batched-tokens": max_num_batched_tokens,
                    "--block-size": block_size,
                    "--gpu-memory-utilization": gpu_memory_utilization,
                    "--enable-chunked-prefill": enable_chunked_prefill,
                    "--enable-prefix-caching": enable_prefix_caching,
                    "--preemption-mode": preemption_mode, "--max-model-len": max_model_len,
                    "--router": router, "--cpu-offload-gb": cpu_offload_gb,
                    "--offload-prefetch": offload_prefetch, "--num-nodes": num_nodes,
                    "--ttft-slo": ttft_slo, "--tpot-slo": tpot_slo, "--seed": seed,
                    "--profile": profile, "--routing": routing,
                    "--quantization": quantization, "--kv-cache-dtype": kv_cache_dtype,
                    "--expert-placement": expert_placement, "--report": report,
                    "--swap-space": swap_space,
                    "--num-gpu-blocks-override": num_gpu_blocks_override,
                    "--scheduling-policy": scheduling_policy,
                    "--long-prefill-token-threshold": long_prefill_token_threshold,
                    "--max-num-partial-prefills": max_num_partial_prefills,
                    "--kv-offloading-size": kv_offloading_size, "--dtype": dtype,
                    "--enable-expert-parallel": enable_expert_parallel,
                    "--start": start, "--duration": duration, "--max-requests": max_requests,
                    "--time-scale": time_scale, "--rate": rate,
                    "--speculative-config": speculative_config, "--vllm-args": vllm_args,
                    "--generation-config": generation_config,
                    "--override-generation-config": override_generation_config}
    training = is_training_file(workload)
    unused = [flag for flag, value in (serving_only if training else training_only).items()
              if value is not None]
    if unused:
        kind = "training job" if training else "serving trace"
        fail(f"{unused[0]} does not apply to a {kind} ({workload}); remove it")
    if out is not None:
        check_output_folder(out)
    if training:
        plan_overrides = {
            "plan.tp": tp, "plan.pp": pp, "plan.dp": dp, "plan.cp": cp, "plan.ep": ep,
            "plan.virtual_stages": virtual_stages, "plan.schedule": schedule,
            "plan.sequence_parallel": sequence_parallel, "plan.recompute": recompute,
            "plan.attention_kernel": attention_kernel,
            "plan.pointwise_kernels": pointwise_kernels,
            "plan.zero_stage": zero_stage, "plan.offload": offload,
            "plan.activation_offload_layers": activation_offload_layers,
            "plan.fp8_param_gather": fp8_param_gather, "plan.fp8_tp_gather": fp8_tp_gather,
            "micro_batch": micro_batch,
            "global_batch": global_batch, "gpu": gpu, "model": model, "num_gpus": num_gpus,
        }
        if deployment is not None:  # a plan file: its fields, then the flags, win
            plan_file = {f"plan.{key}": value
                         for key, value in read_mapping(deployment, "plan file").items()}
            plan_overrides = plan_file | {k: v for k, v in plan_overrides.items()
                                          if v is not None}
        _train(workload, plan_overrides, gpus_per_node, out, trace)
        return
    if speculative_config is not None:
        flags["speculative_config"] = _json_object(speculative_config, "--speculative-config")
    if override_generation_config is not None:
        flags["override_generation_config"] = _json_object(override_generation_config,
                                                           "--override-generation-config")
    overrides: dict[str, Any] = {field: flags[param] for param, field in SERVING_FIELDS.items()}
    overrides |= routing_overrides(routing)
    if vllm_args is not None:
        served = parse_vllm_args(vllm_args)
        if served.not_simulated:
            console.print("not simulated (no effect on timing): "
                          + ", ".join(served.not_simulated))
        overrides = served.overrides | {"model": served.model} | {
            key: value for key, value in overrides.items() if value is not None}
    config = deployment_from_flags(deployment, overrides)
    if output_format not in ("csv", "parquet"):
        fail(f"--format {output_format!r} is unknown; use csv or parquet")
    window = replay_window(start_s=start, duration_s=duration, max_requests=max_requests,
                           time_scale=time_scale, rate_per_s=rate)
    trace_data = replay(load_workload(workload, workload_format), window)
    if not window.is_identity:
        console.print(f"replaying {len(trace_data):,} of the trace's "
                      f"{trace_data.metadata['replay']['num_requests_in']:,} requests "
                      f"({trace_data.stats()['rate_per_s']:g} req/s)")
    with progress_bar("simulating requests") as progress:
        result = simulate(config, trace_data, record_trace=trace or report is not None,
                          trace_requests=trace_requests,
                          progress=None if progress is silent_progress else progress)
    if not result.ok:
        fail(str(result.error))
    assert result.summary is not None
    bars = interval(result.summary)
    if bars:
        result.summary["error_bars"] = bars
    _print_summary(result.summary, result.runtime_s)
    if report is not None:
        from reports import run_report  # matplotlib, for the report only

        write_text(report, run_report(result))
        console.print(f"wrote {report}")
    if out is not None:
        if not trace:
            result.trace = None  # recorded for the report only
        written = write_outputs(result, out, output_format)
        console.print("wrote " + ", ".join(str(path) for path in written))


def _train(path: Path, overrides: dict[str, Any], gpus_per_node: int | None, out: Path | None,
           trace: bool) -> None:
    """The training branch of ``simulate``: one step's time, MFU and memory."""
    from profiles.hardware import load_gpu
    from simulator import simulate_training, write_training_outputs
    from validation.error_bars import training_interval, training_range_text
    from workloads.training import load_training_job

    job = load_training_job(path, overrides)
    result = simulate_training(job, gpus_per_node=gpus_per_node, num_gpus=job.num_gpus,
                               record_trace=trace)
    result.error_bars = training_interval(load_gpu(job.gpu).name, result.step_s,
                                          result.tokens_per_s) or None
    plan = job.plan
    console.print(
        f"[bold]{job.model}[/] training on {result.num_gpus} x {job.gpu}: tp={plan.tp} "
        f"pp={plan.pp} dp={plan.dp} cp={plan.cp} ep={plan.ep}, {plan.schedule}"
        + (f" (v={plan.virtual_stages})" if plan.virtual_stages > 1 else "")
        + f", recompute {plan.recompute}, ZeRO {plan.zero_stage}"
        + (f", attention {plan.attention_kernel}" if plan.attention_kernel != "flash" else "")
        + (", eager pointwise ops" if plan.pointwise_kernels == "eager" else "")
        + (f" + offload to {plan.offload}" if plan.offload != "none" else "")
        + (f", {plan.activation_offload_layers} layers' activations on the host"
           if plan.activation_offload_layers else "")
        + (", FP8 weights (no 16-bit copy)" if plan.fp8_param_gather else "")
        + (", FP8 TP gathers" if plan.fp8_tp_gather else "") + ", "
        f"{result.num_micro_batches} micro-batch{'es' if result.num_micro_batches != 1 else ''}"
        f" of {job.micro_batch}")
    console.print(
        f"step {result.step_s:.3f} s, {result.tokens_per_s:,.0f} tokens/s, "
        f"{result.tflops_per_gpu:.1f} model TFLOP/s per GPU, MFU {result.mfu:.1%}, "
        f"HFU {result.hfu:.1%}; pipeline bubble {result.bubble_fraction:.1%}, "
        f"DP reduction {result.dp_comm_s * 1e3:.0f} ms, optimizer "
        f"{result.optimizer_s * 1e3:.0f} ms")
    if result.error_bars:
        console.print(training_range_text(result.error_bars))
    console.print(step_breakdown_table(result.breakdown, result.step_s))
    memory = result.memory.as_gib()
    console.print("memory per GPU (GiB): " + ", ".join(
        f"{name} {memory[name]:.1f}" for name in
        ("weights", "gradients", "optimizer", "activations", "buffers", "total", "capacity"))
        + "".join(f"; on {label} {memory[name]:.1f}" for name, label in (
            ("host", "host"), ("host_activations", "host (activations)"), ("nvme", "nvme"))
                  if memory[name]))
    if out is not None:
        written = write_training_outputs(result, job, out)
        console.print("wrote " + ", ".join(str(path) for path in written))
