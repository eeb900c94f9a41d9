"""The power-cap exponent (``profiles.power``) from Splitwise's capped H100 profile.

Splitwise's performance model holds every (model, TP, prompt, batch, output) point on
DGX-H100 twice: uncapped (``h100-80gb``) and at the power cap of its Splitwise-HHcap
design (``h100-80gb-pcap``, 70% of the machine's power). The median ratio of their
prefill times is the prefill slowdown at that cap (1.3); their decode times, the
memory-bound side, are equal (reported beside it).

A prefill step is not all compute-bound in the cost model (its all-reduces, norms and
attention's memory traffic are not), so the compute clock at the cap is the one under
which the cost model's own prefill steps, at Splitwise's H100 shapes (Llama-2-70B at TP
2/4/8, BLOOM-176B at TP 8, prompts of 128-8,192 tokens, batches of 1-64), are that much
slower, median over the shapes: found by bisection, then written as the exponent of
``clock = cap ** exponent``. No training or serving run enters the fit.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from profiles.cost_model import BatchShape
from profiles.errors import ClusterSimError
from profiles.hardware import GPUSpec, load_gpu
from profiles.importers import read_splitwise
from validation.operators import splitwise_cost_model

__all__ = ["SPLITWISE_CAP_FRACTION", "fit_power_cap", "prefill_slowdowns"]

# Splitwise-HHcap's capped machine: microsoft's splitwise-sim configs/hardware_repo/skus/
# dgx-h100-pcap.yaml (tdp 7140) against dgx-h100.yaml (tdp 10200), i.e. 70%.
SPLITWISE_CAP_FRACTION = 7140.0 / 10200.0
_SOURCE = ("splitwise_perf_model.csv (Mutinifni/splitwise-sim data/perf_model.csv, "
           "Splitwise, ISCA 2024); cap: splitwise-sim configs/hardware_repo/skus/"
           "dgx-h100-pcap.yaml (7,140 W) over dgx-h100.yaml (10,200 W)")
_KEYS = ["model", "tp", "batch", "prompt_tokens", "output_tokens"]


def _at_clock(gpu: GPUSpec, clock: float) -> GPUSpec:
    """``gpu`` with every compute rate at ``clock`` of its own (what a limit does)."""
    peak = gpu.peak_tflops
    rates = {key: value * clock for key in ("bf16", "fp16", "fp8", "fp32")
             if (value := getattr(peak, key)) is not None}
    return gpu.model_copy(update={"peak_tflops": peak.model_copy(update=rates)})


def prefill_slowdowns(shapes: pd.DataFrame, clock: float) -> np.ndarray:
    """The cost model's prefill step time at ``clock`` over its time at full clock, for
    each Splitwise shape (rows with model, tp, batch and prompt_tokens), on H100."""
    gpu = load_gpu("h100")
    slow = _at_clock(gpu, clock)
    out = []
    for (name, tp), part in shapes.groupby(["model", "tp"]):
        full = splitwise_cost_model(str(name), int(tp), gpu)
        capped = splitwise_cost_model(str(name), int(tp), slow)
        for batch, prompt in zip(part["batch"], part["prompt_tokens"], strict=True):
            shape = BatchShape([int(prompt)] * int(batch), [0] * int(batch), int(batch))
            out.append(capped.predict(shape).total_s / full.predict(shape).total_s)
    return np.array(out)


def fit_power_cap(measured_dir: str | Path) -> dict[str, Any]:
    """The exponent and the data that fit it, as ``profiles/data/power_cap.json`` holds it."""
    rows = read_splitwise(Path(measured_dir) / "splitwise_perf_model.csv")
    wide = rows.set_index([*_KEYS, "hardware"])[["prefill_s", "decode_step_s"]] \
        .unstack("hardware")
    pairs = wide.dropna(subset=[("prefill_s", "h100-80gb"), ("prefill_s", "h100-80gb-pcap")])
    if pairs.empty:
        raise ClusterSimError("splitwise_perf_model.csv: no configuration measured both on "
                              "h100-80gb and h100-80gb-pcap; the power cap cannot be fitted")
    prefill = pairs[("prefill_s", "h100-80gb-pcap")] / pairs[("prefill_s", "h100-80gb")]
    decode = (pairs[("decode_step_s", "h100-80gb-pcap")]
              / pairs[("decode_step_s", "h100-80gb")])
    target = float(pd.Series(prefill).median())
    shapes = pairs.reset_index()[["model", "tp", "batch", "prompt_tokens"]] \
        .drop_duplicates().droplevel(1, axis=1)
    low, high = 0.2, 1.0  # the clock: the slowdown falls as it rises
    for _ in range(40):
        mid = (low + high) / 2
        if float(np.median(prefill_slowdowns(shapes, mid))) > target:
            low = mid
        else:
            high = mid
    clock = (low + high) / 2
    return {
        "_comment": "Written by `python -m validation.calibrate MEASURED --power --write`; "
                    "see profiles/power.py and validation/calibrate_power.py.",
        "exponent": round(math.log(clock) / math.log(SPLITWISE_CAP_FRACTION), 4),
        "cap_fraction": round(SPLITWISE_CAP_FRACTION, 4),
        "compute_clock_at_cap": round(clock, 4),
        "prefill_slowdown": round(target, 4),
        "decode_slowdown": round(float(pd.Series(decode).median()), 4),
        "num_points": len(pairs),
        "num_prefill_shapes": len(shapes),
        "data": _SOURCE,
    }
