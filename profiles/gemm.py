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

Fitted kernels. Where the GPU has parameters fitted to measured GEMM tables
(``GPUSpec.kernels.gemm``, see ``profiles.kernel_fit``), the library's choice among tile
shapes is modelled too, and the two bounds are joined smoothly rather than by a max::

    configs   128x128, 128x256, 256x128 at the fitted rate; 64x128, 128x64 at
              small_tile x it, 64x64 at small_tile^2 (narrow rows and split-K as above)
    compute   min over configs of waves x rows x tile_n x (k / split) x 2 / (rate per unit)
    memory    bytes of A, B and C / (fitted fraction x HBM bandwidth)
    time      launch + (compute^p + memory^p)^(1/p)

The minimum over configs is the library's heuristic picking the kernel that wastes least
(a skinny m = 144 runs on 64-row tiles in one wave, not on 128-row tiles in a half-empty
second one); the p-norm is the overlap of the two pipelines that a max assumes perfect.

Weight-only quantization (INT4 AWQ/GPTQ, INT8 weights with 16-bit activations, the
Marlin-style kernels vLLM runs them with): the weights move at their own width, the
activations and output at 16 bits, and every weight element is dequantized on the CUDA
cores once per 64-row block of the activations (the kernels' largest M tile), which
adds to the arithmetic time::

    dequant = k x n x ceil(m / 64) x DEQUANT_OPS[dtype] / (non-tensor FP32 rate)

DEQUANT_OPS are instruction counts per weight of the kernels' bit tricks (unpack, convert,
scale): stated estimates, not fits. At decode batches the memory term dominates (the
near-4x speedup Marlin reports up to batch 16-32); at large batches the dequantization
makes W4A16 a few percent slower than a 16-bit GEMM, as Marlin's batched results show.
"""

from __future__ import annotations

from math import ceil
from typing import Any

import numpy as np

from profiles.hardware import GB, GemmTiling, GPUSpec
from profiles.kernel_fit import GemmFit
from profiles.models import DTYPE_BYTES

__all__ = ["DEQUANT_OPS", "TILE_CONFIGS", "dequant_s", "fitted_gemm_times", "gemm_bytes",
           "gemm_compute_s", "gemm_time_s", "gemm_time_terms", "tiling_utilization"]

_SMALLEST_TILE_ROWS = 16  # the row extent of one tensor-core MMA (m16n8k16 and up)

# (tile_m, tile_n, halvings): the kernels a library chooses among; each halving of a tile
# side costs the fitted ``small_tile`` factor of rate (less reuse per loaded operand).
TILE_CONFIGS = ((128, 128, 0), (128, 256, 0), (256, 128, 0), (64, 128, 1), (128, 64, 1),
                (64, 64, 2))


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


# CUDA-core instructions per weight element to dequantize it (weight-only formats).
DEQUANT_OPS = {"int4": 2.0, "int8": 1.0}
_DEQUANT_TILE_M = 64  # rows of activations per pass over the weights (Marlin's largest)


def dequant_s(gpu: GPUSpec, m: Any, n: Any, k: Any, dtype: str) -> Any:
    """Seconds dequantizing the weights of a weight-only GEMM (0 for other formats)."""
    ops = DEQUANT_OPS.get(dtype)
    if ops is None:
        return 0.0
    rate = gpu.peak_tflops.fp32 * 1e12 * gpu.clock_fraction
    if np.ndim(m) == 0:
        return k * n * ceil(m / _DEQUANT_TILE_M) * ops / rate
    return k * n * np.ceil(np.asarray(m, dtype=np.float64) / _DEQUANT_TILE_M) * ops / rate


def gemm_bytes(m: Any, n: Any, k: Any, dtype: str) -> Any:
    """Bytes a GEMM moves: weights (k x n) at their format, activations and output at
    16 bits for weight-only formats, else at the format."""
    weight = DTYPE_BYTES[dtype]
    other = 2.0 if dtype in DEQUANT_OPS else weight
    return k * n * weight + (m * k + m * n) * other


def gemm_compute_s(gpu: GPUSpec, m: float, n: float, k: float, dtype: str = "bf16") -> float:
    """Arithmetic time of one GEMM at the GPU's achieved ceiling, tiling losses included
    (and dequantization, for weight-only formats)."""
    rate = gpu.compute_flops(dtype) * gpu.efficiency.matmul
    return float(2.0 * m * n * k / (rate * tiling_utilization(gpu.gemm_tiling, m, n, k))
                 + dequant_s(gpu, m, n, k, dtype))


def gemm_time_s(gpu: GPUSpec, m: int, n: int, k: int, dtype: str = "bf16") -> float:
    """Roofline time of one (m x k) @ (k x n) GEMM: max(arithmetic time with tiling
    losses, bytes of A, B and C / achieved bandwidth)."""
    memory_s = float(gemm_bytes(m, n, k, dtype)) / (
        gpu.hbm_bandwidth_gbps * GB * gpu.efficiency.memory)
    return max(gemm_compute_s(gpu, m, n, k, dtype), memory_s)


def fitted_gemm_times(gpu: GPUSpec, fit: GemmFit, m: np.ndarray, n: np.ndarray,
                      k: np.ndarray, dtype: str = "bf16") -> tuple[np.ndarray, np.ndarray]:
    """(seconds, compute-bound) of GEMMs under fitted parameters (module docstring),
    vectorized over arrays of shapes."""
    m, n, k = (np.maximum(1.0, np.asarray(x, dtype=np.float64)) for x in (m, n, k))
    tiling = gpu.gemm_tiling
    units = tiling.compute_units if tiling is not None else 1
    min_split_k = tiling.min_split_k if tiling is not None else 256
    matmul = fit.matmul_fp8 if dtype == "fp8" and fit.matmul_fp8 is not None else fit.matmul
    rate = gpu.compute_flops(dtype) * matmul / units
    narrow = np.maximum(_SMALLEST_TILE_ROWS, 2.0 ** np.ceil(np.log2(m)))
    compute = np.full(m.shape, np.inf)
    for tile_m, tile_n, halvings in TILE_CONFIGS:
        rows = np.minimum(tile_m, narrow)
        tiles = np.ceil(m / rows) * np.ceil(n / tile_n)
        split = np.where(tiles < units,
                         np.maximum(1.0, np.minimum(units // tiles, k // min_split_k)), 1.0)
        waves = np.ceil(tiles * split / units)
        seconds = waves * rows * tile_n * (k / split) * 2.0 / (rate * fit.small_tile**halvings)
        compute = np.minimum(compute, seconds)
    compute = compute + dequant_s(gpu, m, n, k, dtype)
    memory = gemm_bytes(m, n, k, dtype) / (gpu.hbm_bandwidth_gbps * GB * fit.memory)
    p = fit.blend
    total = fit.launch_us * 1e-6 + (compute**p + memory**p) ** (1.0 / p)
    return total, compute >= memory


def gemm_time_terms(gpu: GPUSpec, m: float, n: float, k: float, dtype: str = "bf16"
                    ) -> tuple[float, bool]:
    """(seconds, compute-bound) of one (m x k) @ (k x n) GEMM: the fitted model where
    the GPU has one, otherwise the tiling roofline of :func:`gemm_time_s`."""
    fit = gpu.kernels.gemm if gpu.kernels is not None else None
    if fit is None:
        compute_s = gemm_compute_s(gpu, m, n, k, dtype)
        memory_s = gemm_bytes(m, n, k, dtype) / (
            gpu.hbm_bandwidth_gbps * GB * gpu.efficiency.memory)
        return max(compute_s, memory_s), compute_s >= memory_s
    seconds, compute_bound = fitted_gemm_times(gpu, fit, np.array([m]), np.array([n]),
                                               np.array([k]), dtype)
    return float(seconds[0]), bool(compute_bound[0])
