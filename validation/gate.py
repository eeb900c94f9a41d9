"""``clustersim validate`` as one library call: predict every record, compare with the
baseline, and write what was asked for (tables, a scatter page, the README's accuracy
block, a new baseline).

    records ─► predictors ─► errors per record and group ─► gate vs baseline.json
                                         └─► validation.json/.csv, scatter page, README block
    measured pack ─► operators, vLLM runs ─► errors per GPU and operator ─┘ (skipped without)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from profiles.errors import ClusterSimError
from profiles.files import to_json_text, write_folder, write_text
from profiles.reading import read_json
from validation.comparison import compare_to_baseline, group_errors, predict_records
from validation.error_bars import (
    TRAINING_BARS_PATH,
    build_error_bars,
    build_training_error_bars,
    write_error_bars,
)
from validation.operators import (
    compare_drift,
    compare_operators,
    default_measured_dir,
    operator_errors,
    operator_rows,
)
from validation.records import default_records_dir, load_records, pending_records
from validation.render import accuracy_markdown, replace_accuracy_block, scatter_html
from validation.serving_runs import (
    compare_serving_runs,
    overload_states,
    run_errors,
    serving_errors,
    serving_groups,
    serving_rows,
    skipped_runs,
)
from validation.training_runs import (
    skipped_training_rows,
    training_errors,
    training_rows,
)

__all__ = ["ValidationReport", "accuracy_block", "default_baseline_path", "validate"]


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
        operators: per (GPU, operator) errors against the measured pack's tables, the
            serving runs' metrics included (empty when the pack is not there).
        operators_skipped: why the operator group did not run, or "".
        runs_not_expressed: vLLM runs of the pack the simulator cannot express yet, with
            the reason.
        training: one row per published training run compared (validation.training_runs).
        training_not_expressed: training rows of the pack not compared, with the reason.
        overload: per replayed vLLM run, its measured and predicted state.
        serving_groups: the vLLM runs' errors per GPU, model family, TP and metric.
    """

    rows: pd.DataFrame
    groups: pd.DataFrame
    pending: dict[str, list[str]]
    regressions: list[str]
    movements: list[str]
    baseline_path: Path
    baseline_updated: bool = False
    written: list[Path] = field(default_factory=list)
    operators: pd.DataFrame = field(default_factory=pd.DataFrame)
    operators_skipped: str = ""
    runs_not_expressed: pd.DataFrame = field(default_factory=pd.DataFrame)
    training: pd.DataFrame = field(default_factory=pd.DataFrame)
    training_not_expressed: pd.DataFrame = field(default_factory=pd.DataFrame)
    overload: pd.DataFrame = field(default_factory=pd.DataFrame)
    serving_groups: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def passed(self) -> bool:
        """The gate holds: no regression, or the baseline was updated to accept them."""
        return self.baseline_updated or not self.regressions


def accuracy_block(report: ValidationReport) -> str:
    """The README's generated accuracy block for this report."""
    return accuracy_markdown(report.rows, report.pending, report.operators,
                             report.runs_not_expressed, report.training_not_expressed,
                             report.overload, report.serving_groups)


def default_baseline_path() -> Path:
    """``validation/baseline.json`` beside the project's records."""
    return default_records_dir().parent / "baseline.json"


def _read_baseline(path: Path) -> tuple[dict[str, float], dict[str, dict[str, float]],
                                        dict[str, float]]:
    """(error per record, {median, p90} per GPU/operator, error per vLLM run and metric)
    of a baseline file."""
    if not path.is_file():
        return {}, {}, {}
    document = read_json(path, "--baseline")
    try:
        errors = {str(key): float(value) for key, value in document["error_pct"].items()}
        operators = {str(key): {"median": float(value["median"]), "p90": float(value["p90"])}
                     | ({"signed": float(value["signed"])} if "signed" in value else {})
                     for key, value in document.get("operators", {}).items()}
        runs = {str(key): float(value)
                for key, value in document.get("serving_runs", {}).items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise ClusterSimError(f"--baseline {path}: expected a JSON object with 'error_pct' "
                              f"({error}); rewrite it with --update-baseline") from None
    return errors, operators, runs


def validate(records: str | Path | None = None, baseline: str | Path | None = None, *,
             out: str | Path | None = None, html: str | Path | None = None,
             update_baseline: bool = False, update_readme: str | Path | None = None,
             measured: str | Path | None = None,
             progress: Callable[[int, int], None] | None = None) -> ValidationReport:
    """Predict every record, gate the errors against the baseline, write what is asked.

    Args:
        records: folder of record files (default: the project's ``validation/records``).
        baseline: baseline errors file (default: ``validation/baseline.json``).
        out: folder for ``validation.json`` and ``validation.csv``.
        html: a self-contained page of predicted-vs-measured scatter plots.
        update_baseline: write the current errors as the new baseline.
        update_readme: a README whose generated accuracy block is rewritten.
        measured: the measured pack for the operator group (default: the shared
            folder's, or ``CLUSTERSIM_MEASURED``).
        progress: hears (vLLM runs replayed, runs) while the serving runs replay.

    Raises:
        ClusterSimError: unreadable records or baseline, a README without the block
            markers, or a file that cannot be written.
    """
    loaded = load_records(records)
    rows = predict_records(loaded)
    pending = pending_records(loaded)
    groups = group_errors(rows)
    baseline_path = Path(baseline) if baseline is not None else default_baseline_path()
    if baseline is not None and not update_baseline and not baseline_path.is_file():
        raise ClusterSimError(f"--baseline {baseline_path}: no such file; name an existing "
                              "baseline, or add --update-baseline to write one")
    report = ValidationReport(rows=rows, groups=groups, pending=pending, regressions=[],
                              movements=[], baseline_path=baseline_path)
    measured_dir = Path(measured) if measured is not None else default_measured_dir()
    runs = pd.DataFrame()
    if measured is not None and not (Path(measured) / "vidur").is_dir():
        raise ClusterSimError(f"--measured {measured}: no vidur/ folder there; name the "
                              "measured pack's folder (the shared folder's measured/)")
    if measured_dir is None or not (measured_dir / "vidur").is_dir():
        report.operators_skipped = ("operator group skipped: no measured pack (the shared "
                                    "folder's measured/, or --measured DIR)")
    else:
        runs = serving_rows(measured_dir, progress)
        report.training = training_rows(measured_dir)
        report.training_not_expressed = skipped_training_rows(measured_dir)
        report.operators = pd.concat([operator_errors(operator_rows(measured_dir)),
                                      serving_errors(runs), training_errors(report.training)],
                                     ignore_index=True)
        report.runs_not_expressed = skipped_runs(measured_dir)
        report.overload = overload_states(runs)
        report.serving_groups = serving_groups(runs)
    if out is not None:
        folder = Path(out)
        document = {"records": rows.to_dict(orient="records"),
                    "groups": groups.to_dict(orient="records"),
                    "operators": report.operators.to_dict(orient="records"),
                    "training_runs": report.training.to_dict(orient="records"),
                    "training_not_expressed":
                        report.training_not_expressed.to_dict(orient="records")}
        report.written += write_folder(folder, {
            "validation.json": lambda path: path.write_text(to_json_text(document)),
            "validation.csv": lambda path: rows.to_csv(path, index=False)})
    if html is not None:
        write_text(html, scatter_html(rows))
        report.written.append(Path(html))
    if update_readme is not None:
        text = Path(update_readme).read_text(encoding="utf-8")
        write_text(update_readme, replace_accuracy_block(text, accuracy_block(report)))
        report.written.append(Path(update_readme))
    record_baseline, operator_baseline, run_baseline = _read_baseline(baseline_path)
    report.regressions, report.movements = compare_to_baseline(rows, record_baseline)
    if not report.operators.empty:
        # With per-run serving entries in the baseline, the serving rows are gated run by
        # run over the runs it knows (a newly expressed run joins without counting).
        gated = report.operators
        if run_baseline:
            gated = gated[~gated["operator"].str.startswith("serving ")]
        regressions, movements = compare_operators(gated, operator_baseline)
        report.regressions += regressions + compare_drift(report.operators, operator_baseline)
        report.movements += movements
        if run_baseline:
            regressions, movements = compare_serving_runs(runs, run_baseline)
            report.regressions += regressions
            report.movements += movements
    if update_baseline:
        current = {r.id: round(float(r.error_pct), 4) for r in rows.itertuples()}
        operators = operator_baseline if report.operators.empty else {
            f"{r.gpu}/{r.operator}": {"median": round(float(r.median_error_pct), 4),
                                      "p90": round(float(r.p90_error_pct), 4),
                                      "signed": round(float(r.signed_median_pct), 4)}
            for r in report.operators.itertuples()}
        write_text(baseline_path, to_json_text({
            "_comment": "Per-record absolute percentage errors, and per GPU/operator median "
                        "and p90 errors against measured tables; update with "
                        "`clustersim validate --update-baseline` and review the moves.",
            "error_pct": current, "operators": operators,
            "serving_runs": run_baseline if report.operators.empty else run_errors(runs)}))
        report.baseline_updated = True
        report.written.append(baseline_path)
        if measured_dir is not None and not report.operators.empty:
            report.written.append(write_error_bars(build_error_bars(runs)))
        if measured_dir is not None and not report.training.empty:
            report.written.append(write_error_bars(
                build_training_error_bars(report.training), TRAINING_BARS_PATH))
    return report
