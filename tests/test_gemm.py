"""GEMM time with tile and wave quantization: hand-computed cases and invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.gemm import gemm_compute_s, gemm_time_s, tiling_utilization
from profiles.hardware import load_gpu

A100 = load_gpu("a100")  # 108 SMs, 128x128 tiles, split-K slices >= 256
H100 = load_gpu("h100")  # 132 SMs
A100_CEILING = 312e12 * 0.86
H100_CEILING = 989.4e12 * 0.8


def test_a_full_wave_runs_at_the_published_ceiling() -> None:
    """9 x 12 = 108 tiles fill A100's 108 SMs once: the GEMM runs at the ceiling."""
    m, n, k = 9 * 128, 12 * 128, 8192
    assert tiling_utilization(A100.gemm_tiling, m, n, k) == 1.0
    assert gemm_compute_s(A100, m, n, k) == pytest.approx(2 * m * n * k / A100_CEILING,
                                                          rel=1e-12)


def test_one_tile_past_a_full_wave_takes_a_second_wave() -> None:
    """109 tiles on 108 SMs: two waves, 109 of 216 slots busy."""
    m, n, k = 109 * 128, 128, 8192
    assert tiling_utilization(A100.gemm_tiling, m, n, k) == pytest.approx(109 / 216)


def test_a_1792_square_gemm_loses_to_tiles_and_waves() -> None:
    """1792 = 14 tiles a side: 196 tiles take two waves of 108 (196/216 busy)."""
    assert tiling_utilization(A100.gemm_tiling, 1792, 1792, 4096) == pytest.approx(196 / 216)


def test_a_ragged_row_count_pays_for_its_last_tile() -> None:
    """m = 300 computes 3 tiles of 128 rows; n = 128 x 36 gives 108 tiles, one wave."""
    assert tiling_utilization(A100.gemm_tiling, 300, 36 * 128, 8192) == pytest.approx(300 / 384)


def test_a_small_grid_is_split_along_k() -> None:
    """One 128x128 tile with k = 8192 on H100: k splits 32 ways (slices of 256), so 32
    of 132 SMs work in the single wave."""
    assert tiling_utilization(H100.gemm_tiling, 128, 128, 8192) == pytest.approx(32 / 132)
    # k = 512 allows only two slices of 256.
    assert tiling_utilization(H100.gemm_tiling, 128, 128, 512) == pytest.approx(2 / 132)


def test_8192_cube_on_h100_keeps_97_percent() -> None:
    """4,096 tiles on 132 SMs take 32 waves (4,224 slots): 767.5 of 791.5 TFLOP/s."""
    seconds = gemm_time_s(H100, 8192, 8192, 8192)
    assert 2 * 8192**3 / seconds / 1e12 == pytest.approx(791.52 * 4096 / 4224, rel=1e-9)


def test_decode_gemms_stay_memory_bound() -> None:
    """16 rows through a 4096 x 4096 weight: reading 32 MiB of weights takes longer than
    the split-K arithmetic, so the time is the bytes over achieved bandwidth."""
    memory_s = (16 * 4096 + 4096 * 4096 + 16 * 4096) * 2 / (3350e9 * 0.85)
    assert gemm_time_s(H100, 16, 4096, 4096) == pytest.approx(memory_s, rel=1e-12)


def test_a_gpu_without_tiling_keeps_the_flat_ceiling() -> None:
    flat = A100.model_copy(update={"gemm_tiling": None})
    assert tiling_utilization(flat.gemm_tiling, 300, 4096, 4096) == 1.0
    assert gemm_compute_s(flat, 300, 4096, 4096) == pytest.approx(
        2 * 300 * 4096 * 4096 / A100_CEILING, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(m=st.integers(1, 40_000), n=st.integers(1, 40_000), k=st.integers(1, 40_000))
def test_utilization_is_a_fraction_and_time_never_beats_the_ceiling(m: int, n: int,
                                                                    k: int) -> None:
    utilization = tiling_utilization(H100.gemm_tiling, m, n, k)
    assert 0.0 < utilization <= 1.0
    assert gemm_compute_s(H100, m, n, k) >= 2 * m * n * k / H100_CEILING * (1 - 1e-12)


def test_a_skinny_gemm_uses_narrow_tiles() -> None:
    """m = 20 rounds up to 32-row tiles, not 128: 20 x 28672 on A100 has 224 tiles of
    32 x 128, three waves of 108, and 20/32 of each tile's rows useful."""
    utilization = tiling_utilization(A100.gemm_tiling, 20, 28672, 4096)
    assert utilization == pytest.approx(20 * 28672 / (3 * 108 * 32 * 128))
    # One row still fills a 16-row tile.
    assert tiling_utilization(A100.gemm_tiling, 1, 128 * 108, 4096) == pytest.approx(1 / 16)
