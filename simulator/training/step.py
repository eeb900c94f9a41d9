"""Simulating one training step: plan checks, memory, and a task timeline.

    build: model, GPU, plan checks (TP divides heads, PP x virtual stages divides layers,
           the batch splits into micro-batches, GPUs equal the product of degrees)
    memory: profiles.training_memory; a plan that does not fit names the overflowing term
    step:  per-layer costs (profiles.training_cost) → pass times per virtual stage →
           the pipeline schedule executed on per-stage streams (simulator.training.pipeline) →
           DP gradient reduction on each stage's communication stream (overlapping the
           last backward pass when the framework does) → optimizer step

Ranks are laid out as Megatron does (TP fastest, then CP, then DP, then PP), so a group's
link is the node's scale-up link when the group fits in a node and the NIC otherwise,
read from the cluster graph. FLOPs follow Megatron's count (Narayanan et al. 2021, App.
A): 2 per multiply-add over the layer GEMMs, 4·b·s²·h per layer for attention (no causal
discount), and the logits; MFU counts the model's FLOPs, HFU adds recomputation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from profiles.cluster import ClusterSpec, LinkCost, build_cluster_graph, link_between
from profiles.collectives import all_gather_s, all_reduce_s
from profiles.errors import ClusterSimError
from profiles.hardware import GB, GIB, GPUSpec, load_gpu
from profiles.models import ModelSpec, load_model
from profiles.moe import ExpertPlacement, routing_stats
from profiles.pipeline_split import stage_layer_counts
from profiles.routing import RoutingConfig
from profiles.training_cost import layer_cost, lm_head_cost, per_op_matmuls
from profiles.training_fit import moe_host_floor_s, sustained_compute, tp_overlap_hidden
from profiles.training_memory import (
    TrainingMemory,
    experts_folded,
    stage_param_counts,
    training_memory,
)
from simulator.training.pipeline import run_pipeline
from workloads.training import ParallelPlan, TrainingJob

__all__ = ["BREAKDOWN_PARTS", "TrainingResult", "check_plan", "simulate_training"]


@dataclass
class TrainingResult:
    """One step's predictions for a job and plan."""

    step_s: float
    tokens_per_s: float
    model_flops: float
    hardware_flops: float
    num_gpus: int
    peak_flops_per_gpu: float
    memory: TrainingMemory
    num_micro_batches: int
    pipeline_s: float
    bubble_fraction: float
    dp_comm_s: float
    optimizer_s: float
    layer: dict[str, float]
    breakdown: dict[str, float] = field(default_factory=dict)
    trace: dict[str, Any] | None = field(default=None, repr=False)
    # the validated range of the throughput (validation.error_bars), set by its callers
    error_bars: dict[str, Any] | None = None

    @property
    def tflops_per_gpu(self) -> float:
        """Model TFLOP/s per GPU (recomputation not counted)."""
        return self.model_flops / self.step_s / self.num_gpus / 1e12

    @property
    def hardware_tflops_per_gpu(self) -> float:
        """TFLOP/s per GPU counting recomputation (what Narayanan et al. 2021 report)."""
        return self.hardware_flops / self.step_s / self.num_gpus / 1e12

    @property
    def mfu(self) -> float:
        return self.tflops_per_gpu * 1e12 / self.peak_flops_per_gpu

    @property
    def hfu(self) -> float:
        return self.hardware_tflops_per_gpu * 1e12 / self.peak_flops_per_gpu

    def summary(self) -> dict[str, Any]:
        return {
            "step_s": self.step_s, "tokens_per_s": self.tokens_per_s,
            "tflops_per_gpu": self.tflops_per_gpu,
            "hardware_tflops_per_gpu": self.hardware_tflops_per_gpu,
            "mfu": self.mfu, "hfu": self.hfu, "num_gpus": self.num_gpus,
            "num_micro_batches": self.num_micro_batches, "pipeline_s": self.pipeline_s,
            "bubble_fraction": self.bubble_fraction, "dp_comm_s": self.dp_comm_s,
            "optimizer_s": self.optimizer_s, "memory_per_gpu_gib": self.memory.as_gib(),
            "layer_s": self.layer, "step_breakdown_s": self.breakdown,
            "flops_convention": "Megatron (Narayanan et al. 2021, App. A): 2 per MAC, "
                                "attention 4bs^2h per layer without causal discount",
        } | ({"error_bars": self.error_bars} if self.error_bars else {})


def check_plan(job: TrainingJob, model: ModelSpec, num_gpus: int | None = None) -> int:
    """The plan's arithmetic checks; returns the number of micro-batches per step.

    Raises:
        ClusterSimError: one line naming the degree at fault and the fix.
    """
    plan = job.plan
    if model.num_attention_heads % plan.tp:
        raise ClusterSimError(f"plan.tp={plan.tp} does not divide {model.name}'s "
                              f"{model.num_attention_heads} attention heads; pick a divisor")
    stage_layers(plan, model)
    if job.seq_len % plan.cp:
        raise ClusterSimError(f"plan.cp={plan.cp} does not divide seq_len={job.seq_len}")
    if plan.ep > 1 and (not model.is_moe or model.num_experts % plan.ep
                        or (plan.tp * plan.dp * plan.cp) % plan.ep):
        raise ClusterSimError(f"plan.ep={plan.ep} needs a MoE model whose expert count it "
                              f"divides, and must divide tp x dp x cp = "
                              f"{plan.tp * plan.dp * plan.cp}")
    if plan.activation_offload_layers >= model.num_layers:
        raise ClusterSimError(f"plan.activation_offload_layers={plan.activation_offload_layers}"
                              f" must be below {model.name}'s {model.num_layers} layers (the "
                              f"last layer's backward starts at once)")
    if num_gpus is not None and num_gpus != plan.num_gpus:
        raise ClusterSimError(f"num_gpus={num_gpus} but tp x pp x dp x cp = "
                              f"{plan.tp}x{plan.pp}x{plan.dp}x{plan.cp} = {plan.num_gpus}; "
                              f"make them equal")
    m = job.num_micro_batches()
    if plan.schedule == "interleaved" and m % plan.pp:
        raise ClusterSimError(f"the interleaved schedule needs micro-batches per step ({m}) "
                              f"to be a multiple of pp={plan.pp}")
    return m


def stage_layers(plan: ParallelPlan, model: ModelSpec) -> list[int]:
    """Transformer layers per virtual stage (``profiles.pipeline_split``) under the plan."""
    if (plan.first_stage_layers is None and plan.last_stage_layers is None
            and not plan.embedding_in_pipeline_split and not plan.loss_in_pipeline_split
            and model.num_layers % (plan.pp * plan.virtual_stages)):
        raise ClusterSimError(
            f"plan.pp={plan.pp} x virtual_stages={plan.virtual_stages} does not divide "
            f"{model.name}'s {model.num_layers} layers; split unevenly with plan."
            "first_stage_layers/last_stage_layers or embedding/loss_in_pipeline_split")
    return stage_layer_counts(
        model.num_layers, plan.pp, plan.virtual_stages,
        first_stage_layers=plan.first_stage_layers, last_stage_layers=plan.last_stage_layers,
        embedding_in_split=plan.embedding_in_pipeline_split,
        loss_in_split=plan.loss_in_pipeline_split)


_LINKS: dict[tuple[str, int], tuple[LinkCost, LinkCost]] = {}


def _links(gpu: GPUSpec, gpus_per_node: int) -> tuple[LinkCost, LinkCost]:
    """(inside a node, across nodes) links of one GPU, from the cluster graph (memoized
    per SKU: planners call this for every plan)."""
    key = (gpu.model_dump_json(), gpus_per_node)
    if key not in _LINKS:
        _LINKS[key] = _graph_links(gpu, gpus_per_node)
    return _LINKS[key]


def _graph_links(gpu: GPUSpec, gpus_per_node: int) -> tuple[LinkCost, LinkCost]:
    graph = build_cluster_graph(ClusterSpec(num_nodes=2, gpus_per_node=gpus_per_node), gpu)
    inside = link_between(graph, "n0.g0", "n0.g1") if gpus_per_node > 1 else None
    across = link_between(graph, "n0.g0", "n1.g0")
    return inside or across, across


def _group_link(inside: LinkCost, across: LinkCost, size: int, stride: int,
                gpus_per_node: int) -> LinkCost:
    """The effective link of a ring collective over ``size`` ranks placed ``stride``
    GPUs apart: the scale-up link inside one domain; across domains, a ring crosses the
    network once per domain, so with g of its ranks in each domain it moves g NICs'
    worth of data at once (each of those ranks' NICs carrying the crossings of one of
    the ring's channels), capped by the scale-up link."""
    if size * stride <= gpus_per_node:
        return inside
    per_domain = max(1, min(size, gpus_per_node // stride))
    bandwidth = min(inside.bandwidth_bytes_per_s, across.bandwidth_bytes_per_s * per_domain)
    return LinkCost(bandwidth, across.latency_s)


def _ep_link(inside: LinkCost, across: LinkCost, plan: ParallelPlan, gpus_per_node: int
             ) -> LinkCost:
    """The effective link of an EP all-to-all: an EP group of ``ep`` ranks spaced ``tp x
    cp`` apart (tp when folded) spans ep x that many GPUs; each rank sends (ep-1)/ep of
    its tokens, the share bound for other nodes over the NIC and the rest over the
    scale-up link at the same time, so the slower of the two sets the time."""
    stride = 1 if experts_folded(plan.ep, plan.dp, plan.cp) else plan.tp * plan.cp
    span = plan.ep * stride
    if span <= gpus_per_node:
        return inside
    remote = 1.0 - gpus_per_node / span
    seconds_per_byte = max(remote / across.bandwidth_bytes_per_s,
                           (1.0 - remote) / inside.bandwidth_bytes_per_s)
    return LinkCost(1.0 / seconds_per_byte, across.latency_s)


def simulate_training(job: TrainingJob, *, gpu: str | None = None,
                      gpus_per_node: int | None = None,
                      num_gpus: int | None = None, record_trace: bool = False,
                      model: ModelSpec | None = None,
                      gpu_spec: GPUSpec | None = None,
                      sustained: float | None = None,
                      tp_overlap: float | None = None,
                      moe_host_floor: float | None = None) -> TrainingResult:
    """Predict one optimizer step of ``job`` under its plan.

    Args:
        job: the job and its plan.
        gpu: GPU name or file (else the job's ``gpu``).
        gpus_per_node: GPUs per scale-up domain of the cluster (default: the GPU's
            ``scale_up_gpus``: 8 for a DGX node, 72 for a GB200 NVL72 rack).
        num_gpus: when given, must equal the plan's product of degrees.
        record_trace: also build a Perfetto timeline of the step.
        model: a ModelSpec to use instead of loading ``job.model`` (validation records
            describe GPT shapes by their dimensions).
        gpu_spec: a GPUSpec to use instead of loading ``gpu`` (a catalog GPU with
            another memory size, say).
        sustained: the sustained-compute fraction to use instead of the fitted one
            (``profiles.training_fit``; the calibration varies it).
        tp_overlap: the hidden share of overlapped TP communication, likewise.
        moe_host_floor: the shortest pass of a dropless MoE layer, likewise.

    Raises:
        ClusterSimError: unknown model or GPU, an impossible plan, or one that does not fit.
    """
    model = model if model is not None else load_model(job.model)
    if gpu_spec is None:
        if not (gpu or job.gpu):
            raise ClusterSimError("training job: no GPU given; pass --gpu or set 'gpu' in "
                                  "the job")
        gpu_spec = load_gpu(gpu or job.gpu or "")
    if job.dtype == "fp8":
        model = model.model_copy(update={"dtype": "fp8"})
    plan = job.plan
    m = check_plan(job, model, num_gpus)
    layers_of = stage_layers(plan, model)
    p, v, tp, cp, dp = plan.pp, plan.virtual_stages, plan.tp, plan.cp, plan.dp

    memory = training_memory(
        model, gpu_spec, seq_len=job.seq_len, micro_batch=job.micro_batch,
        num_micro_batches=m, tp=tp, pp=p, dp=dp, cp=cp, ep=plan.ep, virtual_stages=v,
        schedule=plan.schedule, sequence_parallel=plan.sequence_parallel,
        recompute=plan.recompute, zero_stage=plan.zero_stage, offload=plan.offload,
        stage_layers=layers_of, attention_kernel=plan.attention_kernel,
        fp8=job.dtype == "fp8", gradient_bytes=4.0 if plan.gradient_dtype == "fp32" else 2.0,
        activation_offload_layers=plan.activation_offload_layers,
        fp8_param_gather=plan.fp8_param_gather)
    host = gpu_spec.host
    uses_host = (f"plan.offload={plan.offload}" if plan.offload != "none" else
                 "plan.activation_offload_layers" if plan.activation_offload_layers else None)
    if uses_host is not None and host is None:
        raise ClusterSimError(f"{uses_host}: {gpu_spec.name} has no host memory figures; "
                              f"add a 'host' block to its GPU spec")
    overflow = memory.overflow(host.dram_gib * GIB if host else None,
                               host.nvme_gib * GIB if host else None)
    if overflow is not None:
        raise ClusterSimError(f"plan does not fit: {overflow}; raise tp/pp, use ZeRO, "
                              f"recomputation, offload (plan.offload: cpu or nvme; "
                              f"plan.activation_offload_layers) or a smaller micro_batch")

    gpus_per_node = gpus_per_node or gpu_spec.scale_up_gpus
    inside, across = _links(gpu_spec, gpus_per_node)

    def link(span: int) -> LinkCost:  # a group whose ranks span this many GPUs
        return inside if span <= gpus_per_node else across

    # The data-parallel group (dp x cp ranks, tp apart): across domains, NCCL's rings
    # cross the network once per domain and spread their channels over every NIC of it,
    # so a group with g ranks in each domain moves g NICs' worth (capped by the scale-up
    # link) while the other groups of the domain do the same on theirs.
    dp_link = _group_link(inside, across, dp * cp, tp, gpus_per_node)

    dtype = "fp8" if job.dtype == "fp8" else "bf16"
    imbalance = (_expert_imbalance(job.routing, model, plan.ep)
                 if model.is_moe and plan.ep > 1 else 1.0)
    fraction = sustained if sustained is not None else sustained_compute(gpu_spec.name)
    cost = layer_cost(
        model, gpu_spec, seq_len=job.seq_len, micro_batch=job.micro_batch, tp=tp, cp=cp,
        ep=plan.ep, sequence_parallel=plan.sequence_parallel, recompute=plan.recompute,
        attention_kernel=plan.attention_kernel, overlap_tp_comm=plan.overlap_tp_comm,
        dtype=dtype, tp_link=link(tp), cp_link=link(tp * cp),
        ep_link=_ep_link(inside, across, plan, gpus_per_node),
        folded_experts=experts_folded(plan.ep, dp, cp), pointwise=plan.pointwise_kernels,
        expert_imbalance=imbalance, compute_fraction=fraction,
        tp_overlap_hidden=tp_overlap if tp_overlap is not None else tp_overlap_hidden(),
        moe_host_floor_s=moe_host_floor if moe_host_floor is not None
        else moe_host_floor_s(), fp8_tp_gather=plan.fp8_tp_gather)
    head_fwd, head_bwd = lm_head_cost(model, gpu_spec, seq_len=job.seq_len,
                                      micro_batch=job.micro_batch, tp=tp, cp=cp, dtype=dtype,
                                      compute_fraction=fraction)
    forward = [n * cost.forward_s for n in layers_of]
    backward = [n * cost.backward_s for n in layers_of]
    offload_s = _activation_offload_s(plan.activation_offload_layers, memory, cost, gpu_spec)
    forward[0] += offload_s[0]
    backward[0] += offload_s[1]
    forward[-1] += head_fwd
    backward[-1] += head_bwd

    # ZeRO-3 gathers each stage's weights for every forward and backward pass; prefetching
    # hides the gather behind the pass when it is shorter.
    stage_params = memory.params * (dp * cp if plan.zero_stage >= 1 else 1)
    if plan.offload == "nvme":
        # ZeRO-Infinity reads the partition's weights from NVMe for every pass and writes
        # its gradients in the backward pass, prefetched behind the compute.
        assert host is not None
        read_s = 2.0 * memory.params / v / (min(host.nvme_read_gbps,
                                                gpu_spec.host_link.bandwidth_gbps) * GB)
        write_s = 2.0 * memory.params / v / (min(host.nvme_write_gbps,
                                                 gpu_spec.host_link.bandwidth_gbps) * GB)
        forward = [max(f, read_s) for f in forward]
        backward = [max(b_, read_s + write_s) for b_ in backward]
    if plan.zero_stage == 3 and dp * cp > 1:
        gather = all_gather_s(stage_params * 2.0 / v, dp * cp, dp_link)
        forward = [max(f, gather) for f in forward]
        backward = [max(b_, gather) for b_ in backward]

    activation_bytes = job.micro_batch * job.seq_len / cp * model.hidden_size * 2.0
    if plan.sequence_parallel:
        activation_bytes /= tp
    send_s = link(tp * cp * dp + 1).transfer_s(activation_bytes) if p > 1 else 0.0
    run = run_pipeline(plan.schedule, p, m, v, forward, backward, send_s,
                       record_spans=record_trace)

    # Gradient reduction: the stage's gradients (bf16, or fp32 where the framework keeps
    # them so), ring over dp x cp. With a sharded optimizer (ZeRO 1-2, Megatron's
    # distributed optimizer) it is a reduce-scatter of the gradients during the last
    # backward pass and an all-gather of the updated weights, which overlapped runs
    # behind the next step's first forward passes (Megatron's --overlap-param-gather):
    # only what outlasts them shows. The two halves move an all-reduce's volume. Under
    # ZeRO-3 the weights were gathered pass by pass, so only the reduce-scatter is left.
    # Each stage reduces its own parameters' gradients, updates its own shard and
    # gathers its own weights; the step waits for the slowest stage.
    grad_bytes = 4.0 if plan.gradient_dtype == "fp32" else 2.0
    sharded = plan.overlap_dp_comm and plan.zero_stage in (1, 2) and dp * cp > 1
    owned = 1.0 / (dp * cp) if plan.zero_stage >= 1 else 1.0
    per_stage = stage_param_counts(model, layers_of, p, v, tp=tp, dp=dp, cp=cp, ep=plan.ep)
    stage_done, stage_tail = [], []
    dp_comm = 0.0
    for stage in range(p):
        reduction = all_reduce_s(per_stage[stage] * grad_bytes, dp * cp, dp_link)
        dp_comm = max(dp_comm, reduction)
        gather = reduction * 2.0 / grad_bytes / 2.0 if sharded else 0.0  # 16-bit weights
        # ZeRO-3 gathers the weights per pass (above), so only the gradients'
        # reduce-scatter is left here; ZeRO 1-2 gather after the update (``gather``).
        reduce = reduction / 2.0 if sharded or (plan.zero_stage == 3 and dp * cp > 1) \
            else reduction
        start = run.last_backward_start_s[stage] if plan.overlap_dp_comm \
            else run.stage_end_s[stage]
        stage_done.append(max(run.stage_end_s[stage], start + reduce))
        first_forward = sum(forward[chunk * p + stage] for chunk in range(v))
        optimizer_s = _optimizer_s(plan.offload, per_stage[stage] * owned, gpu_spec,
                                   sum(backward) / p)
        stage_tail.append((optimizer_s, max(0.0, gather - first_forward)))
    slowest = max(range(p), key=lambda s_: stage_done[s_] + sum(stage_tail[s_]))
    optimizer = stage_tail[slowest][0]
    step = stage_done[slowest] + sum(stage_tail[slowest])

    tokens = job.global_batch * job.seq_len
    h, layers = model.hidden_size, model.num_layers
    width = (model.q_size + model.o_size) / 2  # q/k and v widths (MLA: they differ)
    layer_params = model.attention_params_per_layer + model.active_mlp_params_per_layer
    forward_flops = (2.0 * tokens * layers * layer_params
                     + 4.0 * job.global_batch * job.seq_len**2 * width * layers
                     + 2.0 * tokens * h * model.vocab_size)
    model_flops = 3.0 * forward_flops
    recompute_flops = 0.0
    if plan.recompute == "full":
        recompute_flops = forward_flops - 2.0 * tokens * h * model.vocab_size
    elif plan.recompute == "selective":
        recompute_flops = 4.0 * job.global_batch * job.seq_len**2 * width * layers
    elif plan.recompute == "op":
        # every second dense matmul, and the routed experts (grouped GEMMs, not saved)
        saved, recomputed = per_op_matmuls(model, 1)
        dense = sum(n * k for n, k in saved + recomputed)
        routed = max(0.0, layer_params - dense) if model.is_moe else 0.0
        again = sum(n * k for n, k in recomputed) + routed
        recompute_flops = 2.0 * tokens * layers * again
    ideal = m * (sum(forward) + sum(backward)) / p
    breakdown = _breakdown(run, cost, layers_of, p, v, m, (head_fwd, head_bwd), step,
                           optimizer, sum(offload_s))
    result = TrainingResult(
        step_s=step, tokens_per_s=tokens / step, model_flops=model_flops,
        hardware_flops=model_flops + recompute_flops, num_gpus=plan.num_gpus,
        peak_flops_per_gpu=gpu_spec.peak_flops(dtype), memory=memory, num_micro_batches=m,
        pipeline_s=run.makespan_s, bubble_fraction=max(0.0, 1 - ideal / run.makespan_s),
        dp_comm_s=dp_comm, optimizer_s=optimizer, breakdown=breakdown,
        layer={"forward_s": cost.forward_s, "backward_s": cost.backward_s,
               "gemm_s": cost.gemm_s, "attention_s": cost.attention_s,
               "elementwise_s": cost.elementwise_s, "tp_comm_s": cost.tp_comm_s,
               "cp_comm_s": cost.cp_comm_s, "ep_comm_s": cost.ep_comm_s},
    )
    if record_trace:
        result.trace = _trace(run, stage_done, dp_comm, step, optimizer)
    return result


@lru_cache(maxsize=256)
def _expert_imbalance(routing: RoutingConfig, model: ModelSpec, ep: int) -> float:
    """The busiest EP rank's routed load over the mean, averaged over the MoE layers,
    with the experts placed linearly (cached: planners ask it for every plan)."""
    shares = routing_stats(routing, model).shares
    placement = ExpertPlacement.linear(model.num_moe_layers, model.num_experts, ep)
    return float(placement.rank_loads(shares).max(axis=1).mean() * ep)


# Where a step goes, in the order `simulate` prints it (see _breakdown).
BREAKDOWN_PARTS = {
    "gemm": "GEMMs (linear layers)", "attention": "attention core",
    "elementwise": "norms, activations, residuals (and FP8 casts)",
    "lm_head": "LM head and loss", "recompute": "recomputation",
    "tp_comm": "TP communication, exposed", "cp_comm": "CP communication, exposed",
    "ep_comm": "EP all-to-all, exposed",
    "host_wait": "MoE layers waiting on the host (dropless dispatch)",
    "activation_offload": "activation offload copies, exposed",
    "weight_gathers": "ZeRO-3 / NVMe weight reads, exposed",
    "pipeline_bubble": "pipeline bubble and sends",
    "dp_comm": "DP gradient and weight communication, exposed", "optimizer": "optimizer step"}


def _breakdown(run: Any, cost: Any, layers_of: list[int], p: int, v: int, m: int,
               head: tuple[float, float], step: float, optimizer: float,
               offload_s: float = 0.0) -> dict[str, float]:
    """Seconds of the step by part, on the busiest pipeline stage; they add up to the
    step. The stage's busy time splits by the layer's parts times its layer passes (and
    the LM head on the last stage; what a pass waits for ZeRO-3 or NVMe weight reads is
    the rest); the pipeline's idle time on that stage is the bubble; what ends after the
    pipeline is the exposed DP communication, then the optimizer."""
    busiest = max(range(p), key=lambda stage: run.busy_s[stage])
    layers = sum(layers_of[chunk * p + busiest] for chunk in range(v))
    parts = {name: m * layers * seconds for name, seconds in cost.parts().items()}
    parts["lm_head"] = m * sum(head) if busiest == p - 1 else 0.0
    parts["activation_offload"] = m * offload_s if busiest == 0 else 0.0
    busy = run.busy_s[busiest]
    parts["weight_gathers"] = max(0.0, busy - sum(parts.values()))
    parts["pipeline_bubble"] = run.makespan_s - busy
    parts["dp_comm"] = max(0.0, step - optimizer - run.makespan_s)
    parts["optimizer"] = optimizer
    return {name: parts[name] for name in BREAKDOWN_PARTS}


def _activation_offload_s(layers: int, memory: TrainingMemory, cost: Any, gpu: GPUSpec
                          ) -> tuple[float, float]:
    """(forward, backward) seconds per micro-batch that activation offloading adds: each
    offloaded layer's activations cross the host link after its forward pass and come
    back before its backward, on a side stream behind the next layer's compute; only
    what outlasts a layer's pass shows."""
    if not layers:
        return 0.0, 0.0
    copy_s = memory.host_activations / layers / (gpu.host_link.bandwidth_gbps * GB)
    return (layers * max(0.0, copy_s - cost.forward_s),
            layers * max(0.0, copy_s - cost.backward_s))


# Bytes of memory traffic per parameter of an Adam update: read 16-bit gradient (2), fp32
# weight, momentum, variance (12); write those three (12) and the 16-bit weight (2).
ADAM_BYTES_PER_PARAM = 28.0
_GPU_ADAM_BYTES_PER_PARAM = 32.0  # fused GPU Adam, as before offloading was modelled


def _optimizer_s(offload: str, params: float, gpu: GPUSpec, backward_window_s: float
                 ) -> float:
    """The optimizer step of the ``params`` this GPU updates.

    On the GPU it is memory-bound on HBM. ZeRO-Offload: the 16-bit gradients leave over
    the host link during the last backward pass (only what does not fit in that window
    shows), the CPU Adam update is bound by the GPU's share of host DRAM bandwidth
    (ADAM_BYTES_PER_PARAM per parameter, an upper bound on its speed), and the new 16-bit
    weights come back over the link. ZeRO-Infinity adds reading and writing the Adam
    states on NVMe.
    """
    if offload == "none":
        return (_GPU_ADAM_BYTES_PER_PARAM * params
                / (gpu.hbm_bandwidth_gbps * GB * gpu.efficiency.memory))
    assert gpu.host is not None
    link = gpu.host_link.bandwidth_gbps * GB
    cpu_adam = ADAM_BYTES_PER_PARAM * params / (gpu.host.dram_bandwidth_gbps * GB)
    seconds = max(0.0, 2.0 * params / link - backward_window_s) + cpu_adam + 2.0 * params / link
    if offload == "nvme":
        seconds += (12.0 * params / (min(gpu.host.nvme_read_gbps * GB, link))
                    + 12.0 * params / (min(gpu.host.nvme_write_gbps * GB, link)))
    return seconds


def _trace(run: Any, stage_done: list[float], dp_comm: float, step: float,
           optimizer: float) -> dict[str, Any]:
    """Perfetto events of one step: pid = pipeline stage (named), tid 0 compute, 1
    communication (named). Times become whole nanoseconds once, so a slice that starts
    where the previous one ended has the same timestamp and none overlaps by rounding."""
    events: list[dict[str, Any]] = []

    def slice_(name: str, stage: int, tid: int, start_s: float, end_s: float) -> None:
        start, end = round(start_s * 1e9), round(end_s * 1e9)
        events.append({"name": name, "ph": "X", "pid": stage, "tid": tid,
                       "ts": start / 1000, "dur": (end - start) / 1000})

    for stage in range(len(stage_done)):
        events.append({"ph": "M", "name": "process_name", "pid": stage,
                       "args": {"name": f"pipeline stage {stage}"}})
        for tid, name in ((0, "compute"), (1, "communication")):
            events.append({"ph": "M", "name": "thread_name", "pid": stage, "tid": tid,
                           "args": {"name": name}})
    for ((kind, chunk, i), stage), (start, end) in sorted(run.spans.items(),
                                                          key=lambda item: item[1]):
        slice_(f"{kind}{i}" + (f".c{chunk}" if chunk else ""), stage, 0, start, end)
    for stage, done in enumerate(stage_done):
        slice_("dp grad reduce", stage, 1, done - dp_comm, done)
        slice_("optimizer", stage, 0, step - optimizer, step)
    return {"traceEvents": events, "displayTimeUnit": "ms"}
