"""``clustersim place-experts``: plan where a MoE model's experts live on its EP GPUs,
and write the placement file a deployment's ``moe.placement`` (or ``simulate
--expert-placement``) reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import console, fail, parse_routing, user_errors
from planners.placement import plan_placement
from profiles.files import write_text
from profiles.hardware import load_gpu
from profiles.models import load_model
from profiles.moe import ExpertPlacement, RoutingConfig, routing_stats

__all__ = ["place_experts_command"]


@user_errors
def place_experts_command(
    model: Annotated[str, typer.Option(help="a MoE catalog model or config.json path")],
    gpu: Annotated[str, typer.Option(help="the GPUs' type (their memory bounds the slots)")],
    ep: Annotated[int, typer.Option(help="expert-parallel GPUs")],
    out: Annotated[Path, typer.Option(help="the placement file to write")],
    routing: Annotated[str, typer.Option(
        help="uniform, zipf:S or a routing-trace file")] = "uniform",
    affinity: Annotated[float, typer.Option(
        help="synthetic routing: inter-layer affinity, 0 to 1")] = 0.0,
    redundant: Annotated[int, typer.Option(
        help="extra copies of hot experts per MoE layer (EPLB)")] = 0,
    affinity_weight: Annotated[float, typer.Option(
        help="weight of the pairs crossing GPUs between layers (ExFlow); 0: balance only")
    ] = 0.0,
    solver: Annotated[str, typer.Option(help="greedy or ilp (small models)")] = "greedy",
    seed: Annotated[int, typer.Option(
        min=0, max=2**32 - 1, help="seed of synthetic routing")] = 0,
) -> None:
    """Place a MoE model's experts (and copies of hot ones) on EP GPUs for its routing."""
    if solver not in ("greedy", "ilp"):
        fail(f"--solver {solver!r}: use greedy or ilp")
    if ep < 2:
        fail(f"--ep {ep}: expert placement needs at least 2 GPUs")
    if not 0 <= affinity <= 1:
        fail(f"--affinity {affinity}: must be between 0 and 1")
    spec = load_model(model)
    if not spec.is_moe:
        fail(f"--model {model}: a dense model has no experts to place")
    if spec.num_experts % ep:
        fail(f"--ep {ep} must divide {spec.name}'s {spec.num_experts} experts")
    config = RoutingConfig(**parse_routing(routing), affinity=affinity, seed=seed)
    stats = routing_stats(config, spec)
    result = plan_placement(spec, stats, ep, gpu=load_gpu(gpu), redundant=redundant,
                            affinity_weight=affinity_weight, solver=solver)
    linear = ExpertPlacement.linear(spec.num_moe_layers, spec.num_experts, ep)
    naive = float(linear.rank_loads(stats.shares).max(axis=1).mean()) * ep
    planned = result.balance / spec.num_moe_layers * ep
    placement = result.placement()
    write_text(out, placement.to_json())
    moving = result.traffic / max(1, spec.num_moe_layers - 1)
    console.print(
        f"[bold]{spec.name}[/]: {spec.num_experts} experts x {spec.num_moe_layers} MoE "
        f"layers on {ep} GPUs, {placement.slots_per_rank} slots each ({redundant} copies "
        f"per layer); busiest GPU {planned:.2f}x the mean load (linear placement "
        f"{naive:.2f}x)" + (f"; pairs moving GPUs between layers {moving:.1%}"
                            if affinity_weight else ""))
    console.print(f"wrote {out}")
