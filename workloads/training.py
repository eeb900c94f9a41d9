"""Training jobs and their parallel plans, as files and flags give them.

A training workload file::

    {"kind": "training", "model": "gpt-3-175b", "seq_len": 2048, "global_batch": 1536,
     "micro_batch": 1, "dtype": "bf16",
     "plan": {"tp": 8, "pp": 8, "dp": 24, "schedule": "interleaved", "virtual_stages": 2,
              "sequence_parallel": true, "recompute": "selective", "zero_stage": 1}}

The plan may also come from flags or a separate file; :func:`load_training_job` reads the
job, and checks that need the model (TP divides the heads, ...) happen when the
simulator resolves the plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from profiles.errors import ClusterSimError, format_validation_error
from profiles.moe import RoutingConfig
from profiles.reading import read_json
from workloads.overrides import apply_overrides

__all__ = ["ParallelPlan", "TrainingJob", "is_training_file", "load_training_job"]


# Bounds of a training job: a million GPUs, and a step of at most a million
# (micro-batch, stage, chunk) slots (the largest published plans use about 10^4; a
# million take about 6 s to simulate), so no step runs for minutes.
MAX_GPUS = 2**20
MAX_PIPELINE_SLOTS = 1_000_000
MAX_JOB_BYTES = 2**20  # a training job is a few hundred bytes; a larger .json is a trace


class ParallelPlan(BaseModel):
    """How a training job is spread over GPUs and what memory savings it uses."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    tp: int = Field(default=1, ge=1, le=MAX_GPUS, description="tensor parallel")
    pp: int = Field(default=1, ge=1, le=MAX_GPUS, description="pipeline stages")
    dp: int = Field(default=1, ge=1, le=MAX_GPUS, description="data parallel replicas")
    cp: int = Field(default=1, ge=1, le=MAX_GPUS, description="context parallel (sequence split)")
    ep: int = Field(default=1, ge=1, le=MAX_GPUS,
                    description="expert parallel (MoE): within dp x cp, or folded over "
                    "tp x dp x cp with unsharded experts when it does not divide dp x cp")
    virtual_stages: int = Field(default=1, ge=1, le=1024,
                                description="interleaved model chunks/stage")
    schedule: Literal["gpipe", "1f1b", "interleaved"] = "1f1b"
    sequence_parallel: bool = False
    recompute: Literal["none", "selective", "full", "op"] = Field(
        default="none", description="selective: Megatron-Core's attention core; full: each "
        "layer's forward; op: torchtitan's per-op policy (every second matmul and every "
        "pointwise op of the forward, attention kept)")
    zero_stage: Literal[0, 1, 2, 3] = 0
    offload: Literal["none", "cpu", "nvme"] = Field(
        default="none", description="cpu: ZeRO-Offload (gradients and optimizer on the host); "
                                    "nvme: ZeRO-Infinity (all model states on NVMe, stage 3)")
    activation_offload_layers: int = Field(
        default=0, ge=0, le=2**20, description="transformer layers whose activations go to "
        "host memory after their forward pass and come back for their backward, behind the "
        "neighbouring layers' compute (Megatron-Core's --cpu-offloading-num-layers; it needs "
        "pp=1 and no recomputation)")
    overlap_dp_comm: bool = True  # gradient reduction overlaps the last backward pass
    overlap_tp_comm: bool = False
    attention_kernel: Literal["flash", "flash2", "unfused"] = Field(
        default="flash", description="flash: FlashAttention-3 or cuDNN's fused attention "
        "(Megatron-Core, Transformer Engine); flash2: FlashAttention-2 (PyTorch SDPA's "
        "default backend, as torchtitan calls it); unfused: Megatron before 2023")
    pointwise_kernels: Literal["fused", "eager"] = Field(
        default="fused", description="fused: norms, rotary embeddings and activations as "
        "fused kernels (Megatron-Core, Transformer Engine, torch.compile); eager: PyTorch's "
        "op-by-op kernels (torchtitan without torch.compile)")
    gradient_dtype: Literal["bf16", "fp32"] = Field(
        default="bf16", description="gradients as kept for the reduction: fp32 is "
        "Megatron's default for bf16 training (--accumulate-allreduce-grads-in-fp32)")
    fp8_param_gather: bool = Field(
        default=False, description="FP8 training keeps each weight as FP8 with its "
        "transpose and no 16-bit copy (Megatron's --fp8-param-gather, on in Megatron-"
        "Bridge's FP8 recipes; torchtitan's FSDP float8 all-gather); needs dtype fp8. Its "
        "memory is counted; the weights' all-gather is still priced at 16 bits")
    fp8_tp_gather: bool = Field(
        default=False, description="FP8 training gathers sequence parallelism's "
        "activations in FP8: the forward input all-gather and the backward gradient "
        "all-gather move 1 byte per element, the reduce-scatters 2 (torchao's Float8"
        "ColwiseParallel/RowwiseParallel, which torchtitan's tensorwise float8 recipe "
        "uses under TP); needs dtype fp8; no effect without sequence parallelism")
    # Uneven pipeline stages (Megatron's --decoder-first/last-pipeline-num-layers and
    # --account-for-embedding/loss-in-pipeline-split): see simulator.training.stages.
    first_stage_layers: int | None = Field(
        default=None, ge=0, le=2**20, description="transformer layers on the first pipeline "
        "stage (the rest split evenly)")
    last_stage_layers: int | None = Field(
        default=None, ge=0, le=2**20, description="transformer layers on the last pipeline "
        "stage (the rest split evenly)")
    embedding_in_pipeline_split: bool = Field(
        default=False, description="count the embedding as one layer when splitting layers "
        "over stages (the first chunk then holds one layer fewer)")
    loss_in_pipeline_split: bool = Field(
        default=False, description="count the LM head and loss as one layer when splitting "
        "layers over stages (the last chunk then holds one layer fewer)")

    @model_validator(mode="after")
    def _consistent(self) -> ParallelPlan:
        if self.schedule == "interleaved" and self.virtual_stages < 2:
            raise ValueError("schedule=interleaved needs virtual_stages >= 2")
        if self.schedule != "interleaved" and self.virtual_stages != 1:
            raise ValueError("virtual_stages > 1 needs schedule=interleaved")
        if self.sequence_parallel and self.tp == 1:
            raise ValueError("sequence_parallel needs tp > 1")
        if self.offload == "cpu" and self.zero_stage == 0:
            raise ValueError("offload=cpu (ZeRO-Offload) partitions the optimizer: set "
                             "zero_stage 1, 2 or 3")
        if self.offload == "nvme" and self.zero_stage != 3:
            raise ValueError("offload=nvme (ZeRO-Infinity) needs zero_stage 3")
        if self.activation_offload_layers and self.pp > 1:
            raise ValueError("activation_offload_layers needs pp=1: Megatron-Core offloads "
                             "activations only without pipeline parallelism")
        if self.activation_offload_layers and self.recompute != "none":
            raise ValueError("activation_offload_layers needs recompute=none: Megatron-Core "
                             "does not offload activations of recomputed layers")
        uneven = (self.first_stage_layers is not None or self.last_stage_layers is not None
                  or self.embedding_in_pipeline_split or self.loss_in_pipeline_split)
        if uneven and self.pp == 1:
            raise ValueError("uneven pipeline stages (first/last_stage_layers, embedding/"
                             "loss_in_pipeline_split) need pp > 1")
        return self

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    @property
    def torchtitan_only(self) -> bool:
        """The plan names how torchtitan runs a layer (its per-op recomputation policy,
        PyTorch's eager pointwise ops or SDPA's FlashAttention-2), which Megatron-Core
        does not."""
        return (self.recompute == "op" or self.pointwise_kernels == "eager"
                or self.attention_kernel == "flash2")


class TrainingJob(BaseModel):
    """One training step's work: model, sequence length, batch, precision."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["training"] = "training"
    model: str
    seq_len: int = Field(gt=0, le=2**24, description="tokens per sequence (up to 16M)")
    global_batch: int = Field(gt=0, le=2**24, description="sequences per optimizer step")
    micro_batch: int = Field(default=1, gt=0, le=2**24,
                             description="sequences per micro-batch")
    dtype: Literal["bf16", "fp16", "fp8"] = "bf16"
    optimizer: Literal["adam"] = "adam"
    gpu: str | None = None
    num_gpus: int | None = Field(default=None, gt=0, le=MAX_GPUS,
                                 description="checked against the plan")
    plan: ParallelPlan = ParallelPlan()
    routing: RoutingConfig = Field(
        default=RoutingConfig(), description="MoE: how tokens spread over experts; the "
        "busiest EP rank sets the experts' time (uniform: balanced, as with an auxiliary "
        "balance loss)")

    @model_validator(mode="after")
    def _fp8_fields(self) -> TrainingJob:
        if self.dtype == "fp8":
            return self
        for name, what in (("fp8_param_gather", "keeps the weights in FP8"),
                           ("fp8_tp_gather", "gathers FP8 activations")):
            if getattr(self.plan, name):
                raise ValueError(f"plan.{name} {what}: it needs dtype fp8, not "
                                 f"{self.dtype}; set dtype to fp8 or drop it")
        return self

    def num_micro_batches(self) -> int:
        """Micro-batches per pipeline per step (gradient accumulation steps)."""
        per_replica, remainder = divmod(self.global_batch, self.plan.dp)
        if remainder or per_replica % self.micro_batch:
            raise ClusterSimError(
                f"global_batch={self.global_batch} must be a multiple of dp={self.plan.dp} x "
                f"micro_batch={self.micro_batch}; change one of them"
            )
        micro_batches = per_replica // self.micro_batch
        slots = micro_batches * self.plan.pp * self.plan.virtual_stages
        if slots > MAX_PIPELINE_SLOTS:
            raise ClusterSimError(
                f"{micro_batches:,} micro-batches x pp={self.plan.pp} x virtual_stages="
                f"{self.plan.virtual_stages} = {slots:,} pipeline slots, over the "
                f"{MAX_PIPELINE_SLOTS:,} one step is simulated with; raise micro_batch or dp")
        return micro_batches


def is_training_file(path: str | Path) -> bool:
    """True when ``path`` is a JSON object with ``"kind": "training"``."""
    path = Path(path)
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    if path.stat().st_size > MAX_JOB_BYTES:  # a trace: not parsed twice to find out
        return False
    try:
        data = read_json(path, "workload")
    except ClusterSimError:  # not a training job; the trace reader will say what it is
        return False
    return isinstance(data, dict) and data.get("kind") == "training"


def load_training_job(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainingJob:
    """Read a training job file; ``overrides`` (dotted keys, e.g. ``plan.tp``) win.

    Raises:
        ClusterSimError: unreadable file or an invalid field.
    """
    path = Path(path)
    data = read_json(path, "training job")
    if not isinstance(data, dict):
        raise ClusterSimError(f"training job {path}: expected a JSON object of job fields")
    return build_training_job(data, overrides, source=f"training job {path}")


def build_training_job(data: dict[str, Any], overrides: dict[str, Any] | None = None,
                       source: str = "training job") -> TrainingJob:
    """Validate a job mapping after applying dotted-key overrides."""
    merged = apply_overrides(data, overrides)
    try:
        return TrainingJob.model_validate(merged)
    except ValidationError as error:
        raise ClusterSimError(format_validation_error(error, source)) from None
