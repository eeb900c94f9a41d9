"""``clustersim validate`` as one library call: predict every record, compare with the
baseline, and write what was asked for (tables, a scatter page, the README's accuracy
block, a new baseline).

    records ─► predictors ─► errors per record and group ─► gate vs baseline.json
                                         └─► validation.json/.csv, scatter page, README block
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from profiles.errors import ClusterSimError
from simulator.files import to_json_text, write_text
from validation.comparison import compare_to_baseline, group_errors, predict_records
from validation.records import default_records_dir, load_records, pending_records
from validation.render import accuracy_markdown, replace_accuracy_block, scatter_html

__all__ = ["ValidationReport", "default_baseline_path", "validate"]


@dataclass
class ValidationReport:
    """What one validation run found and wrote.

    Attributes:
        rows: one row per predicted record (measured, predicted, error_pct, source).
        groups: median, p90 and max error per (group, role).
        pending: ids of records awaiting a predictor, by what will predict them.
        regressions: gate failures against the baseline, one line each.
        movements: improvements, new and dropped records, one line each.
        baseline_path: the baseline compared against (and rewritten, when asked).
        baseline_updated: the current errors were written as the new baseline.
        written: every file written, in order.
    """

    rows: pd.DataFrame
    groups: pd.DataFrame
    pending: dict[str, list[str]]
    regressions: list[str]
    movements: list[str]
    baseline_path: Path
    baseline_updated: bool = False
    written: list[Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """The gate holds: no regression, or the baseline was updated to accept them."""
        return self.baseline_updated or not self.regressions


def default_baseline_path() -> Path:
    """``validation/baseline.json`` beside the project's records."""
    return default_records_dir().parent / "baseline.json"


def _read_baseline(path: Path) -> dict[str, float]:
    if not path.is_file():
        return {}
    try:
        errors = json.loads(path.read_text(encoding="utf-8"))["error_pct"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ClusterSimError(f"--baseline {path}: expected a JSON object with 'error_pct' "
                              f"({error}); rewrite it with --update-baseline") from None
    return {str(key): float(value) for key, value in errors.items()}


def validate(records: str | Path | None = None, baseline: str | Path | None = None, *,
             out: str | Path | None = None, html: str | Path | None = None,
             update_baseline: bool = False, update_readme: str | Path | None = None
             ) -> ValidationReport:
    """Predict every record, gate the errors against the baseline, write what is asked.

    Args:
        records: folder of record files (default: the project's ``validation/records``).
        baseline: baseline errors file (default: ``validation/baseline.json``).
        out: folder for ``validation.json`` and ``validation.csv``.
        html: a self-contained page of predicted-vs-measured scatter plots.
        update_baseline: write the current errors as the new baseline.
        update_readme: a README whose generated accuracy block is rewritten.

    Raises:
        ClusterSimError: unreadable records or baseline, a README without the block
            markers, or a file that cannot be written.
    """
    loaded = load_records(records)
    rows = predict_records(loaded)
    pending = pending_records(loaded)
    groups = group_errors(rows)
    baseline_path = Path(baseline) if baseline is not None else default_baseline_path()
    report = ValidationReport(rows=rows, groups=groups, pending=pending, regressions=[],
                              movements=[], baseline_path=baseline_path)
    if out is not None:
        folder = Path(out)
        document = {"records": rows.to_dict(orient="records"),
                    "groups": groups.to_dict(orient="records")}
        write_text(folder / "validation.json", to_json_text(document))
        write_text(folder / "validation.csv", rows.to_csv(index=False))
        report.written += [folder / "validation.json", folder / "validation.csv"]
    if html is not None:
        write_text(html, scatter_html(rows))
        report.written.append(Path(html))
    if update_readme is not None:
        text = Path(update_readme).read_text(encoding="utf-8")
        write_text(update_readme, replace_accuracy_block(text, accuracy_markdown(rows, pending)))
        report.written.append(Path(update_readme))
    report.regressions, report.movements = compare_to_baseline(rows,
                                                               _read_baseline(baseline_path))
    if update_baseline:
        current = {r.id: round(float(r.error_pct), 4) for r in rows.itertuples()}
        write_text(baseline_path, to_json_text({
            "_comment": "Per-record absolute percentage errors; update with "
                        "`clustersim validate --update-baseline` and review the moves.",
            "error_pct": current}))
        report.baseline_updated = True
        report.written.append(baseline_path)
    return report
