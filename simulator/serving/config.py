"""The deployment a simulation runs: what users write in a file or give as flags.

A deployment file (YAML or JSON)::

    model: llama-3-8b            # catalog name or a config.json path
    gpu: h100                    # catalog name or a GPU JSON file
    replicas: 4
    parallelism: {tp: 1, pp: 1}
    cluster: {num_nodes: 1, gpus_per_node: 8}   # optional: fits the replicas by default
    scheduler:
      policy: stall-free         # prefill-first | running-first | stall-free | orca | static
      max_num_batched_tokens: 512
    router: least_outstanding    # round_robin | least_outstanding | least_kv
    engine: vllm-v1-0.15         # the default; vllm-v1 | vllm-v0 | sarathi-serve | none
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

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from profiles.cluster import ClusterSpec
from profiles.errors import ClusterSimError, format_validation_error
from profiles.memory import DEFAULT_RUNTIME_OVERHEAD_GIB
from profiles.models import ModelSpec
from profiles.moe import RoutingConfig
from simulator.serving.policies import POLICY_PRESETS, RENAMED_POLICIES
from simulator.serving.presets import (
    DEFAULT_ENGINE,
    CpuOverhead,
    engine_max_num_seqs,
)
from simulator.serving.sampling import SamplingOverride
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
    "SpeculativeConfig",
    "TransferConfig",
    "apply_formats",
    "build_deployment",
    "load_deployment",
    "read_mapping",
    "resolve_scheduler",
    "with_engine_defaults",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ParallelismConfig(_Frozen):
    """A replica's GPUs: ``dp`` attention ranks of ``tp`` GPUs each, times ``pp`` stages.

    ``ep`` > 1 shards a MoE model's routed experts over all ``tp x dp`` GPUs of a stage
    (vLLM's ``--enable-expert-parallel``, whose EP size is TP x DP); ``dp`` > 1 is data-
    parallel attention (DeepSeek, SGLang's ``--enable-dp-attention``): each rank runs
    attention on its own share of the batch with its own KV cache, the experts are shared
    through all-to-alls."""

    tp: int = Field(default=1, ge=1, le=1024, description="tensor-parallel GPUs per stage "
                    "(vLLM --tensor-parallel-size)")
    pp: int = Field(default=1, ge=1, le=1024, description="pipeline stages per replica "
                    "(vLLM --pipeline-parallel-size)")
    dp: int = Field(default=1, ge=1, le=1024, description="data-parallel attention ranks "
                    "(vLLM --data-parallel-size)")
    ep: int = Field(default=1, ge=1, le=1024, description="expert-parallel ranks: 1 or tp x dp")
    enable_expert_parallel: bool = Field(
        default=False, description="vLLM's --enable-expert-parallel: sets ep = tp x dp")

    @model_validator(mode="before")
    @classmethod
    def _vllm_expert_flag(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("enable_expert_parallel") is True:
            tp, dp = data.get("tp", 1), data.get("dp", 1)
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in (tp, dp)):
                return data  # the fields' own checks name what is wrong
            size = tp * dp
            if data.get("ep", size) != size:
                raise ValueError(f"ep: {data['ep']} contradicts enable_expert_parallel, whose "
                                 f"EP size is tp x dp = {size}; drop one of them")
            data = {**data, "ep": size, "enable_expert_parallel": False}  # stored as ep
        return data

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

    routing: RoutingConfig = Field(default=RoutingConfig(),
                                   description="how tokens spread over the experts")
    placement: str = Field(
        default="linear", description="linear: experts [r E/ep, (r+1) E/ep) on rank r "
        "(vLLM's default); round_robin: expert e on rank e mod ep; or a placement file "
        "(clustersim place-experts writes one)")
    dispatch: Literal["home", "coherent"] = Field(
        default="home", description="home: each MoE layer sends tokens from their home "
        "rank to the experts and back (two all-to-alls); coherent: a token stays on its "
        "expert's GPU and moves on from there (ExFlow, one all-to-all per layer)")
    offload: ExpertOffloadConfig | None = Field(
        default=None, description="experts in host memory behind a GPU expert cache; null: "
        "every expert on a GPU")


class SchedulerSettings(_Frozen):
    """Scheduler knobs; ``None`` takes the policy preset's default."""

    policy: Literal["prefill-first", "running-first", "stall-free", "orca", "static"] = Field(
        default="prefill-first", description="the scheduling algorithm (policies module); "
        "an engine preset picks it when unset (vLLM V1: running-first)")
    max_num_seqs: int | None = Field(default=None, ge=1, le=1_000_000, description=(
        "sequences per step (vLLM --max-num-seqs); None: the preset's"))
    max_num_batched_tokens: int | None = Field(default=None, ge=1, le=100_000_000, description=(
        "tokens per step (vLLM --max-num-batched-tokens); None: the preset's"))
    block_size: int = Field(default=16, ge=1, le=4096, description="tokens per KV block "
                            "(vLLM --block-size)")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1, description=(
        "share of GPU memory for weights, activations and KV (vLLM --gpu-memory-utilization)"))
    enable_chunked_prefill: bool | None = Field(default=None, description=(
        "split prompts across steps (vLLM --enable-chunked-prefill); None: the policy's"))
    preemption_mode: Literal["recompute", "swap"] | None = Field(default=None, description=(
        "what a preempted request loses: recompute its KV, or swap it to the host"))
    swap_space_gib: float = Field(default=4.0, ge=0, le=100_000, description=(
        "host KV swap space per GPU in GiB (vLLM --swap-space)"))
    queue_order: Literal["fcfs", "priority"] = Field(default="fcfs", description=(
        "waiting-queue order (vLLM --scheduling-policy)"))
    max_model_len: int | None = Field(default=None, ge=1, le=100_000_000, description=(
        "longest prompt + output (vLLM --max-model-len); None: the model's context"))
    long_prefill_token_threshold: int = Field(default=0, ge=0, description=(
        "largest prefill chunk of one request per step, 0: no cap "
        "(vLLM --long-prefill-token-threshold)"))
    max_num_partial_prefills: int | None = Field(default=None, ge=1, le=1024, description=(
        "requests partly prefilled at once (vLLM V0's --max-num-partial-prefills; vLLM's V1 "
        "engine refuses it); None: no limit"))
    enable_prefix_caching: bool | None = Field(default=None, description=(
        "share KV blocks of equal prefixes (vLLM --enable-prefix-caching); None: the "
        "preset's"))
    num_gpu_blocks_override: int | None = Field(
        default=None, ge=1, le=1_000_000_000, description="KV blocks per replica, instead of "
        "the memory plan's (vLLM --num-gpu-blocks-override)")

    @field_validator("policy", mode="before")
    @classmethod
    def _renamed(cls, value: Any) -> Any:
        if isinstance(value, str) and value in RENAMED_POLICIES:
            engine = {"vllm": "vllm-v0", "vllm-v1": "vllm-v1-0.15"}.get(value, "sarathi-serve")
            raise ValueError(f"policy {value!r} is now {RENAMED_POLICIES[value]!r}: policies "
                             f"name algorithms, engine presets name products (engine: "
                             f"{engine} sets it with that engine's knobs and CPU costs)")
        return value


class SLOConfig(_Frozen):
    """Service-level objectives a request must meet to count in goodput."""

    ttft_s: float | None = Field(default=None, gt=0, description="time to first token, s")
    tpot_s: float | None = Field(default=None, gt=0, description="time per output token "
                                 "after the first, s")


class AttentionOffloadConfig(_Frozen):
    """Decode attention and the KV cache on a pool of memory-rich devices (Lamina)."""

    gpu: str = Field(description="the attention devices' GPU (catalog name or file)")
    devices: int = Field(default=1, ge=1, le=64, description="attention devices per replica")
    overlap: bool = Field(default=True, description="pipeline two micro-batches so the "
                                                    "pool's part overlaps the replica's")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1, description="share of "
                                          "the attention devices' memory for the KV cache")


class OffloadConfig(_Frozen):
    """What lives off the GPU (``profiles.offload``), named as vLLM names it."""

    cpu_offload_gb: float = Field(
        default=0.0, ge=0, le=100_000, description="GiB of weights per GPU kept in host "
        "memory (or NVMe) and streamed at every forward pass (vLLM --cpu-offload-gb)")
    weights_tier: Literal["host", "nvme"] = Field(
        default="host", description="where offloaded weights live: host DRAM or NVMe")
    prefetch: bool = Field(
        default=False, description="load the next layer's weights while this one computes "
                                   "(FlexGen); False: read in place over the host link (vLLM)")
    kv_offloading_size: float = Field(
        default=0.0, ge=0, le=100_000, description="GiB of host memory per replica (all its "
        "GPUs together) that keeps KV blocks evicted from the GPU for the prefix cache "
        "(vLLM --kv-offloading-size, LMCache)")
    decode_attention: AttentionOffloadConfig | None = Field(
        default=None, description="decode attention and the KV cache on a device pool of "
        "their own (Lamina); null: on the replica's GPUs")


class SpeculativeConfig(_Frozen):
    """Speculative decoding, named as vLLM's ``--speculative-config`` names it (see
    ``profiles.speculative`` for what each method costs)."""

    method: Literal["ngram", "eagle", "eagle3", "mtp", "draft_model"] = Field(
        description="the proposer: ngram (prompt lookup), eagle / eagle3 / mtp (a one-layer "
        "draft head), or draft_model (a smaller model, named by model)")
    num_speculative_tokens: int = Field(ge=1, le=32, description="k: drafts proposed per "
                                        "decode step")
    acceptance_rate: float = Field(ge=0, le=1, allow_inf_nan=False, description=(
        "alpha: the chance a draft is accepted once the drafts before it were (vLLM's "
        "mean acceptance length L = (1 - alpha^(k+1)) / (1 - alpha) gives it; vLLM's draft "
        "acceptance rate is (L - 1) / k); a trace's per-request acceptance_rate wins"))
    model: str | None = Field(default=None, description="draft_model: the draft's catalog "
                              "name or config.json; eagle*: the head checkpoint (priced at "
                              "the target's width)")

    @model_validator(mode="after")
    def _draft_named(self) -> SpeculativeConfig:
        if self.method == "draft_model" and self.model is None:
            raise ValueError("model: method draft_model needs the draft's model (a catalog "
                             "name or config.json path)")
        if self.method == "ngram" and self.model is not None:
            raise ValueError("model: ngram proposes from the prompt, it has no model; drop it")
        return self


RouterName = Literal["round_robin", "least_outstanding", "least_kv", "prefix_aware"]


class PoolConfig(_Frozen):
    """One pool of a disaggregated deployment: its GPUs, replicas, parallelism, scheduler.

    ``gpu``, ``scheduler`` and ``profile`` left out take the deployment's."""

    gpu: str | None = Field(default=None, description="the pool's GPU; null: the deployment's")
    replicas: int = Field(default=1, ge=1, le=100_000, description="replicas in the pool")
    parallelism: ParallelismConfig = Field(default=ParallelismConfig(),
                                           description="each replica's layout")
    scheduler: SchedulerSettings | None = Field(
        default=None, description="the pool's scheduler knobs; null: the deployment's")
    profile: str | None = Field(default=None, description="the pool's kernel profile; "
                                "null: the deployment's")


class TransferConfig(_Frozen):
    """How a request's KV cache moves from its prefill replica to its decode replica.

    ``layerwise``: each layer's KV leaves as soon as the layer is computed (Splitwise,
    Mooncake, NIXL-style connectors), so the transfer overlaps the prefill step and only
    what the link could not carry during it remains when the step ends;
    ``after_prefill``: the whole KV moves after the prefill step (DistServe's pull)."""

    mode: Literal["layerwise", "after_prefill"] = Field(
        default="layerwise", description="layerwise: each layer's KV leaves when computed; "
        "after_prefill: the whole KV moves after the prefill step")
    overhead_s: float = Field(default=0.0, ge=0, le=10,
                              description="fixed time per transfer (handshake, block tables)")


class DisaggregationConfig(_Frozen):
    """Prefill and decode on separate pools, and how requests and KV move between them."""

    prefill: PoolConfig = Field(description="the pool that runs prompts")
    decode: PoolConfig = Field(description="the pool that generates tokens")
    placement: Literal["by_pool", "paired"] = Field(
        default="by_pool", description="by_pool: each pool on nodes of its own; paired: a "
                                       "prefill and a decode replica share each node")
    transfer: TransferConfig = Field(default=TransferConfig(),
                                     description="how KV moves between the pools")
    prefill_router: RouterName = Field(default="least_outstanding", description="which "
                                       "prefill replica takes a new request")
    decode_router: Literal["round_robin", "least_outstanding", "least_kv", "nearest"] = Field(
        default="least_kv", description="which decode replica takes a prefilled request "
        "(nearest: fastest link first)")
    threshold_tokens: int = Field(
        default=0, ge=0, description="prompts of at most this many tokens skip the prefill "
                                     "pool and are prefilled on their decode replica (llm-d)")


class DeploymentConfig(_Frozen):
    """A serving deployment: model, hardware, parallelism, scheduler, router, SLOs."""

    model: str = Field(description="catalog name (clustersim models), Hugging Face id in the "
                       "catalog, or a config.json path")
    gpu: str | None = Field(default=None, description="catalog name or GPU JSON file; a "
                                "trailing @<watts>W sets a board power limit below the TDP "
                                "(h100@500W)")
    replicas: int = Field(default=1, ge=1, le=100_000, description="model replicas, each "
                          "with its own scheduler and KV cache (data parallel)")
    parallelism: ParallelismConfig = Field(default=ParallelismConfig(),
                                           description="each replica's GPUs")
    cluster: ClusterSpec | None = Field(default=None, description="nodes and GPUs per node; "
                                        "null: the fewest 8-GPU nodes that hold the replicas")
    scheduler: SchedulerSettings = Field(default=SchedulerSettings(),
                                         description="the engine's scheduler knobs")
    router: RouterName = Field(default="least_outstanding", description="which replica "
                               "takes a new request")
    disaggregation: DisaggregationConfig | None = Field(
        default=None, description="prefill and decode on separate pools (then replicas and "
        "parallelism are set per pool)")
    offload: OffloadConfig = Field(default=OffloadConfig(),
                                   description="weights and KV kept off the GPU")
    moe: MoEConfig = Field(default=MoEConfig(), description="a MoE model's routing, expert "
                           "placement and expert offload")
    speculative: SpeculativeConfig | None = Field(
        default=None, description="speculative decoding (vLLM --speculative-config); null: "
        "one token per decode step")
    quantization: Literal["fp8", "int8", "int4", "awq", "gptq"] | None = Field(
        default=None, description="weights' format, as vLLM's --quantization (awq, gptq: "
        "4-bit weight-only); None: the model config's (quantization_config, torch_dtype)")
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bf16", "fp16"] = Field(
        default="auto", description="KV cache format, as vLLM's --kv-cache-dtype (auto: "
        "the model's dtype)")
    dtype: Literal["auto", "bfloat16", "bf16", "float16", "fp16", "half", "float32", "float",
                   "fp32"] = Field(
        default="auto", description="weights' and activations' format, as vLLM's --dtype "
        "(auto: the model config's torch_dtype); a quantized model keeps its weights")
    engine: Literal["vllm-v1-0.15", "vllm-v1", "vllm-v0", "sarathi-serve"] | None = Field(
        default=DEFAULT_ENGINE, description="engine preset: its defaults for unset scheduler "
        "knobs and its CPU costs; vllm-v1-0.15 (today's vLLM) unless set; none: the bare "
        "scheduler policy, no preset and no CPU overhead")
    generation_config: Literal["auto", "vllm"] = Field(
        default="auto", description="sampling defaults, as vLLM's --generation-config: "
        "auto, the model's generation_config.json; vllm, vLLM's own (no top-k/top-p)")
    sampling: SamplingOverride | None = Field(
        default=None, description="server-wide sampling parameters, as vLLM's "
        "--override-generation-config (top-k or top-p makes the sampler sort the logits)")
    cpu_overhead: CpuOverhead | None = Field(
        default=None, description="CPU overhead per step; overrides the engine preset's")
    async_scheduling: bool | None = Field(
        default=None, description="overlap the CPU overhead with the GPU step")
    slo: SLOConfig = Field(default=SLOConfig(), description="the goodput's SLOs")
    profile: str | None = Field(
        default=None, description="kernel profile folder: measured tables, roofline elsewhere")
    runtime_overhead_gib: float = Field(
        default=DEFAULT_RUNTIME_OVERHEAD_GIB, ge=0, le=1024, description="GiB per GPU the "
        "runtime holds outside weights and KV (CUDA context, graphs, NCCL buffers)")
    seed: int = Field(default=0, ge=0, lt=2**64,
                      description="seed of every random draw of the run")

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_name(cls, value: Any) -> Any:
        if value == "none":
            return None
        if value == "sarathi":
            raise ValueError("engine 'sarathi' is now 'sarathi-serve' (the policy is "
                             "'stall-free')")
        return value

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
_DTYPES = {"bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "fp16": "fp16",
           "half": "fp16", "float32": "fp32", "float": "fp32", "fp32": "fp32"}


def apply_formats(model: ModelSpec, deployment: DeploymentConfig) -> ModelSpec:
    """``model`` with the deployment's weight and KV-cache formats (vLLM's ``--dtype``,
    ``--quantization`` and ``--kv-cache-dtype``): weights, KV capacity, GEMM rates and
    decode bytes all follow the dtypes."""
    update: dict[str, str] = {}
    if deployment.dtype != "auto":
        dtype = _DTYPES[deployment.dtype]
        if model.dtype in ("bf16", "fp16", "fp32") and deployment.quantization is None:
            update["dtype"] = dtype
        if model.kv_cache_dtype in ("bf16", "fp16", "fp32"):
            update["kv_cache_dtype"] = dtype  # the KV cache follows the activations
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
        overrides: e.g. ``{"parallelism.tp": 2, "scheduler.policy": "stall-free"}``.

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


def resolve_scheduler(settings: SchedulerSettings, model: ModelSpec, engine: str | None = None,
                      seqs_given: bool = True) -> SchedulerConfig:
    """The policy preset with the user's overrides, checked against the model and, where
    the deployment runs an ``engine`` preset, against that engine's own rules
    (``seqs_given``: the user set max_num_seqs, rather than the preset).

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
            f"{settings.policy!r} reserves whole sequences; use prefill-first, running-first "
            f"or stall-free"
        )
    return SchedulerConfig(
        policy=settings.policy,
        max_num_seqs=engine_max_num_seqs(
            engine, settings.max_num_seqs or preset["max_num_seqs"], budget, seqs_given),
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
        max_num_partial_prefills=settings.max_num_partial_prefills or 0,
        enable_prefix_caching=prefix_caching,
    )
