"""A GPU under a board power limit: how much of its compute rate it keeps.

A power limit below the TDP (``nvidia-smi -pl``; torchtitan's published H100 runs at
500 W, Splitwise's power-capped token machines at 70%) is enforced by lowering the SM
clock until the board's draw fits. Compute-bound kernels (GEMMs, prefill attention) slow
with the clock; memory-bound ones (decode's weight and KV reads, norms, copies) are held
by HBM, whose clock the limit does not touch, and links by their own clocks. So the
model scales the tensor-core and CUDA-core rates, and nothing else::

    clock fraction = min(1, limit / TDP) ** exponent

The exponent comes from the one published figure for a capped part we have: Splitwise's
performance model (``splitwise_perf_model.csv``) prices prefill on DGX-H100 at 70% of
its power (its ``dgx-h100-pcap`` machine: 7,140 W against DGX-H100's 10,200 W) at 1.3x
the uncapped time, and decode at the uncapped time, which is this model's split between
compute- and memory-bound work. A prefill step is only partly compute-bound here (its
all-reduces and memory traffic are not), so the clock at the cap is the one that makes
the cost model's own prefill steps at Splitwise's shapes 1.3x slower (median), found by
``python -m validation.calibrate MEASURED --power --write`` and stored, with its data,
in ``data/power_cap.json``: 0.67 of the clock at 70% of the power. That is Splitwise's
own model of its capped machine, not a second measurement (the measured pack's README
says so); torchtitan's published runs on 500 W H100s are the independent check
(``clustersim validate``, training group). It comes from H100 and is applied to every
GPU: a stated extrapolation, as is any limit far below 70%.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from profiles.reading import read_json

__all__ = ["POWER_CAP_PATH", "clock_fraction", "power_cap_fit"]

POWER_CAP_PATH = Path(__file__).parent / "data" / "power_cap.json"


@cache
def power_cap_fit() -> dict[str, Any]:
    """The committed fit (exponent and the data that fit it)."""
    return dict(read_json(POWER_CAP_PATH, "power cap fit"))


def clock_fraction(tdp_w: float, limit_w: float | None) -> float:
    """The fraction of its compute rate a GPU of ``tdp_w`` keeps at ``limit_w`` (None or
    at least the TDP: all of it)."""
    if limit_w is None or limit_w >= tdp_w:
        return 1.0
    return float((limit_w / tdp_w) ** float(power_cap_fit()["exponent"]))
