"""Predictions against measurements: the absolute percentage error per record, its
median, p90 and max per group, and the regression gate against the committed baseline.

The gate fails when a group's median error rises by more than 1 percentage point or any
record's error by more than 5 points over ``validation/baseline.json``. Improvements and
new records are reported as moves, so a baseline update shows what it accepts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from validation.predictors import PREDICTORS
from validation.records import Record

__all__ = ["GROUP_MEDIAN_TOLERANCE_PTS", "RECORD_TOLERANCE_PTS", "compare_to_baseline",
           "group_errors", "predict_records"]

GROUP_MEDIAN_TOLERANCE_PTS = 1.0
RECORD_TOLERANCE_PTS = 5.0


def predict_records(records: list[Record]) -> pd.DataFrame:
    """One row per predictable record: measured, predicted, absolute percentage error."""
    rows = []
    for record in records:
        if record.kind not in PREDICTORS:
            continue
        scenario = record.scenario | {"unit": record.measured.unit}
        predicted = PREDICTORS[record.kind](scenario)
        measured = record.measured.value
        rows.append({
            "id": record.id, "group": record.group, "kind": record.kind, "role": record.role,
            "metric": record.measured.metric, "unit": record.measured.unit,
            "measured": measured, "predicted": predicted,
            "error_pct": abs(predicted - measured) / measured * 100.0,
            "source": f"{record.source.citation}; {record.source.locator}",
        })
    return pd.DataFrame(rows)


def group_errors(rows: pd.DataFrame) -> pd.DataFrame:
    """Median, p90 and max error per (group, role), with the record count."""
    out = []
    for (group, role), part in rows.groupby(["group", "role"], sort=True):
        errors = part["error_pct"].to_numpy()
        out.append({"group": group, "role": role, "num_records": len(errors),
                    "median_error_pct": float(np.median(errors)),
                    "p90_error_pct": float(np.percentile(errors, 90)),
                    "max_error_pct": float(errors.max())})
    return pd.DataFrame(out)


def compare_to_baseline(rows: pd.DataFrame, baseline: dict[str, float]
                        ) -> tuple[list[str], list[str]]:
    """Regressions (gate failures) and movements (improvements, new records) vs baseline.

    Returns:
        (regressions, movements): one line each, naming the record or group.
    """
    regressions: list[str] = []
    movements: list[str] = []
    current = dict(zip(rows["id"], rows["error_pct"], strict=True))
    for record_id, error in current.items():
        before = baseline.get(record_id)
        if before is None:
            movements.append(f"{record_id}: new record, error {error:.2f}%")
        elif error > before + RECORD_TOLERANCE_PTS:
            regressions.append(f"{record_id}: error {before:.2f}% -> {error:.2f}% "
                               f"(more than {RECORD_TOLERANCE_PTS:g} points worse)")
        elif abs(error - before) >= 0.01:
            movements.append(f"{record_id}: error {before:.2f}% -> {error:.2f}%")
    for group, part in rows.groupby("group"):
        known = [baseline[i] for i in part["id"] if i in baseline]
        if not known:
            continue
        now = float(np.median([current[i] for i in part["id"] if i in baseline]))
        then = float(np.median(known))
        if now > then + GROUP_MEDIAN_TOLERANCE_PTS:
            regressions.append(f"group {group}: median error {then:.2f}% -> {now:.2f}% "
                               f"(more than {GROUP_MEDIAN_TOLERANCE_PTS:g} point worse)")
    for record_id in sorted(set(baseline) - set(current)):
        movements.append(f"{record_id}: in the baseline but no longer a record")
    return regressions, movements
