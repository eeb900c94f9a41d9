"""The parameters of the training step fitted to end-to-end runs, and their data.

Kernel tables are measured in short bursts at boost clocks; a training run keeps every
tensor core busy for minutes, and a GPU at its power limit lowers its clocks (FP8 and
BF16 GEMMs on H100 draw the most). ``sustained_compute`` is the fraction of the
kernels' measured rate that GEMMs and attention keep in a training run, per GPU die::

    training GEMM / attention time = kernel-model time / sustained_compute

Beside it, ``tp_overlap_hidden``: the share of the tensor-parallel communication that
an overlapped plan (Megatron's TP comm overlap, torchtitan's async TP) hides behind the
GEMMs it is split with; the rest of the communication shows, and so does the GEMMs' loss
of the SMs the communication kernels take.

Beside them, ``moe_host_floor_s``: the shortest forward plus backward pass of a dropless
MoE layer, which waits on the host for its token counts (``profiles.training_cost``).
It is fitted to the MoE runs alone (no dense run carries it), on every GPU at once,
since the host, not the GPU, sets it; its leave-one-die-out errors are stored with it.

All are fitted, with nothing else, to the published training runs of the measured pack
(``python -m validation.calibrate MEASURED --training --write``: the median absolute
log error over the runs the simulator expresses), stored in
``profiles/data/training_fits.json`` with the runs that fit it, its in-sample error and
the leave-one-source-out errors. The share is fitted once, on the GH100 (H100, H200,
H800), and held for the other dies: it belongs to the frameworks, not to a chip.

Blackwell (B200, GB200) has no measured kernel tables in the pack: its GEMM and attention
rates are the catalog's documented efficiencies, so its fitted fraction carries their
error as well as the sustained clocks. Its runs come from one source (Megatron-Bridge),
so no leave-one-source-out error can be stated for it. GB300 (Blackwell Ultra) has a
fraction of its own, fitted after the error of its runs under Blackwell's fraction is
stored (how far a fit carries to a part it has not seen), with the MoE floor held; B300
takes Blackwell's entry without being fitted to (``held_out``), its runs' error stored
beside it. A GPU without an entry keeps 1 (the older A100 records are predicted with the
kernel fits alone).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["TRAINING_FITS_PATH", "die_of", "moe_host_floor_s", "sustained_compute",
           "tp_overlap_hidden", "training_fits"]

TRAINING_FITS_PATH = Path(__file__).parent / "data" / "training_fits.json"


@cache
def training_fits() -> dict[str, Any]:
    """The committed document (empty without the file)."""
    if not TRAINING_FITS_PATH.is_file():
        return {}
    return dict(json.loads(TRAINING_FITS_PATH.read_text(encoding="utf-8")))


def sustained_compute(gpu_name: str) -> float:
    """The fitted fraction for a catalog GPU (1.0 where none is fitted)."""
    entry = training_fits().get("gpus", {}).get(gpu_name)
    return float(entry["sustained_compute"]) if entry else 1.0


def die_of(gpu_name: str) -> str | None:
    """The fitted die a catalog GPU belongs to (None where none is fitted)."""
    entry = training_fits().get("gpus", {}).get(gpu_name)
    return str(entry["die"]) if entry else None


def tp_overlap_hidden() -> float:
    """The share of TP communication an overlapped plan hides (1.0 where none is
    fitted: all of it, up to the GEMM time it overlaps)."""
    return float(training_fits().get("tp_overlap_hidden", 1.0))


def moe_host_floor_s() -> float:
    """The shortest forward plus backward pass of a dropless MoE layer, host-bound
    (``profiles.training_cost``; 0 where none is fitted)."""
    entry = training_fits().get("moe_host_floor", {})
    return float(entry.get("seconds", 0.0))
