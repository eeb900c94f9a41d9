"""The sampler's cost: which sampling defaults a request gets, and what filtering costs.

A vLLM server (0.8 and later, ``--generation-config auto``, its default since
vLLM PR #12622) takes every sampling parameter a request leaves unset from the model's
``generation_config.json``; ``--generation-config vllm`` takes vLLM's own (temperature 1,
no top-k, top-p 1) and ``--override-generation-config`` sets them server-wide. Benchmark
clients (inference-perf, vLLM's ``benchmark_serving``) send none, so a benchmark samples at
the model's defaults: Llama 3.1 Instruct at top-p 0.9, Qwen3 at top-k 20 and top-p 0.95,
Mistral's and Mixtral's checkpoints with no filter at all. Per step, over the
[sequences x vocabulary] logits::

    temperature 0 for all          an argmax                              (device_step_s)
    no top-k or top-p              a softmax and an exponential draw, and
                                   min-p's mask where set (no sort)       (device_step_s)
    top-k or top-p                 every sequence's logits sorted, the softmax summed along
                                   the sorted row, masked and scattered back (vLLM's
                                   PyTorch sampler): for every sequence of the step

The filtering pass streams the logits several times, so it is priced as memory traffic::

    seconds per sequence = vocab x bytes_per_entry / (HBM bandwidth x efficiency.memory)

``bytes_per_entry`` is the engine preset's count of what its sampler moves per logit
(``EnginePreset.sampling_bytes_per_entry``: 240 for vLLM's PyTorch sort, its source in
``simulator/serving/presets.py``); it is an estimate, not fitted, because the measured runs
cannot separate it from the device time per step (the runs of the models whose defaults do
not filter are too few, and Mistral-Nemo's are fast by more than a sampler explains). Every
TP rank samples the whole vocabulary. The cost is device time per sequence of the step
(``CpuOverhead.device_per_seq_s``, added by ``simulator.serving.engine_costs``), serial with
the kernels and never hidden by asynchronous scheduling. Repetition, presence and frequency
penalties are recorded but not priced.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from profiles.errors import ClusterSimError
from profiles.hardware import GB, GPUSpec
from profiles.models import ModelSpec, catalog_entry
from profiles.reading import read_json

__all__ = ["VLLM_SAMPLING", "ResolvedSampling", "SamplingOverride", "model_sampling_defaults",
           "resolve_sampling", "sampling_s_per_seq"]

# vLLM's own defaults (``--generation-config vllm``): no filter.
VLLM_SAMPLING: dict[str, float] = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0}
# The generation_config.json keys vLLM reads as sampling defaults.
_SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


class SamplingOverride(BaseModel):
    """Server-wide sampling parameters (vLLM's ``--override-generation-config``): they win
    over the model's ``generation_config.json`` and vLLM's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    temperature: float | None = Field(default=None, ge=0, le=100, description="0: greedy")
    top_p: float | None = Field(default=None, gt=0, le=1, description="nucleus cut; 1: off")
    top_k: int | None = Field(default=None, ge=-1, le=10**7, description="0 or -1: off")
    min_p: float | None = Field(default=None, ge=0, le=1, description="0: off")
    repetition_penalty: float | None = Field(default=None, gt=0, le=100,
                                             description="recorded, not priced")
    presence_penalty: float | None = Field(default=None, ge=-2, le=2,
                                           description="recorded, not priced")
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2,
                                            description="recorded, not priced")


@dataclass(frozen=True)
class ResolvedSampling:
    """The sampling parameters a request gets by default, and where they came from."""

    values: dict[str, float]
    source: str
    overridden: bool = False  # the deployment's override set at least one of them

    @property
    def filters(self) -> bool:
        """Whether the sampler sorts the logits (top-k or top-p on, not greedy; min-p masks
        the softmax against its largest probability without a sort)."""
        v = self.values
        greedy = v.get("temperature", 1.0) == 0.0
        return not greedy and (v.get("top_p", 1.0) < 1.0 or v.get("top_k", 0) > 0)


def model_sampling_defaults(model: str) -> tuple[dict[str, float], str] | None:
    """The sampling keys of a model's ``generation_config.json``: the catalog's copy for a
    catalog name or alias, else the file beside a ``config.json`` path; None when neither
    is known (vLLM's defaults then apply)."""
    entry = catalog_entry(model)
    if entry is not None:
        if "generation_config" not in entry:
            return None
        return dict(entry["generation_config"]), entry["generation_source"]
    path = Path(model)
    if not path.exists():
        return None  # not a path: nothing beside it to read
    folder = path if path.is_dir() else path.parent
    candidate = folder / "generation_config.json"
    if not candidate.is_file():
        return None
    data = read_json(candidate, "model generation config")
    if not isinstance(data, dict):
        raise ClusterSimError(f"model generation config {candidate}: expected a JSON object; "
                              f"fix the file or pass --generation-config vllm")
    values = {key: float(data[key]) for key in _SAMPLING_KEYS
              if isinstance(data.get(key), (int, float)) and not isinstance(data[key], bool)}
    return values, str(candidate)


def resolve_sampling(model: str, generation_config: str,
                     override: SamplingOverride | None) -> ResolvedSampling:
    """vLLM's defaults, under the model's ``generation_config.json`` (``auto``), under the
    server-wide override."""
    values = dict(VLLM_SAMPLING)
    sources = ["vLLM's defaults"]
    if generation_config == "auto":
        found = model_sampling_defaults(model)
        if found is not None:
            values.update(found[0])
            sources.append(f"the model's generation_config.json ({found[1]})")
        else:
            sources.append("no generation_config.json known for the model")
    given = override.model_dump(exclude_none=True) if override is not None else {}
    values.update({key: float(value) for key, value in given.items()})
    if given:
        sources.append("the deployment's override")
    return ResolvedSampling(values, ", then ".join(sources), overridden=bool(given))


def sampling_s_per_seq(sampling: ResolvedSampling, model: ModelSpec, gpu: GPUSpec,
                       bytes_per_entry: float) -> float:
    """Device seconds per sequence of a step that the sampler's filtering pass takes."""
    if not sampling.filters or bytes_per_entry <= 0:
        return 0.0
    return model.vocab_size * bytes_per_entry / (gpu.hbm_bandwidth_gbps * GB
                                                 * gpu.efficiency.memory)


