"""Validation: every prediction family checked against measured runs, and the CI gate.

    records/            measured runs as JSON: published papers and logs, our own runs
    records.py          the record schema and loading
    predictors.py       the simulator's prediction for each record kind
    comparison.py       errors per record and group; the gate against baseline.json
    render.py           the README accuracy block and the scatter page
    gate.py             validate(): the whole run, as ``clustersim validate`` makes it
    our_runs.py         a measured reference run joined to the records
    reference/          the reference-run driver, its executor seam and torch model, and
                        the comparison of the simulator with a run
"""

from validation.comparison import (
    GROUP_MEDIAN_TOLERANCE_PTS,
    RECORD_TOLERANCE_PTS,
    compare_to_baseline,
    group_errors,
    predict_records,
)
from validation.gate import ValidationReport, default_baseline_path, validate
from validation.our_runs import REFERENCE_STATISTICS, add_reference_run
from validation.predictors import PENDING_KINDS, PREDICTORS
from validation.records import Record, default_records_dir, load_records, pending_records
from validation.render import accuracy_markdown, replace_accuracy_block, scatter_html

__all__ = [
    "GROUP_MEDIAN_TOLERANCE_PTS",
    "PENDING_KINDS",
    "PREDICTORS",
    "RECORD_TOLERANCE_PTS",
    "REFERENCE_STATISTICS",
    "Record",
    "ValidationReport",
    "accuracy_markdown",
    "add_reference_run",
    "compare_to_baseline",
    "default_baseline_path",
    "default_records_dir",
    "group_errors",
    "load_records",
    "pending_records",
    "predict_records",
    "replace_accuracy_block",
    "scatter_html",
    "validate",
]
