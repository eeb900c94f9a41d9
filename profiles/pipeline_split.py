"""How a model's layers are split over pipeline stages and their virtual chunks.

Even split: ``L`` layers over ``p`` stages of ``v`` chunks each, ``L / (p·v)`` per chunk.
Models whose layer count does not divide (Llama 3.1 405B: 126 layers on 16 stages) are
split unevenly, the two ways Megatron-Core offers:

    first/last stage sizes   --decoder-first/last-pipeline-num-layers: the first (last)
                             stage holds the stated layers, the others split the rest
                             evenly; each stage's layers split evenly over its chunks
    embedding/loss as layers --account-for-embedding/loss-in-pipeline-split: the
                             embedding (the LM head and loss) counts as one layer, so
                             126 + 2 = 128 units split 2 per chunk over 8 x 8 chunks, and
                             the first (last) chunk holds one transformer layer fewer

    126 layers, pp = 16, first = last = 7:   stage 0: 7 | stages 1-14: 8 each | stage 15: 7

Chunks are indexed as virtual stages ``u = chunk·p + stage`` (Narayanan et al. 2021,
Sec. 2.2), the order the pipeline schedule and the step simulator use.
"""

from __future__ import annotations

from profiles.errors import ClusterSimError

__all__ = ["stage_layer_counts"]


def _split(total: int, parts: int, what: str) -> list[int]:
    if parts <= 0 or total % parts:
        raise ClusterSimError(f"{what}: {total} layers do not split evenly over {parts}; "
                              "change pp, virtual_stages, first/last_stage_layers or the "
                              "embedding/loss split")
    return [total // parts] * parts


def stage_layer_counts(num_layers: int, pp: int, virtual_stages: int = 1, *,
                       first_stage_layers: int | None = None,
                       last_stage_layers: int | None = None,
                       embedding_in_split: bool = False,
                       loss_in_split: bool = False) -> list[int]:
    """Transformer layers on each virtual stage ``u = chunk·pp + stage`` (pp·v entries).

    Raises:
        ClusterSimError: one line naming what does not divide, or the settings that
            cannot go together.
    """
    p, v = pp, virtual_stages
    explicit = first_stage_layers is not None or last_stage_layers is not None
    if explicit and (embedding_in_split or loss_in_split):
        raise ClusterSimError("plan: first/last_stage_layers and embedding/loss_in_pipeline_"
                              "split are two ways to split unevenly; set one of them")
    if explicit:
        fixed: dict[int, int] = {stage: n for stage, n in
                                 ((0, first_stage_layers), (p - 1, last_stage_layers))
                                 if n is not None}
        if p == 1:
            raise ClusterSimError("plan: first/last_stage_layers need pp > 1")
        rest = num_layers - sum(fixed.values())
        free = [s for s in range(p) if s not in fixed]
        if rest < 0 or (not free and rest):
            raise ClusterSimError(
                f"plan: first/last_stage_layers ({sum(fixed.values())} layers) do not leave "
                f"the model's {num_layers} layers for the other stages; make them add up")
        per_stage = dict(fixed)
        if free:
            per_stage |= dict(zip(free, _split(rest, len(free), "plan: the middle stages"),
                                  strict=True))
        counts = [0] * (p * v)
        for stage, layers in per_stage.items():
            for chunk, n in enumerate(_split(layers, v, f"plan: stage {stage}'s chunks")):
                counts[chunk * p + stage] = n
        return counts
    units = num_layers + int(embedding_in_split) + int(loss_in_split)
    what = (f"plan.pp={p} x virtual_stages={v}" + (" (embedding and loss counted as layers)"
            if embedding_in_split and loss_in_split else " (embedding counted as a layer)"
            if embedding_in_split else " (loss counted as a layer)" if loss_in_split else ""))
    counts = _split(units, p * v, what)
    if embedding_in_split:
        counts[0] -= 1
    if loss_in_split:
        counts[-1] -= 1
    if min(counts) < 0:
        raise ClusterSimError(f"{what}: a chunk would hold fewer than no layers; use fewer "
                              "stages")
    return counts
