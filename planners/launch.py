"""From plan to launch: the command lines that run a recommended plan.

* serving: ``vllm serve`` (``simulator.serving.vllm_args``, the one table of vLLM flags,
  which also reads such a command back) and SGLang's ``launch_server``;
* training: Megatron-LM's ``pretrain_gpt.py`` arguments, or torchtitan's ``train.py``
  overrides (its JobConfig sections as of 2025: ``--parallelism.*``, ``--training.*``,
  ``--activation_checkpoint.*``) for a plan run the way torchtitan runs.

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
from profiles.hardware import load_gpu
from profiles.models import catalog_entry
from simulator.serving.config import DeploymentConfig
from simulator.serving.vllm_args import field_value, vllm_command
from workloads.training import TrainingJob

__all__ = ["SGLANG_FLAGS", "launch_commands", "megatron_args", "sglang_command",
           "torchtitan_args", "training_launch"]

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

    ZeRO-1 (and 2) is the distributed optimizer; ZeRO-3 is Megatron-FSDP with every state
    sharded (``--data-parallel-sharding-strategy optim_grads_params`` and the flags its
    README requires), launched here without PP.

    Raises:
        ClusterSimError: a plan Megatron-LM does not run (ZeRO-3 with PP, NVMe offload:
            DeepSpeed's ZeRO-Infinity; ``ParallelPlan.torchtitan_only`` plans).
    """
    plan = job.plan
    if plan.offload == "nvme":
        raise ClusterSimError("offload=nvme: ZeRO-Infinity is DeepSpeed's and has no "
                              "Megatron-LM arguments")
    if plan.zero_stage == 3 and plan.pp > 1:
        raise ClusterSimError(f"zero_stage=3 with pp={plan.pp}: Megatron-LM's ZeRO-3 is "
                              f"Megatron-FSDP, launched here without PP (DeepSpeed's stage 3 "
                              f"has no Megatron-LM arguments); use zero_stage 1")
    if plan.torchtitan_only:
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
    if plan.zero_stage == 3:
        words += ["--use-megatron-fsdp", "--data-parallel-sharding-strategy",
                  "optim_grads_params", "--no-gradient-accumulation-fusion", "--ckpt-format",
                  "fsdp_dtensor"]
    if plan.offload == "cpu":
        words += ["--optimizer-cpu-offload", "--overlap-cpu-optimizer-d2h-h2d"]
    if plan.activation_offload_layers:
        words += ["--cpu-offloading", "--cpu-offloading-num-layers",
                  str(plan.activation_offload_layers)]
    words += {"bf16": ["--bf16"], "fp16": ["--fp16"],
              "fp8": ["--bf16", "--fp8-format", "hybrid"]}[job.dtype]
    if plan.fp8_param_gather:
        words.append("--fp8-param-gather")
    return shlex.join(words)


# ParallelPlan.schedule -> torchtitan's pipeline_parallel_schedule
TORCHTITAN_SCHEDULES = {"gpipe": "GPipe", "1f1b": "1F1B", "interleaved": "Interleaved1F1B"}


def torchtitan_args(job: TrainingJob, num_layers: int) -> str:
    """torchtitan ``train.py`` overrides for ``job``'s plan (``--job.config_file`` names
    the model's own TOML; these set the layout and the training knobs).

    torchtitan shards with FSDP or replicates (DDP, ZeRO-0). Without PP its FSDP is
    ZeRO-3 (weights gathered for every pass). Under a pipeline it is ZeRO-1: PyTorch's
    pipelining keeps an FSDP stage's weights gathered through the step and reduces its
    gradients once, at the last micro-batch's backward. Its "selective" recomputation is
    the per-op policy (``op``) or every n-th layer; a plan of torch.compile's fused
    kernels compiles. The local batch is one micro-batch without PP (more are
    accumulated to the global batch), the pipeline's micro-batches with it.

    Raises:
        ClusterSimError: a plan torchtitan does not run (ZeRO-2, ZeRO-1 without PP,
            ZeRO-3 with PP, Megatron's attention-core recomputation, the
            ZeRO-Offload/Infinity split, activation offloading, FP8 weights gathered
            outside FSDP, FP8 tensor parallelism with 16-bit gathers).
    """
    plan = job.plan
    if plan.zero_stage == 2:
        raise ClusterSimError("zero_stage=2: torchtitan shards with FSDP (zero_stage 3, or 1 "
                              "under a pipeline) or replicates (zero_stage 0)")
    if plan.zero_stage == 1 and plan.pp == 1:
        raise ClusterSimError("zero_stage=1 without PP: torchtitan shards with FSDP "
                              "(zero_stage 3) or replicates (zero_stage 0); zero_stage 1 is "
                              "its FSDP under a pipeline")
    if plan.zero_stage == 3 and plan.pp > 1:
        raise ClusterSimError(f"zero_stage=3 with pp={plan.pp}: under a pipeline torchtitan's "
                              f"FSDP keeps each stage's weights gathered and reduces its "
                              f"gradients at the last micro-batch, which is zero_stage 1")
    if plan.recompute == "selective":
        raise ClusterSimError("recompute=selective is Megatron's attention-core policy; "
                              "torchtitan's selective recomputation is recompute=op")
    if plan.offload != "none":
        raise ClusterSimError(f"offload={plan.offload}: torchtitan's CPU offload moves the "
                              f"weights too, which is not the plan simulated")
    if plan.activation_offload_layers:
        raise ClusterSimError("activation_offload_layers: torchtitan has no option that "
                              "offloads activations to the host (Megatron-Core's does)")
    if plan.fp8_param_gather and plan.zero_stage != 3:
        raise ClusterSimError("fp8_param_gather: torchtitan gathers FP8 weights only under "
                              "FSDP (zero_stage 3, its float8 all-gather)")
    if job.dtype == "fp8" and plan.tp > 1 and not plan.fp8_tp_gather:
        raise ClusterSimError("dtype fp8 with tp > 1: torchtitan's tensorwise float8 recipe "
                              "gathers the TP activations in FP8; set plan.fp8_tp_gather "
                              "to simulate it so")
    sharded = plan.zero_stage in (1, 3)
    words = ["--parallelism.data_parallel_shard_degree", str(plan.dp if sharded else 1),
             "--parallelism.data_parallel_replicate_degree", str(1 if sharded else plan.dp),
             "--parallelism.tensor_parallel_degree", str(plan.tp),
             "--parallelism.pipeline_parallel_degree", str(plan.pp),
             "--parallelism.context_parallel_degree", str(plan.cp),
             "--training.seq_len", str(job.seq_len),
             "--training.global_batch_size", str(job.global_batch)]
    if plan.ep > 1:
        words += ["--parallelism.expert_parallel_degree", str(plan.ep)]
    if plan.pp > 1:
        words += ["--training.local_batch_size", str(job.global_batch // plan.dp),
                  "--parallelism.pipeline_parallel_microbatch_size", str(job.micro_batch),
                  "--parallelism.pipeline_parallel_schedule",
                  TORCHTITAN_SCHEDULES[plan.schedule]]
        chunks = plan.pp * plan.virtual_stages
        if num_layers % chunks == 0:
            words += ["--parallelism.pipeline_parallel_layers_per_stage",
                      str(num_layers // chunks)]
    else:
        words += ["--training.local_batch_size", str(job.micro_batch)]
    words += ["--activation_checkpoint.mode",
              {"none": "none", "full": "full", "op": "selective"}[plan.recompute]]
    if plan.recompute == "op":
        words += ["--activation_checkpoint.selective_ac_option", "op"]
    if plan.pointwise_kernels == "fused":
        words.append("--training.compile")
        if plan.overlap_tp_comm and plan.tp > 1:
            words.append("--parallelism.enable_async_tensor_parallel")
    if job.dtype == "fp8":
        words += ["--model.converters", "float8", "--float8.recipe_name", "tensorwise"]
    if plan.fp8_param_gather:
        words += ["--float8.enable_fsdp_float8_all_gather",
                  "--float8.precompute_float8_dynamic_scale_for_fsdp"]
    return shlex.join(words)


def training_launch(job: TrainingJob, num_layers: int) -> tuple[str, str]:
    """(framework, arguments) for the first framework that runs ``job``'s plan as it was
    simulated: Megatron-LM, else torchtitan.

    Raises:
        ClusterSimError: neither runs it; the message gives each one's reason.
    """
    reasons = []
    for name, arguments in (("Megatron-LM", lambda: megatron_args(job)),
                            ("torchtitan", lambda: torchtitan_args(job, num_layers))):
        try:
            return name, arguments()
        except ClusterSimError as error:
            reasons.append(f"{name}: {error}")
    raise ClusterSimError("no launch arguments; " + "; ".join(reasons))


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
        limit = load_gpu(pool.gpu_name).power_limit_w
        if limit is not None:  # the plan was simulated at this limit: set it first
            out["power" + suffix] = f"nvidia-smi -pl {limit:g}"
    return out
