"""The deployment a simulation runs: what users write in a file or give as flags.

A deployment file (YAML or JSON)::

    model: llama-3-8b            # catalog name or a config.json path
    gpu: h100                    # catalog name or a GPU JSON file
    replicas: 4
    parallelism: {tp: 1, pp: 1}
    cluster: {num_nodes: 1, gpus_per_node: 8}   # optional: fits the replicas by default
    scheduler:
      policy: sarathi            # vllm | vllm-v1 | sarathi | orca | static
      max_num_batched_tokens: 512
    router: least_outstanding    # round_robin | least_outstanding | least_kv
    engine: vllm-v1              # optional preset: vllm-v1 | vllm-v0 | sarathi
    slo: {ttft_s: 2.0, tpot_s: 0.1}
    seed: 0

A disaggregated deployment (DistServe, Splitwise) gives a prefill pool and a decode pool
instead of ``replicas`` and ``parallelism``; each pool may name its own GPU type (a
heterogeneous cluster), and the fields a pool leaves out come from the top level::

    model: llama-3-8b
    gpu: h100                    # the pools' GPU unless a pool names its own
    disaggregation:
      prefill: {replicas: 2, parallelism: {tp: 2}}
      decode: {gpu: a100, replicas: 4, parallelism: {tp: 1}}
      placement: by_pool         # by_pool: each pool on its own nodes; paired: P+D per node
      transfer: {mode: layerwise, overhead_s: 0.0}
      prefill_router: least_outstanding
      decode_router: least_kv
      threshold_tokens: 0        # prompts of at most this many tokens prefill on the decode pool

Everything here is pydantic (frozen, extra fields refused) so a bad file fails with the
path of the field at fault. :func:`resolve_scheduler` turns the policy preset plus the
user's overrides into the engine's plain :class:`SchedulerConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from profiles.cluster import ClusterSpec
from profiles.errors import ClusterSimError, format_validation_error
from profiles.memory import DEFAULT_RUNTIME_OVERHEAD_GIB
from profiles.models import ModelSpec
from profiles.moe import RoutingConfig
from simulator.serving.policies import POLICY_PRESETS
from simulator.serving.presets import ENGINE_PRESETS, CpuOverhead
from simulator.serving.scheduler import SchedulerConfig
from workloads.overrides import apply_overrides, read_mapping

__all__ = [
    "AttentionOffloadConfig",
    "DeploymentConfig",
    "DisaggregationConfig",
    "ExpertOffloadConfig",
    "MoEConfig",
    "OffloadConfig",
    "ParallelismConfig",
    "PoolConfig",
    "SLOConfig",
    "SchedulerSettings",
    "TransferConfig",
    "apply_formats",
    "build_deployment",
    "load_deployment",
    "read_mapping",
    "resolve_cpu_overhead",
    "resolve_scheduler",
    "with_engine_defaults",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParallelismConfig(_Frozen):
    """A replica's GPUs: ``dp`` attention ranks of ``tp`` GPUs each, times ``pp`` stages.

    ``ep`` > 1 shards a MoE model's routed experts over all ``tp x dp`` GPUs of a stage
    (vLLM's ``--enable-expert-parallel``, whose EP size is TP x DP); ``dp`` > 1 is data-
    parallel attention (DeepSeek, SGLang's ``--enable-dp-attention``): each rank runs
    attention on its own share of the batch with its own KV cache, the experts are shared
    through all-to-alls."""

    tp: int = Field(default=1, ge=1, description="tensor-parallel GPUs per stage")
    pp: int = Field(default=1, ge=1, description="pipeline stages per replica")
    dp: int = Field(default=1, ge=1, le=1024, description="data-parallel attention ranks")
    ep: int = Field(default=1, ge=1, le=1024, description="expert-parallel ranks: 1 or tp x dp")

    @model_validator(mode="after")
    def _expert_layout(self) -> ParallelismConfig:
        if self.ep > 1 and self.ep != self.tp * self.dp:
            raise ValueError(f"ep: {self.ep} must be 1 or tp x dp = {self.tp * self.dp} "
                             f"(experts shard over every GPU of a stage); set dp = "
                             f"ep / tp")
        if self.dp > 1 and self.ep == 1:
            raise ValueError(f"dp: data-parallel attention ({self.dp} ranks) shares the "
                             f"experts by expert parallelism; set ep = tp x dp = "
                             f"{self.tp * self.dp}")
        if self.dp > 1 and self.pp > 1:
            raise ValueError("dp: data-parallel attention with pipeline stages is not "
                             "modelled; use pp = 1")
        return self

    @property
    def gpus_per_stage(self) -> int:
        return self.tp * self.dp

    @property
    def gpus(self) -> int:
        return self.tp * self.dp * self.pp


class ExpertOffloadConfig(_Frozen):
    """Experts in host memory behind a GPU expert cache (``profiles.expert_cache``)."""

    gpu_experts: int = Field(ge=1, le=4096, description="experts per MoE layer each GPU "
                             "keeps resident (the cache); the rest live in host memory")
    policy: Literal["lru", "lfu", "prefetch"] = Field(
        default="lru", description="eviction (lru, lfu), or lru with the next layer's "
        "predicted experts copied while the previous layer computes (prefetch)")


class MoEConfig(_Frozen):
    """How a MoE model's tokens spread over its experts and where the experts live."""

    routing: RoutingConfig = RoutingConfig()
    placement: str = Field(
        default="linear", description="linear: experts [r E/ep, (r+1) E/ep) on rank r "
        "(vLLM's default); round_robin: expert e on rank e mod ep; or a placement file "
        "(clustersim place-experts writes one)")
    dispatch: Literal["home", "coherent"] = Field(
        default="home", description="home: each MoE layer sends tokens from their home "
        "rank to the experts and back (two all-to-alls); coherent: a token stays on its "
        "expert's GPU and moves on from there (ExFlow, one all-to-all per layer)")
    offload: ExpertOffloadConfig | None = None


class SchedulerSettings(_Frozen):
    """Scheduler knobs; ``None`` takes the policy preset's default."""

    policy: Literal["vllm", "vllm-v1", "sarathi", "orca", "static"] = "vllm"
    max_num_seqs: int | None = Field(default=None, ge=1)
    max_num_batched_tokens: int | None = Field(default=None, ge=1)
    block_size: int = Field(default=16, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    enable_chunked_prefill: bool | None = None
    preemption_mode: Literal["recompute", "swap"] | None = None
    swap_space_gib: float = Field(default=4.0, ge=0, description="host KV space per GPU")
    queue_order: Literal["fcfs", "priority"] = "fcfs"
    max_model_len: int | None = Field(default=None, ge=1)
    long_prefill_token_threshold: int = Field(default=0, ge=0)
    enable_prefix_caching: bool | None = None
    num_gpu_blocks_override: int | None = Field(
        default=None, ge=1, description="KV blocks per replica, instead of the memory plan's")


class SLOConfig(_Frozen):
    ttft_s: float | None = Field(default=None, gt=0)
    tpot_s: float | None = Field(default=None, gt=0)


class AttentionOffloadConfig(_Frozen):
    """Decode attention and the KV cache on a pool of memory-rich devices (Lamina)."""

    gpu: str = Field(description="the attention devices' GPU (catalog name or file)")
    devices: int = Field(default=1, ge=1, le=64, description="attention devices per replica")
    overlap: bool = Field(default=True, description="pipeline two micro-batches so the "
                                                    "pool's part overlaps the replica's")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)


class OffloadConfig(_Frozen):
    """What lives off the GPU (``profiles.offload``), named as vLLM names it."""

    cpu_offload_gb: float = Field(
        default=0.0, ge=0, le=100_000, description="GiB of weights per GPU kept in host "
        "memory (or NVMe) and streamed at every forward pass (vLLM --cpu-offload-gb)")
    weights_tier: Literal["host", "nvme"] = "host"
    prefetch: bool = Field(
        default=False, description="load the next layer's weights while this one computes "
                                   "(FlexGen); False: read in place over the host link (vLLM)")
    kv_offloading_size: float = Field(
        default=0.0, ge=0, le=100_000, description="GiB of host memory per replica (all its "
        "GPUs together) that keeps KV blocks evicted from the GPU for the prefix cache "
        "(vLLM --kv-offloading-size, LMCache)")
    decode_attention: AttentionOffloadConfig | None = None


RouterName = Literal["round_robin", "least_outstanding", "least_kv", "prefix_aware"]


class PoolConfig(_Frozen):
    """One pool of a disaggregated deployment: its GPUs, replicas, parallelism, scheduler.

    ``gpu``, ``scheduler`` and ``profile`` left out take the deployment's."""

    gpu: str | None = None
    replicas: int = Field(default=1, ge=1)
    parallelism: ParallelismConfig = ParallelismConfig()
    scheduler: SchedulerSettings | None = None
    profile: str | None = None


class TransferConfig(_Frozen):
    """How a request's KV cache moves from its prefill replica to its decode replica.

    ``layerwise``: each layer's KV leaves as soon as the layer is computed (Splitwise,
    Mooncake, NIXL-style connectors), so the transfer overlaps the prefill step and only
    what the link could not carry during it remains when the step ends;
    ``after_prefill``: the whole KV moves after the prefill step (DistServe's pull)."""

    mode: Literal["layerwise", "after_prefill"] = "layerwise"
    overhead_s: float = Field(default=0.0, ge=0, le=10,
                              description="fixed time per transfer (handshake, block tables)")


class DisaggregationConfig(_Frozen):
    """Prefill and decode on separate pools, and how requests and KV move between them."""

    prefill: PoolConfig
    decode: PoolConfig
    placement: Literal["by_pool", "paired"] = Field(
        default="by_pool", description="by_pool: each pool on nodes of its own; paired: a "
                                       "prefill and a decode replica share each node")
    transfer: TransferConfig = TransferConfig()
    prefill_router: RouterName = "least_outstanding"
    decode_router: Literal["round_robin", "least_outstanding", "least_kv", "nearest"] = \
        "least_kv"
    threshold_tokens: int = Field(
        default=0, ge=0, description="prompts of at most this many tokens skip the prefill "
                                     "pool and are prefilled on their decode replica (llm-d)")


class DeploymentConfig(_Frozen):
    """A serving deployment: model, hardware, parallelism, scheduler, router, SLOs."""

    model: str
    gpu: str | None = Field(default=None, description="catalog name or GPU JSON file")
    replicas: int = Field(default=1, ge=1)
    parallelism: ParallelismConfig = ParallelismConfig()
    cluster: ClusterSpec | None = None
    scheduler: SchedulerSettings = SchedulerSettings()
    router: RouterName = "least_outstanding"
    disaggregation: DisaggregationConfig | None = None
    offload: OffloadConfig = OffloadConfig()
    moe: MoEConfig = MoEConfig()
    quantization: Literal["fp8", "int8", "int4", "awq", "gptq"] | None = Field(
        default=None, description="weights' format, as vLLM's --quantization (awq, gptq: "
        "4-bit weight-only); None: the model config's (quantization_config, torch_dtype)")
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bf16", "fp16"] = Field(
        default="auto", description="KV cache format, as vLLM's --kv-cache-dtype (auto: "
        "the model's dtype)")
    engine: Literal["vllm-v1", "vllm-v1-0.15", "vllm-v0", "sarathi"] | None = Field(
        default=None, description="engine preset: its defaults for unset scheduler knobs "
                                  "and its CPU overhead per step")
    cpu_overhead: CpuOverhead | None = Field(
        default=None, description="CPU overhead per step; overrides the engine preset's")
    async_scheduling: bool | None = Field(
        default=None, description="overlap the CPU overhead with the GPU step")
    slo: SLOConfig = SLOConfig()
    profile: str | None = Field(
        default=None, description="kernel profile folder: measured tables, roofline elsewhere")
    runtime_overhead_gib: float = Field(default=DEFAULT_RUNTIME_OVERHEAD_GIB, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _pools_or_replicas(self) -> DeploymentConfig:
        disagg = self.disaggregation
        if disagg is None:
            if self.gpu is None:
                raise ValueError("gpu: missing; name a catalog GPU (e.g. h100) or a GPU file")
            return self
        clash = sorted({"replicas", "parallelism"} & self.model_fields_set)
        if clash:
            raise ValueError(f"{clash[0]}: a disaggregated deployment sets replicas and "
                             f"parallelism per pool (disaggregation.prefill / .decode)")
        for name, pool in (("prefill", disagg.prefill), ("decode", disagg.decode)):
            if pool.gpu is None and self.gpu is None:
                raise ValueError(f"disaggregation.{name}.gpu: missing; name the pool's GPU "
                                 f"or the deployment's gpu")
        return self

    @property
    def is_disaggregated(self) -> bool:
        return self.disaggregation is not None

    def pool(self, name: Literal["prefill", "decode"]) -> DeploymentConfig:
        """One pool of a disaggregated deployment as a deployment of its own."""
        assert self.disaggregation is not None
        pool: PoolConfig = getattr(self.disaggregation, name)
        return self.model_copy(update={
            "gpu": pool.gpu or self.gpu, "replicas": pool.replicas,
            "parallelism": pool.parallelism,
            "scheduler": pool.scheduler if pool.scheduler is not None else self.scheduler,
            "profile": pool.profile or self.profile, "disaggregation": None,
        })

    @property
    def gpu_name(self) -> str:
        """The GPU of a colocated deployment (a disaggregated one names it per pool)."""
        if self.gpu is None:
            raise ClusterSimError("gpu: missing; name a catalog GPU (e.g. h100)")
        return self.gpu

    def cluster_spec(self) -> ClusterSpec:
        """The given cluster, or the smallest 8-GPU-node cluster that holds the replicas."""
        if self.cluster is not None:
            return self.cluster
        gpus = self.replicas * self.parallelism.gpus
        per_node = max(8, self.parallelism.tp)
        return ClusterSpec(num_nodes=-(-gpus // per_node), gpus_per_node=per_node)


_WEIGHTS = {"fp8": "fp8", "int8": "int8", "int4": "int4", "awq": "int4", "gptq": "int4"}


def apply_formats(model: ModelSpec, deployment: DeploymentConfig) -> ModelSpec:
    """``model`` with the deployment's weight and KV-cache formats (vLLM's
    ``--quantization`` and ``--kv-cache-dtype``): weights, KV capacity, GEMM rates and
    decode bytes all follow the dtypes."""
    update: dict[str, str] = {}
    if deployment.quantization is not None:
        update["dtype"] = _WEIGHTS[deployment.quantization]
    if deployment.kv_cache_dtype != "auto":
        kv = deployment.kv_cache_dtype
        update["kv_cache_dtype"] = "fp8" if kv.startswith("fp8") else kv
    return model.model_copy(update=update) if update else model


def load_deployment(path: str | Path, overrides: dict[str, Any] | None = None) -> DeploymentConfig:
    """Read a deployment file (YAML or JSON) and apply dotted-key overrides from flags.

    Args:
        path: the file.
        overrides: e.g. ``{"parallelism.tp": 2, "scheduler.policy": "sarathi"}``.

    Raises:
        ClusterSimError: unreadable file or an invalid field.
    """
    data = read_mapping(path, "deployment")
    return build_deployment(data, overrides, source=f"deployment {path}")


def build_deployment(data: dict[str, Any], overrides: dict[str, Any] | None = None,
                     source: str = "deployment") -> DeploymentConfig:
    """Validate a deployment mapping after applying dotted-key overrides."""
    merged = apply_overrides(data, overrides)
    try:
        return DeploymentConfig.model_validate(merged)
    except ValidationError as error:
        raise ClusterSimError(format_validation_error(error, source)) from None


def with_engine_defaults(settings: SchedulerSettings, defaults: dict[str, Any]
                        ) -> SchedulerSettings:
    """``settings`` with an engine preset's ``defaults`` for every knob the user left unset."""
    unset = {key: value for key, value in defaults.items()
             if key not in settings.model_fields_set}
    return settings.model_copy(update=unset)


def resolve_cpu_overhead(deployment: DeploymentConfig) -> CpuOverhead | None:
    """The explicit CPU overhead, else the engine preset's, else none; ``async_scheduling``
    switches its overlap with the GPU step."""
    overhead = deployment.cpu_overhead
    if overhead is None and deployment.engine is not None:
        overhead = ENGINE_PRESETS[deployment.engine].overhead
    if overhead is None:
        if deployment.async_scheduling:
            raise ClusterSimError("async_scheduling needs a CPU overhead to overlap: pass "
                                  "--engine or a cpu_overhead block in the deployment")
        return None
    if deployment.async_scheduling is not None:
        overhead = overhead.model_copy(update={"async_scheduling": deployment.async_scheduling})
    return overhead


def resolve_scheduler(settings: SchedulerSettings, model: ModelSpec) -> SchedulerConfig:
    """The policy preset with the user's overrides, checked against the model.

    Raises:
        ClusterSimError: a combination no engine runs (e.g. a budget below the longest
            prompt with chunked prefill off).
    """
    preset = dict(POLICY_PRESETS[settings.policy])
    chunked = (preset["enable_chunked_prefill"] if settings.enable_chunked_prefill is None
               else settings.enable_chunked_prefill)
    max_model_len = settings.max_model_len or model.max_position_embeddings
    if settings.max_model_len and settings.max_model_len > model.max_position_embeddings:
        raise ClusterSimError(
            f"scheduler.max_model_len={settings.max_model_len} exceeds {model.name}'s "
            f"max_position_embeddings={model.max_position_embeddings}; lower it"
        )
    budget = settings.max_num_batched_tokens or preset["max_num_batched_tokens"]
    if budget is None:
        budget = max(max_model_len, 2048)
    if not chunked and budget < max_model_len:
        raise ClusterSimError(
            f"scheduler.max_num_batched_tokens={budget} is below max_model_len={max_model_len} "
            f"with chunked prefill off, so long prompts could never run; raise it, lower "
            f"scheduler.max_model_len, or set enable_chunked_prefill"
        )
    prefix_caching = bool(settings.enable_prefix_caching)
    preemption = settings.preemption_mode or preset["preemption_mode"]
    if prefix_caching and preemption == "swap":
        raise ClusterSimError(
            "scheduler.preemption_mode=swap cannot be combined with enable_prefix_caching "
            "(vLLM v1 recomputes preempted requests); use recompute"
        )
    if prefix_caching and preset["kv_allocation"] != "paged":
        raise ClusterSimError(
            f"scheduler.enable_prefix_caching needs paged KV blocks; policy "
            f"{settings.policy!r} reserves whole sequences; use vllm or sarathi"
        )
    return SchedulerConfig(
        policy=settings.policy,
        max_num_seqs=settings.max_num_seqs or preset["max_num_seqs"],
        max_num_batched_tokens=budget,
        block_size=settings.block_size,
        enable_chunked_prefill=chunked,
        # NOTE: vLLM v0 with chunked prefill turned on stops being prefill-first and puts
        # decodes first; presets that chunk by default keep their own order (vLLM V1).
        prefill_first=preset["prefill_first"] and not chunked,
        decodes_first=preset["decodes_first"] or (chunked and not preset["enable_chunked_prefill"]),
        batching=preset["batching"],
        kv_allocation=preset["kv_allocation"],
        preemption_mode=preemption,
        queue_order=settings.queue_order,
        max_model_len=max_model_len,
        long_prefill_token_threshold=settings.long_prefill_token_threshold,
        enable_prefix_caching=prefix_caching,
    )
