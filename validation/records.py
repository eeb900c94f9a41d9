"""Validation records: one measured run each, with its scenario, the measured metric and
where the number comes from (a paper and its table, a benchmark log, our own GPU run).

Records live as JSON files in ``validation/records/``. A record whose figure was used to
set a parameter is ``calibration`` and is reported apart from ``test`` records. Every
record's kind must have a predictor (``validation.predictors``) or a stated reason to
wait for one, so no measurement is silently dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from profiles.errors import ClusterSimError, format_validation_error
from profiles.reading import read_json
from validation.predictors import PENDING_KINDS, PREDICTORS

__all__ = ["Measured", "Record", "Source", "default_records_dir", "load_records",
           "pending_records"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Source(_Frozen):
    kind: Literal["paper", "benchmark", "maintainer", "user", "our_run"]
    citation: str = Field(min_length=3)
    locator: str = Field(min_length=3, description="table, page, figure or thread")


class Measured(_Frozen):
    metric: str
    value: float = Field(gt=0)
    unit: str
    low: float | None = None
    high: float | None = None


class Record(_Frozen):
    """One measured run and where its number comes from."""

    id: str
    group: Literal["kernels", "collectives", "serving", "training"]
    kind: str
    role: Literal["calibration", "test"]
    scenario: dict[str, Any]
    measured: Measured
    source: Source
    notes: str = ""


def default_records_dir() -> Path:
    """``validation/records`` of the source tree this package runs from."""
    return Path(__file__).resolve().parent / "records"


def load_records(folder: str | Path | None = None) -> list[Record]:
    """Every record of every ``*.json`` file in ``folder``, ids unique.

    Raises:
        ClusterSimError: a missing folder, a bad file, a record without a source, a
            duplicate id or a kind without a predictor.
    """
    folder = Path(folder) if folder is not None else default_records_dir()
    if not folder.is_dir():
        raise ClusterSimError(f"validation records {folder}: no such folder; pass --records")
    records: list[Record] = []
    for path in sorted(folder.glob("*.json")):
        document = read_json(path, "validation records")
        entries = document.get("records") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ClusterSimError(f"validation records {path}: expected an object with a "
                                  "list 'records'")
        for index, entry in enumerate(entries):
            if isinstance(entry, dict) and entry.get("kind") == "reference_run":
                # A run folder is named relative to its records file; resolved here so the
                # predictor finds it wherever the records folder is.
                scenario = dict(entry.get("scenario") or {})
                scenario["run"] = str((path.parent / str(scenario.get("run", ""))).resolve())
                entry = {**entry, "scenario": scenario}
            try:
                record = Record.model_validate(entry)
            except ValidationError as error:
                raise ClusterSimError(format_validation_error(
                    error, f"validation records {path.name} record {index}")) from None
            if record.kind not in PREDICTORS and record.kind not in PENDING_KINDS:
                known = ", ".join([*PREDICTORS, *PENDING_KINDS])
                raise ClusterSimError(f"validation record {record.id}: kind {record.kind!r} "
                                      f"is unknown; known: {known}")
            records.append(record)
    ids = [record.id for record in records]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ClusterSimError(f"validation records: duplicate ids {', '.join(duplicates)}")
    if not records:
        raise ClusterSimError(f"validation records {folder}: no records found")
    return records


def pending_records(records: list[Record]) -> dict[str, list[str]]:
    """Ids of records awaiting a predictor, by what will predict them."""
    pending: dict[str, list[str]] = {}
    for record in records:
        if record.kind not in PREDICTORS:
            pending.setdefault(PENDING_KINDS[record.kind], []).append(record.id)
    return pending
