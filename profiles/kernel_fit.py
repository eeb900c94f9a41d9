"""Per-GPU kernel parameters fitted to measured operator tables, and where they came from.

``profiles/data/kernel_fits.json`` holds, for each GPU that has measured tables, a few
named parameters per operator family, each family with the data that fit it (the files,
their source and commit, the number of points) and its in-sample error. They are written
by ``python -m validation.calibrate`` from the measured pack and read by the catalog
(``profiles.hardware``), which attaches them to the GPU as ``GPUSpec.kernels``. A GPU
without fits keeps the datasheet roofline with its ``efficiency`` fractions.

    gemm         matmul      fraction of peak a 128x128 tile's SM keeps while busy
                 memory      fraction of HBM bandwidth a weight-streaming GEMM reaches
                 small_tile  relative rate of a 64-wide tile (per halving of the tile)
                 blend       p of the p-norm joining compute and memory time (1 = sum)
                 launch_us   the fixed time of one kernel
                 matmul_fp8  matmul for FP8 GEMMs (fraction of the FP8 peak)
    stream       memory by op (rmsnorm, silu_mul, rotary, add), launch_us
    attention    prefill (fraction of peak for causal FLOPs), prefill_memory, blend,
                 decode_memory (fraction of HBM bandwidth reading KV), launch_us
    all_reduce   latency_us (per ring step), bandwidth (fraction of the scale-up link),
                 by group size

A GPU built on a die whose kernels were measured on another part (``SAME_DIE``) takes
that part's fits: the same chip at the same clocks has the same tiles, launch times and
tensor-core rate, while each fit's memory and link terms scale with the GPU's own HBM
and NVLink figures.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SAME_DIE", "AllReduceFit", "AttentionFit", "GemmFit", "KernelFit", "StreamFit",
           "kernel_fits"]

FITS_PATH = Path(__file__).parent / "data" / "kernel_fits.json"

# Parts of one die, by the part whose tables were measured: H200 is the H100 SXM5's
# GH100 at the same clocks with HBM3e, H800 the same with a narrower NVLink (their
# datasheets; see profiles/data/gpus.json).
SAME_DIE = {"H200-SXM-141GB": "H100-SXM5-80GB", "H800-SXM5-80GB": "H100-SXM5-80GB"}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FitRecord(_Frozen):
    """The data one family was fitted to, and how well it fits them."""

    data: str = Field(description="files of the measured pack, with their source")
    num_points: int = Field(ge=1)
    median_error_pct: float = Field(ge=0)
    p90_error_pct: float = Field(ge=0)


class GemmFit(_Frozen):
    matmul: float = Field(gt=0, le=1.2)
    memory: float = Field(gt=0, le=1.2)
    small_tile: float = Field(gt=0, le=1)
    blend: float = Field(ge=1)
    launch_us: float = Field(ge=0)
    fitted: FitRecord
    # FP8 GEMMs (Hopper's FP8 tensor cores): their own fraction of the FP8 peak, fitted
    # with the other parameters held, where an FP8 GEMM table exists.
    matmul_fp8: float | None = Field(default=None, gt=0, le=1.2)
    fitted_fp8: FitRecord | None = None


class StreamFit(_Frozen):
    memory: dict[str, float] = Field(description="fraction of HBM bandwidth per op")
    launch_us: float = Field(ge=0)
    fitted: FitRecord


class AttentionFit(_Frozen):
    prefill: float = Field(gt=0, le=1.2)
    prefill_memory: float = Field(gt=0, le=1.2)
    blend: float = Field(ge=1)
    prefill_launch_us: float = Field(ge=0)
    decode_memory: float = Field(gt=0, le=1.2)
    decode_launch_us: float = Field(ge=0)
    fitted: dict[str, FitRecord]


class AllReduceFit(_Frozen):
    latency_us: float = Field(ge=0)
    bandwidth: float = Field(gt=0, le=3.0, description="fraction of the scale-up link a ring "
                             "step reaches; above 1 where NCCL reduces in the switch (NVLS)")
    launch_us: float = Field(ge=0)
    fitted: FitRecord


class KernelFit(_Frozen):
    """Every fitted family of one GPU (a family without data is None)."""

    gemm: GemmFit | None = None
    stream: StreamFit | None = None
    attention: AttentionFit | None = None
    all_reduce: AllReduceFit | None = None


@cache
def kernel_fits() -> dict[str, dict[str, Any]]:
    """The committed fits, by catalog GPU name (raw, validated where the GPU is built)."""
    if not FITS_PATH.is_file():
        return {}
    fits: dict[str, dict[str, Any]] = json.loads(FITS_PATH.read_text())["gpus"]
    for part, measured in SAME_DIE.items():
        if part not in fits and measured in fits:
            fits[part] = fits[measured]
    return fits
