"""Mutations: is the validation gate tested? Each mutation makes one part of the cost
model deliberately wrong (GEMMs 10% slower, HBM bandwidth x0.7, A100 attention x0.7,
all-reduce 10% slower, the per-step CPU overhead and the API path 10% dearer, the
training backward pass 5% slower, every serving step 10% slower), then runs
``clustersim validate``'s gate against the committed baseline. A mutation the gate
lets pass is a hole in it.

    python bench/mutate.py [--only gemm,hbm] [--out bench/results/mutations.md]

The unmutated model runs first and must pass, or the table means nothing. Each run
of the gate takes minutes (it replays every measured vLLM run).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from facts import run_facts  # bench/, the script's own folder

from profiles import collectives, gemm, operator_times, roofline, training_cost
from profiles import hardware as hardware_module
from simulator import write_text
from simulator.serving import presets
from validation import predictors, serving_runs
from validation.gate import validate


def _rebind(original: Callable[..., Any], replacement: Callable[..., Any]) -> list[tuple[Any, str]]:
    """Point every project module's name for ``original`` at ``replacement`` (so the
    ``from x import f`` copies change too); returns what to restore."""
    bound = []
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in ("profiles", "simulator", "validation",
                                                       "planners", "workloads"):
            continue
        for attribute, value in list(vars(module).items()):
            if value is original:
                setattr(module, attribute, replacement)
                bound.append((module, attribute))
    return bound


@contextmanager
def scaled(functions: list[Callable[..., Any]], factor: float,
           when: Callable[..., bool] = lambda *args, **kwargs: True,
           index: int | None = None) -> Iterator[None]:
    """Every call of ``functions`` (where ``when`` holds) returns ``factor`` times its
    time (element ``index`` of a returned tuple; a None return is left alone)."""
    restore: list[tuple[Any, str, Any]] = []
    for function in functions:
        def wrapper(*args: Any, _f: Callable[..., Any] = function, **kwargs: Any) -> Any:
            result = _f(*args, **kwargs)
            if result is None or not when(*args, **kwargs):
                return result
            if index is None:
                return result * factor
            items = list(result)
            items[index] = items[index] * factor
            return tuple(items)
        restore += [(module, attribute, function) for module, attribute
                    in _rebind(function, wrapper)]
    try:
        yield
    finally:
        for module, attribute, function in restore:
            setattr(module, attribute, function)


@contextmanager
def gpu_bandwidth(factor: float, only: str | None = None) -> Iterator[None]:
    """Every GPU (or the one named ``only``) with ``factor`` times its HBM bandwidth."""
    original = hardware_module.load_gpu

    def load_gpu(name_or_path: str) -> Any:
        spec = original(name_or_path)
        if only is not None and only not in spec.name:
            return spec
        return spec.model_copy(update={"hbm_bandwidth_gbps": spec.hbm_bandwidth_gbps * factor})

    restore = _rebind(original, load_gpu)
    try:
        yield
    finally:
        for module, attribute in restore:
            setattr(module, attribute, original)


@contextmanager
def engine_costs(overhead: float = 1.0, client_path: float = 1.0,
                 device: float = 1.0, moe: float = 1.0) -> Iterator[None]:
    """Every engine preset's per-step CPU overhead, device time outside the model's
    kernels, API-path cost and fused-MoE kernel factor scaled."""
    saved = dict(presets.ENGINE_PRESETS)
    for name, preset in saved.items():
        cpu = preset.overhead
        scaled_cpu = cpu.model_copy(update={
            "step_base_s": cpu.step_base_s * overhead, "per_seq_s": cpu.per_seq_s * overhead,
            "per_token_s": cpu.per_token_s * overhead,
            "device_step_s": cpu.device_step_s * device})
        presets.ENGINE_PRESETS[name] = dataclasses.replace(
            preset, overhead=scaled_cpu, client_path_s=preset.client_path_s * client_path,
            moe_gemm_factor=preset.moe_gemm_factor * moe)
    try:
        yield
    finally:
        presets.ENGINE_PRESETS.update(saved)


@contextmanager
def backward_slower(factor: float) -> Iterator[None]:
    original_layer, original_head = training_cost.layer_cost, training_cost.lm_head_cost

    def layer_cost(*args: Any, **kwargs: Any) -> Any:
        cost = original_layer(*args, **kwargs)
        return dataclasses.replace(cost, backward_s=cost.backward_s * factor)

    restore = _rebind(original_layer, layer_cost)
    with scaled([original_head], factor, index=1):
        try:
            yield
        finally:
            for module, attribute in restore:
                setattr(module, attribute, original_layer)


@contextmanager
def serving_steps_slower(factor: float) -> Iterator[None]:
    original = roofline.RooflineCostModel.predict

    def predict(self: Any, batch: Any) -> Any:
        cost = original(self, batch)
        return dataclasses.replace(cost, stage_s=tuple(s * factor for s in cost.stage_s))

    roofline.RooflineCostModel.predict = predict  # type: ignore[method-assign]
    try:
        yield
    finally:
        roofline.RooflineCostModel.predict = original  # type: ignore[method-assign]


@contextmanager
def _gemm_slower() -> Iterator[None]:
    # the two kernels every GEMM path ends in: the fitted model and the tiling roofline
    with scaled([gemm.gemm_compute_s], 1.1), scaled([gemm.fitted_gemm_times], 1.1, index=0):
        yield


def _is_a100(gpu: Any, *args: Any, **kwargs: Any) -> bool:
    return "A100" in gpu.name


MUTATIONS: dict[str, tuple[str, Callable[[], Any]]] = {
    "gemm": ("GEMMs 10% slower", lambda: _gemm_slower()),
    "hbm": ("HBM bandwidth x0.7, every GPU", lambda: gpu_bandwidth(0.7)),
    "hbm_h100": ("H100 HBM bandwidth x0.7", lambda: gpu_bandwidth(0.7, only="H100")),
    "attention_a100": ("A100 attention x0.7 (1/0.7 the time)", lambda: scaled(
        [operator_times.prefill_attention_s, operator_times.decode_attention_s], 1 / 0.7,
        when=_is_a100)),
    "all_reduce": ("all-reduce 10% slower", lambda: scaled(
        [collectives.all_reduce_s, collectives.engine_all_reduce_s,
         collectives.custom_all_reduce_s, operator_times.all_reduce_fitted_s], 1.1)),
    "cpu_overhead": ("per-step CPU overhead 10% dearer", lambda: engine_costs(overhead=1.1)),
    "api_path": ("API-path cost 10% dearer", lambda: engine_costs(client_path=1.1)),
    "device_step": ("device time per step outside the kernels x2",
                    lambda: engine_costs(device=2.0)),
    "moe_kernel": ("fused-MoE kernel 10% slower", lambda: engine_costs(moe=1.1)),
    "backward": ("training backward pass 5% slower", lambda: backward_slower(1.05)),
    "serving_step": ("every serving step 10% slower", lambda: serving_steps_slower(1.1)),
}


def run_gate() -> tuple[bool, list[str], float]:
    started = time.perf_counter()
    # a cached comparison or replay would hide a mutation
    predictors._compared_run.cache_clear()
    serving_runs._SIMULATED.clear()
    report = validate()
    return report.passed, list(report.regressions), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(MUTATIONS), help="comma-separated mutations")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "mutations.md")
    args = parser.parse_args()
    names = [name for name in args.only.split(",") if name]
    unknown = [name for name in names if name not in MUTATIONS]
    if unknown:
        parser.error(f"unknown mutation {unknown[0]!r}; choose from {', '.join(MUTATIONS)}")
    passed, regressions, seconds = run_gate()
    print(f"unmutated: gate {'passes' if passed else 'FAILS'} ({seconds:.0f} s)", flush=True)
    if not passed:
        sys.exit("the unmutated model fails the gate: " + "; ".join(regressions[:3]))
    lines = ["# Mutations of the cost model against the validation gate", "",
             "`python bench/mutate.py`: each row makes one part of the cost model wrong and "
             f"runs `clustersim validate`'s gate against the committed baseline ({run_facts()}).",
             "",
             "| mutation | caught | regressions | first regressions |", "|---|---|---:|---|"]
    for name in names:
        label, mutation = MUTATIONS[name]
        with mutation():
            passed, regressions, seconds = run_gate()
        caught = "yes" if not passed else "**no**"
        first = "; ".join(line.replace("|", "/") for line in regressions[:3])
        lines.append(f"| {label} | {caught} | {len(regressions)} | {first[:300]} |")
        print(f"{label}: caught={not passed}, {len(regressions)} regressions ({seconds:.0f} s)",
              flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    write_text(args.out, text)


if __name__ == "__main__":
    main()
