"""Reading request traces: our JSON/JSONL format and the public formats people have.

========================  ==========================================================
format                    columns read
========================  ==========================================================
``json`` / ``jsonl``      clustersim's schema (see ``workloads.schema``)
``azure``                 Azure LLM inference trace CSV: TIMESTAMP, ContextTokens,
                          GeneratedTokens (timestamps become seconds from the first)
``burstgpt``              BurstGPT CSV: Timestamp (s), Request tokens, Response tokens;
                          failed requests (0 response tokens) are dropped and counted
``mooncake``              Mooncake JSONL: timestamp (ms), input_length, output_length,
                          hash_ids (kept as ``block_hashes``)
========================  ==========================================================

:func:`load_workload` detects the format from the extension and the header; every
loader refuses a corrupted file with one line naming the row and the field.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from profiles.errors import ClusterSimError, format_validation_error
from profiles.files import write_text
from profiles.reading import checked_file, parse_json, read_text, refuse_constant
from workloads.schema import MAX_ARRIVAL_S, MAX_TOKENS, RequestRecord, RequestTrace, TraceFile

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FORMATS", "load_azure", "load_burstgpt", "load_mooncake", "load_workload",
           "save_workload", "workload_text"]

_RECORDS = TypeAdapter(list[RequestRecord])
# a stand-in request list, to validate a trace file's metadata alone
_RECORDS_HEAD = [{"arrival_s": 0.0, "prompt_tokens": 1, "output_tokens": 1}]


def load_workload(path: str | Path, fmt: str | None = None) -> RequestTrace:
    """Read a trace file of any supported format.

    Args:
        path: the file.
        fmt: one of ``FORMATS``; detected from the extension and header when omitted.

    Raises:
        ClusterSimError: missing or unreadable file, unknown format, or a bad row.
    """
    path = Path(path)
    try:
        checked_file(path, "workload")
    except ClusterSimError as error:
        raise ClusterSimError(f"{error}; pass a trace file (.json, .jsonl or .csv)") from None
    fmt = fmt or _detect_format(path)
    if fmt not in FORMATS:
        raise ClusterSimError(f"workload format {fmt!r} is unknown; use one of: "
                              f"{', '.join(FORMATS)}")
    trace = FORMATS[fmt](path)
    if len(set(trace.request_ids)) < len(trace.request_ids):  # find the first repeat
        seen: dict[int | str, int] = {}
        for position, request_id in enumerate(trace.request_ids):
            if request_id in seen:
                raise ClusterSimError(
                    f"workload {path}: request_id {request_id!r} appears twice (requests "
                    f"{seen[request_id]} and {position} in arrival order); ids must be "
                    f"unique")
            seen[request_id] = position
    trace.metadata.setdefault("source", path.name)
    trace.metadata.setdefault("format", fmt)
    return trace


def _detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix == ".jsonl":
        first = _first_line(path)
        return "mooncake" if '"input_length"' in first and '"timestamp"' in first else "jsonl"
    if suffix == ".csv":
        header = _first_line(path)
        if "ContextTokens" in header:
            return "azure"
        if "Request tokens" in header:
            return "burstgpt"
        raise ClusterSimError(
            f"workload {path}: CSV header {header.strip()[:80]!r} is neither Azure "
            f"(TIMESTAMP,ContextTokens,GeneratedTokens) nor BurstGPT (Timestamp,...,"
            f"Request tokens,Response tokens); pass --format"
        )
    raise ClusterSimError(f"workload {path}: unknown extension {suffix!r}; use .json, .jsonl "
                          f"or .csv, or pass --format")


def _first_line(path: Path) -> str:
    with path.open(encoding="utf-8", errors="replace") as handle:
        return handle.readline()


_PLAIN_FIELDS = frozenset(("request_id", "arrival_s", "prompt_tokens", "output_tokens"))


def _plain_trace(records: Any, metadata: dict[str, Any]) -> RequestTrace | None:
    """The trace of records that hold only the four plain fields, each of the type the
    schema keeps as it is (an int or float arrival, int token counts, an int or str id),
    read as columns without a model per record; ``None`` (the schema's path then reads
    them, and words any error) for anything else, a value out of range included."""
    if not isinstance(records, list) or not records:
        return None
    # column by column, the type tests over each whole column (in C), not per record
    if set(map(type, records)) != {dict} or not all(
            record.keys() <= _PLAIN_FIELDS for record in records):
        return None
    try:
        arrivals = [record["arrival_s"] for record in records]
        prompts = [record["prompt_tokens"] for record in records]
        outputs = [record["output_tokens"] for record in records]
    except KeyError:
        return None
    ids = [record.get("request_id", i) for i, record in enumerate(records)]
    if (not set(map(type, arrivals)) <= {float, int} or set(map(type, prompts)) != {int}
            or set(map(type, outputs)) != {int} or not set(map(type, ids)) <= {int, str}):
        return None
    numbers = [i for i in ids if type(i) is int]
    if numbers and not (min(numbers) >= -(2**63) and max(numbers) < 2**63):
        return None  # an id past 64 bits: the schema's path words the error
    try:
        return RequestTrace.from_columns(np.asarray(arrivals, dtype=np.float64), prompts,
                                         outputs, request_ids=ids, metadata=metadata)
    except (ClusterSimError, OverflowError):
        return None


def _all_finite(value: Any) -> bool:
    """No NaN or infinite float anywhere in parsed JSON ``value`` (metadata: small)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_all_finite(item) for item in value)
    return True


def _fast_plain_json(text: str) -> RequestTrace | None:
    """The trace of a plain JSON trace parsed at C speed: floats as ``float`` reads them
    (an overflow becomes inf, which the arrival check and the metadata walk turn away),
    NaN and Infinity refused; ``None`` for anything else, which the strict parse then
    reads (and words any error, as for every JSON input)."""
    try:
        data = json.loads(text, parse_constant=refuse_constant)
    except (ValueError, RecursionError):
        return None
    metadata: dict[str, Any] = {}
    if isinstance(data, dict) and data.keys() <= {"metadata", "requests"}:
        if not _all_finite(data.get("metadata", {})):
            return None
        try:
            metadata = TraceFile.model_validate({"metadata": data.get("metadata", {}),
                                                 "requests": _RECORDS_HEAD}).metadata
        except ValidationError:
            return None
        data = data.get("requests")
    return _plain_trace(data, metadata) if isinstance(data, list) else None


def load_json(path: Path) -> RequestTrace:
    """clustersim's JSON: a list of requests or ``{"metadata": ..., "requests": [...]}``."""
    text = read_text(path, "workload")
    fast = _fast_plain_json(text)
    if fast is not None:
        return fast
    source = f"workload {path}"
    data = parse_json(text, source)
    try:
        if isinstance(data, list):
            if not data:
                raise ClusterSimError(f"{source}: the trace has no requests")
            plain = _plain_trace(data, {})
            if plain is not None:
                return plain
            return RequestTrace.from_records(_RECORDS.validate_python(data))
        if isinstance(data, dict):
            if data.keys() <= {"metadata", "requests"}:
                head = TraceFile.model_validate({"metadata": data.get("metadata", {}),
                                                 "requests": _RECORDS_HEAD})
                plain = _plain_trace(data.get("requests"), head.metadata)
                if plain is not None:
                    return plain
            parsed = TraceFile.model_validate(data)
            return RequestTrace.from_records(parsed.requests, parsed.metadata)
    except ValidationError as error:
        raise ClusterSimError(format_validation_error(error, source)) from None
    raise ClusterSimError(f"{source}: expected a list of requests or an object with 'requests'")


def load_jsonl(path: Path) -> RequestTrace:
    """clustersim's JSONL: one request object per line (blank lines skipped)."""
    records = []
    for line_no, data in _jsonl_rows(path):
        try:
            records.append(RequestRecord.model_validate(data))
        except ValidationError as error:
            where = f"workload {path} line {line_no}"
            raise ClusterSimError(format_validation_error(error, where)) from None
    return RequestTrace.from_records(records)


def _jsonl_rows(path: Path) -> list[tuple[int, Any]]:
    rows = []
    for line_no, line in enumerate(read_text(path, "workload").splitlines(), start=1):
        if line.strip():
            rows.append((line_no, parse_json(line, f"workload {path} line {line_no}")))
    if not rows:
        raise ClusterSimError(f"workload {path}: the trace has no requests")
    return rows


def load_mooncake(path: Path) -> RequestTrace:
    """Mooncake's JSONL: ``timestamp`` in ms, ``input_length``, ``output_length``, ``hash_ids``."""
    arrival, prompt, output, hashes = [], [], [], []
    for line_no, row in _jsonl_rows(path):
        where = f"workload {path} line {line_no}"
        if not isinstance(row, dict):
            raise ClusterSimError(f"{where}: expected a JSON object")
        arrival.append(_number(row, "timestamp", where, minimum=0,
                               maximum=MAX_ARRIVAL_S * 1000) / 1000.0)
        prompt.append(int(_number(row, "input_length", where, minimum=1)))
        output.append(int(_number(row, "output_length", where, minimum=1)))
        block_hashes = row.get("hash_ids")
        if block_hashes is not None and not (
            isinstance(block_hashes, list)
            and all(isinstance(h, int) and not isinstance(h, bool) and -(2**63) <= h < 2**63
                    for h in block_hashes)
        ):
            raise ClusterSimError(f"{where}: field 'hash_ids' must be a list of 64-bit "
                                  "integers")
        hashes.append(block_hashes)
    extras = {"block_hashes": hashes} if any(h is not None for h in hashes) else {}
    return RequestTrace.from_columns(arrival, prompt, output, extras=extras,
                                     metadata={"block_size_tokens": 512})


def _number(row: dict[str, Any], name: str, where: str, minimum: float,
            maximum: float = MAX_TOKENS) -> float:
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClusterSimError(f"{where}: field '{name}' must be a number, got {value!r}")
    if not minimum <= value <= maximum:  # also false for NaN; safe for any int
        raise ClusterSimError(f"{where}: field '{name}' must be in [{minimum:g}, {maximum:g}], "
                              f"got {value!r}")
    return float(value)


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    import pandas as pd  # NOTE: lazily, so only the CSV formats pay its import

    text = read_text(path, "workload")
    try:
        frame = pd.read_csv(io.StringIO(text), skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        raise ClusterSimError(f"workload {path}: not a readable CSV "
                              f"({str(error).strip()[:200]})") from None
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ClusterSimError(f"workload {path}: missing column(s) {', '.join(missing)}; "
                              f"found {', '.join(map(str, frame.columns))}")
    if frame.empty:
        raise ClusterSimError(f"workload {path}: the trace has no requests")
    return frame


def _int_column(frame: pd.DataFrame, name: str, path: Path, minimum: int) -> np.ndarray:
    values = _numbers(frame, name)
    bad = ~np.isfinite(values) | (values < minimum) | (values > MAX_TOKENS) \
        | (values != np.round(values))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ClusterSimError(f"workload {path} row {row + 2}: column '{name}' must be an "
                              f"integer in [{minimum}, {MAX_TOKENS}], got "
                              f"{str(frame[name].iloc[row])[:40]!r}")
    return values.astype(np.int64)


def _numbers(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A column as float64, NaN where a cell is not a real number."""
    import pandas as pd  # NOTE: lazily, so only the CSV formats pay its import

    values = pd.to_numeric(frame[name].astype(str).str.strip(), errors="coerce")
    return np.asarray(values, dtype=np.float64)


def load_azure(path: Path) -> RequestTrace:
    """Azure LLM inference trace (2023/2024): TIMESTAMP, ContextTokens, GeneratedTokens."""
    import pandas as pd  # NOTE: lazily, so only the CSV formats pay its import

    frame = _read_csv(path, ["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
    # utc=True: stamps with and without time zones, or in several, land on one clock
    stamps = pd.to_datetime(frame["TIMESTAMP"].astype(str), errors="coerce", format="ISO8601",
                            utc=True)
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise ClusterSimError(f"workload {path} row {row + 2}: column 'TIMESTAMP' is not a "
                              f"date-time, got {frame['TIMESTAMP'].iloc[row]!r}")
    arrival = (stamps - stamps.min()).dt.total_seconds().to_numpy()
    return RequestTrace.from_columns(
        arrival,
        _int_column(frame, "ContextTokens", path, minimum=1),
        _int_column(frame, "GeneratedTokens", path, minimum=1),
    )


def load_burstgpt(path: Path) -> RequestTrace:
    """BurstGPT: Timestamp (s), Request tokens, Response tokens; failures are dropped."""
    frame = _read_csv(path, ["Timestamp", "Request tokens", "Response tokens"])
    arrival = _numbers(frame, "Timestamp")
    bad = ~np.isfinite(arrival) | (arrival < 0) | (arrival > MAX_ARRIVAL_S)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ClusterSimError(f"workload {path} row {row + 2}: column 'Timestamp' must be "
                              f"seconds in [0, {MAX_ARRIVAL_S:g}], got "
                              f"{str(frame['Timestamp'].iloc[row])[:40]!r}")
    prompt = _int_column(frame, "Request tokens", path, minimum=0)
    output = _int_column(frame, "Response tokens", path, minimum=0)
    kept = (prompt > 0) & (output > 0)
    if not kept.any():
        raise ClusterSimError(f"workload {path}: every row has 0 request or response tokens")
    return RequestTrace.from_columns(
        arrival[kept], prompt[kept], output[kept],
        metadata={"dropped_failed_requests": int((~kept).sum())},
    )


FORMATS: dict[str, Callable[[Path], RequestTrace]] = {
    "json": load_json,
    "jsonl": load_jsonl,
    "azure": load_azure,
    "burstgpt": load_burstgpt,
    "mooncake": load_mooncake,
}


def workload_text(trace: RequestTrace, path: str | Path) -> str:
    """A trace as clustersim JSONL (``path`` ends in ``.jsonl``) or JSON (otherwise)."""
    records = trace.to_records()
    if Path(path).suffix.lower() == ".jsonl":
        return "".join(json.dumps(record) + "\n" for record in records)
    text = json.dumps({"metadata": trace.metadata, "requests": records}, indent=None)
    return text.replace('{"request_id"', '\n  {"request_id"') + "\n"


def save_workload(trace: RequestTrace, path: str | Path) -> None:
    """Write a trace as clustersim JSON (``.json``) or JSONL (``.jsonl``), whole or not
    at all."""
    write_text(path, workload_text(trace, path))
