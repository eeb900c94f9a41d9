"""vLLM's command line, both ways: ``vllm serve`` flags to deployment fields, and a
deployment back to the ``vllm serve`` command that runs it.

One table, :data:`VLLM_FLAGS`, names every ``vllm serve`` flag the simulator models and
the deployment field it sets; ``simulate`` takes the same spellings as its own flags, and
``simulate --vllm-args "serve MODEL -tp 4 ..."`` reads a whole command line through this
module. Server flags that change nothing the simulator times (``--host``, ``--port``,
``--api-key``, ...) are listed in :data:`NO_TIMING_EFFECT` and reported as not simulated;
flags that change the timing in ways not modelled (``--enforce-eager``) are refused with
the reason (:data:`NOT_MODELLED`); any other flag is refused by name, never ignored.

    vllm_command(deployment)  ->  "vllm serve meta-llama/Llama-3.1-8B --tensor-parallel-size 2 ..."
    parse_vllm_args(text)     ->  VllmArgs(model, overrides, not_simulated)
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from profiles.errors import ClusterSimError
from profiles.models import catalog_entry
from simulator.serving.config import DeploymentConfig

__all__ = ["NOT_MODELLED", "NO_TIMING_EFFECT", "VLLM_FLAGS", "VllmArgs", "field_value",
           "parse_vllm_args", "vllm_command"]

# vLLM flag -> (deployment field, kind): kind is "int", "float", "str", "bool" (with a
# --no- form) or "json".
VLLM_FLAGS: dict[str, tuple[str, str]] = {
    "--tensor-parallel-size": ("parallelism.tp", "int"),
    "--pipeline-parallel-size": ("parallelism.pp", "int"),
    "--data-parallel-size": ("parallelism.dp", "int"),
    "--enable-expert-parallel": ("parallelism.enable_expert_parallel", "bool"),
    "--max-num-seqs": ("scheduler.max_num_seqs", "int"),
    "--max-num-batched-tokens": ("scheduler.max_num_batched_tokens", "int"),
    "--block-size": ("scheduler.block_size", "int"),
    "--gpu-memory-utilization": ("scheduler.gpu_memory_utilization", "float"),
    "--enable-chunked-prefill": ("scheduler.enable_chunked_prefill", "bool"),
    "--enable-prefix-caching": ("scheduler.enable_prefix_caching", "bool"),
    "--max-model-len": ("scheduler.max_model_len", "int"),
    "--swap-space": ("scheduler.swap_space_gib", "float"),
    "--num-gpu-blocks-override": ("scheduler.num_gpu_blocks_override", "int"),
    "--scheduling-policy": ("scheduler.queue_order", "str"),
    "--long-prefill-token-threshold": ("scheduler.long_prefill_token_threshold", "int"),
    "--max-num-partial-prefills": ("scheduler.max_num_partial_prefills", "int"),
    "--dtype": ("dtype", "str"),
    "--quantization": ("quantization", "str"),
    "--kv-cache-dtype": ("kv_cache_dtype", "str"),
    "--cpu-offload-gb": ("offload.cpu_offload_gb", "float"),
    "--kv-offloading-size": ("offload.kv_offloading_size", "float"),
    "--speculative-config": ("speculative", "json"),
    "--generation-config": ("generation_config", "str"),
    "--override-generation-config": ("sampling", "json"),
    "--async-scheduling": ("async_scheduling", "bool"),
    "--seed": ("seed", "int"),
}
ALIASES = {"-tp": "--tensor-parallel-size", "-pp": "--pipeline-parallel-size",
           "-dp": "--data-parallel-size", "-q": "--quantization"}

# Flags of ``vllm serve`` that change nothing the simulator times: accepted from a
# command line and reported as not simulated. True: the flag takes a value.
NO_TIMING_EFFECT: dict[str, bool] = {
    "--host": True, "--port": True, "--api-key": True, "--served-model-name": True,
    "--uvicorn-log-level": True, "--download-dir": True, "--tokenizer": True,
    "--revision": True, "--chat-template": True, "--trust-remote-code": False,
    "--disable-log-requests": False, "--disable-log-stats": False,
    "--enable-log-requests": False, "--disable-uvicorn-access-log": False,
    "--disable-fastapi-docs": False,
}

# Flags that change the timing in ways the simulator does not model: refused with the
# reason, rather than read as if they changed nothing.
NOT_MODELLED: dict[str, str] = {
    "--enforce-eager": (
        "eager execution (no CUDA graphs) is not modelled: the simulator prices decode "
        "steps as vLLM's CUDA graphs run them, and eager mode adds the host's launch of "
        "every kernel (reported 1.5-4x slower decode for small models); drop the flag to "
        "simulate the server with CUDA graphs"),
}


@dataclass
class VllmArgs:
    """A ``vllm serve`` command line, read."""

    model: str | None
    overrides: dict[str, Any] = field(default_factory=dict)
    not_simulated: list[str] = field(default_factory=list)


def _value(flag: str, kind: str, text: str) -> Any:
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "json":
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
    except ValueError as error:
        raise ClusterSimError(f"--vllm-args: {flag} {text!r}: {error}") from None
    return text


def parse_vllm_args(text: str) -> VllmArgs:
    """Read ``[vllm] serve MODEL [flags]`` (the model may also come as ``--model``).

    Raises:
        ClusterSimError: a flag the simulator does not know, a missing or malformed value.
    """
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise ClusterSimError(f"--vllm-args: cannot split the command line ({error})") from None
    if words[:1] == ["vllm"]:
        words = words[1:]
    if words[:1] == ["serve"]:
        words = words[1:]
    parsed = VllmArgs(model=None)
    if words and not words[0].startswith("-"):
        parsed.model = words.pop(0)
    parsed.model = _canonical(parsed.model)
    i = 0
    while i < len(words):
        word = words[i]
        flag, _, inline = word.partition("=")
        flag = ALIASES.get(flag, flag)
        negated = flag.startswith("--no-") and f"--{flag[5:]}" in VLLM_FLAGS
        if flag == "--model":
            model, i = _take(words, i, inline, flag)
            parsed.model = _canonical(model)
            continue
        if flag in NOT_MODELLED:
            raise ClusterSimError(f"--vllm-args: {flag}: {NOT_MODELLED[flag]}")
        if flag in NO_TIMING_EFFECT:
            if NO_TIMING_EFFECT[flag] and not inline:
                i += 1
            parsed.not_simulated.append(flag)
            i += 1
            continue
        if negated or flag in VLLM_FLAGS:
            target, kind = VLLM_FLAGS[f"--{flag[5:]}" if negated else flag]
            if kind == "bool":
                parsed.overrides[target] = not negated
                i += 1
                continue
            value, i = _take(words, i, inline, flag)
            parsed.overrides[target] = _value(flag, kind, value)
            continue
        raise ClusterSimError(
            f"--vllm-args: {word} is not a vllm serve flag the simulator models; the flags "
            f"it reads are listed in docs/deployment.md (drop it, or tell us what it does)")
    return parsed


def _canonical(model: str | None) -> str | None:
    """A Hugging Face id the catalog knows as its short name; anything else as given."""
    entry = catalog_entry(model) if model is not None else None
    return entry["name"] if entry is not None else model


def _take(words: list[str], i: int, inline: str, flag: str) -> tuple[str, int]:
    if inline:
        return inline, i + 1
    if i + 1 >= len(words) or words[i + 1].startswith("--"):
        raise ClusterSimError(f"--vllm-args: {flag} needs a value")
    return words[i + 1], i + 2


def field_value(data: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted field path of a deployment mapping (None: not set)."""
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def vllm_command(deployment: DeploymentConfig) -> str:
    """The ``vllm serve`` command of one replica of ``deployment``: every knob the
    deployment sets that vLLM has a flag for (unset ones are vLLM's defaults too). A
    speculative block loses its ``acceptance_rate``, which vLLM measures, not takes.

    Raises:
        ClusterSimError: a disaggregated deployment (one command per pool: use
            ``deployment.pool(...)``), or an engine preset other than vLLM's.
    """
    if deployment.is_disaggregated:
        raise ClusterSimError("vllm serve runs one pool: print each pool's command")
    if deployment.engine not in ("vllm-v1-0.15", "vllm-v1"):
        raise ClusterSimError(f"engine {deployment.engine}: only the vLLM V1 presets map to "
                              f"a vllm serve command")
    entry = catalog_entry(deployment.model)
    model = next((alias for alias in (entry or {}).get("aliases", []) if "/" in alias),
                 deployment.model)
    policy = deployment.scheduler.policy
    if "policy" in deployment.scheduler.model_fields_set and policy != "running-first":
        raise ClusterSimError(f"scheduler.policy {policy}: vLLM's V1 engine schedules "
                              f"running-first and has no flag for another policy")
    data = deployment.model_dump(exclude_unset=True)
    if deployment.parallelism.ep > 1:
        data.setdefault("parallelism", {})["enable_expert_parallel"] = True
    words = ["vllm", "serve", model]
    for flag, (target, kind) in VLLM_FLAGS.items():
        value = field_value(data, target)
        if value is None or (kind == "bool" and target.endswith("enable_expert_parallel")
                             and not value):
            continue
        if kind == "bool":
            words.append(flag if value else f"--no-{flag[2:]}")
        elif kind == "json":  # acceptance_rate is the simulator's input, not vLLM's
            config = {k: v for k, v in value.items() if k != "acceptance_rate"}
            words += [flag, json.dumps(config, separators=(",", ":"))]
        else:
            words += [flag, str(value)]
    return shlex.join(words)
