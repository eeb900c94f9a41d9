"""GEMM time on a GPU: the achieved ceiling, less what tiling leaves idle.

A library GEMM cuts the (m x n) output into tiles and runs one tile per compute unit (SM
on NVIDIA, CU on AMD) at a time, in waves. The published "maximum achievable" FLOP/s
(``efficiency.matmul`` of the GPU) is what a unit does while busy; a shape loses to
tiling in two ways (NVIDIA, "Matrix Multiplication Background User's Guide", sections on
tile and wave quantization)::

    tile quantization   m = 300 with 128-row tiles computes 384 rows: 300/384 useful
    wave quantization   133 tiles on 132 SMs take two waves: 133/264 of the slots busy

    units  |####|####|####| ... |####|     wave 1: 132 tiles
           |####|    |    | ... |    |     wave 2: 1 tile, 131 SMs idle

Libraries do not pad a skinny GEMM to full tiles: for few rows they pick kernels with
narrower tiles, so tile rows are ``m`` rounded up to a power of two, between 16 (the
smallest row extent of the tensor-core instructions) and ``tile_m``. When the grid has
fewer tiles than units, they split the reduction (k) across units (split-K) rather than
leave them idle; we split k as far as the units allow while each slice keeps at least
``min_split_k`` elements. The useful fraction::

    rows        = min(tile_m, max(16, 2 ** ceil(log2 m)))
    tiles       = ceil(m / rows) * ceil(n / tile_n)
    split       = 1 if tiles >= units else max(1, min(units // tiles, k // min_split_k))
    waves       = ceil(tiles * split / units)
    utilization = m * n * split / (waves * units * rows * tile_n)

and a GEMM takes max(2mnk / (ceiling x utilization), bytes of A, B, C / bandwidth). The
utilization is 1 for shapes that fill every wave, so the published ceiling, which is the
best over a sweep of large shapes, is reproduced there. A GPU without a ``gemm_tiling``
entry (a user's JSON file, say) keeps the flat ceiling. Measured GEMM tables replace all
of this where a profile has them.
"""

from __future__ import annotations

from math import ceil

from profiles.hardware import GB, GemmTiling, GPUSpec
from profiles.models import DTYPE_BYTES

__all__ = ["gemm_compute_s", "gemm_time_s", "tiling_utilization"]

_SMALLEST_TILE_ROWS = 16  # the row extent of one tensor-core MMA (m16n8k16 and up)


def tiling_utilization(tiling: GemmTiling | None, m: float, n: float, k: float) -> float:
    """The fraction of the busy rate an (m x k) @ (k x n) GEMM keeps (1 = every slot
    of every wave does useful work); see the module docstring."""
    if tiling is None:
        return 1.0
    m, n, k = max(1, ceil(m)), max(1, ceil(n)), max(1, ceil(k))
    units = tiling.compute_units
    rows = min(tiling.tile_m, max(_SMALLEST_TILE_ROWS, 1 << (m - 1).bit_length()))
    tiles = ceil(m / rows) * ceil(n / tiling.tile_n)
    split = 1
    if tiles < units:
        split = max(1, min(units // tiles, k // tiling.min_split_k))
    waves = ceil(tiles * split / units)
    return m * n * split / (waves * units * rows * tiling.tile_n)


def gemm_compute_s(gpu: GPUSpec, m: float, n: float, k: float, dtype: str = "bf16") -> float:
    """Arithmetic time of one GEMM at the GPU's achieved ceiling, tiling losses included."""
    rate = gpu.peak_flops(dtype) * gpu.efficiency.matmul
    return 2.0 * m * n * k / (rate * tiling_utilization(gpu.gemm_tiling, m, n, k))


def gemm_time_s(gpu: GPUSpec, m: int, n: int, k: int, dtype: str = "bf16") -> float:
    """Roofline time of one (m x k) @ (k x n) GEMM: max(arithmetic time with tiling
    losses, bytes of A, B and C / achieved bandwidth)."""
    element = DTYPE_BYTES[dtype]
    memory_s = (m * k + k * n + m * n) * element / (
        gpu.hbm_bandwidth_gbps * GB * gpu.efficiency.memory)
    return max(gemm_compute_s(gpu, m, n, k, dtype), memory_s)
