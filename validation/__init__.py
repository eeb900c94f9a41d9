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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# NOTE: the package's names load on first use (PEP 562), so that importing one module of
# it, such as error_bars, which every `simulate` run reads, does not import the whole
# validation suite and pandas with it.
_HOMES = {
    "GROUP_MEDIAN_TOLERANCE_PTS": "comparison", "RECORD_TOLERANCE_PTS": "comparison",
    "compare_to_baseline": "comparison", "group_errors": "comparison",
    "predict_records": "comparison", "ValidationReport": "gate",
    "default_baseline_path": "gate", "validate": "gate", "REFERENCE_STATISTICS": "our_runs",
    "add_reference_run": "our_runs", "PENDING_KINDS": "predictors", "PREDICTORS": "predictors",
    "Record": "records", "default_records_dir": "records", "load_records": "records",
    "pending_records": "records", "accuracy_markdown": "render",
    "replace_accuracy_block": "render", "scatter_html": "render",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'validation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"validation.{home}"), name)
    globals()[name] = value
    return value


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
