"""The power-cap exponent (``profiles.power``) from Splitwise's capped H100 profile.

Splitwise's performance model holds every (model, TP, prompt, batch, output) point on
DGX-H100 twice: uncapped (``h100-80gb``) and at the power cap of its Splitwise-HHcap
design (``h100-80gb-pcap``, 70% of the machine's power). The median ratio of their
prefill times is the compute-bound slowdown at that cap; the decode times, the
memory-bound side, are reported beside it (the model leaves them unchanged).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from profiles.errors import ClusterSimError
from profiles.importers import read_splitwise
from profiles.power import exponent_from

__all__ = ["SPLITWISE_CAP_FRACTION", "fit_power_cap"]

# Splitwise-HHcap's capped machine: microsoft's splitwise-sim configs/hardware_repo/skus/
# dgx-h100-pcap.yaml (tdp 7140) against dgx-h100.yaml (tdp 10200), i.e. 70%.
SPLITWISE_CAP_FRACTION = 7140.0 / 10200.0
_SOURCE = ("splitwise_perf_model.csv (Mutinifni/splitwise-sim data/perf_model.csv, "
           "Splitwise, ISCA 2024); cap: splitwise-sim configs/hardware_repo/skus/"
           "dgx-h100-pcap.yaml (7,140 W) over dgx-h100.yaml (10,200 W)")
_KEYS = ["model", "tp", "batch", "prompt_tokens", "output_tokens"]


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
    slowdown = float(pd.Series(prefill).median())
    return {
        "_comment": "Written by `python -m validation.calibrate MEASURED --power --write`; "
                    "see profiles/power.py.",
        "exponent": round(exponent_from(SPLITWISE_CAP_FRACTION, slowdown), 4),
        "cap_fraction": round(SPLITWISE_CAP_FRACTION, 4),
        "prefill_slowdown": round(slowdown, 4),
        "decode_slowdown": round(float(pd.Series(decode).median()), 4),
        "num_points": len(pairs),
        "data": _SOURCE,
    }
