"""The hardware catalog: GPU SKUs as data, not as a class per SKU.

Each GPU in ``profiles/data/gpus.json`` carries dense peak FLOP/s per dtype, HBM capacity
and bandwidth, its scale-up link (NVLink/xGMI), a typical NIC and its host link, with a
source for every figure, plus the fractions of peak that the roofline model assumes
(estimates until measured kernel profiles replace them). Where measured operator tables
exist, the parameters fitted to them (``profiles/data/kernel_fits.json``) are attached
as ``kernels``. A user adds a GPU by giving a JSON file of the same shape.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from profiles.errors import ClusterSimError, format_validation_error
from profiles.kernel_fit import KernelFit, kernel_fits
from profiles.power import clock_fraction
from profiles.reading import read_json

__all__ = ["Efficiency", "GPUSpec", "GemmTiling", "HostTier", "Link", "list_gpus", "load_gpu"]

_CATALOG_PATH = Path(__file__).parent / "data" / "gpus.json"

GB = 1e9
GIB = 2**30


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Bounds that mean something: no accelerator is within a thousandth of these ceilings,
# and a rate below the floors (a denormal bandwidth, say) would stall every step.
MAX_TFLOPS = 1e6
MAX_GBPS = 1e6
MIN_RATE = 1e-3
# The lowest power limit GPU firmware accepts, as a fraction of the TDP (nvidia-smi -q -d
# POWER: Min Power Limit 100 W of A100 SXM's 400 W, 200 W of H100 SXM's 700 W).
MIN_POWER_LIMIT = 0.25


class Link(_Frozen):
    """A link as one GPU sees it: bandwidth per direction and one-way latency."""

    kind: str
    bandwidth_gbps: float = Field(ge=MIN_RATE, le=MAX_GBPS,
                                  description="GB/s per direction (1e9 bytes/s)")
    latency_us: float = Field(default=0.0, ge=0, le=1e6)


class PeakTflops(_Frozen):
    bf16: float = Field(ge=MIN_RATE, le=MAX_TFLOPS)
    fp16: float = Field(ge=MIN_RATE, le=MAX_TFLOPS)
    fp8: float | None = Field(default=None, ge=MIN_RATE, le=MAX_TFLOPS)
    fp32: float = Field(ge=MIN_RATE, le=MAX_TFLOPS)


class Efficiency(_Frozen):
    """Achieved fractions of peak that the roofline model assumes."""

    matmul: float = Field(gt=0, le=1)
    attention: float = Field(gt=0, le=1)
    memory: float = Field(gt=0, le=1)
    scale_up: float = Field(gt=0, le=1)
    network: float = Field(gt=0, le=1)
    attention_fa2: float | None = Field(
        default=None, gt=0, le=1, description="FlashAttention-2's achieved fraction of "
        "peak, where it differs from ``attention`` (Hopper: FA2 does not use its "
        "asynchronous warpgroup tensor-core instructions)")
    nvls: float | None = Field(default=None, gt=0, le=1,
                               description="NVLink SHARP all-reduce: fraction of the link; "
                                           "None where the switch has no in-network reduce")


class GemmTiling(_Frozen):
    """How a library GEMM spreads over the chip: compute units (SMs or CUs), the output
    tile one unit computes at a time, and the smallest reduction slice of split-K
    (see ``profiles/gemm.py``)."""

    compute_units: int = Field(gt=0, le=100_000)
    tile_m: int = Field(gt=0, le=4096)
    tile_n: int = Field(gt=0, le=4096)
    min_split_k: int = Field(gt=0, le=2**20)


class HostTier(_Frozen):
    """What the host gives one GPU: its share of the node's DRAM (capacity and bandwidth)
    and of the node's NVMe drives. The GPU-host path itself is ``GPUSpec.host_link``."""

    dram_gib: float = Field(gt=0, le=1e7)
    dram_bandwidth_gbps: float = Field(ge=MIN_RATE, le=MAX_GBPS,
                                       description="GB/s of DRAM bandwidth per GPU")
    nvme_gib: float = Field(ge=0, le=1e9)
    nvme_read_gbps: float = Field(ge=MIN_RATE, le=MAX_GBPS)
    nvme_write_gbps: float = Field(ge=MIN_RATE, le=MAX_GBPS)


class GPUSpec(_Frozen):
    """One accelerator SKU (for MI250X: one GCD, which the software sees as one GPU)."""

    name: str
    aliases: list[str] = []
    vendor: Literal["nvidia", "amd", "other"]
    peak_tflops: PeakTflops
    hbm_gib: float = Field(ge=MIN_RATE, le=1e6)
    hbm_bandwidth_gbps: float = Field(ge=MIN_RATE, le=MAX_GBPS)
    scale_up: Link
    nic_bandwidth_gbps: float = Field(ge=MIN_RATE, le=MAX_GBPS)
    nic_latency_us: float = Field(ge=0, le=1e6)
    host_link: Link
    host: HostTier | None = Field(
        default=None, description="host DRAM and NVMe per GPU (offloading); None: unknown")
    tdp_w: float = Field(gt=0, le=1e5)
    power_limit_w: float | None = Field(
        default=None, gt=0, le=1e5, description="board power limit below the TDP "
        "(nvidia-smi -pl); compute slows with it (profiles/power.py); None: the TDP")
    scale_up_gpus: int = Field(
        default=8, ge=1, le=100_000, description="GPUs one scale-up fabric joins: a node's "
        "NVSwitch (8), or a rack's NVLink domain (72 for GB200 NVL72)")
    efficiency: Efficiency
    gemm_tiling: GemmTiling | None = None
    kernels: KernelFit | None = Field(
        default=None, description="parameters fitted to measured operator tables "
        "(profiles/data/kernel_fits.json); None keeps the datasheet roofline")
    sources: dict[str, str]

    @model_validator(mode="after")
    def _limit_within_tdp(self) -> GPUSpec:
        limit = self.power_limit_w
        if limit is not None and limit > self.tdp_w:
            raise ValueError(f"power_limit_w={limit:g} W is above the TDP ({self.tdp_w:g} W); "
                             "a limit can only lower the power")
        if limit is not None and limit < MIN_POWER_LIMIT * self.tdp_w:
            raise ValueError(f"power_limit_w={limit:g} W is below {MIN_POWER_LIMIT:.0%} of the "
                             f"TDP ({self.tdp_w:g} W), which GPU firmware does not allow; "
                             "raise it")
        return self

    @property
    def hbm_bytes(self) -> float:
        return self.hbm_gib * GIB

    @property
    def clock_fraction(self) -> float:
        """The fraction of its compute rate the GPU keeps under its power limit."""
        return clock_fraction(self.tdp_w, self.power_limit_w)

    @property
    def label(self) -> str:
        """The name, with its power limit where it has one (``H100-SXM5-80GB@500W``)."""
        return self.name if self.power_limit_w is None else f"{self.name}@{self.power_limit_w:g}W"

    @property
    def power_w(self) -> float:
        """The board power the GPU may draw: its limit, else its TDP."""
        return self.tdp_w if self.power_limit_w is None else self.power_limit_w

    def compute_flops(self, dtype: str) -> float:
        """The FLOP/s kernels see: :meth:`peak_flops` at the clock the power limit leaves
        (MFU stays relative to the datasheet peak)."""
        return self.peak_flops(dtype) * self.clock_fraction

    def peak_flops(self, dtype: str) -> float:
        """Dense peak FLOP/s for ``dtype`` (fp8 falls back to fp16 where unsupported)."""
        tflops = getattr(self.peak_tflops, "fp16" if dtype in ("fp16", "int8", "int4") else dtype)
        if tflops is None:  # no fp8 tensor cores (A100, MI250X): runs at fp16 rate
            tflops = self.peak_tflops.fp16
        return float(tflops) * 1e12


@cache
def _catalog() -> dict[str, dict[str, Any]]:
    by_name: dict[str, dict[str, Any]] = {}
    fits = kernel_fits()
    for entry in json.loads(_CATALOG_PATH.read_text())["gpus"]:
        if entry["name"] in fits:
            entry = {**entry, "kernels": fits[entry["name"]]}
        for key in [entry["name"], *entry.get("aliases", [])]:
            by_name[key.lower()] = entry
    return by_name


def list_gpus() -> list[GPUSpec]:
    """Every GPU of the catalog, in catalog order."""
    seen: dict[str, GPUSpec] = {}
    for entry in _catalog().values():
        if entry["name"] not in seen:
            seen[entry["name"]] = GPUSpec(**entry)
    return list(seen.values())


def load_gpu(name_or_path: str) -> GPUSpec:
    """A catalog GPU by name or alias (case-insensitive), or a JSON file of one GPU; either
    may end in ``@<watts>W``, a board power limit below its TDP (``h100@500W``: an H100
    run at ``nvidia-smi -pl 500``; see ``profiles/power.py``).

    Raises:
        ClusterSimError: unknown name, unreadable file, a field out of range, or a power
            limit above the TDP.
    """
    limit = _POWER_SUFFIX.search(name_or_path)
    if limit is not None:
        name_or_path = name_or_path[:limit.start()].strip()
    spec = _load(name_or_path)
    if limit is None:
        return spec
    watts = float(limit.group(1))
    try:
        return GPUSpec(**{**spec.model_dump(), "power_limit_w": watts})
    except ValidationError as error:
        raise ClusterSimError(format_validation_error(error, f"gpu {name_or_path}")) from None


_POWER_SUFFIX = re.compile(r"@\s*(\d+(?:\.\d+)?)\s*[wW]\s*$")


def _load(name_or_path: str) -> GPUSpec:
    entry = _catalog().get(name_or_path.lower())
    source = f"gpu {name_or_path}"
    if entry is None:
        path = Path(name_or_path)
        if not path.is_file():
            names = ", ".join(gpu.name for gpu in list_gpus())
            raise ClusterSimError(
                f"gpu {name_or_path!r}: not in the catalog and not a JSON file; use one of: "
                f"{names} (or their short names a100, h100, h200, mi250x, mi300x, l40s; "
                f"a power limit is a suffix: h100@500W)"
            )
        entry = read_json(path, "gpu file")
        source = f"gpu file {path}"
    try:
        return GPUSpec(**entry)
    except (ValidationError, TypeError) as error:
        if isinstance(error, ValidationError):
            raise ClusterSimError(format_validation_error(error, source)) from None
        raise ClusterSimError(f"{source}: expected a JSON object of GPU fields") from None
