"""Checking a profile: how well each table supports interpolation (leave-one-out)."""

from __future__ import annotations

from profiles.interpolate import leave_one_out_errors
from profiles.profile_format import KernelProfile
from profiles.profiled import profile_curves

__all__ = ["profile_errors"]


def profile_errors(profile: KernelProfile) -> dict[str, tuple[int, int, list[float]]]:
    """Per operation: (families, interior points checked, relative errors)."""
    report = {}
    for op in profile.tables:
        curves = profile_curves(profile, op)
        errors = leave_one_out_errors(curves)
        report[op] = (len(curves), len(errors), errors)
    return report
