"""From plan to launch: the command lines that run a recommended plan.

* serving: ``vllm serve`` (``simulator.serving.vllm_args``, the one table of vLLM flags,
  which also reads such a command back) and SGLang's ``launch_server``;
* training: Megatron-LM's ``pretrain_gpt.py`` arguments.

Each command carries every knob the plan sets that the engine has a flag for; what a
command cannot say (replica count, the router, the GPU type) is printed beside it by the
caller. SGLang's knobs are the nearest equivalents of vLLM's, named in ``SGLANG_FLAGS``;
``mem_fraction_static`` is SGLang's share of memory for weights and KV, which is
vLLM's ``gpu_memory_utilization`` less the activations, so the same number is an
approximation that SGLang users tune.
"""

from __future__ import annotations

import json
import shlex

from profiles.errors import ClusterSimError
from profiles.models import catalog_entry
from simulator.serving.config import DeploymentConfig
from simulator.serving.vllm_args import field_value, vllm_command
from workloads.training import TrainingJob

__all__ = ["SGLANG_FLAGS", "launch_commands", "megatron_args", "sglang_command"]

# deployment field -> SGLang launch_server flag
SGLANG_FLAGS = {
    "parallelism.tp": "--tp-size", "parallelism.dp": "--dp-size", "parallelism.ep": "--ep-size",
    "scheduler.max_num_seqs": "--max-running-requests",
    "scheduler.max_num_batched_tokens": "--chunked-prefill-size",
    "scheduler.block_size": "--page-size",
    "scheduler.gpu_memory_utilization": "--mem-fraction-static",
    "scheduler.max_model_len": "--context-length",
    "kv_cache_dtype": "--kv-cache-dtype", "quantization": "--quantization",
    "seed": "--random-seed",
}


def _hf_id(name: str) -> str:
    entry = catalog_entry(name)
    return next((alias for alias in (entry or {}).get("aliases", []) if "/" in alias), name)


def sglang_command(deployment: DeploymentConfig) -> str:
    """``python -m sglang.launch_server`` for one replica of ``deployment``."""
    if deployment.is_disaggregated:
        raise ClusterSimError("launch_server runs one pool: print each pool's command")
    data = deployment.model_dump(exclude_unset=True)
    words = ["python", "-m", "sglang.launch_server", "--model-path", _hf_id(deployment.model)]
    for target, flag in SGLANG_FLAGS.items():
        value = field_value(data, target)
        if value is not None and not (target == "parallelism.ep" and value == 1):
            words += [flag, str(value)]
    if deployment.parallelism.dp > 1:
        words.append("--enable-dp-attention")
    if data.get("scheduler", {}).get("enable_prefix_caching") is False:
        words.append("--disable-radix-cache")
    spec = deployment.speculative
    if spec is not None:
        algorithm = {"eagle": "EAGLE", "eagle3": "EAGLE3", "mtp": "EAGLE",
                     "ngram": "NGRAM", "draft_model": "STANDALONE"}[spec.method]
        words += ["--speculative-algorithm", algorithm,
                  "--speculative-num-steps", str(spec.num_speculative_tokens)]
        if spec.model is not None:
            words += ["--speculative-draft-model-path", _hf_id(spec.model)]
    return shlex.join(words)


def megatron_args(job: TrainingJob) -> str:
    """Megatron-LM arguments for ``job``'s plan (``torchrun ... pretrain_gpt.py ARGS``).

    Raises:
        ClusterSimError: a plan Megatron-LM does not run (ZeRO-3 or NVMe offload: those
            are DeepSpeed's and FSDP's; the per-op recomputation policy, eager pointwise kernels and
            FlashAttention-2: torchtitan's).
    """
    plan = job.plan
    if plan.zero_stage == 3 or plan.offload == "nvme":
        raise ClusterSimError("ZeRO-3 (DeepSpeed's stage 3, PyTorch FSDP) and ZeRO-Infinity "
                              "have no Megatron-LM arguments here; its distributed "
                              "optimizer is ZeRO-1")
    if plan.recompute == "op" or plan.pointwise_kernels == "eager" \
            or plan.attention_kernel == "flash2":
        raise ClusterSimError("recompute=op, eager pointwise kernels and FlashAttention-2 "
                              "are how torchtitan runs; Megatron-LM has no arguments for "
                              "them (use recompute none, selective or full)")
    words = ["--tensor-model-parallel-size", str(plan.tp),
             "--pipeline-model-parallel-size", str(plan.pp),
             "--context-parallel-size", str(plan.cp),
             "--expert-model-parallel-size", str(plan.ep),
             "--micro-batch-size", str(job.micro_batch),
             "--global-batch-size", str(job.global_batch), "--seq-length", str(job.seq_len)]
    if plan.virtual_stages > 1:
        words += ["--num-virtual-stages-per-pipeline-rank", str(plan.virtual_stages)]
    if plan.first_stage_layers is not None:
        words += ["--decoder-first-pipeline-num-layers", str(plan.first_stage_layers)]
    if plan.last_stage_layers is not None:
        words += ["--decoder-last-pipeline-num-layers", str(plan.last_stage_layers)]
    if plan.embedding_in_pipeline_split:
        words.append("--account-for-embedding-in-pipeline-split")
    if plan.loss_in_pipeline_split:
        words.append("--account-for-loss-in-pipeline-split")
    if plan.sequence_parallel:
        words.append("--sequence-parallel")
    if plan.recompute == "selective":
        words += ["--recompute-granularity", "selective"]
    elif plan.recompute == "full":
        words += ["--recompute-granularity", "full", "--recompute-method", "uniform",
                  "--recompute-num-layers", "1"]
    if plan.zero_stage >= 1:
        words.append("--use-distributed-optimizer")
    if plan.offload == "cpu":
        words += ["--optimizer-cpu-offload", "--overlap-cpu-optimizer-d2h-h2d"]
    words += {"bf16": ["--bf16"], "fp16": ["--fp16"],
              "fp8": ["--bf16", "--fp8-format", "hybrid"]}[job.dtype]
    return shlex.join(words)


def launch_commands(deployment: DeploymentConfig) -> dict[str, str]:
    """Every engine's command for a serving plan that engine can run, by engine name,
    plus the layout a command does not carry."""
    out: dict[str, str] = {}
    pools = ([deployment.pool("prefill"), deployment.pool("decode")]
             if deployment.is_disaggregated else [deployment])
    for index, pool in enumerate(pools):
        suffix = ("" if len(pools) == 1 else [" (prefill pool)", " (decode pool)"][index])
        try:
            out["vllm" + suffix] = vllm_command(pool)
        except ClusterSimError as error:
            out["vllm" + suffix] = f"not expressible: {error}"
        out["sglang" + suffix] = sglang_command(pool)
        out["layout" + suffix] = json.dumps({
            "replicas": pool.replicas, "gpu": pool.gpu_name,
            "gpus_per_replica": pool.parallelism.gpus, "router": pool.router})
    return out
